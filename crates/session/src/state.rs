//! What a client's session looks like to the server: the settings it must see on every server
//! connection it is given, and whether it is pinned to one connection.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Startup parameters that are not settings (or that pgsplit handles itself).
const NOT_SETTINGS: [&str; 4] = ["user", "database", "options", "replication"];

/// A client's session state, replayed onto each server connection it uses.
#[derive(Debug, Default)]
pub(crate) struct ClientState {
    /// Settings from the startup packet (parameters and `options=-c name=value`), names
    /// lower-cased. `RESET` returns to these.
    startup: Vec<(String, String)>,
    /// Session-level settings read back from the server after the client changed some (names
    /// lower-cased, including `role` and `session_authorization` when set). `None` until the
    /// first read-back.
    captured: Option<Vec<(String, String)>>,
    /// `startup` overlaid with `captured`, sorted by name: what the server must have.
    desired: Vec<(String, String)>,
    /// Fingerprint of `desired`; 0 when empty (a fresh server connection already matches).
    tag: u64,
    /// State that cannot be replayed exists on the client's connection (temporary tables,
    /// LISTEN, SQL-level PREPARE, WITH HOLD cursors, session advisory locks).
    pub(crate) pinned: bool,
}

impl ClientState {
    /// State from the client's startup parameters (everything but user/database/replication;
    /// `options` is split into its `-c name=value` settings).
    pub(crate) fn from_startup(params: &[(String, String)]) -> Self {
        let mut startup = Vec::new();
        for (name, value) in params {
            if name == "options" {
                startup.extend(parse_options(value));
            } else if !NOT_SETTINGS.contains(&name.as_str()) {
                startup.push((name.to_ascii_lowercase(), value.clone()));
            }
        }
        let mut state = ClientState {
            startup,
            ..ClientState::default()
        };
        state.recompute();
        state
    }

    /// Fingerprint of the settings the server must have.
    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }

    /// The settings the server must have, sorted by name.
    pub(crate) fn desired(&self) -> &[(String, String)] {
        &self.desired
    }

    /// Whether the client must keep its server connection between transactions.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// Records the session-level settings read back from the server.
    pub(crate) fn set_captured(&mut self, mut captured: Vec<(String, String)>) {
        for (name, _) in &mut captured {
            name.make_ascii_lowercase();
        }
        self.captured = Some(captured);
        self.recompute();
    }

    fn recompute(&mut self) {
        let mut desired: Vec<(String, String)> = self.captured.clone().unwrap_or_default();
        for (name, value) in &self.startup {
            if !desired.iter().any(|(n, _)| n == name) {
                desired.push((name.clone(), value.clone()));
            }
        }
        desired.sort();
        desired.dedup_by(|a, b| a.0 == b.0);
        self.tag = if desired.is_empty() {
            0
        } else {
            let mut h = DefaultHasher::new();
            desired.hash(&mut h);
            h.finish() | 1
        };
        self.desired = desired;
    }
}

/// Splits a libpq `options` value into `name=value` settings: `-c name=value`, `-cname=value`
/// and `--name=value`, with backslash escaping spaces, as the server's own parser does.
pub(crate) fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_owned())
        } else {
            w.strip_prefix("-c").map(str::to_owned)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((
                name.replace('-', "_").to_ascii_lowercase(),
                value.to_owned(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn options_are_split_like_the_server_does() {
        assert_eq!(
            parse_options(r"-c search_path=a,b -cstatement_timeout=5s --work-mem=64MB -c x=a\ b"),
            pairs(&[
                ("search_path", "a,b"),
                ("statement_timeout", "5s"),
                ("work_mem", "64MB"),
                ("x", "a b")
            ])
        );
        assert!(parse_options("").is_empty());
        assert!(parse_options("-c").is_empty());
    }

    #[test]
    fn startup_settings_and_capture_overlay() {
        let mut s = ClientState::from_startup(&pairs(&[
            ("user", "app"),
            ("database", "app"),
            ("application_name", "psql"),
            ("DateStyle", "ISO"),
            ("options", "-c search_path=s1"),
        ]));
        assert_eq!(
            s.desired(),
            pairs(&[
                ("application_name", "psql"),
                ("datestyle", "ISO"),
                ("search_path", "s1")
            ])
        );
        let startup_tag = s.tag();
        assert_ne!(startup_tag, 0);
        // The client RESET application_name and SET search_path: the read-back lacks the first.
        s.set_captured(pairs(&[("DateStyle", "ISO"), ("search_path", "s2")]));
        assert_eq!(
            s.desired(),
            pairs(&[
                ("application_name", "psql"),
                ("datestyle", "ISO"),
                ("search_path", "s2")
            ])
        );
        assert_ne!(s.tag(), startup_tag);
        assert_eq!(ClientState::from_startup(&pairs(&[("user", "u")])).tag(), 0);
    }
}
