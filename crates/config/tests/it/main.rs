//! Integration tests for pgsplit-config: one binary, one submodule per concern.

mod broken;
mod diff;
mod env;
mod valid;

/// The environment every test sees: a fixed map instead of the process environment.
pub(crate) fn test_env(name: &str) -> Option<String> {
    let value = match name {
        "APP_PASSWORD" => "s3cret: #1 \"quoted\" 'single'",
        "PRIMARY_PORT" => "15432",
        "REGION" => "eu1",
        "IS_ADMIN" => "true",
        "NOT_A_NUMBER" => "abc",
        _ => return None,
    };
    Some(value.to_owned())
}

/// Parses `text` as `test.yaml` with [`test_env`].
pub(crate) fn parse(text: &str) -> Result<pgsplit_config::Config, pgsplit_config::ConfigErrors> {
    pgsplit_config::parse_with_env(text, "test.yaml", &test_env)
}
