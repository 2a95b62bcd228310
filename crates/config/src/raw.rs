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
    /// TLS towards clients.
    pub(crate) tls: Option<RawTls>,
    /// Logging settings.
    pub(crate) log: Option<RawLog>,
    /// Client-side limits.
    pub(crate) limits: Option<RawLimits>,
    /// Duration.
    pub(crate) shutdown_timeout: Option<Scalar>,
    /// `auto` or a whole number of event-loop threads.
    pub(crate) workers: Option<Scalar>,
    /// Users; at least one is required.
    pub(crate) users: Option<Vec<RawUser>>,
    /// Pool settings.
    pub(crate) pool: Option<RawPool>,
    /// Servers; at least one is required.
    pub(crate) servers: Option<Vec<RawServer>>,
    /// `never`, `fallback` or `always`.
    pub(crate) primary_reads: Option<String>,
    /// `round_robin`, `least_connections` or `weighted_least_connections`.
    pub(crate) balance: Option<String>,
    /// `eventual`, `session` or `{ primary_after_write: DURATION }`.
    pub(crate) consistency: Option<RawConsistency>,
    /// Duration.
    pub(crate) causal_wait: Option<Scalar>,
    /// Function lists.
    pub(crate) functions: Option<RawFunctions>,
    /// Routing rules, in order.
    pub(crate) rules: Option<Vec<RawRule>>,
    /// Health checker settings.
    pub(crate) health: Option<RawHealth>,
    /// Replica lag limits.
    pub(crate) lag: Option<RawLag>,
    /// Failover settings.
    pub(crate) failover: Option<RawFailover>,
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

/// `tls:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of TLS settings")]
pub(crate) struct RawTls {
    /// Path of the PEM certificate chain.
    pub(crate) cert: Option<String>,
    /// Path of the PEM private key.
    pub(crate) key: Option<String>,
    /// `prefer` or `require`.
    pub(crate) mode: Option<String>,
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
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub(crate) sslmode: Option<String>,
    /// Path of the PEM file with the CA certificates to verify the server with.
    pub(crate) sslrootcert: Option<String>,
}

/// `functions:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping of function lists"
)]
pub(crate) struct RawFunctions {
    /// Function names (or `prefix*`) that write.
    pub(crate) write: Option<OneOrMany>,
    /// Function names (or `prefix*`) that only read.
    pub(crate) read: Option<OneOrMany>,
    /// `primary` or `replica`.
    pub(crate) unknown: Option<String>,
}

/// One item of `rules:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping describing a rule"
)]
pub(crate) struct RawRule {
    /// Name for logs and metrics; defaults to `rules[N]`.
    pub(crate) name: Option<String>,
    /// Conditions; absent matches everything.
    #[serde(rename = "match")]
    pub(crate) when: Option<RawMatch>,
    /// `primary` or `replica`.
    pub(crate) target: Option<String>,
    /// Same values as the global `consistency`.
    pub(crate) consistency: Option<RawConsistency>,
    /// Refuse matching statements with this message.
    pub(crate) block: Option<String>,
}

/// `rules[N].match:`. Each condition is a scalar or a list of scalars.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping of rule conditions"
)]
pub(crate) struct RawMatch {
    /// Client user names.
    pub(crate) user: Option<OneOrMany>,
    /// Database names.
    pub(crate) database: Option<OneOrMany>,
    /// `application_name` values.
    pub(crate) application_name: Option<OneOrMany>,
    /// Statement kinds.
    pub(crate) kind: Option<OneOrMany>,
    /// Table names.
    pub(crate) tables: Option<OneOrMany>,
    /// Function names.
    pub(crate) functions: Option<OneOrMany>,
    /// Query fingerprints (hex).
    pub(crate) fingerprint: Option<OneOrMany>,
    /// A regular expression searched in the SQL text.
    pub(crate) regex: Option<String>,
}

/// `health:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping of health check settings"
)]
pub(crate) struct RawHealth {
    /// Duration.
    pub(crate) interval: Option<Scalar>,
    /// Duration.
    pub(crate) timeout: Option<Scalar>,
    /// Integer.
    pub(crate) rise: Option<Scalar>,
    /// Role the checker logs in as.
    pub(crate) user: Option<String>,
    /// Its password.
    pub(crate) password: Option<String>,
    /// Database the checker connects to.
    pub(crate) database: Option<String>,
}

/// `lag:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of lag limits")]
pub(crate) struct RawLag {
    /// Size.
    pub(crate) max_bytes: Option<Scalar>,
    /// Duration.
    pub(crate) max_delay: Option<Scalar>,
}

/// `failover:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping of failover settings"
)]
pub(crate) struct RawFailover {
    /// Duration.
    pub(crate) write_wait: Option<Scalar>,
}

/// `consistency:` as written: a name, or a mapping for the time-window form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RawConsistency {
    /// `eventual`, `session` (or anything else, refused during validation).
    Name(String),
    /// `{ primary_after_write: DURATION }`.
    Window(RawWindow),
}

/// The mapping form of `consistency:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping with `primary_after_write`"
)]
pub(crate) struct RawWindow {
    /// Duration.
    pub(crate) primary_after_write: Option<Scalar>,
}

impl<'de> Deserialize<'de> for RawConsistency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ConsistencyVisitor)
    }
}

struct ConsistencyVisitor;

impl<'de> Visitor<'de> for ConsistencyVisitor {
    type Value = RawConsistency;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`eventual`, `session` or a mapping `{ primary_after_write: DURATION }`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawConsistency, E> {
        Ok(RawConsistency::Name(v.to_owned()))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawConsistency, A::Error> {
        RawWindow::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(RawConsistency::Window)
    }
}

/// A scalar or a list of scalars, each kept as text (`user: app` or `user: [app, other]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OneOrMany {
    /// The values, in order.
    pub(crate) items: Vec<String>,
    /// Whether they were written as a list (error keys then name the item: `kind[1]`).
    pub(crate) list: bool,
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

struct OneOrManyVisitor;

impl OneOrManyVisitor {
    fn one<E>(text: String) -> Result<OneOrMany, E> {
        Ok(OneOrMany {
            items: vec![text],
            list: false,
        })
    }
}

impl<'de> Visitor<'de> for OneOrManyVisitor {
    type Value = OneOrMany;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or a list of values")
    }

    // A lone scalar arrives parsed (deserialize_any must tell a scalar from a list), so a
    // number is turned back into its decimal text; list items are read verbatim.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<OneOrMany, E> {
        Self::one(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneOrMany, E> {
        Self::one(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<OneOrMany, E> {
        Self::one(v.to_string())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<OneOrMany, E> {
        Self::one(v.to_string())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<OneOrMany, E> {
        Self::one(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OneOrMany, E> {
        Self::one(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
        Self::one(v.to_owned())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
        let mut items = Vec::new();
        while let Some(Scalar(text)) = seq.next_element()? {
            items.push(text);
        }
        Ok(OneOrMany { items, list: true })
    }
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
