//! LISTEN/NOTIFY and notices through pgsplit.

use std::time::Duration;

use tokio_postgres::AsyncMessage;

use crate::harness::{Case, Conn};

const WAIT: Duration = Duration::from_secs(5);

async fn next_notification(conn: &mut Conn) -> tokio_postgres::Notification {
    loop {
        match conn.next_message(WAIT).await {
            AsyncMessage::Notification(n) => return n,
            AsyncMessage::Notice(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_reaches_a_listener() {
    Case::new("notify")
        .run(async |px| {
            let mut listener = px.connect().await;
            listener.batch_execute("LISTEN events").await.unwrap();
            let sender = px.connect().await;

            sender
                .batch_execute("NOTIFY events, 'hello'")
                .await
                .unwrap();
            let n = next_notification(&mut listener).await;
            assert_eq!((n.channel(), n.payload()), ("events", "hello"));

            // pg_notify(), and a notification sent in a transaction arrives only at commit.
            sender
                .query_one("SELECT pg_notify('events', $1)", &[&"via function"])
                .await
                .unwrap();
            let n = next_notification(&mut listener).await;
            assert_eq!(n.payload(), "via function");

            sender
                .batch_execute("BEGIN; NOTIFY events, 'in txn'")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                listener.messages.try_recv().is_err(),
                "notification before commit"
            );
            sender.batch_execute("COMMIT").await.unwrap();
            assert_eq!(next_notification(&mut listener).await.payload(), "in txn");

            // While the listener is busy with its own queries, notifications still arrive.
            listener.query_one("SELECT 1", &[]).await.unwrap();
            sender
                .batch_execute("NOTIFY events, 'later'")
                .await
                .unwrap();
            assert_eq!(next_notification(&mut listener).await.payload(), "later");

            // UNLISTEN stops them.
            listener.batch_execute("UNLISTEN events").await.unwrap();
            sender
                .batch_execute("NOTIFY events, 'unheard'")
                .await
                .unwrap();
            listener.query_one("SELECT 1", &[]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                listener.messages.try_recv().is_err(),
                "notification after UNLISTEN"
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notices_reach_the_client() {
    Case::new("notices")
        .run(async |px| {
            let mut c = px.connect().await;
            c.batch_execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
                .await
                .unwrap();
            match c.next_message(WAIT).await {
                AsyncMessage::Notice(n) => {
                    assert_eq!(n.message(), "hello 42");
                    assert_eq!(n.severity(), "NOTICE");
                    assert_eq!(n.code().code(), "00000");
                }
                other => panic!("expected a notice, got {other:?}"),
            }
            // A warning with its own SQLSTATE and a hint, through the extended protocol.
            c.batch_execute(
                "CREATE FUNCTION warn(t text) RETURNS int LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE WARNING 'careful: %', t USING ERRCODE = '01P42', HINT = 'be nice'; \
                 RETURN 1; END $$",
            )
            .await
            .unwrap();
            let v: i32 = c
                .query_one("SELECT warn($1)", &[&"x"])
                .await
                .unwrap()
                .get(0);
            assert_eq!(v, 1);
            match c.next_message(WAIT).await {
                AsyncMessage::Notice(n) => {
                    assert_eq!(n.message(), "careful: x");
                    assert_eq!(n.severity(), "WARNING");
                    assert_eq!(n.code().code(), "01P42");
                    assert_eq!(n.hint(), Some("be nice"));
                }
                other => panic!("expected a warning, got {other:?}"),
            }
        })
        .await;
}
