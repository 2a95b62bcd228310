//! YAML spellings of the enums, and a redacted, YAML-like `Display` for [`Config`].
//!
//! The summary is what `SHOW CONFIG` and startup logs may print: every setting with its
//! effective value (defaults filled in), and never a password or server password.

use std::fmt;

use crate::units::{format_duration, format_size};
use crate::{
    AuthMethod, Balance, Config, Consistency, LogFormat, PoolMode, PrimaryReads, Role, RuleTarget,
    SslMode, StatementKind, TlsMode, UnknownFunctions,
};

macro_rules! spelled {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order the documentation lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The spelling used in the YAML file, in metrics labels and in logs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled!(LogFormat { Text => "text", Json => "json" });
spelled!(TlsMode { Prefer => "prefer", Require => "require" });
spelled!(SslMode {
    Disable => "disable",
    Prefer => "prefer",
    Require => "require",
    VerifyCa => "verify-ca",
    VerifyFull => "verify-full",
});
spelled!(AuthMethod { ScramSha256 => "scram-sha-256", Md5 => "md5", Trust => "trust" });
spelled!(PoolMode { Transaction => "transaction", Session => "session" });
spelled!(Role { Primary => "primary", Replica => "replica", Auto => "auto" });
spelled!(PrimaryReads { Never => "never", Fallback => "fallback", Always => "always" });
spelled!(Balance {
    RoundRobin => "round_robin",
    LeastConnections => "least_connections",
    WeightedLeastConnections => "weighted_least_connections",
});
spelled!(UnknownFunctions { Primary => "primary", Replica => "replica" });
spelled!(RuleTarget { Primary => "primary", Replica => "replica" });
spelled!(StatementKind {
    Read => "read",
    Write => "write",
    TxnBegin => "txn_begin",
    TxnEnd => "txn_end",
    Savepoint => "savepoint",
    SessionSet => "session_set",
    Cursor => "cursor",
    Unknown => "unknown",
});

impl fmt::Display for Consistency {
    /// `eventual`, `session` or `{ primary_after_write: 2s }`, as written in the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::Eventual => f.write_str("eventual"),
            Consistency::Session => f.write_str("session"),
            Consistency::PrimaryAfterWrite(d) => {
                write!(f, "{{ primary_after_write: {} }}", format_duration(*d))
            }
        }
    }
}

/// Placeholder printed instead of a secret.
const REDACTED: &str = "<redacted>";

impl fmt::Display for Config {
    /// Prints the effective configuration as YAML-like text with secrets replaced by
    /// `<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            writeln!(f, "# {}", source.display())?;
        }
        writeln!(f, "listen: {}", self.listen)?;
        writeln!(f, "admin: {{ listen: {} }}", self.admin.listen)?;
        match &self.tls {
            Some(t) => writeln!(
                f,
                "tls: {{ cert: {:?}, key: {:?}, mode: {} }}",
                t.cert.display().to_string(),
                t.key.display().to_string(),
                t.mode
            )?,
            None => writeln!(f, "tls: none")?,
        }
        writeln!(
            f,
            "log: {{ format: {}, level: {:?} }}",
            self.log.format, self.log.level
        )?;
        let l = &self.limits;
        writeln!(
            f,
            "limits: {{ max_client_connections: {}, max_message_size: {}, startup_timeout: {} }}",
            l.max_client_connections,
            format_size(l.max_message_size as u64),
            format_duration(l.startup_timeout),
        )?;
        writeln!(
            f,
            "shutdown_timeout: {}",
            format_duration(self.shutdown_timeout)
        )?;
        match self.workers {
            Some(n) => writeln!(f, "workers: {n}")?,
            None => writeln!(f, "workers: auto")?,
        }
        writeln!(f, "users:")?;
        for u in &self.users {
            let server_password = if u.server_password.is_some() {
                REDACTED
            } else {
                "none"
            };
            let password = if u.password.is_empty() {
                "none"
            } else {
                REDACTED
            };
            writeln!(
                f,
                "  - {{ name: {:?}, password: {password}, auth: {}, server_user: {:?}, \
                 server_password: {server_password}, admin: {} }}",
                u.name, u.auth, u.server_user, u.admin,
            )?;
        }
        let p = &self.pool;
        let client_idle = p
            .client_idle_timeout
            .map_or_else(|| "0".to_owned(), format_duration);
        writeln!(
            f,
            "pool: {{ mode: {}, size: {}, min_idle: {}, checkout_timeout: {}, \
             server_lifetime: {}, server_idle_timeout: {}, client_idle_timeout: {client_idle}, \
             connect_timeout: {}, reset_query: {:?} }}",
            p.mode,
            p.size,
            p.min_idle,
            format_duration(p.checkout_timeout),
            format_duration(p.server_lifetime),
            format_duration(p.server_idle_timeout),
            format_duration(p.connect_timeout),
            p.reset_query,
        )?;
        writeln!(f, "servers:")?;
        for s in &self.servers {
            writeln!(
                f,
                "  - {{ name: {:?}, host: {:?}, port: {}, role: {}, weight: {}, \
                 max_connections: {}, sslmode: {}{} }}",
                s.name,
                s.host,
                s.port,
                s.role,
                s.weight,
                s.max_connections,
                s.sslmode,
                s.sslrootcert.as_ref().map_or_else(String::new, |p| format!(
                    ", sslrootcert: {:?}",
                    p.display().to_string()
                )),
            )?;
        }
        self.fmt_routing(f)
    }
}

impl Config {
    /// The routing, health, lag and failover part of the summary.
    fn fmt_routing(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.routing;
        writeln!(f, "primary_reads: {}", r.primary_reads)?;
        writeln!(f, "balance: {}", r.balance)?;
        writeln!(f, "consistency: {}", r.consistency)?;
        writeln!(f, "causal_wait: {}", format_duration(r.causal_wait))?;
        writeln!(
            f,
            "functions: {{ write: {:?}, read: {:?}, unknown: {} }}",
            r.functions.write, r.functions.read, r.functions.unknown
        )?;
        writeln!(f, "rules:{}", if r.rules.is_empty() { " []" } else { "" })?;
        for rule in &r.rules {
            let m = &rule.when;
            let mut parts = vec![format!("name: {:?}", rule.name)];
            for (key, values) in [
                ("user", &m.users),
                ("database", &m.databases),
                ("application_name", &m.application_names),
                ("tables", &m.tables),
                ("functions", &m.functions),
                ("fingerprint", &m.fingerprints),
            ] {
                if !values.is_empty() {
                    parts.push(format!("{key}: {values:?}"));
                }
            }
            if !m.kinds.is_empty() {
                let kinds: Vec<&str> = m.kinds.iter().map(|k| k.as_str()).collect();
                parts.push(format!("kind: [{}]", kinds.join(", ")));
            }
            if let Some(regex) = &m.regex {
                parts.push(format!("regex: {regex:?}"));
            }
            if let Some(target) = rule.target {
                parts.push(format!("target: {target}"));
            }
            if let Some(consistency) = rule.consistency {
                parts.push(format!("consistency: {consistency}"));
            }
            if let Some(block) = &rule.block {
                parts.push(format!("block: {block:?}"));
            }
            writeln!(f, "  - {{ {} }}", parts.join(", "))?;
        }
        let h = &self.health;
        let password = if h.password.is_some() {
            REDACTED
        } else {
            "none"
        };
        writeln!(
            f,
            "health: {{ interval: {}, timeout: {}, rise: {}, user: {:?}, password: {password}, \
             database: {:?} }}",
            format_duration(h.interval),
            format_duration(h.timeout),
            h.rise,
            h.user,
            h.database,
        )?;
        writeln!(
            f,
            "lag: {{ max_bytes: {}, max_delay: {} }}",
            format_size(self.lag.max_bytes),
            format_duration(self.lag.max_delay)
        )?;
        writeln!(
            f,
            "failover: {{ write_wait: {} }}",
            format_duration(self.failover.write_wait)
        )
    }
}
