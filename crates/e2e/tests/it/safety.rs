//! The classifier's safety proof on the real cluster: every corpus statement the classifier
//! calls a read is executed directly on each real replica (no proxy), and none may be
//! refused as a write (25006 read-only transaction, "cannot execute ... during recovery",
//! "recovery is in progress", "hot standby"). A control runs the corpus' writes on the
//! replicas too and checks that they are refused, so the check can fail.
//!
//! The schema the corpus names is in `safety_fixture.sql`; a read that cannot run proves
//! nothing, so at least 95% of the reads must run without any error at all.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::pin::pin;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, TryStreamExt};
use pgsplit_classify::corpus::{self, Entry};
use pgsplit_classify::{Class, Classification, Isolation, UnknownFunctions};
use pgsplit_testkit::cluster::{ClusterEnv, Node, cluster_required};
use tokio_postgres::Client;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::cluster::connect_when_replayed;
use crate::harness::bounded;

const FIXTURE: &str = include_str!("safety_fixture.sql");

/// The whole test, fixture and both replicas included.
const LIMIT: Duration = Duration::from_secs(60);

/// What one statement did on a replica.
#[derive(Debug)]
enum Outcome {
    Ran,
    Failed { code: String, message: String },
}

impl Outcome {
    fn of(result: Result<(), tokio_postgres::Error>) -> Outcome {
        match result {
            Ok(()) => Outcome::Ran,
            Err(e) => match e.as_db_error() {
                Some(db) => Outcome::Failed {
                    code: db.code().code().to_owned(),
                    message: db.message().to_owned(),
                },
                None => Outcome::Failed {
                    code: "client".to_owned(),
                    message: e.to_string(),
                },
            },
        }
    }

    /// Whether the server refused the statement because it is a hot standby: what a read
    /// must never get, and what a write should get.
    fn is_standby_refusal(&self) -> bool {
        let Outcome::Failed { code, message } = self else {
            return false;
        };
        let m = message.to_ascii_lowercase();
        code == "25006"
            || ((code == "0A000" || code == "55000") && m.contains("recovery"))
            || m.contains("read-only transaction")
            || m.contains("during recovery")
            || m.contains("hot standby")
    }
}

/// A parameter value of any type: SQL NULL.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Runs `sql` as one Simple Query (its own implicit transaction), draining every result.
///
/// A statement with `$n` parameters cannot run as a Simple Query (42P02, "there is no
/// parameter $1"); it is then prepared with the extended protocol, as a driver would, and
/// executed with every parameter NULL. A parameter is a value, never SQL text, so its value
/// cannot make a statement write; NULL is valid for every type, so the statement is really
/// planned and executed (the executor's read-only check runs at executor start, whatever
/// the rows). Substituting literals into the text instead would need a type per parameter.
/// Returns whether it took the extended protocol.
async fn run_plain(client: &Client, sql: &str) -> Result<bool, tokio_postgres::Error> {
    match client.simple_query(sql).await {
        Ok(_) => Ok(false),
        Err(e) if is_missing_parameter(&e) => {
            let statement = client.prepare(sql).await?;
            let params: Vec<Null> = statement.params().iter().map(|_| Null).collect();
            let rows = client.query_raw(&statement, params).await?;
            let mut rows = pin!(rows);
            while rows.try_next().await?.is_some() {}
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// 42P02: the text has `$n` parameters, so it needs the extended protocol.
fn is_missing_parameter(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "42P02")
}

/// `COPY ... TO STDOUT`: read the whole copy stream.
async fn run_copy_out(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    let stream = client.copy_out(sql).await?;
    let mut stream = pin!(stream);
    while stream.try_next().await?.is_some() {}
    Ok(())
}

/// `COPY ... FROM STDIN`: send no data.
async fn run_copy_in(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    let sink = client.copy_in::<_, bytes::Bytes>(sql).await?;
    let mut sink = pin!(sink);
    sink.close().await?;
    Ok(())
}

/// Runs `body` inside `BEGIN ... ROLLBACK` (the rollback whatever happened).
async fn in_transaction(client: &Client, body: &[&str]) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    let mut result = Ok(());
    for sql in body {
        result = run_plain(client, sql).await.map(drop);
        if result.is_err() {
            break;
        }
    }
    client.batch_execute("ROLLBACK").await?;
    result
}

/// Executes one corpus statement the way a client would send it, in its own transaction;
/// also says whether it took the extended protocol (it has `$n` parameters).
async fn execute(client: &Client, entry: &Entry, class: &Classification) -> (Outcome, bool) {
    let sql = entry.sql.as_str();
    let mut extended = false;
    let upper = sql.trim_start().to_ascii_uppercase();
    let copy = upper.starts_with("COPY");
    let result = if copy && upper.contains("TO STDOUT") {
        run_copy_out(client, sql).await
    } else if copy && upper.contains("FROM STDIN") {
        run_copy_in(client, sql).await
    } else if upper.starts_with("DECLARE") && !upper.contains("WITH HOLD") {
        // A cursor without HOLD lives in its transaction: declare it and read it all.
        let name = sql.split_whitespace().nth(1).unwrap_or("c");
        in_transaction(client, &[sql, &format!("FETCH ALL FROM {name}")]).await
    } else if upper.starts_with("LOCK") {
        // LOCK only works inside a transaction block.
        in_transaction(client, &[sql]).await
    } else if let Class::TxnBegin(_) = class.class {
        // The BEGIN itself, then a statement in it: a hot standby refuses some modes only
        // when the transaction takes its snapshot (SERIALIZABLE).
        let result = async {
            client.batch_execute(sql).await?;
            client.batch_execute("SELECT 1").await
        }
        .await;
        let rollback = client.batch_execute("ROLLBACK").await;
        result.and(rollback)
    } else {
        run_plain(client, sql).await.map(|e| extended = e)
    };
    (Outcome::of(result), extended)
}

/// Connects to `db` on `node` as `app`, with a statement timeout so a lock wait cannot
/// hang the test.
async fn replica_client(node: &Node, db: &str) -> Client {
    let client = connect_when_replayed(node, db).await;
    client
        .batch_execute("SET statement_timeout = '5s'; SET lock_timeout = '2s'")
        .await
        .unwrap_or_else(|e| panic!("{node}: {e}"));
    client
}

/// A fresh database with the fixture, replayed by every replica; `None` to skip.
async fn fixture(prefix: &str) -> Option<(ClusterEnv, String)> {
    let env = ClusterEnv::require()?;
    if env.replicas.is_empty() {
        assert!(!cluster_required(), "the safety proof needs replicas");
        eprintln!("skipping: no replicas in PGSPLIT_TEST_REPLICAS");
        return None;
    }
    let db = env.fresh_database(prefix).await;
    // pgsplit's own setting, so `SHOW pgsplit.route` also runs on a bare server. Only a
    // superuser may set a placeholder parameter for a database.
    env.superuser_client(&db)
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" SET pgsplit.route = 'auto'"
        ))
        .await
        .unwrap();
    let primary = env.app_client(&db).await;
    primary
        .batch_execute(FIXTURE)
        .await
        .unwrap_or_else(|e| panic!("safety_fixture.sql: {e:?}"));
    let token = db.clone();
    primary
        .execute("INSERT INTO safety_fixture_ready VALUES ($1)", &[&token])
        .await
        .unwrap();
    for node in &env.replicas {
        let client = connect_when_replayed(node, &db).await;
        let in_recovery: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(in_recovery, "{node} is not a replica");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let seen = client
                .query(
                    "SELECT 1 FROM safety_fixture_ready WHERE token = $1",
                    &[&token],
                )
                .await
                .is_ok_and(|rows| rows.len() == 1);
            if seen {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{node} did not replay the fixture within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some((env, db))
}

/// One line per statement for a report: where it is in the corpus, what it is, what happened.
fn describe(entry: &Entry, class: &Classification, outcome: &Outcome) -> String {
    let what = match outcome {
        Outcome::Ran => "ran".to_owned(),
        Outcome::Failed { code, message } => format!("{code} {message}"),
    };
    format!(
        "corpus.txt:{} [{} {}] {}\n    => {what}",
        entry.line,
        class.class,
        class.reason,
        entry.sql.replace('\n', " ")
    )
}

/// `code -> count` as `42P01×3, 42883×1`.
fn codes(errors: &[(&Entry, &Classification, Outcome)]) -> String {
    let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, outcome) in errors {
        if let Outcome::Failed { code, .. } = outcome {
            *by_code.entry(code.as_str()).or_default() += 1;
        }
    }
    by_code
        .iter()
        .map(|(c, n)| format!("{c}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the replica proof runs as a read: `Read`, and a `BEGIN` the router may send to a
/// replica (read-only, not SERIALIZABLE, with the server's defaults).
fn replica_eligible(class: &Classification) -> bool {
    match class.class {
        Class::Read => true,
        Class::TxnBegin(mode) => mode.replica_eligible(false, false),
        _ => false,
    }
}

#[tokio::test]
async fn every_corpus_read_runs_on_every_replica() {
    bounded(LIMIT, "safety proof (reads)", async {
        let Some((env, db)) = fixture("safety_reads").await else {
            return;
        };
        let classifier = corpus::classifier(UnknownFunctions::Primary);
        let entries = corpus::entries();
        let reads: Vec<(&Entry, Classification)> = entries
            .iter()
            .map(|e| (e, classifier.classify_uncached(&e.sql)))
            .filter(|(_, c)| replica_eligible(c))
            .collect();
        assert!(reads.len() >= 150, "only {} corpus reads", reads.len());

        let mut report = String::new();
        for node in &env.replicas {
            let client = replica_client(node, &db).await;
            let mut refused = Vec::new();
            let mut errored = Vec::new();
            let mut with_parameters = 0;
            for (entry, class) in &reads {
                let (outcome, extended) = execute(&client, entry, class).await;
                with_parameters += usize::from(extended);
                if outcome.is_standby_refusal() {
                    refused.push((*entry, class, outcome));
                } else if matches!(outcome, Outcome::Failed { .. }) {
                    errored.push((*entry, class, outcome));
                }
            }
            let ran = reads.len() - refused.len() - errored.len();
            let _ = writeln!(
                report,
                "replica {node}: {} reads executed ({with_parameters} with NULL parameters), {ran} \
                 ran, {} refused as writes, {} errored ({})",
                reads.len(),
                refused.len(),
                errored.len(),
                codes(&errored)
            );
            for (e, c, o) in &errored {
                let _ = writeln!(report, "  errored: {}", describe(e, c, o));
            }
            eprint!("{report}");
            let refusals: Vec<String> = refused.iter().map(|(e, c, o)| describe(e, c, o)).collect();
            assert!(
                refusals.is_empty(),
                "{node}: {} statements classified as reads were refused by a replica:\n{}",
                refusals.len(),
                refusals.join("\n")
            );
            assert!(
                ran * 100 >= reads.len() * 95,
                "{node}: only {ran} of {} reads ran without error; extend safety_fixture.sql \
                 so the proof stays meaningful:\n{report}",
                reads.len()
            );
            report.clear();
        }
        env.drop_database(&db).await;
    })
    .await;
}

/// Reasons for which a statement really changes data or the schema, so a replica must never
/// run it successfully. (The other write reasons include statements that are writes for
/// routing's sake — session-bound state such as advisory locks, PREPARE, LISTEN — or whose
/// write depends on the data, which a standby may well run; those are reported, not failed.)
const MUST_BE_REFUSED: [&str; 10] = [
    "dml",
    "ddl",
    "data_modifying_cte",
    "select_into",
    "copy_from",
    "explain_analyze_write",
    "locking_clause",
    "vacuum",
    "analyze",
    "multi_statement_write",
];

/// Whether a replica must refuse `class`: a data or schema write, or a BEGIN in a mode a hot
/// standby cannot serve (READ WRITE, SERIALIZABLE).
fn must_be_refused(class: &Classification) -> bool {
    match class.class {
        Class::TxnBegin(mode) => {
            mode.read_only == Some(false) || mode.isolation == Some(Isolation::Serializable)
        }
        _ => MUST_BE_REFUSED.contains(&class.reason.as_str()),
    }
}

/// Functions that act on other sessions of the shared test cluster: never run them.
const NEVER_RUN: [&str; 2] = ["pg_terminate_backend", "pg_cancel_backend"];

/// The control: the corpus' writes, run on the replicas as `app`, are refused there — so the
/// refusal check of the reads can fire — and none that changes data or the schema succeeds.
/// Each write gets a connection of its own, so the session state some of them leave behind
/// (search_path, advisory locks, prepared statements) cannot leak into the next one.
#[tokio::test]
async fn corpus_writes_are_refused_by_every_replica() {
    bounded(LIMIT, "safety proof (writes control)", async {
        let Some((env, db)) = fixture("safety_writes").await else {
            return;
        };
        let classifier = corpus::classifier(UnknownFunctions::Primary);
        let entries = corpus::entries();
        // Writes, and the BEGINs the router keeps on the primary.
        let writes: Vec<(&Entry, Classification)> = entries
            .iter()
            .map(|e| (e, classifier.classify_uncached(&e.sql)))
            .filter(|(e, c)| match c.class {
                Class::Write => !NEVER_RUN.iter().any(|f| e.sql.contains(f)),
                Class::TxnBegin(mode) => !mode.replica_eligible(false, false),
                _ => false,
            })
            .collect();
        assert!(writes.len() >= 200, "only {} corpus writes", writes.len());
        let must = writes.iter().filter(|(_, c)| must_be_refused(c)).count();

        let mut report = String::new();
        for node in &env.replicas {
            let mut refused = Vec::new();
            let mut errored = Vec::new();
            let mut ran = Vec::new();
            for (entry, class) in &writes {
                let client = replica_client(node, &db).await;
                let (outcome, _) = execute(&client, entry, class).await;
                let bucket = if outcome.is_standby_refusal() {
                    &mut refused
                } else if matches!(outcome, Outcome::Failed { .. }) {
                    &mut errored
                } else {
                    &mut ran
                };
                bucket.push((*entry, class, outcome));
            }
            let must_refused = refused.iter().filter(|(_, c, _)| must_be_refused(c)).count();
            let _ = writeln!(
                report,
                "replica {node}: {} writes executed, {} refused as writes, {} errored otherwise \
                 ({}), {} ran (writes for routing's sake, or data-dependent); {must_refused} of {must} data or \
                 schema writes refused",
                writes.len(),
                refused.len(),
                errored.len(),
                codes(&errored),
                ran.len(),
            );
            for (e, c, o) in &errored {
                let _ = writeln!(report, "  errored: {}", describe(e, c, o));
            }
            for (e, c, o) in &ran {
                let _ = writeln!(report, "  ran: {}", describe(e, c, o));
            }
            eprint!("{report}");
            let wrong: Vec<String> = ran
                .iter()
                .filter(|(_, c, _)| must_be_refused(c))
                .map(|(e, c, o)| describe(e, c, o))
                .collect();
            assert!(
                wrong.is_empty(),
                "{node}: statements that change data or the schema ran on a replica:\n{}",
                wrong.join("\n")
            );
            // The rest of them failed for another reason (corpus SQL that no server accepts,
            // such as a data-modifying WITH below the top level); most must meet the refusal.
            assert!(
                must_refused * 100 >= must * 90,
                "{node}: only {must_refused} of {must} data or schema writes were refused as \
                 writes by the replica; extend safety_fixture.sql"
            );
            report.clear();
        }
        env.drop_database(&db).await;
    })
    .await;
}
