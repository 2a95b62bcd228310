//! The test cluster itself: every replica streams from the primary, so later routing tests
//! stand on real replicas, and a missing replica is a failure here rather than a silent skip.

use std::time::Duration;

use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER, ClusterEnv, Node};
use tokio_postgres::{Client, NoTls};

/// Connects to `db` on a replica, waiting for the replica to replay its CREATE DATABASE.
pub(crate) async fn connect_when_replayed(node: &Node, db: &str) -> Client {
    let conninfo = format!(
        "host={} port={} user={APP_USER} password={APP_PASSWORD} dbname={db}",
        node.host, node.port
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&conninfo, NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return client;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{node}: database {db} never appeared: {e}"),
        }
    }
}

#[tokio::test]
async fn replicas_stream_the_primarys_writes() {
    let Some(env) = ClusterEnv::require() else {
        return;
    };
    if pgsplit_testkit::cluster::cluster_required() {
        assert!(
            !env.replicas.is_empty(),
            "cargo xtask test starts replicas; none were given"
        );
    }
    let db = env.fresh_database("replicas").await;
    let primary = env.app_client(&db).await;
    let marker = format!("m{}", std::process::id());
    primary
        .batch_execute(&format!(
            "CREATE TABLE marks (m text); INSERT INTO marks VALUES ('{marker}')"
        ))
        .await
        .unwrap();
    for node in &env.replicas {
        let replica = connect_when_replayed(node, &db).await;
        let in_recovery: bool = replica
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(in_recovery, "{node} is not a replica");
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let rows = replica
                    .query("SELECT m FROM marks WHERE m = $1", &[&marker])
                    .await;
                if rows.map(|r| r.len() == 1).unwrap_or(false) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(seen.is_ok(), "{node} did not replay the write within 10 s");
        let err = replica
            .batch_execute("INSERT INTO marks VALUES ('x')")
            .await
            .unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{node}: {err}");
    }
    env.drop_database(&db).await;
}
