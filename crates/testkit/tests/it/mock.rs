//! tokio-postgres against the mock server, with no proxy in between.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::poll_fn;
use futures_util::{SinkExt, TryStreamExt, pin_mut};
use pgsplit_testkit::{MockServer, Received, Reply, Script};
use pgsplit_wire::{ErrorFields, sqlstate};
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

async fn connect(
    mock: &MockServer,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<AsyncMessage>) {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(mock.addr().port())
        .user("u")
        .dbname("d")
        .application_name("t");
    let (client, mut connection) = config.connect(NoTls).await.expect("connect to the mock");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = poll_fn(|cx| connection.poll_message(cx)).await {
            let _ = tx.send(m);
        }
    });
    (client, rx)
}

fn row_values(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn simple_and_extended_queries() {
    let script = Script::new()
        .on(
            "SELECT a, b",
            [Reply::rows(&["a", "b"], &[&["1", "x"], &["2", "y"]])],
        )
        .on("SELECT $1::text", [Reply::rows(&["text"], &[&["echo"]])]);
    let mock = MockServer::start(script).await;
    let (c, _) = connect(&mock).await;

    let msgs = c.simple_query("SELECT a, b").await.unwrap();
    assert_eq!(
        row_values(&msgs),
        [
            [Some("1".into()), Some("x".into())],
            [Some("2".into()), Some("y".into())]
        ]
    );

    let rows = c.query("SELECT $1::text", &[&"ignored"]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, &str>(0), "echo");

    let e = c.simple_query("VACUUM").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"));
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();

    let startups = mock.startups();
    assert_eq!(startups.len(), 1);
    assert!(startups[0].contains(&("application_name".into(), "t".into())));
    assert!(
        mock.received()
            .contains(&Received::Query("SELECT a, b".into()))
    );
    assert!(mock.queries().contains(&"SELECT $1::text".to_owned()));
}

#[tokio::test]
async fn errors_notices_notifications() {
    let fields = ErrorFields::error(sqlstate::UNIQUE_VIOLATION, "dup")
        .with_detail("d")
        .with_hint("h");
    let script = Script::new().on("fail", [Reply::Error(fields)]).on(
        "chatty",
        [
            Reply::Notice(ErrorFields::notice(sqlstate::SUCCESSFUL_COMPLETION, "note")),
            Reply::Notification {
                channel: "ch".into(),
                payload: "pl".into(),
            },
            Reply::ParameterStatus("TimeZone".into(), "Europe/Paris".into()),
            Reply::rows(&["v"], &[&["1"]]),
        ],
    );
    let mock = MockServer::start(script).await;
    let (c, mut rx) = connect(&mock).await;

    let e = c.simple_query("fail").await.unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!((db.code().code(), db.message()), ("23505", "dup"));
    assert_eq!((db.detail(), db.hint()), (Some("d"), Some("h")));

    let msgs = c.simple_query("chatty").await.unwrap();
    assert_eq!(row_values(&msgs).len(), 1);
    match rx.recv().await.unwrap() {
        AsyncMessage::Notice(n) => assert_eq!(n.message(), "note"),
        other => panic!("{other:?}"),
    }
    match rx.recv().await.unwrap() {
        AsyncMessage::Notification(n) => assert_eq!((n.channel(), n.payload()), ("ch", "pl")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sleep_is_cancellable() {
    let script = Script::new().on("sleep", [Reply::Sleep(Duration::from_secs(30))]);
    let mock = MockServer::start(script).await;
    let (c, _) = connect(&mock).await;
    let token = c.cancel_token();
    let task = tokio::spawn(async move { c.simple_query("sleep").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    token.cancel_query(NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.unwrap_err().code().map(|c| c.code()), Some("57014"));
    assert!(
        mock.received()
            .iter()
            .any(|r| matches!(r, Received::Cancel { .. }))
    );
}

#[tokio::test]
async fn copy_both_ways_and_close() {
    let script = Script::new()
        .on(
            "COPY t TO STDOUT",
            [Reply::CopyOut(vec![Bytes::from("1\n"), Bytes::from("2\n")])],
        )
        .on("COPY t FROM STDIN", [Reply::CopyIn])
        .on("crash", [Reply::Close]);
    let mock = MockServer::start(script).await;
    let (c, _) = connect(&mock).await;

    let out = c.copy_out("COPY t TO STDOUT").await.unwrap();
    pin_mut!(out);
    let mut data = Vec::new();
    while let Some(chunk) = out.try_next().await.unwrap() {
        data.extend_from_slice(&chunk);
    }
    assert_eq!(data, b"1\n2\n");

    let sink = c.copy_in::<_, Bytes>("COPY t FROM STDIN").await.unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from_static(b"a\nb\nc\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 3);
    assert!(mock.received().contains(&Received::CopyDone));

    assert!(c.simple_query("crash").await.is_err());
    assert!(c.is_closed());
}
