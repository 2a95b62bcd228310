//! Protocol edge cases that a real server will not produce on demand, played by the testkit
//! mock server behind the proxy. These need no cluster and always run.

use std::time::Duration;

use pgsplit_testkit::mock::secret_of;
use pgsplit_testkit::{Match, Received, Reply, Script};
use pgsplit_wire::{ErrorFields, sqlstate};
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

use crate::harness::{Case, Conn, assert_usable, bounded};

/// An error carrying every field PostgreSQL can send.
fn full_error() -> ErrorFields {
    let mut e = ErrorFields::error(
        sqlstate::CHECK_VIOLATION,
        "new row violates check constraint",
    )
    .with_detail("Failing row contains (-1).")
    .with_hint("Use a positive number.");
    e.other.extend(
        [
            (b'P', "8"),
            (b'W', "SQL function \"f\" statement 1"),
            (b's', "public"),
            (b't', "accounts"),
            (b'c', "balance"),
            (b'd', "posint"),
            (b'n', "accounts_balance_check"),
            (b'F', "execMain.c"),
            (b'L', "1998"),
            (b'R', "ExecConstraints"),
        ]
        .map(|(k, v)| (k, v.to_owned())),
    );
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_fields_pass_through_unchanged() {
    let script = Script::new().on(
        Match::prefix("INSERT INTO accounts"),
        [Reply::Error(full_error())],
    );
    Case::new("mock_error_fields")
        .run_mock(script, async |px| {
            let c = px.client().await;
            let simple = c.simple_query("INSERT INTO accounts VALUES (-1)").await;
            let extended = c
                .execute("INSERT INTO accounts VALUES ($1::text)", &[&"-1"])
                .await;
            for result in [simple.map(|_| 0), extended] {
                let e = result.expect_err("the scripted error vanished");
                let db = e.as_db_error().expect("not a server error");
                assert_eq!(db.code().code(), "23514");
                assert_eq!(db.severity(), "ERROR");
                assert_eq!(
                    db.parsed_severity().map(|s| s.to_string()).as_deref(),
                    Some("ERROR")
                );
                assert_eq!(db.message(), "new row violates check constraint");
                assert_eq!(db.detail(), Some("Failing row contains (-1)."));
                assert_eq!(db.hint(), Some("Use a positive number."));
                assert!(db.position().is_some());
                assert_eq!(db.where_(), Some("SQL function \"f\" statement 1"));
                assert_eq!(db.schema(), Some("public"));
                assert_eq!(db.table(), Some("accounts"));
                assert_eq!(db.column(), Some("balance"));
                assert_eq!(db.datatype(), Some("posint"));
                assert_eq!(db.constraint(), Some("accounts_balance_check"));
                assert_eq!(db.file(), Some("execMain.c"));
                assert_eq!(db.line(), Some(1998));
                assert_eq!(db.routine(), Some("ExecConstraints"));
            }
            assert_usable(&c).await;
        })
        .await;
}

/// Notices, notifications and ParameterStatus in the middle of a result reach the client
/// without disturbing the rows around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_messages_in_the_middle_of_a_result() {
    let script = Script::new().on(
        "SELECT chatty",
        [
            Reply::rows(&["n"], &[&["1"]]),
            Reply::Notice(ErrorFields::notice(
                sqlstate::SUCCESSFUL_COMPLETION,
                "halfway",
            )),
            Reply::Notification {
                channel: "jobs".into(),
                payload: "42".into(),
            },
            Reply::ParameterStatus("TimeZone".into(), "Asia/Tokyo".into()),
            Reply::rows(&["n"], &[&["2"]]),
        ],
    );
    Case::new("mock_async")
        .run_mock(script, async |px| {
            let mut c = px.connect().await;
            let msgs = c.simple_query("SELECT chatty").await.unwrap();
            let rows: Vec<&str> = msgs
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0),
                    _ => None,
                })
                .collect();
            assert_eq!(rows, ["1", "2"]);
            let completes = msgs
                .iter()
                .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(1)))
                .count();
            assert_eq!(completes, 2);
            match c.next_message(Duration::from_secs(5)).await {
                AsyncMessage::Notice(n) => assert_eq!(n.message(), "halfway"),
                other => panic!("expected the notice, got {other:?}"),
            }
            match c.next_message(Duration::from_secs(5)).await {
                AsyncMessage::Notification(n) => {
                    assert_eq!((n.channel(), n.payload()), ("jobs", "42"))
                }
                other => panic!("expected the notification, got {other:?}"),
            }
            let tz = c.parameter_until("TimeZone", |v| v == "Asia/Tokyo").await;
            assert_eq!(tz.as_deref(), Some("Asia/Tokyo"));
        })
        .await;
}

/// What the client said at startup reaches the server, at startup or as SET commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn startup_parameters_reach_the_server() {
    Case::new("mock_startup")
        .run_mock(Script::new(), async |px| {
            let mut config = px.pg_config("app", Some("app"));
            config.application_name("mock-app");
            let c = Conn::open(&config).await.unwrap();
            assert_usable(&c).await;
            let startups = px.mock.startups();
            let in_startup = startups.iter().any(|p| {
                p.iter()
                    .any(|(k, v)| k == "application_name" && v == "mock-app")
            });
            let in_set = px
                .mock
                .queries()
                .iter()
                .any(|q| q.contains("application_name") && q.contains("mock-app"));
            assert!(
                in_startup || in_set,
                "application_name never reached the server: {startups:?}"
            );
        })
        .await;
}

/// A cancel request through the proxy reaches the server with the server's own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_reaches_the_server_with_its_key() {
    let script = Script::new().on(
        "SELECT pg_sleep(30)",
        [Reply::Sleep(Duration::from_secs(30))],
    );
    Case::new("mock_cancel")
        .run_mock(script, async |px| {
            let c = px.client().await;
            let token = c.cancel_token();
            let task =
                tokio::spawn(async move { (c.simple_query("SELECT pg_sleep(30)").await, c) });
            tokio::time::sleep(Duration::from_millis(300)).await;
            let at = Instant::now();
            token.cancel_query(NoTls).await.unwrap();
            let (result, c) = task.await.unwrap();
            assert!(
                at.elapsed() < Duration::from_secs(1),
                "cancel took {:?}",
                at.elapsed()
            );
            let code = result
                .expect_err("not cancelled")
                .code()
                .map(|c| c.code().to_owned());
            assert_eq!(code.as_deref(), Some("57014"));
            let cancels: Vec<(u32, u32)> = px
                .mock
                .received()
                .into_iter()
                .filter_map(|r| match r {
                    Received::Cancel { pid, secret } => Some((pid, secret)),
                    _ => None,
                })
                .collect();
            assert!(
                cancels
                    .iter()
                    .any(|&(pid, secret)| secret == secret_of(pid)),
                "no cancel request with a key the server handed out: {cancels:?}"
            );
            assert_usable(&c).await;
        })
        .await;
}

/// A server connection that dies in the middle of a query gives the client an error, not a hang,
/// and the proxy goes on serving new clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_crash_mid_query() {
    let script = Script::new().on(
        "SELECT crash",
        [Reply::rows(&["n"], &[&["1"]]), Reply::Close],
    );
    Case::new("mock_crash")
        .run_mock(script, async |px| {
            let c = px.client().await;
            let result = bounded(
                Duration::from_secs(5),
                "query on a dead server",
                c.simple_query("SELECT crash"),
            )
            .await;
            let e = result.expect_err("a query whose server died succeeded");
            if let Some(db) = e.as_db_error() {
                let class = &db.code().code()[..2];
                assert!(
                    ["08", "57", "58", "XX"].contains(&class),
                    "unexpected SQLSTATE: {db:?}"
                );
            }
            let again = px.client().await;
            assert_usable(&again).await;
        })
        .await;
}

/// A FATAL from the server (here: administrator shutdown) reaches the client with its SQLSTATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_fatal_reaches_the_client() {
    let fatal = ErrorFields::fatal(
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection due to administrator command",
    );
    let script = Script::new().on("SELECT doomed", [Reply::Error(fatal), Reply::Close]);
    Case::new("mock_fatal")
        .run_mock(script, async |px| {
            let c = px.client().await;
            let e = c
                .simple_query("SELECT doomed")
                .await
                .expect_err("FATAL swallowed");
            let code = e.as_db_error().map(|d| d.code().code().to_owned());
            assert_eq!(code.as_deref(), Some("57P01"), "{e:?}");
            let again = px.client().await;
            assert_usable(&again).await;
        })
        .await;
}
