//! Tests of the `pgsplit` binary's command line: `check`, `--version`, usage errors.

mod admin;
mod deploy;
mod logs;
mod sighup;

use std::path::PathBuf;
use std::process::{Command, Output};

fn pgsplit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(args)
        .output()
        .expect("run pgsplit")
}

/// Writes `text` to a file unique to this test and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgsplit-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pgsplit.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/local.yaml");
    let out = pgsplit(&["check", "--config", example]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_names_file_line_and_key_of_every_error() {
    let path = config_file(
        "broken",
        "listen: 127.0.0.1:6432\n\
         users:\n  - name: app\n    password: app\n\
         servers:\n  - name: primary\n    host: 127.0.0.1\n    port: 70000\n    role: primary\n\
         \x20 - name: primary\n    host: 127.0.0.1\n    port: 15433\n    role: chief\n",
    );
    let out = pgsplit(&["check", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:8:")),
        "port error not at line 8: {stderr}"
    );
    assert!(stderr.contains("servers[0].port"), "{stderr}");
    assert!(stderr.contains("servers[1].role"), "{stderr}");
    assert!(
        stderr.contains("servers[1].name"),
        "duplicate name not reported: {stderr}"
    );
}

#[test]
fn check_reads_the_tls_files() {
    let path = config_file(
        "tls",
        "users: [{ name: app, password: app }]\n\
         servers: [{ name: primary, host: 127.0.0.1, port: 15432 }]\n\
         tls: { cert: /nonexistent/pgsplit.crt, key: /nonexistent/pgsplit.key }\n",
    );
    let out = pgsplit(&["check", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("tls.cert (/nonexistent/pgsplit.crt): cannot read the file"),
        "{stderr}"
    );
}

#[test]
fn check_reports_unknown_keys_and_syntax_errors() {
    let path = config_file("unknown", "listen: 127.0.0.1:6432\nlisten_port: 5\n");
    let out = pgsplit(&["check", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":2:") && stderr.contains("listen_port"),
        "{stderr}"
    );

    let path = config_file("syntax", "servers:\n  - name: [unclosed\n");
    let out = pgsplit(&["check", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&path.display().to_string()));
}

#[test]
fn check_of_a_missing_file_fails_clearly() {
    let out = pgsplit(&["check", "--config", "/nonexistent/pgsplit.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pgsplit.yaml"));
}

#[test]
fn version_and_usage() {
    let out = pgsplit(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pgsplit {}", env!("CARGO_PKG_VERSION"))
    );
    let out = pgsplit(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
