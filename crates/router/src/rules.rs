//! YAML `rules`: match a unit of SQL and its session, then force a target, set the consistency or block.
//!
//! Every condition that is set must hold (AND); a list condition holds when any of its
//! entries does (OR); an empty list or `None` matches anything. Rules are tried in order
//! and the first match wins. Building rules from YAML (and compiling the regex once, at
//! load) is the config's and the caller's job; this module only evaluates them.
//!
//! A rule's `target: replica` applies to reads only: a write, an unparsed unit or any
//! other non-read still goes to the primary (see the crate's routing invariant).

use std::sync::Arc;

use regex::Regex;

use crate::policy::Consistency;
use crate::route::{SessionView, Unit};

/// A target a rule may force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    /// The primary.
    Primary,
    /// A replica (reads only; ignored for anything else).
    Replica,
}

/// What a rule matches. Empty lists and `None` match anything.
#[derive(Clone, Debug, Default)]
pub struct Match {
    /// Client user names (exact).
    pub users: Vec<String>,
    /// Database names (exact).
    pub databases: Vec<String>,
    /// `application_name` values (exact).
    pub application_names: Vec<String>,
    /// Statement kinds, as `Class::as_str` spells them (`read`, `write`, `txn_begin`,
    /// `txn_end`, `savepoint`, `session_set`, `cursor`, `unknown`).
    pub kinds: Vec<String>,
    /// Tables named anywhere in the unit. `users` matches `users` and `public.users`;
    /// `public.users` matches only `public.users`.
    pub tables: Vec<String>,
    /// Functions called anywhere in the unit, matched like tables.
    pub functions: Vec<String>,
    /// Query fingerprints (exact string compare with the unit's fingerprint).
    pub fingerprints: Vec<String>,
    /// A regular expression searched in the SQL text.
    pub regex: Option<Regex>,
}

/// What a matching rule does. `block` wins over the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Action {
    /// Force a target.
    pub target: Option<RuleTarget>,
    /// Use this consistency for reads.
    pub consistency: Option<Consistency>,
    /// Refuse the unit with this message.
    pub block: Option<Arc<str>>,
}

/// One entry of `rules`.
#[derive(Clone, Debug, Default)]
pub struct Rule {
    /// A name for logs, metrics and `EXPLAIN ROUTE` (for example `rules[3]`).
    pub name: String,
    /// The conditions.
    pub when: Match,
    /// The action.
    pub then: Action,
}

impl Match {
    /// Whether every set condition holds for this unit in this session.
    pub fn matches(&self, unit: &Unit<'_>, session: &SessionView) -> bool {
        let class = unit.class;
        any_eq(&self.users, &session.user)
            && any_eq(&self.databases, &session.database)
            && any_eq(&self.application_names, &session.application_name)
            && any_eq(&self.kinds, class.class.as_str())
            && names_match(&self.tables, &class.tables)
            && names_match(&self.functions, &class.functions)
            && (self.fingerprints.is_empty()
                || unit
                    .fingerprint
                    .is_some_and(|f| self.fingerprints.iter().any(|w| w == f)))
            && self.regex.as_ref().is_none_or(|re| re.is_match(unit.sql))
    }
}

/// The first rule matching, with its index.
pub fn first_match<'r>(
    rules: &'r [Rule],
    unit: &Unit<'_>,
    session: &SessionView,
) -> Option<(usize, &'r Rule)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.when.matches(unit, session))
}

fn any_eq(wanted: &[String], value: &str) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| w == value)
}

/// Whether any wanted name appears among `seen`, an unqualified wanted name also matching
/// a schema-qualified one.
fn names_match(wanted: &[String], seen: &[String]) -> bool {
    wanted.is_empty()
        || wanted.iter().any(|w| {
            seen.iter().any(|s| {
                s == w
                    || (!w.contains('.')
                        && s.len() > w.len()
                        && s.ends_with(w.as_str())
                        && s.as_bytes()[s.len() - w.len() - 1] == b'.')
            })
        })
}
