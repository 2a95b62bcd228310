//! What the `pgsplit` binary logs: with `log.format: json` every line is one JSON object with
//! a timestamp, a level and a message, and session lines carry the client span's fields; at
//! `debug`, no password (nor its md5 hash) ever appears, whether clients log in with the
//! right or a wrong one, a server refuses pgsplit's login, or a reload refuses a broken file
//! whose error points at a password line.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use pgsplit_testkit::ClusterEnv;

/// The client password of `logs_scram`.
const SCRAM_PASSWORD: &str = "S3cretPassw0rdXYZ";
/// The client password of `logs_md5`.
const MD5_PASSWORD: &str = "Md5Passw0rdJKL9";
/// What pgsplit logs in to the server with (the test role's real password).
const SERVER_PASSWORD: &str = "SrvPassw0rdQRS7";
/// A server password the server refuses, configured for `logs_badserver` (whose server role
/// does not exist: it must not share a pool, nor a remembered greeting, with the others).
const WRONG_SERVER_PASSWORD: &str = "WrongSrvPassw0rdUVW";
/// What a client types by mistake.
const WRONG_CLIENT_PASSWORD: &str = "Wr0ngClientPassABC";

/// The binary under test, killed (by its own PID) if the test fails before stopping it. Its
/// stdout and stderr lines are collected as they come.
struct Pgsplit {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Pgsplit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(from: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            into.lock().push(line);
        }
    });
}

impl Pgsplit {
    fn start(config: &std::path::Path) -> Pgsplit {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .args(["--config", config.to_str().unwrap()])
            // The config's `log.level` applies.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgsplit");
        let lines = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), lines.clone());
        collect(child.stderr.take().unwrap(), lines.clone());
        Pgsplit { child, lines }
    }

    /// How many lines were logged so far.
    fn logged(&self) -> usize {
        self.lines.lock().len()
    }

    /// The first line after the first `after` lines containing every one of `needles`,
    /// within 10 s.
    async fn line_after(&self, after: usize, needles: &[&str]) -> String {
        for _ in 0..200 {
            let found = self.lines.lock()[after..]
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no log line containing {needles:?}; logged:\n{}",
            self.lines.lock().join("\n")
        );
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

/// The config under test. It runs the binary on one thread (`workers: 1`, a current-thread
/// runtime), so that runtime serves real logins and queries here; `sighup.rs` runs the default.
fn yaml(env: &ClusterEnv, role: &str, scram_password_line: &str) -> String {
    let p = &env.primary;
    format!(
        "listen: 127.0.0.1:0\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         log: {{ format: json, level: debug }}\n\
         workers: 1\n\
         users:\n\
         \x20 - name: logs_scram\n\
         \x20   {scram_password_line}\n\
         \x20   server_user: {role}\n\
         \x20   server_password: {SERVER_PASSWORD}\n\
         \x20 - {{ name: logs_md5, password: {MD5_PASSWORD}, auth: md5, server_user: {role}, server_password: {SERVER_PASSWORD} }}\n\
         \x20 - {{ name: logs_badserver, password: {SCRAM_PASSWORD}, server_user: {role}_x, server_password: {WRONG_SERVER_PASSWORD} }}\n\
         servers:\n\
         \x20 - {{ name: primary, host: {}, port: {}, role: primary }}\n",
        p.host, p.port
    )
}

async fn connect(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The JSON of one log line, which must have a timestamp, a level and a message.
fn parse_line(line: &str) -> serde_json::Value {
    let doc: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    assert!(doc["timestamp"].is_string(), "no timestamp: {line}");
    assert!(
        matches!(
            doc["level"].as_str(),
            Some("TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR")
        ),
        "no level: {line}"
    );
    assert!(doc["fields"]["message"].is_string(), "no message: {line}");
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_span_fields_and_never_a_password() {
    let Some(env) = ClusterEnv::require() else {
        return;
    };
    let db = env.fresh_database("logs").await;
    let role = format!(
        "pgsplit_logs_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let admin = env.superuser_client("postgres").await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{SERVER_PASSWORD}'"
        ))
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(format!("pgsplit-logs-{role}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pgsplit.yaml");
    let password_line = format!("password: {SCRAM_PASSWORD}");
    std::fs::write(&path, yaml(&env, &role, &password_line)).unwrap();
    let pgsplit = Pgsplit::start(&path);
    let started = pgsplit.line_after(0, &["pgsplit started"]).await;
    let addr: SocketAddr = parse_line(&started)["fields"]["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no client address in {started}"));

    // Wrong passwords: refused, and the refusal logged (with the span fields).
    for user in ["logs_scram", "logs_md5"] {
        let err = connect(addr, user, WRONG_CLIENT_PASSWORD, &db)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in with a wrong password"));
        assert_eq!(
            err.as_db_error().map(|e| e.code().code()),
            Some("28P01"),
            "{err}"
        );
    }
    // The right ones: queries run on the server as the test role.
    for (user, password) in [("logs_scram", SCRAM_PASSWORD), ("logs_md5", MD5_PASSWORD)] {
        let client = connect(addr, user, password, &db).await.unwrap();
        let row = client.query_one("SELECT current_user", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), role);
        client.simple_query("SELECT 1").await.unwrap();
    }

    let checked_out = pgsplit
        .line_after(0, &["checked out a server connection", "logs_md5"])
        .await;
    let span = &parse_line(&checked_out)["span"];
    assert_eq!(span["name"], "client", "{checked_out}");
    assert!(span["conn_id"].is_u64(), "{checked_out}");
    assert_eq!(span["user"], "logs_md5", "{checked_out}");
    assert_eq!(span["database"], db.as_str(), "{checked_out}");
    assert!(
        span["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{checked_out}"
    );

    // Broken files whose errors point at a password line: refused, the old config stays.
    for broken in [
        format!("password: \"{SCRAM_PASSWORD}"),
        format!("password: {{ x: {SCRAM_PASSWORD} }}"),
    ] {
        let from = pgsplit.logged();
        std::fs::write(&path, yaml(&env, &role, &broken)).unwrap();
        pgsplit.signal("HUP");
        let refused = pgsplit
            .line_after(from, &["config reload refused", "users[0].password"])
            .await;
        assert_eq!(parse_line(&refused)["level"], "ERROR", "{refused}");
    }
    // The old config still serves.
    let client = connect(addr, "logs_scram", SCRAM_PASSWORD, &db)
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    // Last, since pgsplit then takes the server for down until its next probe: the server
    // refuses pgsplit's login for this user, and the client hears an error.
    let bad = connect(addr, "logs_badserver", SCRAM_PASSWORD, &db).await;
    assert!(bad.is_err(), "the server accepted a wrong server_password");
    pgsplit
        .line_after(0, &["session ended", "logs_badserver"])
        .await;

    pgsplit.signal("TERM");
    let mut pgsplit = pgsplit;
    let code = pgsplit.child.wait().unwrap();
    assert!(code.success(), "{code:?}");
    // Let the reader threads take the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = pgsplit.lines.lock().clone();

    let mut session_lines = 0;
    for line in &lines {
        let doc = parse_line(line);
        if doc["span"]["name"] == "client" {
            session_lines += 1;
            assert!(doc["span"]["conn_id"].is_u64(), "{line}");
            assert!(doc["span"]["peer"].is_string(), "{line}");
        }
    }
    assert!(
        session_lines >= 4,
        "too few session lines:\n{}",
        lines.join("\n")
    );
    let secrets = [
        SCRAM_PASSWORD.to_owned(),
        MD5_PASSWORD.to_owned(),
        SERVER_PASSWORD.to_owned(),
        WRONG_SERVER_PASSWORD.to_owned(),
        WRONG_CLIENT_PASSWORD.to_owned(),
        pgsplit_wire::md5::stored_hash("logs_md5", MD5_PASSWORD),
        pgsplit_wire::md5::stored_hash(&role, SERVER_PASSWORD),
    ];
    for line in &lines {
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "a secret was logged: {line}"
            );
        }
    }
    // The refusals were logged at all (so the check above saw them).
    let all = lines.join("\n");
    assert!(
        all.contains("28P01") || all.contains("password authentication failed"),
        "{all}"
    );

    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .ok();
    env.drop_database(&db).await;
    let _ = std::fs::remove_dir_all(&dir);
}
