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
