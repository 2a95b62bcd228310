//! TLS towards clients: psql (libpq, OpenSSL) with `sslmode=require` and `verify-full` against
//! a certificate made for the test, plain text allowed (`prefer`) or refused (`require`), and
//! unencrypted bytes pipelined behind an SSLRequest refused. TLS towards servers: each
//! `sslmode` against a cluster of the test's own that takes TLS, and against the shared one,
//! which does not.

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use pgsplit_testkit::cluster::APP_USER;
use pgsplit_wire::encode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Case, Conn, TestProxy};
use crate::tools::{describe, libpq_command, require_tool, run};

/// A self-signed certificate for `127.0.0.1` and `localhost`, in PEM files of its own
/// directory (removed on drop).
struct TestCert {
    dir: PathBuf,
}

impl TestCert {
    fn new(name: &str) -> TestCert {
        let dir = std::env::temp_dir().join(format!("pgsplit-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).unwrap();
        std::fs::write(dir.join("server.crt"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), certified.key_pair.serialize_pem()).unwrap();
        TestCert { dir }
    }

    fn cert(&self) -> String {
        self.dir.join("server.crt").display().to_string()
    }

    /// The `tls:` value for the proxy's YAML.
    fn yaml(&self, mode: &str) -> String {
        format!(
            "{{ cert: \"{}\", key: \"{}\", mode: {mode} }}",
            self.cert(),
            self.dir.join("server.key").display()
        )
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// psql's `\conninfo` through the proxy with `sslmode` (and the CA for the verify modes).
async fn conninfo(
    psql: &std::path::Path,
    px: &TestProxy,
    sslmode: &str,
    ca: &str,
) -> std::process::Output {
    let mut cmd = libpq_command(psql, px);
    cmd.env("PGSSLMODE", sslmode)
        .env("PGSSLROOTCERT", ca)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", &px.db])
        .args(["-c", "SELECT 40 + 2 AS answer", "-c", "\\conninfo"]);
    run(cmd, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_connects_encrypted_and_verifies_the_certificate() {
    let Some(psql) = require_tool("psql") else {
        return;
    };
    let cert = TestCert::new("prefer");
    let tls = cert.yaml("prefer");
    Case::new("tls_prefer")
        .yaml(move |y| y.set("tls", &tls))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            for mode in ["require", "verify-full"] {
                let out = conninfo(&psql, px, mode, &cert.cert()).await;
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "sslmode={mode}\n{}", describe(&out));
                assert!(stdout.contains("42"), "{}", describe(&out));
                assert!(
                    stdout.contains("SSL connection (protocol: TLSv1.3"),
                    "{}",
                    describe(&out)
                );
            }
            // `prefer` still serves clients that do not ask for TLS.
            let out = conninfo(&psql, px, "disable", &cert.cert()).await;
            assert!(out.status.success(), "{}", describe(&out));
            assert!(!String::from_utf8_lossy(&out.stdout).contains("SSL connection"));
            // A client that trusts another CA refuses pgsplit's certificate.
            let other = TestCert::new("other-ca");
            let out = conninfo(&psql, px, "verify-full", &other.cert()).await;
            assert!(!out.status.success(), "{}", describe(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("certificate verify failed"),
                "{}",
                describe(&out)
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn require_refuses_plain_text_clients_with_28000() {
    let Some(psql) = require_tool("psql") else {
        return;
    };
    let cert = TestCert::new("require");
    let tls = cert.yaml("require");
    Case::new("tls_require")
        .yaml(move |y| y.set("tls", &tls))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            // tokio-postgres without TLS: the startup packet is refused.
            let err = match Conn::open(&px.pg_config(APP_USER, Some("app"))).await {
                Ok(_) => panic!("a plain-text client was served under tls.mode: require"),
                Err(e) => e,
            };
            let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
            assert_eq!(db.code().code(), "28000", "{}", db.message());
            assert!(db.message().contains("sslmode=require"), "{}", db.message());
            // psql: refused in plain text, served encrypted.
            let out = conninfo(&psql, px, "disable", &cert.cert()).await;
            assert!(!out.status.success(), "{}", describe(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("only encrypted connections"),
                "{}",
                describe(&out)
            );
            let out = conninfo(&psql, px, "require", &cert.cert()).await;
            assert!(out.status.success(), "{}", describe(&out));
            assert!(String::from_utf8_lossy(&out.stdout).contains("SSL connection"));
        })
        .await;
}

/// Over `max_client_connections`, a plain-text client under `require` hears why it cannot
/// come in now (53300, as PostgreSQL reports a full server first), not a silent close.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn require_tells_a_plain_text_client_over_the_limit_53300() {
    let cert = TestCert::new("require_full");
    let tls = cert.yaml("require");
    Case::new("tls_require_full")
        .yaml(move |y| {
            y.set("tls", &tls).set(
                "limits",
                "{ max_client_connections: 1, startup_timeout: 30s }",
            )
        })
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            // A connection that has not said hello yet holds the only slot.
            let _silent = TcpStream::connect((px.addr.host.as_str(), px.addr.port))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            crate::limits::expect_too_many(&px.pg_config(APP_USER, Some("app"))).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bytes_pipelined_behind_an_ssl_request_are_refused() {
    let cert = TestCert::new("pipelined");
    let tls = cert.yaml("prefer");
    Case::new("tls_pipelined")
        .yaml(move |y| y.set("tls", &tls))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let mut sock = TcpStream::connect((px.addr.host.as_str(), px.addr.port))
                .await
                .unwrap();
            // SSLRequest and, without waiting for the answer, a plain startup packet: what a
            // machine in the middle would inject (CVE-2021-23214).
            let mut buf = BytesMut::new();
            encode::ssl_request(&mut buf);
            encode::startup(&mut buf, &[("user", APP_USER), ("database", &px.db)]);
            sock.write_all(&buf).await.unwrap();
            let mut answer = Vec::new();
            let read = sock.read_to_end(&mut answer);
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("the connection is closed")
                .unwrap();
            assert_eq!(
                answer.first(),
                Some(&b'E'),
                "an ErrorResponse, not 'S': {answer:?}"
            );
            let text = String::from_utf8_lossy(&answer);
            assert!(text.contains("08P01"), "{text}");
            assert!(
                text.contains("unencrypted data after SSL request"),
                "{text}"
            );
        })
        .await;
}

/// psql's `\conninfo` with `verify-full` against `ca`, to a proxy at `addr`.
async fn verify_full(
    psql: &std::path::Path,
    addr: std::net::SocketAddr,
    db: &str,
    ca: &str,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(psql);
    cmd.env("PGPASSWORD", pgsplit_testkit::cluster::APP_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", ca)
        .env_remove("PGSERVICE")
        .args([
            "-X",
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
        ])
        .args(["-U", APP_USER, "-d", db, "-c", "\\conninfo"])
        .kill_on_drop(true);
    run(cmd, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewed_certificate_files_are_served_and_broken_ones_refused() {
    let Some(psql) = require_tool("psql") else {
        return;
    };
    let Some(env) = pgsplit_testkit::ClusterEnv::require() else {
        return;
    };
    crate::harness::bounded(Duration::from_secs(60), "tls reload", async {
        let db = env.fresh_database("tls_reload").await;
        let cert = TestCert::new("reload");
        // The first certificate is kept aside as the CA a client trusted before the renewal.
        let old_ca = cert.dir.join("old-ca.crt");
        std::fs::copy(cert.cert(), &old_ca).unwrap();
        let old_ca = old_ca.display().to_string();
        let yaml = pgsplit_testkit::ProxyYaml::for_primary(&env)
            .set("tls", &cert.yaml("require"))
            .build();
        let path = cert.dir.join("pgsplit.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = pgsplit_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let handle = pgsplit::start(config).await.unwrap();
        let addr = handle.client_addr();

        let out = verify_full(&psql, addr, &db, &old_ca).await;
        assert!(out.status.success(), "{}", describe(&out));

        // Renewal, as cert-manager does it: new files in place, then a reload (SIGHUP).
        let renewed = TestCert::new("reload-renewed");
        std::fs::copy(renewed.cert(), cert.cert()).unwrap();
        std::fs::copy(renewed.dir.join("server.key"), cert.dir.join("server.key")).unwrap();
        handle.reload().await.expect("the renewed files load");
        let out = verify_full(&psql, addr, &db, &old_ca).await;
        assert!(
            !out.status.success(),
            "the old certificate is still served\n{}",
            describe(&out)
        );
        let out = verify_full(&psql, addr, &db, &renewed.cert()).await;
        assert!(out.status.success(), "{}", describe(&out));

        // A key that does not go with the certificate: the reload is refused, the renewed
        // pair keeps serving.
        let stray = TestCert::new("reload-stray");
        std::fs::copy(stray.dir.join("server.key"), cert.dir.join("server.key")).unwrap();
        let refused = handle
            .reload()
            .await
            .expect_err("a mismatched key is refused");
        assert!(refused.contains("tls.key"), "{refused}");
        let out = verify_full(&psql, addr, &db, &renewed.cert()).await;
        assert!(out.status.success(), "{}", describe(&out));

        handle.shutdown();
        handle.wait().await.unwrap();
        env.drop_database(&db).await;
    })
    .await;
}

/// Base port of the TLS cluster of [`server_connections_use_tls_as_sslmode_says`].
const SERVER_TLS_PORT: u16 = 31432;

/// Whether the server connection behind `c` is encrypted, as the server sees it.
async fn server_ssl(c: &Conn) -> bool {
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Starts a proxy in front of `env`'s primary with `sslmode` (and `sslrootcert`) on it.
async fn proxy_with(
    env: &pgsplit_testkit::ClusterEnv,
    mode: &str,
    ca: Option<&str>,
    db: &str,
) -> crate::harness::Proxy {
    let mut yaml =
        pgsplit_testkit::ProxyYaml::for_primary(env).server_option("primary", "sslmode", mode);
    if let Some(ca) = ca {
        yaml = yaml.server_option("primary", "sslrootcert", &format!("\"{ca}\""));
    }
    crate::harness::Proxy::start(yaml, env.primary.clone(), db.to_owned()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_connections_use_tls_as_sslmode_says() {
    let Some(cluster) = crate::own_cluster::OwnCluster::start_tls(SERVER_TLS_PORT).await else {
        return;
    };
    crate::harness::bounded(Duration::from_secs(120), "server tls", async {
        let env = cluster.env();
        let db = env.fresh_database("server_tls").await;
        let ca = cluster.server_ca();
        for (mode, ca, encrypted) in [
            ("verify-full", Some(ca.as_str()), true),
            ("verify-ca", Some(ca.as_str()), true),
            ("require", None, true),
            ("prefer", None, true),
            ("disable", None, false),
        ] {
            let px = proxy_with(&env, mode, ca, &db).await;
            let c = px.connect().await;
            assert_eq!(server_ssl(&c).await, encrypted, "sslmode {mode}");
            drop(c);
            px.stop().await;
        }
        // A CA that did not sign the servers' certificate: no connection, and the client is
        // told why.
        let other = TestCert::new("server-other-ca");
        let px = proxy_with(&env, "verify-full", Some(&other.cert()), &db).await;
        let err = match Conn::open(&px.pg_config(APP_USER, Some("app"))).await {
            Ok(_) => panic!("connected through a server certificate another CA signed"),
            Err(e) => e,
        };
        let text = format!("{err:?}");
        assert!(text.contains("TLS"), "{text}");
        px.stop().await;
        env.drop_database(&db).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn require_fails_clearly_against_a_server_without_tls() {
    Case::new("server_tls_require")
        .yaml(|y| y.server_option("primary", "sslmode", "require"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            // The shared test cluster has ssl = off.
            let err = match Conn::open(&px.pg_config(APP_USER, Some("app"))).await {
                Ok(_) => panic!("connected in plain text under sslmode: require"),
                Err(e) => e,
            };
            let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
            assert!(
                db.message().contains("does not support TLS"),
                "{}",
                db.message()
            );
        })
        .await;
}
