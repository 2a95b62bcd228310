//! A small hand-rolled command-line parser: `--name VALUE`, `--name=VALUE`, switches, positionals and `--`.
//!
//! xtask has few flags, so a parser dependency would cost more than these lines.

use anyhow::{Context, Result, bail};
use std::str::FromStr;

/// The arguments of one subcommand, consumed flag by flag; [`Flags::finish`] rejects leftovers.
pub(crate) struct Flags {
    /// Arguments before a bare `--`, not yet consumed.
    args: Vec<String>,
    /// Arguments after a bare `--`, passed through untouched.
    rest: Vec<String>,
}

impl Flags {
    pub(crate) fn new(args: Vec<String>) -> Flags {
        let mut args = args;
        let rest = match args.iter().position(|a| a == "--") {
            Some(at) => {
                let rest = args.split_off(at + 1);
                args.pop();
                rest
            }
            None => Vec::new(),
        };
        Flags { args, rest }
    }

    /// Takes `--name VALUE` or `--name=VALUE` and parses VALUE.
    pub(crate) fn value<T: FromStr>(&mut self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let long = format!("--{name}");
        let with_eq = format!("--{name}=");
        let Some(at) = self
            .args
            .iter()
            .position(|a| *a == long || a.starts_with(&with_eq))
        else {
            return Ok(None);
        };
        let arg = self.args.remove(at);
        let text = match arg.strip_prefix(&with_eq) {
            Some(text) => text.to_owned(),
            None => {
                if at >= self.args.len() {
                    bail!("{long} needs a value");
                }
                self.args.remove(at)
            }
        };
        let value = text
            .parse()
            .with_context(|| format!("invalid value for {long}: {text:?}"))?;
        Ok(Some(value))
    }

    /// Takes the switch `--name`; true when it was given.
    pub(crate) fn switch(&mut self, name: &str) -> bool {
        let long = format!("--{name}");
        let before = self.args.len();
        self.args.retain(|a| *a != long);
        self.args.len() != before
    }

    /// Everything after a bare `--`.
    pub(crate) fn rest(&mut self) -> Vec<String> {
        std::mem::take(&mut self.rest)
    }

    /// The remaining positional arguments; fails on an unknown flag or on arguments after `--`
    /// that nobody took.
    pub(crate) fn finish(self) -> Result<Vec<String>> {
        if let Some(flag) = self.args.iter().find(|a| a.starts_with("--")) {
            bail!("unknown flag {flag} (see `cargo xtask help`)");
        }
        if !self.rest.is_empty() {
            bail!("unexpected arguments after `--`: {}", self.rest.join(" "));
        }
        Ok(self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    fn flags(args: &[&str]) -> Flags {
        Flags::new(args.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn values_switches_positionals_and_rest() {
        let mut f = flags(&[
            "up",
            "--replicas",
            "3",
            "--base-port=35432",
            "--no-lint",
            "--",
            "a",
            "--b",
        ]);
        assert_eq!(f.value::<u16>("replicas").unwrap(), Some(3));
        assert_eq!(f.value::<u16>("base-port").unwrap(), Some(35432));
        assert_eq!(f.value::<u16>("missing").unwrap(), None);
        assert!(f.switch("no-lint"));
        assert!(!f.switch("no-lint"));
        assert_eq!(f.rest(), vec!["a", "--b"]);
        assert_eq!(f.finish().unwrap(), vec!["up"]);
    }

    #[test]
    fn errors_name_the_flag() {
        let mut f = flags(&["--replicas"]);
        assert!(
            f.value::<u16>("replicas")
                .unwrap_err()
                .to_string()
                .contains("--replicas")
        );
        let mut f = flags(&["--replicas", "x"]);
        assert!(f.value::<u16>("replicas").is_err());
        assert!(
            flags(&["--bogus"])
                .finish()
                .unwrap_err()
                .to_string()
                .contains("--bogus")
        );
        assert!(flags(&["--", "x"]).finish().is_err());
    }
}
