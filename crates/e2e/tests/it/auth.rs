//! Client authentication at pgsplit: SCRAM (default), md5 and trust users, wrong passwords.

use pgsplit_testkit::cluster::{APP_PASSWORD, APP_USER};
use pgsplit_testkit::proxy_config::{MD5_PASSWORD, MD5_USER, TRUST_USER};

use crate::harness::{Case, Conn, Proxy, assert_usable};

/// Connects and expects the server-style refusal `code`.
async fn expect_refused(px: &Proxy, user: &str, password: Option<&str>, code: &str) {
    match Conn::open(&px.pg_config(user, password)).await {
        Ok(_) => panic!("{user} logged in with a wrong password"),
        Err(e) => match e.as_db_error() {
            Some(db) => assert_eq!(db.code().code(), code, "{user}: {}", db.message()),
            None => panic!("{user}: expected SQLSTATE {code}, got {e:?}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scram_user_wrong_password_gets_28p01() {
    Case::new("auth_scram")
        .run(async |px| {
            expect_refused(px, APP_USER, Some("wrong"), "28P01").await;
            // And the right password still works afterwards.
            let c = px.connect().await;
            assert_usable(&c).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn md5_user() {
    Case::new("auth_md5")
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            expect_refused(px, MD5_USER, Some("wrong"), "28P01").await;
            let c = Conn::open(&px.pg_config(MD5_USER, Some(MD5_PASSWORD)))
                .await
                .unwrap();
            // pgsplit logs in to the server as the configured server user.
            let who: String = c
                .query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(who, APP_USER);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trust_user_needs_no_password() {
    Case::new("auth_trust")
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let c = Conn::open(&px.pg_config(TRUST_USER, None)).await.unwrap();
            let who: String = c
                .query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(who, APP_USER);
            // A password offered anyway is ignored: trust asks for none.
            let c = Conn::open(&px.pg_config(TRUST_USER, Some("anything")))
                .await
                .unwrap();
            assert_usable(&c).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_user_is_refused() {
    Case::new("auth_unknown")
        .run(async |px| {
            // PostgreSQL answers an unknown role like a wrong password, so as not to reveal which
            // roles exist; pgsplit must not reveal its user list either.
            match Conn::open(&px.pg_config("nobody_here", Some(APP_PASSWORD))).await {
                Ok(_) => panic!("an unknown user logged in"),
                Err(e) => {
                    let code = e.as_db_error().map(|d| d.code().code().to_owned());
                    assert_eq!(code.as_deref(), Some("28P01"), "{e:?}");
                }
            }
        })
        .await;
}

/// A database that does not exist gives 3D000, at login or at the first query at the latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_database_gets_3d000() {
    Case::new("auth_nodb")
        .run(async |px| {
            let mut config = px.pg_config(APP_USER, Some(APP_PASSWORD));
            config.dbname("no_such_database_here");
            let err = match Conn::open(&config).await {
                Err(e) => e,
                Ok(c) => c
                    .simple_query("SELECT 1")
                    .await
                    .expect_err("query on a missing database"),
            };
            let code = err.as_db_error().map(|d| d.code().code().to_owned());
            assert_eq!(code.as_deref(), Some("3D000"), "{err:?}");
        })
        .await;
}

/// `limits.startup_timeout` bounds the startup packet and the authentication together: a
/// client that spends most of it before sending its startup packet has only the rest to log
/// in, not a fresh limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn startup_timeout_bounds_startup_and_authentication_together() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    Case::new("auth_startup_timeout")
        .yaml(|y| y.set("limits", "{ startup_timeout: 1s }"))
        .run(async |px| {
            if px.skip_without_proxy() {
                return;
            }
            let connected = Instant::now();
            let mut stream = tokio::net::TcpStream::connect((px.addr.host.as_str(), px.addr.port))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(600)).await;
            let mut startup = bytes::BytesMut::new();
            pgsplit_wire::encode::startup(
                &mut startup,
                &[("user", APP_USER), ("database", &px.db)],
            );
            stream.write_all(&startup).await.unwrap();
            // The password request comes; the client then says nothing more.
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0 && buf[0] == b'R',
                "expected an authentication request"
            );
            // pgsplit ends the connection at the deadline (1 s after connecting), not 1 s after
            // the startup packet: EOF or a FATAL error well before 1.6 s.
            let ended = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            assert!(ended.is_ok(), "the connection stayed open");
            let after = connected.elapsed();
            assert!(
                after >= Duration::from_millis(900) && after < Duration::from_millis(1450),
                "ended {after:?} after connecting; the deadline was 1 s"
            );
        })
        .await;
}
