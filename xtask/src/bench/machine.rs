//! The machine and software a benchmark ran on, described for the report from /proc, `uname`,
//! the programs' `--version` and git.

use std::path::Path;
use std::process::Command;

use crate::cmd;

/// The first value of `key` in a `key : value` file such as /proc/cpuinfo.
fn proc_field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// The first line a command prints, or `unknown`.
fn first_line(command: &mut Command) -> String {
    cmd::output(command)
        .ok()
        .and_then(|out| out.lines().next().map(|l| l.trim().to_owned()))
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `date -u`, minutes precision.
pub(crate) fn date() -> String {
    first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg, e.g. `1.66 2.06 2.34`.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Bullet lines: CPU, memory, OS, PostgreSQL, PgBouncer, pgsplit commit and toolchain.
pub(crate) fn describe(postgres: &Path, pgbouncer_version: &str, root: &Path) -> Vec<String> {
    let nproc = first_line(&mut Command::new("nproc"));
    let model =
        proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
        );
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown OS".to_owned());
    let kernel = first_line(Command::new("uname").arg("-r"));
    let postgres_version = first_line(Command::new(postgres).arg("--version"));
    vec![
        format!(
            "CPU: {nproc} × {model} (`nproc` = {nproc}); PostgreSQL (3 servers), the proxy under test and pgbench all share them"
        ),
        format!("Memory: {memory}"),
        format!("OS: {os}, Linux {kernel}"),
        format!("PostgreSQL: {postgres_version}"),
        format!("PgBouncer: {pgbouncer_version}"),
        format!("pgsplit: {}", commit(root)),
        format!("Rust: {}", first_line(Command::new("rustc").arg("-V"))),
    ]
}

/// The commit pgsplit was built from, and whether the working tree differed from it.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        let mut git = Command::new("git");
        git.arg("-C").arg(root).args(args);
        cmd::output(&mut git).unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"]);
    let head = head.trim();
    if head.is_empty() {
        return "unknown commit (no git)".to_owned();
    }
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "crates",
        "Cargo.toml",
        "Cargo.lock",
    ]);
    let mut paths: Vec<String> = dirty
        .lines()
        .filter_map(|l| l.get(3..))
        .map(|p| {
            let mut parts = p.split('/');
            match (parts.next(), parts.next()) {
                (Some("crates"), Some(krate)) => format!("crates/{krate}"),
                (Some(first), _) => first.to_owned(),
                _ => p.to_owned(),
            }
        })
        .collect();
    let mut seen = Vec::new();
    paths.retain(|p| {
        let new = !seen.contains(p);
        seen.push(p.clone());
        new
    });
    if paths.is_empty() {
        format!("commit {head}, release build")
    } else {
        format!(
            "commit {head} plus uncommitted changes in {} (the release build is of the working tree)",
            paths.join(", ")
        )
    }
}
