//! Validation of the routing keys (`primary_reads` ... `rules`) and of `health`, `lag` and `failover`.
//!
//! Same rules as the rest of [`super`]: every problem is recorded on its key path and
//! checking carries on with a default, so one pass reports everything. A rule's regex is
//! compiled here, with the same `regex::Regex::new` the router uses, so a config that
//! passes `pgsplit check` cannot fail to build its routing.

use std::collections::HashMap;
use std::time::Duration;

use super::{Checker, secs};
use crate::raw::{
    OneOrMany, RawConfig, RawConsistency, RawFailover, RawFunctions, RawHealth, RawLag, RawMatch,
    RawRule,
};
use crate::units::format_duration;
use crate::{
    Balance, Consistency, FailoverConfig, FunctionsConfig, HealthConfig, LagConfig, PrimaryReads,
    RoutingConfig, RuleConfig, RuleMatch, RuleTarget, StatementKind, UnknownFunctions, User,
};

/// The smallest `health.interval`: faster probing only loads the servers.
const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(100);
/// Default `lag.max_bytes`.
const DEFAULT_LAG_BYTES: u64 = 16 * 1024 * 1024;

impl Checker<'_> {
    /// The routing keys of the top level of the file.
    pub(super) fn routing(&mut self, raw: &RawConfig) -> RoutingConfig {
        let primary_reads = self.choice(
            "primary_reads",
            raw.primary_reads.as_deref(),
            PrimaryReads::Fallback,
            PrimaryReads::ALL,
            PrimaryReads::as_str,
        );
        let balance = self.choice(
            "balance",
            raw.balance.as_deref(),
            Balance::LeastConnections,
            Balance::ALL,
            Balance::as_str,
        );
        let consistency = match &raw.consistency {
            None => Consistency::Session,
            Some(value) => self
                .consistency("consistency", value)
                .unwrap_or(Consistency::Session),
        };
        let causal_wait = self.duration(
            "causal_wait",
            raw.causal_wait.as_ref(),
            Duration::ZERO,
            false,
        );
        let functions = self.functions(raw.functions.clone().unwrap_or_default());
        let rules = self.rules(raw.rules.as_deref().unwrap_or_default());
        RoutingConfig {
            primary_reads,
            balance,
            consistency,
            causal_wait,
            functions,
            rules,
        }
    }

    /// A consistency value, or `None` (with an error recorded) when it is invalid.
    fn consistency(&mut self, key: &str, raw: &RawConsistency) -> Option<Consistency> {
        match raw {
            RawConsistency::Name(text) => match text.trim() {
                "eventual" => Some(Consistency::Eventual),
                "session" => Some(Consistency::Session),
                "primary_after_write" => {
                    self.error(
                        key,
                        "primary_after_write needs a duration: write \
                         `{ primary_after_write: 2s }`",
                    );
                    None
                }
                other => {
                    self.error(
                        key,
                        format!(
                            "unknown value `{other}`, expected `eventual`, `session` or \
                             `{{ primary_after_write: DURATION }}`"
                        ),
                    );
                    None
                }
            },
            RawConsistency::Window(window) => {
                let window_key = format!("{key}.primary_after_write");
                let Some(value) = &window.primary_after_write else {
                    self.error(&window_key, "is required");
                    return None;
                };
                let errors = self.errors.len();
                let d = self.duration(&window_key, Some(value), Duration::ZERO, true);
                (self.errors.len() == errors).then_some(Consistency::PrimaryAfterWrite(d))
            }
        }
    }

    fn functions(&mut self, raw: RawFunctions) -> FunctionsConfig {
        let write = self.function_list("functions.write", raw.write);
        let read = self.function_list("functions.read", raw.read);
        let unknown = self.choice(
            "functions.unknown",
            raw.unknown.as_deref(),
            UnknownFunctions::Primary,
            UnknownFunctions::ALL,
            UnknownFunctions::as_str,
        );
        FunctionsConfig {
            write,
            read,
            unknown,
        }
    }

    fn function_list(&mut self, key: &str, raw: Option<OneOrMany>) -> Vec<String> {
        let raw = raw.unwrap_or_default();
        let mut names = Vec::with_capacity(raw.items.len());
        for (index, text) in raw.items.iter().enumerate() {
            match check_function_name(text) {
                Ok(name) => names.push(name),
                Err(message) => self.error(&item_key(key, &raw, index), message),
            }
        }
        names
    }

    fn rules(&mut self, raw: &[RawRule]) -> Vec<RuleConfig> {
        let mut first_index: HashMap<String, usize> = HashMap::new();
        let mut rules = Vec::with_capacity(raw.len());
        for (index, rule) in raw.iter().enumerate() {
            let key = format!("rules[{index}]");
            let name = match &rule.name {
                None => key.clone(),
                Some(name) if name.trim().is_empty() => {
                    self.error(&format!("{key}.name"), "must not be empty");
                    key.clone()
                }
                Some(name) => name.clone(),
            };
            if let Some(first) = first_index.get(&name) {
                self.error(
                    &format!("{key}.name"),
                    format!("duplicate rule name `{name}` (first used by rules[{first}])"),
                );
            } else {
                first_index.insert(name.clone(), index);
            }
            let when = self.rule_match(&format!("{key}.match"), rule.when.clone());
            let target = rule.target.as_deref().map(|text| {
                self.choice(
                    &format!("{key}.target"),
                    Some(text),
                    RuleTarget::Primary,
                    RuleTarget::ALL,
                    RuleTarget::as_str,
                )
            });
            let consistency = rule
                .consistency
                .as_ref()
                .and_then(|c| self.consistency(&format!("{key}.consistency"), c));
            let block = rule.block.clone();
            if block.as_ref().is_some_and(|b| b.trim().is_empty()) {
                self.error(&format!("{key}.block"), "must not be empty");
            }
            match (&rule.target, &rule.consistency, &rule.block) {
                (None, None, None) => self.error(
                    &key,
                    "a rule needs an action: `target`, `consistency` or `block`",
                ),
                (Some(_), _, Some(_)) => self.error(
                    &format!("{key}.block"),
                    "`block` cannot be combined with `target`: a blocked statement goes nowhere",
                ),
                (None, Some(_), Some(_)) => self.error(
                    &format!("{key}.block"),
                    "`block` cannot be combined with `consistency`: a blocked statement is \
                     never read",
                ),
                _ => {}
            }
            rules.push(RuleConfig {
                name,
                when,
                target,
                consistency,
                block,
            });
        }
        rules
    }

    fn rule_match(&mut self, key: &str, raw: Option<RawMatch>) -> RuleMatch {
        let Some(raw) = raw else {
            return RuleMatch::default();
        };
        let users = self.names(&format!("{key}.user"), raw.user, false);
        let databases = self.names(&format!("{key}.database"), raw.database, false);
        let application_names = self.names(
            &format!("{key}.application_name"),
            raw.application_name,
            true,
        );
        let tables = self.names(&format!("{key}.tables"), raw.tables, false);
        let functions = self.names(&format!("{key}.functions"), raw.functions, false);
        let kind_key = format!("{key}.kind");
        let raw_kinds = raw.kind.unwrap_or_default();
        let mut kinds = Vec::with_capacity(raw_kinds.items.len());
        for (index, text) in raw_kinds.items.iter().enumerate() {
            let item = item_key(&kind_key, &raw_kinds, index);
            let errors = self.errors.len();
            let kind = self.choice(
                &item,
                Some(text.trim()),
                StatementKind::Unknown,
                StatementKind::ALL,
                StatementKind::as_str,
            );
            if self.errors.len() == errors {
                kinds.push(kind);
            }
        }
        let fingerprint_key = format!("{key}.fingerprint");
        let raw_fingerprints = raw.fingerprint.unwrap_or_default();
        let mut fingerprints = Vec::with_capacity(raw_fingerprints.items.len());
        for (index, text) in raw_fingerprints.items.iter().enumerate() {
            let hex = text.trim();
            if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                fingerprints.push(hex.to_ascii_lowercase());
            } else {
                self.error(
                    &item_key(&fingerprint_key, &raw_fingerprints, index),
                    format!(
                        "expected a query fingerprint of 16 hexadecimal digits, found `{text}` \
                         (quote it if YAML reads it as a number)"
                    ),
                );
            }
        }
        let regex = raw
            .regex
            .and_then(|pattern| match regex::Regex::new(&pattern) {
                Ok(_) => Some(pattern),
                Err(error) => {
                    self.error(
                        &format!("{key}.regex"),
                        format!("invalid regex: {}", regex_message(&error)),
                    );
                    None
                }
            });
        RuleMatch {
            users,
            databases,
            application_names,
            kinds,
            tables,
            functions,
            fingerprints,
            regex,
        }
    }

    /// A list of exact names; empty names are refused unless `allow_empty`.
    fn names(&mut self, key: &str, raw: Option<OneOrMany>, allow_empty: bool) -> Vec<String> {
        let raw = raw.unwrap_or_default();
        for (index, text) in raw.items.iter().enumerate() {
            if !allow_empty && text.trim().is_empty() {
                self.error(&item_key(key, &raw, index), "must not be empty");
            }
        }
        raw.items
    }

    /// `health:`; its user and password default to the first user's server credentials.
    pub(super) fn health(&mut self, raw: RawHealth, users: &[User]) -> HealthConfig {
        let interval = self.duration(
            "health.interval",
            raw.interval.as_ref(),
            Duration::from_millis(500),
            false,
        );
        let interval = if interval < MIN_HEALTH_INTERVAL {
            self.error(
                "health.interval",
                format!(
                    "must be at least {}, found {}",
                    format_duration(MIN_HEALTH_INTERVAL),
                    format_duration(interval)
                ),
            );
            MIN_HEALTH_INTERVAL
        } else {
            interval
        };
        let timeout = self.duration("health.timeout", raw.timeout.as_ref(), secs(1), true);
        let rise = self.integer("health.rise", raw.rise.as_ref(), 2, 1..=u64::from(u32::MAX));
        let user = match raw.user {
            Some(user) => {
                if user.trim().is_empty() {
                    self.error("health.user", "must not be empty");
                }
                user
            }
            // Admin users often exist only on pgsplit (for the console), so prefer a user
            // that is not one.
            None => users
                .iter()
                .find(|u| !u.admin)
                .or(users.first())
                .map(|u| u.server_user.clone())
                .unwrap_or_default(),
        };
        let password = raw.password.or_else(|| {
            users
                .iter()
                .find(|u| u.server_user == user)
                .and_then(|u| u.server_password.clone())
        });
        let database = match raw.database {
            Some(database) => {
                if database.trim().is_empty() {
                    self.error("health.database", "must not be empty");
                }
                database
            }
            None => "postgres".to_owned(),
        };
        HealthConfig {
            interval,
            timeout,
            rise: rise as u32,
            user,
            password,
            database,
        }
    }

    pub(super) fn lag(&mut self, raw: RawLag) -> LagConfig {
        let max_bytes = match &raw.max_bytes {
            None => DEFAULT_LAG_BYTES,
            Some(scalar) => match crate::units::parse_size(&scalar.0) {
                Ok(0) => {
                    self.error("lag.max_bytes", "must be greater than zero");
                    DEFAULT_LAG_BYTES
                }
                Ok(n) => n,
                Err(message) => {
                    self.error("lag.max_bytes", message);
                    DEFAULT_LAG_BYTES
                }
            },
        };
        let max_delay = self.duration("lag.max_delay", raw.max_delay.as_ref(), secs(5), true);
        LagConfig {
            max_bytes,
            max_delay,
        }
    }

    pub(super) fn failover(&mut self, raw: RawFailover) -> FailoverConfig {
        FailoverConfig {
            write_wait: self.duration(
                "failover.write_wait",
                raw.write_wait.as_ref(),
                secs(10),
                false,
            ),
        }
    }
}

/// The key of item `index` of a value that may be a list: `key[index]`, or `key` itself
/// when a single scalar was written.
fn item_key(key: &str, raw: &OneOrMany, index: usize) -> String {
    if raw.list {
        format!("{key}[{index}]")
    } else {
        key.to_owned()
    }
}

/// Checks a `functions.write` / `functions.read` entry: a lower-case name, optionally
/// `schema.`-qualified, optionally ending in `*` (a prefix). Returns it trimmed.
fn check_function_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.chars().any(char::is_uppercase) {
        return Err(format!(
            "function names are lower case (PostgreSQL folds unquoted names), write `{}`",
            name.to_lowercase()
        ));
    }
    let (body, prefix) = match name.strip_suffix('*') {
        Some(body) => (body, true),
        None => (name, false),
    };
    if prefix && body.is_empty() {
        return Err("`*` alone would match every function; list names or prefixes".to_owned());
    }
    let parts: Vec<&str> = body.split('.').collect();
    let part_ok = |part: &str, last: bool| {
        let mut chars = part.chars();
        match chars.next() {
            None => last && prefix,
            Some(first) => {
                (first.is_ascii_lowercase() || first == '_' || !first.is_ascii())
                    && chars.all(|c| {
                        c.is_ascii_lowercase()
                            || c.is_ascii_digit()
                            || c == '_'
                            || c == '$'
                            || !c.is_ascii()
                    })
            }
        }
    };
    let valid = parts.len() <= 2
        && parts
            .iter()
            .enumerate()
            .all(|(i, part)| part_ok(part, i + 1 == parts.len() && parts.len() == 2));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "invalid function name `{name}`: expected `name` or `schema.name` (letters, digits, \
             `_`), optionally ending in `*` to match a prefix"
        ))
    }
}

/// The regex crate's message on one line: its syntax errors span several lines (the
/// pattern, a caret, then `error: ...`); the last part is what matters.
fn regex_message(error: &regex::Error) -> String {
    let text = error.to_string();
    match text.rfind("error: ") {
        Some(index) => text[index + "error: ".len()..].trim().to_owned(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}
