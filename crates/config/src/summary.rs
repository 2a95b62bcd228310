//! YAML spellings of the enums, and a redacted, YAML-like `Display` for [`Config`].
//!
//! The summary is what `SHOW CONFIG` and startup logs may print: every setting with its
//! effective value (defaults filled in), and never a password or server password.

use std::fmt;

use crate::units::{format_duration, format_size};
use crate::{AuthMethod, Config, LogFormat, PoolMode, Role};

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
spelled!(AuthMethod { ScramSha256 => "scram-sha-256", Md5 => "md5", Trust => "trust" });
spelled!(PoolMode { Transaction => "transaction", Session => "session" });
spelled!(Role { Primary => "primary", Replica => "replica", Auto => "auto" });

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
                 max_connections: {} }}",
                s.name, s.host, s.port, s.role, s.weight, s.max_connections,
            )?;
        }
        Ok(())
    }
}
