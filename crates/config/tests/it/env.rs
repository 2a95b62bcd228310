//! `${NAME}` interpolation through the public API.

use crate::parse;

#[test]
fn values_are_inserted_verbatim_whatever_they_contain() {
    let text = "\
users:
  - name: app
    password: ${APP_PASSWORD}          # plain scalar
  - { name: quoted, password: \"${APP_PASSWORD}\", admin: ${IS_ADMIN} }
  - name: single
    password: '${APP_PASSWORD}'
servers:
  - host: db-${REGION}.internal
    port: ${PRIMARY_PORT}
";
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let secret = "s3cret: #1 \"quoted\" 'single'";
    for user in &config.users {
        assert_eq!(user.password, secret, "{}", user.name);
        assert_eq!(
            user.server_password.as_deref(),
            Some(secret),
            "{}",
            user.name
        );
    }
    assert!(config.users[1].admin);
    assert_eq!(config.servers[0].host, "db-eu1.internal");
    assert_eq!(config.servers[0].port, 15432);
}

#[test]
fn comments_and_lone_dollars_are_left_alone() {
    let text = "# ${NOT_SET} in a comment\nusers: [{ name: a, password: pa$$w$rd }] # ${ALSO_NOT_SET}\n\
                servers: [{ host: h }]\n";
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.users[0].password, "pa$$w$rd");
}

#[test]
fn positions_after_an_interpolated_value_point_at_the_original_text() {
    // `${PRIMARY_PORT}` is longer than its value; the unknown key after it must still be
    // reported at its column in the file as written.
    let text = "users: [{ name: a, auth: trust }]\nservers: [{ port: ${PRIMARY_PORT}, hots: h }]\n";
    let errors = parse(text).unwrap_err().to_string();
    assert!(
        errors.starts_with("test.yaml:2:36: servers[0].hots: unknown field `hots`"),
        "{errors}"
    );
}

#[test]
fn parse_uses_the_process_environment() {
    // Only reads the environment; a variable that no test harness sets is reported unset.
    let text = "users: [{ name: a, password: ${PGSPLIT_CONFIG_TEST_SURELY_UNSET_VAR} }]\n";
    let errors = pgsplit_config::parse(text, "p.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        errors.starts_with(
            "p.yaml:1:30: users[0].password: environment variable \
             `PGSPLIT_CONFIG_TEST_SURELY_UNSET_VAR` is not set"
        ),
        "{errors}"
    );
}
