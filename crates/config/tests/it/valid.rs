//! Valid configs: every key read back, and the defaults.

use std::time::Duration;

use pgsplit_config::{
    AdminConfig, AuthMethod, Balance, Config, Consistency, FailoverConfig, FunctionsConfig,
    HealthConfig, LagConfig, Limits, LogConfig, LogFormat, PasswordKind, PoolConfig, PoolMode,
    PrimaryReads, Role, RoutingConfig, RuleConfig, RuleMatch, RuleTarget, Server, SslMode,
    StatementKind, TlsConfig, TlsMode, UnknownFunctions, User,
};

use crate::parse;

const FULL: &str = r#"# Every key, most of them not at their default.
listen: 0.0.0.0:7432
admin: { listen: 127.0.0.1:0 }
tls: { cert: /etc/pgsplit/tls.crt, key: tls.key, mode: require }
log:
  format: json
  level: pgsplit=debug,info
limits:
  max_client_connections: 500
  max_message_size: 64MiB
  startup_timeout: 2500ms
shutdown_timeout: 2m
workers: 3
users:
  - name: app
    password: app
  - name: reporting
    password: "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    auth: md5
    server_user: app
    server_password: app
  - name: ops
    password: SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVk:c2VydmVy
    server_password: ops-pw
    admin: true
  - { name: local, auth: trust }
pool:
  mode: session
  size: 7
  min_idle: 2
  checkout_timeout: 750ms
  server_lifetime: 2h
  server_idle_timeout: 90
  client_idle_timeout: 15m
  connect_timeout: 3s
  reset_query: "SELECT 1"
servers:
  - name: primary
    host: 127.0.0.1
    port: 15432
    role: primary
    max_connections: 40
    sslmode: verify-full
    sslrootcert: /etc/pgsplit/ca.crt
  - host: db-replica.internal
    role: replica
    weight: 3
    sslmode: disable
  - { name: spare, host: 10.0.0.9, port: 5433 }
primary_reads: always
balance: weighted_least_connections
consistency: { primary_after_write: 2s }
causal_wait: 250ms
functions:
  write: [my_audit_fn, app.bump*]
  read:
    - my_pure_fn
    - "reporting.*"
  unknown: replica
rules:
  - name: reports
    match:
      user: reporting
      database: [app, analytics]
      application_name: [reporting, ""]
      kind: read
      tables: [orders, public.users]
      functions: pg_sleep
      fingerprint: [0A1B2C3D4E5F6789, "1234567890123456"]
      regex: "(?i)^select .* from big_table"
    target: replica
    consistency: eventual
  - match: { kind: [write, txn_begin] }
    consistency: session
  - match:
      database: legacy
    block: "bulk exports are disabled"
  - target: primary
health:
  interval: 100ms
  timeout: 2s
  rise: 3
  user: monitor
  password: monitor-pw
  database: template1
lag:
  max_bytes: 1GiB
  max_delay: 30s
failover:
  write_wait: 0
"#;

fn full_expected() -> Config {
    Config {
        source: None,
        listen: "0.0.0.0:7432".into(),
        admin: AdminConfig {
            listen: "127.0.0.1:0".into(),
        },
        tls: Some(TlsConfig {
            cert: "/etc/pgsplit/tls.crt".into(),
            key: "tls.key".into(),
            mode: TlsMode::Require,
        }),
        log: LogConfig {
            format: LogFormat::Json,
            level: "pgsplit=debug,info".into(),
        },
        limits: Limits {
            max_client_connections: 500,
            max_message_size: 64 * 1024 * 1024,
            startup_timeout: Duration::from_millis(2500),
        },
        shutdown_timeout: Duration::from_secs(120),
        workers: Some(3),
        users: vec![
            User {
                name: "app".into(),
                password: "app".into(),
                auth: AuthMethod::ScramSha256,
                server_user: "app".into(),
                server_password: Some("app".into()),
                admin: false,
            },
            User {
                name: "reporting".into(),
                password: format!("md5{}", "a".repeat(32)),
                auth: AuthMethod::Md5,
                server_user: "app".into(),
                server_password: Some("app".into()),
                admin: false,
            },
            User {
                name: "ops".into(),
                password: "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVk:c2VydmVy".into(),
                auth: AuthMethod::ScramSha256,
                server_user: "ops".into(),
                server_password: Some("ops-pw".into()),
                admin: true,
            },
            User {
                name: "local".into(),
                password: String::new(),
                auth: AuthMethod::Trust,
                server_user: "local".into(),
                server_password: None,
                admin: false,
            },
        ],
        pool: PoolConfig {
            mode: PoolMode::Session,
            size: 7,
            min_idle: 2,
            checkout_timeout: Duration::from_millis(750),
            server_lifetime: Duration::from_secs(7200),
            server_idle_timeout: Duration::from_secs(90),
            client_idle_timeout: Some(Duration::from_secs(900)),
            connect_timeout: Duration::from_secs(3),
            reset_query: "SELECT 1".into(),
        },
        servers: vec![
            Server {
                name: "primary".into(),
                host: "127.0.0.1".into(),
                port: 15432,
                role: Role::Primary,
                weight: 1,
                max_connections: 40,
                sslmode: SslMode::VerifyFull,
                sslrootcert: Some("/etc/pgsplit/ca.crt".into()),
            },
            Server {
                name: "db-replica.internal:5432".into(),
                host: "db-replica.internal".into(),
                port: 5432,
                role: Role::Replica,
                weight: 3,
                max_connections: 100,
                sslmode: SslMode::Disable,
                sslrootcert: None,
            },
            Server {
                name: "spare".into(),
                host: "10.0.0.9".into(),
                port: 5433,
                role: Role::Auto,
                weight: 1,
                max_connections: 100,
                sslmode: SslMode::Prefer,
                sslrootcert: None,
            },
        ],
        routing: RoutingConfig {
            primary_reads: PrimaryReads::Always,
            balance: Balance::WeightedLeastConnections,
            consistency: Consistency::PrimaryAfterWrite(Duration::from_secs(2)),
            causal_wait: Duration::from_millis(250),
            functions: FunctionsConfig {
                write: vec!["my_audit_fn".into(), "app.bump*".into()],
                read: vec!["my_pure_fn".into(), "reporting.*".into()],
                unknown: UnknownFunctions::Replica,
            },
            rules: vec![
                RuleConfig {
                    name: "reports".into(),
                    when: RuleMatch {
                        users: vec!["reporting".into()],
                        databases: vec!["app".into(), "analytics".into()],
                        application_names: vec!["reporting".into(), String::new()],
                        kinds: vec![StatementKind::Read],
                        tables: vec!["orders".into(), "public.users".into()],
                        functions: vec!["pg_sleep".into()],
                        fingerprints: vec!["0a1b2c3d4e5f6789".into(), "1234567890123456".into()],
                        regex: Some("(?i)^select .* from big_table".into()),
                    },
                    target: Some(RuleTarget::Replica),
                    consistency: Some(Consistency::Eventual),
                    block: None,
                },
                RuleConfig {
                    name: "rules[1]".into(),
                    when: RuleMatch {
                        kinds: vec![StatementKind::Write, StatementKind::TxnBegin],
                        ..RuleMatch::default()
                    },
                    target: None,
                    consistency: Some(Consistency::Session),
                    block: None,
                },
                RuleConfig {
                    name: "rules[2]".into(),
                    when: RuleMatch {
                        databases: vec!["legacy".into()],
                        ..RuleMatch::default()
                    },
                    target: None,
                    consistency: None,
                    block: Some("bulk exports are disabled".into()),
                },
                RuleConfig {
                    name: "rules[3]".into(),
                    when: RuleMatch::default(),
                    target: Some(RuleTarget::Primary),
                    consistency: None,
                    block: None,
                },
            ],
        },
        health: HealthConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            rise: 3,
            user: "monitor".into(),
            password: Some("monitor-pw".into()),
            database: "template1".into(),
        },
        lag: LagConfig {
            max_bytes: 1024 * 1024 * 1024,
            max_delay: Duration::from_secs(30),
        },
        failover: FailoverConfig {
            write_wait: Duration::ZERO,
        },
    }
}

#[test]
fn full_config_reads_every_key() {
    let config = parse(FULL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config, full_expected());
    assert_eq!(config.primary().map(|s| s.name.as_str()), Some("primary"));
    assert_eq!(
        config.user("ops").map(User::password_kind),
        Some(PasswordKind::ScramVerifier)
    );
    assert_eq!(
        config.user("reporting").map(User::password_kind),
        Some(PasswordKind::Md5Hash)
    );
}

#[test]
fn minimal_config_gets_the_defaults() {
    let text = "users: [{ name: app, password: app }]\nservers: [{ host: localhost }]\n";
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let expected = Config {
        source: None,
        listen: "127.0.0.1:6432".into(),
        admin: AdminConfig {
            listen: "127.0.0.1:9930".into(),
        },
        tls: None,
        log: LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        },
        limits: Limits {
            max_client_connections: 10_000,
            max_message_size: 256 * 1024 * 1024,
            startup_timeout: Duration::from_secs(15),
        },
        shutdown_timeout: Duration::from_secs(30),
        workers: None,
        users: vec![User {
            name: "app".into(),
            password: "app".into(),
            auth: AuthMethod::ScramSha256,
            server_user: "app".into(),
            server_password: Some("app".into()),
            admin: false,
        }],
        pool: PoolConfig {
            mode: PoolMode::Transaction,
            size: 20,
            min_idle: 0,
            checkout_timeout: Duration::from_secs(5),
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Duration::from_secs(600),
            client_idle_timeout: None,
            connect_timeout: Duration::from_secs(5),
            reset_query: "DISCARD ALL".into(),
        },
        servers: vec![Server {
            name: "localhost:5432".into(),
            host: "localhost".into(),
            port: 5432,
            role: Role::Auto,
            weight: 1,
            max_connections: 100,
            sslmode: SslMode::Prefer,
            sslrootcert: None,
        }],
        routing: RoutingConfig {
            primary_reads: PrimaryReads::Fallback,
            balance: Balance::LeastConnections,
            consistency: Consistency::Session,
            causal_wait: Duration::ZERO,
            functions: FunctionsConfig {
                write: vec![],
                read: vec![],
                unknown: UnknownFunctions::Primary,
            },
            rules: vec![],
        },
        health: HealthConfig {
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            rise: 2,
            user: "app".into(),
            password: Some("app".into()),
            database: "postgres".into(),
        },
        lag: LagConfig {
            max_bytes: 16 * 1024 * 1024,
            max_delay: Duration::from_secs(5),
        },
        failover: FailoverConfig {
            write_wait: Duration::from_secs(10),
        },
    };
    assert_eq!(config, expected);
    // With no `role: primary`, the first `auto` server is the presumed primary.
    assert_eq!(
        config.primary().map(|s| s.name.as_str()),
        Some("localhost:5432")
    );
}

#[test]
fn null_sections_and_client_idle_zero_mean_default() {
    let text = "pool:\n  client_idle_timeout: 0\nlog:\nusers: [{ name: a, auth: trust }]\n\
                servers: [{ host: h }]\n";
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.pool.client_idle_timeout, None);
    assert_eq!(config.log.level, "info");
}

#[test]
fn scalars_are_read_as_written() {
    // Numeric-looking passwords stay text exactly as written; quoted numbers are numbers.
    let text =
        "users:\n  - { name: a, password: 0012.50 }\nservers:\n  - host: h\n    port: \"6543\"\n";
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.users[0].password, "0012.50");
    assert_eq!(config.servers[0].port, 6543);
}

#[test]
fn testkit_proxy_yaml_shape_parses() {
    // The shape `pgsplit_testkit::ProxyYaml::build` writes: flow mappings in block lists.
    let text = "\
listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0 }
shutdown_timeout: 2s
users:
  - { name: app, password: app }
  - { name: app_md5, password: md5secret, auth: md5, server_user: app, server_password: app }
  - { name: app_trust, password: app, auth: trust, server_user: app, server_password: app }
  - { name: admin, password: admin, admin: true }
pool: { size: 1, mode: session }
servers:
  - { name: primary, host: 127.0.0.1, port: 25432, role: primary }
  - { name: replica1, host: 127.0.0.1, port: 2, role: replica }
";
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen, "127.0.0.1:0");
    assert_eq!(config.shutdown_timeout, Duration::from_secs(2));
    let md5 = config.user("app_md5").unwrap();
    assert_eq!(
        (md5.auth, md5.password_kind()),
        (AuthMethod::Md5, PasswordKind::Plain)
    );
    assert_eq!(md5.server_user, "app");
    assert!(config.user("admin").unwrap().admin);
    assert_eq!(config.user("app_trust").unwrap().auth, AuthMethod::Trust);
    assert_eq!((config.pool.size, config.pool.mode), (1, PoolMode::Session));
    assert_eq!(config.servers[1].role, Role::Replica);
}

#[test]
fn summary_is_redacted() {
    let config = parse(FULL).unwrap_or_else(|e| panic!("{e}"));
    let summary = config.to_string();
    for secret in ["ops-pw", "c3RvcmVk", "md5aaaa"] {
        assert!(
            !summary.contains(secret),
            "{secret} leaked into:\n{summary}"
        );
    }
    for secret in ["ops-pw", "c3RvcmVk", "md5aaaa", "monitor-pw"] {
        assert!(
            !summary.contains(secret),
            "{secret} leaked into:\n{summary}"
        );
    }
    let debug = format!("{config:?}");
    assert!(!debug.contains("ops-pw"), "{debug}");
    assert!(!debug.contains("monitor-pw"), "{debug}");
    for line in [
        "primary_reads: always\n",
        "balance: weighted_least_connections\n",
        "consistency: { primary_after_write: 2s }\n",
        "causal_wait: 250ms\n",
        "functions: { write: [\"my_audit_fn\", \"app.bump*\"], read: [\"my_pure_fn\", \"reporting.*\"], unknown: replica }\n",
        "  - { name: \"rules[2]\", database: [\"legacy\"], block: \"bulk exports are disabled\" }\n",
        "  - { name: \"rules[1]\", kind: [write, txn_begin], consistency: session }\n",
        "health: { interval: 100ms, timeout: 2s, rise: 3, user: \"monitor\", password: <redacted>, database: \"template1\" }\n",
        "lag: { max_bytes: 1GiB, max_delay: 30s }\n",
        "failover: { write_wait: 0s }\n",
    ] {
        assert!(summary.contains(line), "{line:?} missing from:\n{summary}");
    }
    assert!(summary.contains("password: <redacted>"), "{summary}");
    assert!(summary.contains("limits: { max_client_connections: 500, max_message_size: 64MiB, startup_timeout: 2500ms }"), "{summary}");
    assert!(
        summary.contains("name: \"primary\", host: \"127.0.0.1\", port: 15432, role: primary"),
        "{summary}"
    );
    assert!(summary.contains("client_idle_timeout: 15m"), "{summary}");
}

#[test]
fn load_reads_a_file_and_records_its_path() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pgsplit-config-load");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ok.yaml");
    std::fs::write(
        &path,
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\n",
    )
    .unwrap();
    let config = pgsplit_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.source.as_deref(), Some(path.as_path()));

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "users: []\nservers: [{ host: h, port: 0 }]\n").unwrap();
    let errors = pgsplit_config::load(&bad).unwrap_err().to_string();
    let file = bad.display();
    assert_eq!(
        errors,
        format!(
            "{file}:1:1: users: at least one user is required\n\
             {file}:2:22: servers[0].port: must be between 1 and 65535, found 0"
        )
    );

    let missing = dir.join("missing.yaml");
    let error = pgsplit_config::load(&missing).unwrap_err();
    assert_eq!(error.len(), 1);
    let rendered = error.to_string();
    assert!(
        rendered.starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{rendered}"
    );
}

#[test]
fn query_wait_timeout_is_checkout_timeout() {
    let text = "users: [{ name: app, password: app }]\n\
                servers: [{ host: 127.0.0.1 }]\n\
                pool: { query_wait_timeout: 750ms }\n";
    let config = pgsplit_config::parse(text, "alias.yaml").expect("valid");
    assert_eq!(
        config.pool.checkout_timeout,
        std::time::Duration::from_millis(750)
    );
}

#[test]
fn health_credentials_default_to_the_matching_user() {
    // The default health user is the first user's server_user; the password is taken from
    // the first user logging in to the servers as that role.
    let text = "users:\n  - { name: a, password: SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy, \
                server_user: app, server_password: app-pw }\n  - { name: ops, password: ops }\n\
                servers: [{ host: h }]\n";
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.health.user, "app");
    assert_eq!(config.health.password.as_deref(), Some("app-pw"));

    let named = format!("{text}health: {{ user: ops }}\n");
    let config = parse(&named).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.health.user, "ops");
    assert_eq!(config.health.password.as_deref(), Some("ops"));

    let stranger = format!("{text}health: {{ user: monitor }}\n");
    let config = parse(&stranger).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.health.password, None, "no user logs in as monitor");
}

#[test]
fn routing_scalars_and_nulls() {
    // A scalar where a list may stand, `null` for a default, and a numeric fingerprint.
    let text = "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\n\
                consistency: eventual\nlag: { max_bytes: null, max_delay: 1m }\n\
                functions: { write: audit }\n\
                rules:\n  - match: { user: 42, fingerprint: 1234567890123456 }\n    target: primary\n";
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.routing.consistency, Consistency::Eventual);
    assert_eq!(config.lag.max_bytes, 16 * 1024 * 1024);
    assert_eq!(config.lag.max_delay, Duration::from_secs(60));
    assert_eq!(config.routing.functions.write, ["audit"]);
    let when = &config.routing.rules[0].when;
    assert_eq!(when.users, ["42"]);
    assert_eq!(when.fingerprints, ["1234567890123456"]);
    assert_eq!(config.health.user, "a");
    assert_eq!(config.health.password, None);
}

#[test]
fn workers_takes_auto_or_a_number() {
    let base = "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\n";
    let auto = parse(&format!("{base}workers: auto\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(auto.workers, None);
    let one = parse(&format!("{base}workers: 1\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.workers, Some(1));
}
