//! pgsplit configuration: the YAML file, read into a validated [`Config`].
//!
//! # What it does
//!
//! Reading happens in two steps, like ripgrep's low-level and high-level arguments:
//!
//! 1. **raw**: `${NAME}` references are replaced with environment variables, then the YAML
//!    is deserialized into plain serde structs that mirror the file, with every field
//!    optional and unknown keys refused;
//! 2. **validated**: defaults are applied and every rule is checked, producing a [`Config`]
//!    whose invariants the rest of pgsplit relies on (see the field docs in [`Config`]).
//!
//! Every problem is reported as a [`ConfigError`] rendered `FILE:LINE:COL: key.path: message`,
//! and all problems found are returned together as [`ConfigErrors`]. Syntax errors and
//! structural errors (an unknown key, a list where a mapping belongs) stop deserialization,
//! so they come alone; all value errors (ports, durations, sizes, names, roles, ...) are
//! collected in one pass.
//!
//! [`diff`] compares two configs for hot reload; `Display` on [`Config`] prints a redacted
//! summary.
//!
//! # Example
//!
//! ```
//! let text = "\
//! users:
//!   - { name: app, password: ${APP_PASSWORD} }
//! servers:
//!   - { name: primary, host: 127.0.0.1, port: 15432, role: primary }
//!   - { name: replica, host: 127.0.0.1, port: 15433, role: replica, weight: 0 }
//! ";
//! let env = |name: &str| (name == "APP_PASSWORD").then(|| "s3cret".to_owned());
//! let errors = pgsplit_config::parse_with_env(text, "pgsplit.yaml", &env).unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     "pgsplit.yaml:5:67: servers[1].weight: must be at least 1, found 0"
//! );
//!
//! let fixed = text.replace("weight: 0", "weight: 2");
//! let config = pgsplit_config::parse_with_env(&fixed, "pgsplit.yaml", &env).unwrap();
//! assert_eq!(config.users[0].password, "s3cret");
//! assert_eq!(config.pool.size, 20); // the default
//! ```
//!
//! # Environment variables
//!
//! `${NAME}` anywhere in a value is replaced by the variable's value (NAME: letters, digits,
//! `_`). Values are escaped for the place they land in, so a secret containing `: `, `#` or
//! quotes cannot change the document's structure, and line numbers stay exact. A value made
//! of a reference is a string, and numeric or boolean settings accept strings, so
//! `port: ${PGPORT}` works. There is no escape for a literal `${`; an unset variable is an
//! error. Comments are not interpolated.
//!
//! # What it does not do
//!
//! It does no network or runtime work, holds no global state and does not watch files:
//! [`load`] reads one file synchronously, and reloading is the binary's job. It does not
//! decide routing or pooling behaviour; it only describes it.

#![warn(missing_docs)]

mod diff;
mod error;
mod interpolate;
mod locate;
mod password;
mod raw;
mod summary;
mod types;
mod units;
mod validate;

use std::path::Path;

pub use diff::{ConfigDiff, diff};
pub use error::{ConfigError, ConfigErrors};
pub use locate::{Locator, locate};
pub use password::PasswordKind;
pub use types::*;

/// Parses and validates a config text, taking `${NAME}` values from the process environment.
///
/// `file` is only used in error messages. The result's `source` is `None`.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(text, file, &|name| std::env::var(name).ok())
}

/// Parses and validates a config text, taking `${NAME}` values from `env`.
///
/// This is what tests use instead of mutating the process environment. A variable for
/// which `env` returns `None` is reported as unset.
pub fn parse_with_env(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let locator = Locator::new(text);
    let interpolated = interpolate::interpolate(text, env).map_err(|problems| {
        let errors = problems.into_iter().map(|p| ConfigError {
            file: file.to_owned(),
            line: Some(p.line),
            col: Some(p.col),
            key: locator
                .path_at(p.line, p.col)
                .unwrap_or_default()
                .to_owned(),
            message: p.message,
        });
        ConfigErrors(errors.collect())
    })?;
    let raw = raw::from_yaml(&interpolated.text).map_err(|error| {
        ConfigErrors(vec![error::from_deserialize(
            error,
            file,
            &interpolated,
            &locator,
        )])
    })?;
    validate::validate(raw, file, &locator)
}

/// Reads, parses and validates the config file at `path`, with `${NAME}` values from the
/// process environment. The result's `source` is `path`.
///
/// A file that cannot be read gives one error with an empty key.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: file.clone(),
        line: None,
        col: None,
        key: String::new(),
        message: format!("cannot read the file: {error}"),
    })?;
    let mut config = parse(&text, &file)?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}
