//! The "validated" half of raw → validated: defaults, rules, and every error at once.
//!
//! Like ripgrep's `HiArgs::from_low_args`, this is the one place that turns what the user
//! wrote into what the program uses. It never stops at the first problem: each check
//! records an error and carries on with a default, so `pgsplit check` lists everything.
//! Each error is placed on the offending key (or its nearest written parent) with the
//! [`Locator`].

mod routing;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::password::{PasswordKind, check_scram_verifier};
use crate::raw::{RawConfig, RawLimits, RawLog, RawPool, RawServer, RawTls, RawUser, Scalar};
use crate::{
    AdminConfig, AuthMethod, Config, ConfigError, ConfigErrors, Limits, Locator, LogConfig,
    LogFormat, PoolConfig, PoolMode, Role, Server, SslMode, TlsConfig, TlsMode, User,
};

/// Default `listen`.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:6432";
/// Default `admin.listen`.
pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9930";
/// The smallest `limits.max_message_size`: below this not even a startup packet fits.
const MIN_MESSAGE_SIZE: u64 = 1024;

/// Applies defaults to `raw` and checks every rule.
pub(crate) fn validate(
    raw: RawConfig,
    file: &str,
    locator: &Locator,
) -> Result<Config, ConfigErrors> {
    let mut checker = Checker {
        file,
        locator,
        errors: Vec::new(),
    };
    let c = &mut checker;
    let routing = c.routing(&raw);
    let lag = c.lag(raw.lag.clone().unwrap_or_default());
    let failover = c.failover(raw.failover.clone().unwrap_or_default());
    let listen = c.address("listen", raw.listen.as_deref(), DEFAULT_LISTEN);
    let admin_listen = c.address(
        "admin.listen",
        raw.admin.as_ref().and_then(|a| a.listen.as_deref()),
        DEFAULT_ADMIN_LISTEN,
    );
    let tls = raw.tls.map(|t| c.tls(t));
    let log = c.log(raw.log.unwrap_or_default());
    let limits = c.limits(raw.limits.unwrap_or_default());
    let shutdown_timeout = c.duration(
        "shutdown_timeout",
        raw.shutdown_timeout.as_ref(),
        secs(30),
        false,
    );
    let workers = c.workers(raw.workers.as_ref());
    let users = c.users(raw.users);
    let pool = c.pool(raw.pool.unwrap_or_default());
    let servers = c.servers(raw.servers);
    let health = c.health(raw.health.unwrap_or_default(), &users);
    let mut errors = checker.errors;
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line.is_none(), e.line, e.col));
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        source: None,
        listen,
        admin: AdminConfig {
            listen: admin_listen,
        },
        tls: tls.flatten(),
        log,
        limits,
        shutdown_timeout,
        workers,
        users,
        pool,
        servers,
        routing,
        health,
        lag,
        failover,
    })
}

/// The most `workers` a config may ask for.
const MAX_WORKERS: u64 = 1024;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Collects errors, each placed with the locator.
struct Checker<'a> {
    file: &'a str,
    locator: &'a Locator,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        let position = self.locator.locate(key);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: position.map(|(line, _)| line),
            col: position.map(|(_, col)| col),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn integer(
        &mut self,
        key: &str,
        value: Option<&Scalar>,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> u64 {
        let Some(Scalar(text)) = value else {
            return default;
        };
        let n = match text.trim().parse::<i128>() {
            Ok(n) => n,
            Err(_) => {
                self.error(key, format!("expected a whole number, found `{text}`"));
                return default;
            }
        };
        let (min, max) = (*range.start(), *range.end());
        if n < i128::from(min) || n > i128::from(max) {
            let message = if max >= u64::from(u32::MAX) {
                format!("must be at least {min}, found {n}")
            } else {
                format!("must be between {min} and {max}, found {n}")
            };
            self.error(key, message);
            return default;
        }
        n as u64
    }

    /// `workers`: `auto` (None) or 1 to [`MAX_WORKERS`] threads.
    fn workers(&mut self, value: Option<&Scalar>) -> Option<usize> {
        let Scalar(text) = value?;
        let text = text.trim();
        if text == "auto" {
            return None;
        }
        if text.parse::<i128>().is_err() {
            self.error(
                "workers",
                format!("expected `auto` or a whole number, found `{text}`"),
            );
            return None;
        }
        Some(self.integer("workers", value, 1, 1..=MAX_WORKERS) as usize)
    }

    fn count(&mut self, key: &str, value: Option<&Scalar>, default: usize, min: usize) -> usize {
        let max = usize::MAX as u64;
        self.integer(key, value, default as u64, min as u64..=max) as usize
    }

    fn duration(
        &mut self,
        key: &str,
        value: Option<&Scalar>,
        default: Duration,
        nonzero: bool,
    ) -> Duration {
        let Some(Scalar(text)) = value else {
            return default;
        };
        match crate::units::parse_duration(text) {
            Ok(d) if nonzero && d.is_zero() => {
                self.error(key, "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(message) => {
                self.error(key, message);
                default
            }
        }
    }

    fn boolean(&mut self, key: &str, value: Option<&Scalar>, default: bool) -> bool {
        match value.map(|s| s.0.trim()) {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.error(key, format!("expected true or false, found `{other}`"));
                default
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: T,
        all: &[T],
        name: fn(T) -> &'static str,
    ) -> T {
        let Some(text) = value else { return default };
        if let Some(found) = all.iter().copied().find(|v| name(*v) == text) {
            return found;
        }
        let expected: Vec<String> = all.iter().map(|v| format!("`{}`", name(*v))).collect();
        self.error(
            key,
            format!(
                "unknown value `{text}`, expected one of {}",
                expected.join(", ")
            ),
        );
        default
    }

    fn address(&mut self, key: &str, value: Option<&str>, default: &str) -> String {
        let Some(text) = value else {
            return default.to_owned();
        };
        if let Err(message) = check_address(text) {
            self.error(key, message);
        }
        text.to_owned()
    }

    /// A required, non-empty string.
    fn required(&mut self, key: &str, value: Option<&str>) -> Option<String> {
        match value {
            None => {
                self.error(key, "is required");
                None
            }
            Some(text) if text.trim().is_empty() => {
                self.error(key, "must not be empty");
                None
            }
            Some(text) => Some(text.to_owned()),
        }
    }

    /// `tls:`: both files are required; `None` (with errors) when one is missing.
    fn tls(&mut self, raw: RawTls) -> Option<TlsConfig> {
        let mode = self.choice(
            "tls.mode",
            raw.mode.as_deref(),
            TlsMode::Prefer,
            TlsMode::ALL,
            TlsMode::as_str,
        );
        let mut path = |key: &str, value: Option<String>| match value {
            Some(p) if !p.trim().is_empty() => Some(std::path::PathBuf::from(p)),
            Some(_) => {
                self.error(key, "must not be empty");
                None
            }
            None => {
                self.error(
                    key,
                    "is required when `tls` is set (a PEM file; remove `tls` to serve plain text only)",
                );
                None
            }
        };
        let cert = path("tls.cert", raw.cert);
        let key = path("tls.key", raw.key);
        Some(TlsConfig {
            cert: cert?,
            key: key?,
            mode,
        })
    }

    fn log(&mut self, raw: RawLog) -> LogConfig {
        let format = self.choice(
            "log.format",
            raw.format.as_deref(),
            LogFormat::Text,
            LogFormat::ALL,
            LogFormat::as_str,
        );
        let level = match raw.level {
            None => "info".to_owned(),
            Some(level) => {
                if level.trim().is_empty() {
                    self.error("log.level", "must not be empty");
                }
                level
            }
        };
        LogConfig { format, level }
    }

    fn limits(&mut self, raw: RawLimits) -> Limits {
        let max_client_connections = self.count(
            "limits.max_client_connections",
            raw.max_client_connections.as_ref(),
            10_000,
            1,
        );
        let default_size = 256 * 1024 * 1024;
        let max_message_size = match &raw.max_message_size {
            None => default_size,
            Some(Scalar(text)) => match crate::units::parse_size(text) {
                Ok(n) if n < MIN_MESSAGE_SIZE => {
                    self.error(
                        "limits.max_message_size",
                        format!("must be at least 1KiB, found {n} bytes"),
                    );
                    default_size
                }
                Ok(n) => usize::try_from(n).unwrap_or_else(|_| {
                    self.error("limits.max_message_size", format!("`{text}` is too large"));
                    default_size
                }),
                Err(message) => {
                    self.error("limits.max_message_size", message);
                    default_size
                }
            },
        };
        let startup_timeout = self.duration(
            "limits.startup_timeout",
            raw.startup_timeout.as_ref(),
            secs(15),
            true,
        );
        Limits {
            max_client_connections,
            max_message_size,
            startup_timeout,
        }
    }

    fn users(&mut self, raw: Option<Vec<RawUser>>) -> Vec<User> {
        let raw = raw.unwrap_or_default();
        if raw.is_empty() {
            self.error("users", "at least one user is required");
        }
        let mut first_index: HashMap<String, usize> = HashMap::new();
        let mut users = Vec::with_capacity(raw.len());
        for (index, user) in raw.into_iter().enumerate() {
            let key = format!("users[{index}]");
            let name = self.required(&format!("{key}.name"), user.name.as_deref());
            if let Some(name) = &name {
                if let Some(first) = first_index.get(name) {
                    let message =
                        format!("duplicate user name `{name}` (first used by users[{first}])");
                    self.error(&format!("{key}.name"), message);
                } else {
                    first_index.insert(name.clone(), index);
                }
            }
            users.push(self.user(&key, name.unwrap_or_default(), user));
        }
        users
    }

    fn user(&mut self, key: &str, name: String, raw: RawUser) -> User {
        let auth = self.choice(
            &format!("{key}.auth"),
            raw.auth.as_deref(),
            AuthMethod::ScramSha256,
            AuthMethod::ALL,
            AuthMethod::as_str,
        );
        let password_key = format!("{key}.password");
        let password = raw.password.unwrap_or_default();
        let kind = PasswordKind::of(&password);
        if password.is_empty() && auth != AuthMethod::Trust {
            self.error(
                &password_key,
                format!("is required for auth {auth} (use `auth: trust` for no password)"),
            );
        }
        match (kind, auth) {
            (PasswordKind::ScramVerifier, _) => {
                if let Err(message) = check_scram_verifier(&password) {
                    self.error(&password_key, message);
                } else if auth == AuthMethod::Md5 {
                    self.error(
                        &password_key,
                        "a SCRAM-SHA-256 verifier cannot check md5 authentication; \
                         give the plain password or an md5 hash, or use auth scram-sha-256",
                    );
                }
            }
            (PasswordKind::Md5Hash, AuthMethod::ScramSha256) => self.error(
                &password_key,
                "an md5 hash cannot check SCRAM-SHA-256 authentication; give the plain \
                 password or a SCRAM-SHA-256 verifier, or use auth md5",
            ),
            _ => {}
        }
        let server_user = match raw.server_user {
            Some(server_user) => {
                if server_user.trim().is_empty() {
                    self.error(&format!("{key}.server_user"), "must not be empty");
                }
                server_user
            }
            None => name.clone(),
        };
        let server_password = match raw.server_password {
            Some(server_password) => Some(server_password),
            None if kind != PasswordKind::Plain => {
                self.error(
                    &format!("{key}.server_password"),
                    "server_password is required when password is a SCRAM verifier or md5 hash",
                );
                None
            }
            None if password.is_empty() => None,
            None => Some(password.clone()),
        };
        let admin = self.boolean(&format!("{key}.admin"), raw.admin.as_ref(), false);
        User {
            name,
            password,
            auth,
            server_user,
            server_password,
            admin,
        }
    }

    fn pool(&mut self, raw: RawPool) -> PoolConfig {
        let mode = self.choice(
            "pool.mode",
            raw.mode.as_deref(),
            PoolMode::Transaction,
            PoolMode::ALL,
            PoolMode::as_str,
        );
        let size = self.count("pool.size", raw.size.as_ref(), 20, 1);
        let min_idle = self.count("pool.min_idle", raw.min_idle.as_ref(), 0, 0);
        if min_idle > size {
            self.error(
                "pool.min_idle",
                format!("must not exceed pool.size ({size}), found {min_idle}"),
            );
        }
        let checkout_timeout = self.duration(
            "pool.checkout_timeout",
            raw.checkout_timeout.as_ref(),
            secs(5),
            true,
        );
        let server_lifetime = self.duration(
            "pool.server_lifetime",
            raw.server_lifetime.as_ref(),
            secs(3600),
            false,
        );
        let server_idle_timeout = self.duration(
            "pool.server_idle_timeout",
            raw.server_idle_timeout.as_ref(),
            secs(600),
            false,
        );
        let client_idle_timeout = self.duration(
            "pool.client_idle_timeout",
            raw.client_idle_timeout.as_ref(),
            Duration::ZERO,
            false,
        );
        let connect_timeout = self.duration(
            "pool.connect_timeout",
            raw.connect_timeout.as_ref(),
            secs(5),
            true,
        );
        PoolConfig {
            mode,
            size,
            min_idle,
            checkout_timeout,
            server_lifetime,
            server_idle_timeout,
            client_idle_timeout: (!client_idle_timeout.is_zero()).then_some(client_idle_timeout),
            connect_timeout,
            reset_query: raw.reset_query.unwrap_or_else(|| "DISCARD ALL".to_owned()),
        }
    }

    fn servers(&mut self, raw: Option<Vec<RawServer>>) -> Vec<Server> {
        let raw = raw.unwrap_or_default();
        if raw.is_empty() {
            self.error("servers", "at least one server is required");
        }
        let mut first_index: HashMap<String, usize> = HashMap::new();
        let mut primary: Option<usize> = None;
        let mut servers = Vec::with_capacity(raw.len());
        for (index, server) in raw.into_iter().enumerate() {
            let key = format!("servers[{index}]");
            let host = self.required(&format!("{key}.host"), server.host.as_deref());
            let host = host.unwrap_or_default();
            let port = self.integer(
                &format!("{key}.port"),
                server.port.as_ref(),
                5432,
                1..=65535,
            );
            let name = match server.name {
                Some(name) if name.trim().is_empty() => {
                    self.error(&format!("{key}.name"), "must not be empty");
                    name
                }
                Some(name) => name,
                None => format!("{host}:{port}"),
            };
            if let Some(first) = first_index.get(&name) {
                let message = format!(
                    "duplicate server name `{name}` (first used by servers[{first}]); \
                     give each server a unique `name`"
                );
                self.error(&format!("{key}.name"), message);
            } else {
                first_index.insert(name.clone(), index);
            }
            let role = self.choice(
                &format!("{key}.role"),
                server.role.as_deref(),
                Role::Auto,
                Role::ALL,
                Role::as_str,
            );
            if role == Role::Primary {
                match primary {
                    Some(first) => self.error(
                        &format!("{key}.role"),
                        format!("only one server may have role primary, and servers[{first}] does"),
                    ),
                    None => primary = Some(index),
                }
            }
            let weight = self.integer(
                &format!("{key}.weight"),
                server.weight.as_ref(),
                1,
                1..=u64::from(u32::MAX),
            );
            let max_connections = self.count(
                &format!("{key}.max_connections"),
                server.max_connections.as_ref(),
                100,
                1,
            );
            let sslmode = self.choice(
                &format!("{key}.sslmode"),
                server.sslmode.as_deref(),
                SslMode::Prefer,
                SslMode::ALL,
                SslMode::as_str,
            );
            let sslrootcert = match server.sslrootcert {
                Some(p) if p.trim().is_empty() => {
                    self.error(&format!("{key}.sslrootcert"), "must not be empty");
                    None
                }
                Some(p) => Some(std::path::PathBuf::from(p)),
                None => None,
            };
            if matches!(sslmode, SslMode::VerifyCa | SslMode::VerifyFull) && sslrootcert.is_none() {
                self.error(
                    &format!("{key}.sslmode"),
                    format!(
                        "`{sslmode}` checks the server's certificate: set `sslrootcert` to a PEM file with the CA certificates"
                    ),
                );
            }
            servers.push(Server {
                name,
                host,
                port: port as u16,
                role,
                weight: weight as u32,
                max_connections,
                sslmode,
                sslrootcert,
            });
        }
        servers
    }
}

/// Checks a `host:port` listen address; port 0 (any free port) is allowed.
fn check_address(text: &str) -> Result<(), String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "expected host:port (e.g. 127.0.0.1:6432), found `{text}`"
        ));
    };
    if host.is_empty() {
        return Err(format!(
            "missing host in `{text}` (e.g. 127.0.0.1{text} or 0.0.0.0{text})"
        ));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "write IPv6 addresses in brackets (e.g. [::1]:6432), found `{text}`"
        ));
    }
    let valid_port =
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    if !valid_port {
        return Err(format!(
            "invalid port `{port}` in `{text}`: expected 0 to 65535"
        ));
    }
    Ok(())
}
