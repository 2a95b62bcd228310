//! The YAML schema as serde structs: the "raw" half of raw → validated.
//!
//! Like ripgrep's `LowArgs`, these types only mirror what the user wrote.
//! Every field is optional and no default is applied here; [`crate::validate`] applies the
//! defaults and checks the rules, so it can report every problem at once.
//!
//! Unknown keys are refused everywhere (`deny_unknown_fields`): a typo such as `sise: 5`
//! must not silently fall back to a default.
//! Leaf values other than free text are kept as [`Scalar`] text and parsed during
//! validation, for two reasons: a bad value in one place does not hide a bad value in
//! another, and `port: ${PORT}` (which interpolation turns into a quoted string) still works.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping of pgsplit settings"
)]
pub(crate) struct RawConfig {
    /// `host:port` for clients.
    pub(crate) listen: Option<String>,
    /// HTTP admin settings.
    pub(crate) admin: Option<RawAdmin>,
    /// Logging settings.
    pub(crate) log: Option<RawLog>,
    /// Client-side limits.
    pub(crate) limits: Option<RawLimits>,
    /// Duration.
    pub(crate) shutdown_timeout: Option<Scalar>,
    /// Users; at least one is required.
    pub(crate) users: Option<Vec<RawUser>>,
    /// Pool settings.
    pub(crate) pool: Option<RawPool>,
    /// Servers; at least one is required.
    pub(crate) servers: Option<Vec<RawServer>>,
}

/// `admin:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping of admin settings"
)]
pub(crate) struct RawAdmin {
    /// `host:port` of the HTTP server.
    pub(crate) listen: Option<String>,
}

/// `log:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of log settings")]
pub(crate) struct RawLog {
    /// `text` or `json`.
    pub(crate) format: Option<String>,
    /// A tracing env-filter directive.
    pub(crate) level: Option<String>,
}

/// `limits:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of limits")]
pub(crate) struct RawLimits {
    /// Integer.
    pub(crate) max_client_connections: Option<Scalar>,
    /// Size.
    pub(crate) max_message_size: Option<Scalar>,
    /// Duration.
    pub(crate) startup_timeout: Option<Scalar>,
}

/// One item of `users:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping describing a user"
)]
pub(crate) struct RawUser {
    /// Login name.
    pub(crate) name: Option<String>,
    /// Plain text, `SCRAM-SHA-256$...` verifier or `md5` hash.
    pub(crate) password: Option<String>,
    /// `scram-sha-256`, `md5` or `trust`.
    pub(crate) auth: Option<String>,
    /// Role name on the servers.
    pub(crate) server_user: Option<String>,
    /// Password on the servers.
    pub(crate) server_password: Option<String>,
    /// Boolean.
    pub(crate) admin: Option<Scalar>,
}

/// `pool:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of pool settings")]
pub(crate) struct RawPool {
    /// `transaction` or `session`.
    pub(crate) mode: Option<String>,
    /// Integer.
    pub(crate) size: Option<Scalar>,
    /// Integer.
    pub(crate) min_idle: Option<Scalar>,
    /// Duration. `query_wait_timeout` (PgBouncer's name for the same limit) is accepted too.
    #[serde(alias = "query_wait_timeout")]
    pub(crate) checkout_timeout: Option<Scalar>,
    /// Duration.
    pub(crate) server_lifetime: Option<Scalar>,
    /// Duration.
    pub(crate) server_idle_timeout: Option<Scalar>,
    /// Duration; 0 means never.
    pub(crate) client_idle_timeout: Option<Scalar>,
    /// Duration.
    pub(crate) connect_timeout: Option<Scalar>,
    /// SQL text.
    pub(crate) reset_query: Option<String>,
}

/// One item of `servers:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping describing a server"
)]
pub(crate) struct RawServer {
    /// Unique name; defaults to `host:port`.
    pub(crate) name: Option<String>,
    /// Host name or address.
    pub(crate) host: Option<String>,
    /// Integer.
    pub(crate) port: Option<Scalar>,
    /// `primary`, `replica` or `auto`.
    pub(crate) role: Option<String>,
    /// Integer.
    pub(crate) weight: Option<Scalar>,
    /// Integer.
    pub(crate) max_connections: Option<Scalar>,
}

/// A number, boolean or string kept as text, to be parsed during validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scalar(pub(crate) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde_yaml hands any scalar to `deserialize_str` as the text that was written, so
        // `0x10`, `1.50` or `yes` reach validation verbatim instead of being reinterpreted.
        deserializer.deserialize_str(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a boolean or a string")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_owned()))
    }
}

/// Deserializes the (already interpolated) text; an empty document is an empty config.
pub(crate) fn from_yaml(
    text: &str,
) -> Result<RawConfig, serde_path_to_error::Error<serde_yaml::Error>> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let raw: Option<RawConfig> = serde_path_to_error::deserialize(deserializer)?;
    Ok(raw.unwrap_or_default())
}
