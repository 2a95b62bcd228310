//! COPY FROM STDIN and COPY TO STDOUT of about 10 MB each, checked by row count and MD5.

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt, pin_mut};
use md5::{Digest, Md5};

use crate::harness::{Case, assert_usable, expect_sqlstate};
use crate::{hex, md5_hex};

/// Rows in each COPY test; each line is about 105 bytes, so 100,000 rows are about 10 MB.
const ROWS: i32 = 100_000;

/// The text-format COPY line of row `g`: `g \t md5(g) x3 \n`.
fn line(g: i32) -> String {
    let h = md5_hex(g.to_string().as_bytes());
    format!("{g}\t{h}{h}{h}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_from_stdin_10mb() {
    Case::new("copy_in")
        .run(async |px| {
            let c = px.client().await;
            c.batch_execute("CREATE TABLE t (id int4, payload text)").await.unwrap();
            let sink = c.copy_in::<_, Bytes>("COPY t FROM STDIN").await.unwrap();
            pin_mut!(sink);
            let mut digest = Md5::new();
            let mut total = 0_usize;
            let mut chunk = String::new();
            for g in 1..=ROWS {
                chunk.push_str(&line(g));
                if chunk.len() >= 64 * 1024 || g == ROWS {
                    digest.update(chunk.as_bytes());
                    total += chunk.len();
                    sink.send(Bytes::from(std::mem::take(&mut chunk))).await.unwrap();
                }
            }
            assert_eq!(sink.finish().await.unwrap(), u64::try_from(ROWS).unwrap());
            assert!(total > 10_000_000, "only {total} bytes sent");

            // The server's view of the same text must hash the same.
            let row = c
                .query_one(
                    "SELECT count(*), md5(string_agg(id || E'\\t' || payload || E'\\n', '' ORDER BY id)) FROM t",
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, i64>(0), i64::from(ROWS));
            assert_eq!(row.get::<_, String>(1), hex(&digest.finalize()));
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_to_stdout_10mb() {
    Case::new("copy_out")
        .run(async |px| {
            let c = px.client().await;
            let sql = format!(
                "COPY (SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, {ROWS}) g ORDER BY g) TO STDOUT"
            );
            let stream = c.copy_out(&sql).await.unwrap();
            pin_mut!(stream);
            let mut got = Md5::new();
            let mut lines = 0_usize;
            let mut total = 0_usize;
            while let Some(chunk) = stream.try_next().await.unwrap() {
                got.update(&chunk);
                total += chunk.len();
                lines += chunk.iter().filter(|b| **b == b'\n').count();
            }
            let mut want = Md5::new();
            for g in 1..=ROWS {
                want.update(line(g).as_bytes());
            }
            assert_eq!(lines, usize::try_from(ROWS).unwrap());
            assert!(total > 10_000_000, "only {total} bytes received");
            assert_eq!(hex(&got.finalize()), hex(&want.finalize()));
            assert_usable(&c).await;
        })
        .await;
}

/// Bad COPY input fails with the server's SQLSTATE, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_from_stdin_bad_data() {
    Case::new("copy_bad")
        .run(async |px| {
            let c = px.client().await;
            c.batch_execute("CREATE TABLE t (id int4)").await.unwrap();
            let sink = c.copy_in::<_, Bytes>("COPY t FROM STDIN").await.unwrap();
            pin_mut!(sink);
            let mut data = String::new();
            for g in 0..10_000 {
                data.push_str(&format!("{g}\n"));
            }
            data.push_str("not-a-number\n");
            // The server may report the error while data is still being sent or at the end.
            let sent = sink.send(Bytes::from(data)).await;
            let result = match sent {
                Ok(()) => sink.finish().await,
                Err(e) => Err(e),
            };
            expect_sqlstate(result, "22P02");
            assert_usable(&c).await;
            let n: i64 = c
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0);
        })
        .await;
}

/// A client that abandons COPY FROM (drops the sink, which sends CopyFail) gets 57014 and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_from_stdin_abandoned() {
    Case::new("copy_fail")
        .run(async |px| {
            let c = px.client().await;
            c.batch_execute("CREATE TABLE t (id int4)").await.unwrap();
            {
                let sink = c.copy_in::<_, Bytes>("COPY t FROM STDIN").await.unwrap();
                pin_mut!(sink);
                sink.send(Bytes::from_static(b"1\n2\n")).await.unwrap();
                // Dropped without finish(): tokio-postgres sends CopyFail.
            }
            assert_usable(&c).await;
            let n: i64 = c
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0);
        })
        .await;
}

/// psql's COPY FROM STDIN (the simple protocol, data inline in its script) through pgsplit with
/// replicas and read-your-writes: pgsplit sends its write-position query behind a committing
/// Query, but never behind one that starts a COPY, where the server takes only copy messages.
/// The read after each write must see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_copy_from_stdin_among_autocommit_writes() {
    let Some(psql) = crate::tools::require_tool("psql") else {
        return;
    };
    Case::new("copy_psql")
        .replicas()
        .yaml(|y| {
            y.set("causal_wait", "5s")
                .set("health", "{ interval: 100ms }")
        })
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let script = "CREATE TABLE t (id int4, payload text);\n\
                          INSERT INTO t VALUES (0, 'zero');\n\
                          COPY t FROM STDIN;\n1\tone\n2\ttwo\n3\tthree\n\\.\n\
                          SELECT count(*) FROM t;\n\
                          copy t (id, payload) from stdin;\n4\tfour\n\\.\n\
                          INSERT INTO t VALUES (5, 'five');\n\
                          SELECT count(*), sum(id) FROM t;\n";
            let dir = std::env::temp_dir().join(format!("pgsplit-e2e-{}", px.db));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("copy.sql");
            std::fs::write(&file, script).unwrap();
            let mut cmd = crate::tools::psql_quiet(&psql, px);
            cmd.arg("-f").arg(&file);
            let out = crate::tools::run(cmd, std::time::Duration::from_secs(60)).await;
            let _ = std::fs::remove_dir_all(&dir);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "psql failed: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(lines, ["4", "6|15"], "{stdout}");
            assert_usable(&px.client().await).await;
        })
        .await;
}
