//! `cargo xtask install`: apt-get what the tests, the demo and the benchmarks need and the machine lacks
//! (the PostgreSQL server programs, libclang for pg_query's bindgen build, `promtool` from
//! Debian's `prometheus` package, which checks `/metrics`, and `openssl`, which makes the test
//! cluster's server certificate); `cargo xtask bench` also asks for PgBouncer.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cmd, pg};

const PACKAGES: [&str; 6] = [
    "postgresql",
    "postgresql-contrib",
    "libclang-dev",
    "clang",
    "prometheus",
    "openssl",
];

/// PostgreSQL programs that must sit in the server's bin directory.
const PG_TOOLS: [&str; 5] = ["initdb", "pg_ctl", "pg_basebackup", "psql", "pgbench"];

/// Installs the missing pieces, or does nothing when all are present.
pub(crate) fn ensure() -> Result<()> {
    let missing = find_missing();
    if missing.is_empty() {
        println!(
            "==> install: nothing to do (PostgreSQL programs, libclang, promtool and openssl are present)"
        );
        return Ok(());
    }
    let apt = format!(
        "apt-get install -y --no-install-recommends {}",
        PACKAGES.join(" ")
    );
    println!("==> install: missing {}", missing.join(", "));
    if !pg::is_root()? {
        bail!(
            "missing {} and not running as root; run `sudo cargo xtask install` or `sudo apt-get update && sudo {apt}`",
            missing.join(", ")
        );
    }
    if !Path::new("/usr/bin/apt-get").is_file() {
        bail!(
            "missing {} and there is no apt-get; install PostgreSQL and libclang by hand",
            missing.join(", ")
        );
    }
    println!("==> install: {apt}");
    cmd::run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still = find_missing();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

/// Installs PgBouncer with apt-get unless a `pgbouncer` program exists; returns its path.
///
/// Debian's package also registers a system service on 127.0.0.1:6432; where the machine lets
/// packages start services, that instance runs on, untouched: the benchmark starts its own.
pub(crate) fn ensure_pgbouncer() -> Result<PathBuf> {
    if let Some(found) = find_program("pgbouncer") {
        println!("==> install: PgBouncer is present ({})", found.display());
        return Ok(found);
    }
    apt_install("pgbouncer")?;
    match find_program("pgbouncer") {
        Some(found) => Ok(found),
        None => bail!("still no pgbouncer program after apt-get install pgbouncer"),
    }
}

/// Makes sure valgrind (with `callgrind_control` and `callgrind_annotate`) is installed, with
/// apt-get when absent and we are root (for `cargo xtask bench --instructions`).
pub(crate) fn ensure_valgrind() -> Result<()> {
    let tools = ["valgrind", "callgrind_control", "callgrind_annotate"];
    if tools.iter().all(|t| find_program(t).is_some()) {
        println!("==> install: valgrind is present");
        return Ok(());
    }
    apt_install("valgrind")?;
    match tools.iter().find(|t| find_program(t).is_none()) {
        Some(t) => bail!("still no {t} program after apt-get install valgrind"),
        None => Ok(()),
    }
}

/// `apt-get install` of one package the benchmarks need, when we are root and have apt-get.
fn apt_install(package: &str) -> Result<()> {
    println!("==> install: missing {package}");
    if !pg::is_root()? || !Path::new("/usr/bin/apt-get").is_file() {
        bail!(
            "{package} is missing; run `sudo apt-get install {package}` (or install it by hand) and retry"
        );
    }
    for args in [
        &["update"][..],
        &["install", "-y", "--no-install-recommends", package][..],
    ] {
        cmd::run(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    Ok(())
}

/// A program on the PATH or in the directories Debian installs to (sbin is often off a user's
/// PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/local/sbin".into(),
            "/usr/bin".into(),
        ])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What is absent, by name.
fn find_missing() -> Vec<&'static str> {
    let bindir = pg::find_bindir();
    let mut missing: Vec<&'static str> = PG_TOOLS
        .into_iter()
        .filter(|tool| !bindir.as_ref().is_some_and(|dir| dir.join(tool).is_file()))
        .collect();
    if !has_libclang() {
        missing.push("libclang");
    }
    if !has_promtool() {
        missing.push("promtool");
    }
    if find_program("openssl").is_none() {
        missing.push("openssl");
    }
    missing
}

/// Whether `promtool` is on the PATH or where Debian puts it.
fn has_promtool() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into()])
        .any(|dir| dir.join("promtool").is_file())
}

/// Whether the unversioned `libclang.so` that libclang-dev installs (and bindgen loads) exists.
fn has_libclang() -> bool {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LIBCLANG_PATH")
        .into_iter()
        .map(Into::into)
        .collect();
    let llvm = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    dirs.extend(
        llvm.filter(|p| p.to_string_lossy().contains("/llvm-"))
            .map(|p| p.join("lib")),
    );
    for multiarch in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ] {
        dirs.push(multiarch.into());
    }
    dirs.iter().any(|dir| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name == "libclang.so"
                    || (name.starts_with("libclang-")
                        && name.ends_with(".so")
                        && !name.starts_with("libclang-cpp"))
            })
    })
}
