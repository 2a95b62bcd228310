//! Broken configs: each case lists the rendered errors, in order.
//!
//! An expected line must equal the rendered error, or be a prefix of it when it ends with
//! `…` (for long messages such as the list of expected keys).

use crate::parse;

/// `(name, yaml, expected errors)`.
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "unknown top-level key",
        "listen: 127.0.0.1:6432\nlisten_port: 6432\n",
        &[
            "test.yaml:2:1: listen_port: unknown field `listen_port`, expected one of `listen`, `admin`, `tls`, `log`, `limits`, `shutdown_timeout`, `workers`, `users`, `pool`, `servers`, `primary_reads`, `balance`, `consistency`, `causal_wait`, `functions`, `rules`, `health`, `lag`, `failover`",
        ],
    ),
    (
        "unknown nested key",
        "pool:\n  mode: session\n  sise: 5\n",
        &[
            "test.yaml:3:3: pool.sise: unknown field `sise`, expected one of `mode`, `size`, `min_idle`, …",
        ],
    ),
    (
        "unknown key in a flow item",
        "users:\n  - { name: app, passwd: x }\n",
        &[
            "test.yaml:2:18: users[0].passwd: unknown field `passwd`, expected one of `name`, `password`, `auth`, `server_user`, `server_password`, `admin`",
        ],
    ),
    (
        "mapping where a list belongs",
        "users: { name: app }\n",
        &["test.yaml:1:8: users: invalid type: map, expected a sequence"],
    ),
    (
        "list where a string belongs",
        "listen: [127.0.0.1, 6432]\n",
        &["test.yaml:1:9: listen: invalid type: sequence, expected a string"],
    ),
    (
        "wrong type for port",
        "users: [{ name: a, auth: trust }]\nservers:\n  - host: h\n    port: fivefour\n",
        &["test.yaml:4:5: servers[0].port: expected a whole number, found `fivefour`"],
    ),
    (
        "workers not a number",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nworkers: many\n",
        &["test.yaml:3:1: workers: expected `auto` or a whole number, found `many`"],
    ),
    (
        "workers 0",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nworkers: 0\n",
        &["test.yaml:3:1: workers: must be between 1 and 1024, found 0"],
    ),
    (
        "port 0",
        "users: [{ name: a, auth: trust }]\nservers:\n  - { host: h, port: 0 }\n",
        &["test.yaml:3:16: servers[0].port: must be between 1 and 65535, found 0"],
    ),
    (
        "port 70000",
        "users: [{ name: a, auth: trust }]\nservers:\n- host: h\n  port: 70000\n",
        &["test.yaml:4:3: servers[0].port: must be between 1 and 65535, found 70000"],
    ),
    (
        "bad duration",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\npool:\n  checkout_timeout: 5 seconds\n",
        &[
            "test.yaml:4:3: pool.checkout_timeout: invalid duration `5 seconds`: use a whole number followed by ms, s, m or h (e.g. 500ms, 5s, 10m, 1h), or a plain number of seconds",
        ],
    ),
    (
        "zero duration where it makes no sense",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\npool: { connect_timeout: 0s }\nlimits: { startup_timeout: 0 }\n",
        &[
            "test.yaml:3:9: pool.connect_timeout: must be greater than zero",
            "test.yaml:4:11: limits.startup_timeout: must be greater than zero",
        ],
    ),
    (
        "decimal size unit",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nlimits:\n  max_message_size: 256MB\n",
        &[
            "test.yaml:4:3: limits.max_message_size: invalid size `256MB`: `MB` is ambiguous, write `MiB` (sizes use powers of 1024: KiB, MiB, GiB)",
        ],
    ),
    (
        "size below 1KiB",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nlimits:\n  max_message_size: 512B\n",
        &["test.yaml:4:3: limits.max_message_size: must be at least 1KiB, found 512 bytes"],
    ),
    (
        "duplicate server names",
        "users: [{ name: a, auth: trust }]\nservers:\n  - { name: db, host: a }\n  - { name: db, host: b }\n  - { host: c, port: 5432 }\n  - { host: c }\n",
        &[
            "test.yaml:4:7: servers[1].name: duplicate server name `db` (first used by servers[0]); give each server a unique `name`",
            "test.yaml:6:3: servers[3].name: duplicate server name `c:5432` (first used by servers[2]); give each server a unique `name`",
        ],
    ),
    (
        "two primaries",
        "users: [{ name: a, auth: trust }]\nservers:\n  - host: a\n    role: primary\n  - host: b\n    role: primary\n",
        &[
            "test.yaml:6:5: servers[1].role: only one server may have role primary, and servers[0] does",
        ],
    ),
    (
        "empty users",
        "users: []\nservers: [{ host: h }]\n",
        &["test.yaml:1:1: users: at least one user is required"],
    ),
    (
        "missing servers",
        "users: [{ name: a, auth: trust }]\n",
        &["test.yaml: servers: at least one server is required"],
    ),
    (
        "empty file",
        "# nothing yet\n",
        &[
            "test.yaml: users: at least one user is required",
            "test.yaml: servers: at least one server is required",
        ],
    ),
    (
        "min_idle above size",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\npool:\n  size: 4\n  min_idle: 5\n",
        &["test.yaml:5:3: pool.min_idle: must not exceed pool.size (4), found 5"],
    ),
    (
        "pool size 0",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\npool: { size: 0 }\n",
        &["test.yaml:3:9: pool.size: must be at least 1, found 0"],
    ),
    (
        "weight 0 and max_connections -1",
        "users: [{ name: a, auth: trust }]\nservers:\n  - host: h\n    weight: 0\n    max_connections: -1\n",
        &[
            "test.yaml:4:5: servers[0].weight: must be at least 1, found 0",
            "test.yaml:5:5: servers[0].max_connections: must be at least 1, found -1",
        ],
    ),
    (
        "bad role",
        "users: [{ name: a, auth: trust }]\nservers:\n  - host: h\n    role: leader\n",
        &[
            "test.yaml:4:5: servers[0].role: unknown value `leader`, expected one of `primary`, `replica`, `auto`",
        ],
    ),
    (
        "bad auth method",
        "users:\n  - name: a\n    password: a\n    auth: scram\nservers: [{ host: h }]\n",
        &[
            "test.yaml:4:5: users[0].auth: unknown value `scram`, expected one of `scram-sha-256`, `md5`, `trust`",
        ],
    ),
    (
        "bad pool mode, log format and empty level",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\npool: { mode: statement }\nlog: { format: xml, level: '' }\n",
        &[
            "test.yaml:3:9: pool.mode: unknown value `statement`, expected one of `transaction`, `session`",
            "test.yaml:4:8: log.format: unknown value `xml`, expected one of `text`, `json`",
            "test.yaml:4:21: log.level: must not be empty",
        ],
    ),
    (
        "tls without a key, with an unknown mode",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\ntls:\n  cert: server.crt\n  mode: always\n",
        &[
            "test.yaml:3:1: tls.key: is required when `tls` is set (a PEM file; remove `tls` to serve plain text only)",
            "test.yaml:5:3: tls.mode: unknown value `always`, expected one of `prefer`, `require`",
        ],
    ),
    (
        "verify-full without a root certificate, an unknown sslmode",
        "users: [{ name: a, auth: trust }]\nservers:\n  - { host: h, sslmode: verify-full }\n  - { host: i, sslmode: allow }\n",
        &[
            "test.yaml:3:16: servers[0].sslmode: `verify-full` checks the server's certificate: set `sslrootcert` to a PEM file with the CA certificates",
            "test.yaml:4:16: servers[1].sslmode: unknown value `allow`, expected one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`",
        ],
    ),
    (
        "tls with an empty cert path",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\ntls: { cert: '', key: k.pem }\n",
        &["test.yaml:3:8: tls.cert: must not be empty"],
    ),
    (
        "admin flag not a boolean",
        "users:\n  - { name: a, auth: trust, admin: yes }\nservers: [{ host: h }]\n",
        &["test.yaml:2:29: users[0].admin: expected true or false, found `yes`"],
    ),
    (
        "unset environment variable",
        "users:\n  - name: app\n    password: ${APP_PASWORD}\nservers: [{ host: h, port: \"${PRIMARY_PORT}\" }]\n",
        &["test.yaml:3:15: users[0].password: environment variable `APP_PASWORD` is not set"],
    ),
    (
        "every unset variable is reported",
        "users: [{ name: '${USER_NAME}', password: \"${PW}\" }]\nservers: [{ host: h }]\n",
        &[
            "test.yaml:1:18: users[0].name: environment variable `USER_NAME` is not set",
            "test.yaml:1:44: users[0].password: environment variable `PW` is not set",
        ],
    ),
    (
        "malformed variable reference",
        "users:\n  - name: app\n    password: ${APP PASSWORD}\n",
        &[
            "test.yaml:3:15: users[0].password: malformed variable reference `${APP PASSWORD}`: write `${NAME}` where NAME is letters, digits and `_`",
        ],
    ),
    (
        "variable with a bad value",
        "users: [{ name: a, auth: trust }]\nservers:\n  - host: h\n    port: ${NOT_A_NUMBER}\n",
        &["test.yaml:4:5: servers[0].port: expected a whole number, found `abc`"],
    ),
    (
        "scalar where a mapping belongs",
        "admin: 127.0.0.1:9930\n",
        &[
            "test.yaml:1:8: admin: invalid type: string \"127.0.0.1:9930\", expected a mapping of admin settings",
        ],
    ),
    (
        "scalar where a user belongs",
        "users:\n  - app\n",
        &[
            "test.yaml:2:5: users[0]: invalid type: string \"app\", expected a mapping describing a user",
        ],
    ),
    (
        "unquoted value containing a colon",
        "users:\n  - name: a\n    password: b: c\n",
        &[
            "test.yaml:3:16: users[0].password: mapping values are not allowed in this context (quote a value that contains `: `)",
        ],
    ),
    (
        "tab indentation",
        "pool:\n\tsize: 5\n",
        &[
            "test.yaml:2:1: pool: tabs cannot indent YAML, use spaces (found character that cannot start any token, while scanning for the next token)",
        ],
    ),
    (
        "bad indentation",
        "pool:\n  size: 5\n mode: session\n",
        &["test.yaml:3:2: did not find expected key, while parsing a block mapping"],
    ),
    (
        "unterminated quote",
        "users:\n  - name: \"app\n    password: app\n",
        &[
            "test.yaml:4:1: users[0].name: found unexpected end of stream, while scanning a quoted scalar",
        ],
    ),
    (
        "listen without port",
        "listen: 127.0.0.1\nadmin:\n  listen: localhost:http\nusers: [{ name: a, auth: trust }]\nservers: [{ host: h }]\n",
        &[
            "test.yaml:1:1: listen: expected host:port (e.g. 127.0.0.1:6432), found `127.0.0.1`",
            "test.yaml:3:3: admin.listen: invalid port `http` in `localhost:http`: expected 0 to 65535",
        ],
    ),
    (
        "listen without host",
        "listen: :6432\nusers: [{ name: a, auth: trust }]\nservers: [{ host: h }]\n",
        &["test.yaml:1:1: listen: missing host in `:6432` (e.g. 127.0.0.1:6432 or 0.0.0.0:6432)"],
    ),
    (
        "verifier password without server_password",
        "users:\n  - name: app\n    password: SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\nservers: [{ host: h }]\n",
        &[
            "test.yaml:2:3: users[0].server_password: server_password is required when password is a SCRAM verifier or md5 hash",
        ],
    ),
    (
        "md5 hash with scram auth",
        "users:\n  - name: app\n    password: md50123456789abcdef0123456789abcdef\n    server_password: x\nservers: [{ host: h }]\n",
        &[
            "test.yaml:3:5: users[0].password: an md5 hash cannot check SCRAM-SHA-256 authentication; give the plain password or a SCRAM-SHA-256 verifier, or use auth md5",
        ],
    ),
    (
        "malformed verifier",
        "users:\n  - name: app\n    password: SCRAM-SHA-256$4096:salt\n    server_password: x\nservers: [{ host: h }]\n",
        &[
            "test.yaml:3:5: users[0].password: malformed SCRAM-SHA-256 verifier: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
        ],
    ),
    (
        "user without name or password",
        "users:\n  - password: x\n  - name: b\nservers: [{ host: h }]\n",
        &[
            "test.yaml:2:3: users[0].name: is required",
            "test.yaml:3:3: users[1].password: is required for auth scram-sha-256 (use `auth: trust` for no password)",
        ],
    ),
    (
        "duplicate user names",
        "users:\n  - { name: app, auth: trust }\n  - { name: app, auth: trust }\nservers: [{ host: h }]\n",
        &["test.yaml:3:7: users[1].name: duplicate user name `app` (first used by users[0])"],
    ),
    (
        "server without host",
        "users: [{ name: a, auth: trust }]\nservers:\n  - name: primary\n    port: 5432\n",
        &["test.yaml:3:3: servers[0].host: is required"],
    ),
    (
        "multiple errors reported together, in file order",
        "listen: nowhere\nusers:\n  - name: app\n    password: app\n    auth: plain\npool:\n  size: 0\n  checkout_timeout: soon\nservers:\n  - host: a\n    port: 0\n    role: primary\n  - host: b\n    role: primary\n",
        &[
            "test.yaml:1:1: listen: expected host:port (e.g. 127.0.0.1:6432), found `nowhere`",
            "test.yaml:5:5: users[0].auth: unknown value `plain`, …",
            "test.yaml:7:3: pool.size: must be at least 1, found 0",
            "test.yaml:8:3: pool.checkout_timeout: invalid duration `soon`: …",
            "test.yaml:11:5: servers[0].port: must be between 1 and 65535, found 0",
            "test.yaml:14:5: servers[1].role: only one server may have role primary, and servers[0] does",
        ],
    ),
    (
        "primary_reads: unknown value",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nprimary_reads: sometimes\n",
        &[
            "test.yaml:3:1: primary_reads: unknown value `sometimes`, expected one of `never`, `fallback`, `always`",
        ],
    ),
    (
        "balance: unknown value",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nbalance: random\n",
        &[
            "test.yaml:3:1: balance: unknown value `random`, expected one of `round_robin`, `least_connections`, `weighted_least_connections`",
        ],
    ),
    (
        "consistency: unknown name",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nconsistency: strong\n",
        &[
            "test.yaml:3:1: consistency: unknown value `strong`, expected `eventual`, `session` or `{ primary_after_write: DURATION }`",
        ],
    ),
    (
        "consistency: primary_after_write without a duration",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nconsistency: primary_after_write\n",
        &[
            "test.yaml:3:1: consistency: primary_after_write needs a duration: write `{ primary_after_write: 2s }`",
        ],
    ),
    (
        "consistency: unknown key in the mapping",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nconsistency: { primary_after_writes: 2s }\n",
        &[
            "test.yaml:3:16: consistency.primary_after_writes: unknown field `primary_after_writes`, expected `primary_after_write`",
        ],
    ),
    (
        "consistency: zero window",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nconsistency:\n  primary_after_write: 0s\n",
        &["test.yaml:4:3: consistency.primary_after_write: must be greater than zero"],
    ),
    (
        "consistency: a number",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nconsistency: 5\n",
        &[
            "test.yaml:3:14: consistency: invalid type: integer `5`, expected `eventual`, `session` or a mapping `{ primary_after_write: DURATION }`",
        ],
    ),
    (
        "causal_wait: bad duration",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\ncausal_wait: soon\n",
        &["test.yaml:3:1: causal_wait: invalid duration `soon`: …"],
    ),
    (
        "functions: bad names and unknown value",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nfunctions:\n  write:\n    - My_Fn\n    - '*'\n  read: [ok_fn, app.pure*, a.b.c, app.*]\n  unknown: maybe\n",
        &[
            "test.yaml:5:5: functions.write[0]: function names are lower case (PostgreSQL folds unquoted names), write `my_fn`",
            "test.yaml:6:5: functions.write[1]: `*` alone would match every function; list names or prefixes",
            "test.yaml:7:28: functions.read[2]: invalid function name `a.b.c`: expected `name` or `schema.name` (letters, digits, `_`), optionally ending in `*` to match a prefix",
            "test.yaml:8:3: functions.unknown: unknown value `maybe`, expected one of `primary`, `replica`",
        ],
    ),
    (
        "functions: unknown key",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nfunctions: { writes: [a] }\n",
        &[
            "test.yaml:3:14: functions.writes: unknown field `writes`, expected one of `write`, `read`, `unknown`",
        ],
    ),
    (
        "rule without an action",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - name: reports\n    match: { user: app }\n",
        &["test.yaml:4:3: rules[0]: a rule needs an action: `target`, `consistency` or `block`"],
    ),
    (
        "rule with block and target",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - match: { database: app }\n    target: replica\n    block: no exports\n",
        &[
            "test.yaml:6:5: rules[0].block: `block` cannot be combined with `target`: a blocked statement goes nowhere",
        ],
    ),
    (
        "rule with block and consistency",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - { consistency: eventual, block: nope }\n",
        &[
            "test.yaml:4:30: rules[0].block: `block` cannot be combined with `consistency`: a blocked statement is never read",
        ],
    ),
    (
        "rule with an unknown kind",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - match:\n      kind: select\n    target: primary\n",
        &[
            "test.yaml:5:7: rules[0].match.kind: unknown value `select`, expected one of `read`, `write`, `txn_begin`, `txn_end`, `savepoint`, `session_set`, `cursor`, `unknown`",
        ],
    ),
    (
        "rule with an unknown kind in a list",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - target: primary\n  - match: { kind: [read, ddl] }\n    target: primary\n",
        &["test.yaml:5:27: rules[1].match.kind[1]: unknown value `ddl`, expected one of `read`, …"],
    ),
    (
        "rule with an invalid regex",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - match:\n      regex: \"(?i)^select (\"\n    target: replica\n",
        &["test.yaml:5:7: rules[0].match.regex: invalid regex: unclosed group"],
    ),
    (
        "rule with a bad fingerprint",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - match:\n      fingerprint: [0a1b2c3d4e5f6789, xyz]\n    target: primary\n",
        &[
            "test.yaml:5:39: rules[0].match.fingerprint[1]: expected a query fingerprint of 16 hexadecimal digits, found `xyz` (quote it if YAML reads it as a number)",
        ],
    ),
    (
        "rule with a bad target and consistency",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - target: standby\n    consistency: strict\n",
        &[
            "test.yaml:4:5: rules[0].target: unknown value `standby`, expected one of `primary`, `replica`",
            "test.yaml:5:5: rules[0].consistency: unknown value `strict`, expected `eventual`, `session` or `{ primary_after_write: DURATION }`",
        ],
    ),
    (
        "rule with an unknown match key",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - match: { usr: app }\n    target: primary\n",
        &[
            "test.yaml:4:14: rules[0].match.usr: unknown field `usr`, expected one of `user`, `database`, `application_name`, `kind`, `tables`, `functions`, `fingerprint`, `regex`",
        ],
    ),
    (
        "rule with an unknown key",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - match: { user: app }\n    route: primary\n",
        &[
            "test.yaml:5:5: rules[0].route: unknown field `route`, expected one of `name`, `match`, `target`, `consistency`, `block`",
        ],
    ),
    (
        "rules: duplicate names, empty user and block",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nrules:\n  - { name: r, target: primary }\n  - name: r\n    match: { user: [app, ''] }\n    block: ''\n",
        &[
            "test.yaml:5:5: rules[1].name: duplicate rule name `r` (first used by rules[0])",
            "test.yaml:6:26: rules[1].match.user[1]: must not be empty",
            "test.yaml:7:5: rules[1].block: must not be empty",
        ],
    ),
    (
        "health: interval below 100ms, zero timeout, rise 0",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nhealth:\n  interval: 50ms\n  timeout: 0s\n  rise: 0\n",
        &[
            "test.yaml:4:3: health.interval: must be at least 100ms, found 50ms",
            "test.yaml:5:3: health.timeout: must be greater than zero",
            "test.yaml:6:3: health.rise: must be at least 1, found 0",
        ],
    ),
    (
        "health: empty user and database",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nhealth: { user: '', database: '' }\n",
        &[
            "test.yaml:3:11: health.user: must not be empty",
            "test.yaml:3:21: health.database: must not be empty",
        ],
    ),
    (
        "health: unknown key",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nhealth:\n  fall: 3\n",
        &[
            "test.yaml:4:3: health.fall: unknown field `fall`, expected one of `interval`, `timeout`, `rise`, `user`, `password`, `database`",
        ],
    ),
    (
        "lag: decimal size and zero delay",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nlag:\n  max_bytes: 16MB\n  max_delay: 0\n",
        &[
            "test.yaml:4:3: lag.max_bytes: invalid size `16MB`: `MB` is ambiguous, write `MiB` (sizes use powers of 1024: KiB, MiB, GiB)",
            "test.yaml:5:3: lag.max_delay: must be greater than zero",
        ],
    ),
    (
        "lag: zero bytes",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nlag: { max_bytes: 0 }\n",
        &["test.yaml:3:8: lag.max_bytes: must be greater than zero"],
    ),
    (
        "failover: bad duration",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nfailover:\n  write_wait: forever\n",
        &["test.yaml:4:3: failover.write_wait: invalid duration `forever`: …"],
    ),
    (
        "failover: unknown key",
        "users: [{ name: a, auth: trust }]\nservers: [{ host: h }]\nfailover: { wait: 1s }\n",
        &["test.yaml:3:13: failover.wait: unknown field `wait`, expected `write_wait`"],
    ),
];

#[test]
fn broken_configs_report_file_line_col_key_and_message() {
    assert!(CASES.len() >= 20);
    let mut failures = Vec::new();
    for (name, text, expected) in CASES {
        let actual: Vec<String> = match parse(text) {
            Ok(_) => vec!["<parsed without errors>".to_owned()],
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        };
        let matches = actual.len() == expected.len()
            && actual
                .iter()
                .zip(expected.iter())
                .all(|(a, e)| match e.strip_suffix('…') {
                    Some(prefix) => a.starts_with(prefix),
                    None => a == e,
                });
        if !matches {
            failures.push(format!(
                "{name}:\n  expected: {expected:#?}\n  actual:   {actual:#?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn errors_render_with_and_without_positions() {
    use pgsplit_config::{ConfigError, ConfigErrors};
    let error = |line, col, key: &str| ConfigError {
        file: "f.yaml".into(),
        line,
        col,
        key: key.into(),
        message: "m".into(),
    };
    assert_eq!(
        error(Some(3), Some(7), "a.b").to_string(),
        "f.yaml:3:7: a.b: m"
    );
    assert_eq!(error(Some(3), None, "a.b").to_string(), "f.yaml:3: a.b: m");
    assert_eq!(error(None, None, "a.b").to_string(), "f.yaml: a.b: m");
    assert_eq!(error(None, None, "").to_string(), "f.yaml: m");
    let all = ConfigErrors(vec![error(Some(1), Some(1), "x"), error(None, None, "y")]);
    assert_eq!(all.to_string(), "f.yaml:1:1: x: m\nf.yaml: y: m");
}
