//! Tidy checks that keep the architecture honest, run by `cargo test` (so by `cargo xtask test` and CI).
//!
//! They enforce the "Allowed dependency direction" table of the architecture document: internal
//! dependency edges, no tokio in the sans-IO crates, no global statics holding shared state outside
//! the proxy crate, a `//!` header on every Rust file, and a warning for files over 800 lines.
//! Each failure names the file or crate and the rule it breaks.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which internal crates a crate may depend on.
enum Allowed {
    Any,
    /// Short names.
    Only(&'static [&'static str]),
}

/// The dependency table by short crate name; `None` for a crate that is not in it.
/// Any new edge is an architecture change: change this table in the same review.
fn allowed_deps(krate: &str) -> Option<Allowed> {
    let only = |list| Some(Allowed::Only(list));
    match krate {
        "wire" | "config" | "classify" | "telemetry" => only(&[]),
        "router" => only(&["classify", "config"]),
        "backend" => only(&["wire", "config", "telemetry"]),
        "session" => only(&[
            "wire",
            "classify",
            "router",
            "backend",
            "config",
            "telemetry",
        ]),
        "admin" => only(&["config", "router", "backend", "telemetry"]),
        "testkit" => only(&["wire", "config"]),
        "xtask" => only(&["config"]),
        "proxy" | "e2e" => Some(Allowed::Any),
        _ => None,
    }
}

/// Crates that must stay sans-IO and so may not depend on tokio.
const SANS_IO: [&str; 4] = ["wire", "config", "classify", "router"];

/// Type names that make a `static` a global holding shared state.
const GLOBAL_TYPES: [&str; 4] = ["ArcSwap", "Lazy", "OnceLock", "OnceCell"];

const MAX_LINES: usize = 800;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_owned()
}

/// The short name of a workspace package: `pgsplit-router` → `router`, `pgsplit` → `proxy`.
fn short_name(package: &str) -> &str {
    match package {
        "pgsplit" => "proxy",
        _ => package.strip_prefix("pgsplit-").unwrap_or(package),
    }
}

/// A dependency as `cargo metadata` declares it.
struct Dep {
    name: String,
    /// `None` for normal, `Some("dev")`, `Some("build")`.
    kind: Option<String>,
}

struct Package {
    name: String,
    manifest: String,
    deps: Vec<Dep>,
}

fn workspace_packages() -> Vec<Package> {
    let root = workspace_root();
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let packages = json["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|p| Package {
            name: text(&p["name"]),
            manifest: text(&p["manifest_path"])
                .strip_prefix(&format!("{}/", root.display()))
                .map(str::to_owned)
                .unwrap_or_else(|| text(&p["manifest_path"])),
            deps: p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| Dep {
                    name: text(&d["name"]),
                    kind: d["kind"].as_str().map(str::to_owned),
                })
                .collect(),
        })
        .collect()
}

/// Internal edges not in the table; tokio in a sans-IO crate.
fn dependency_violations(packages: &[Package]) -> Vec<String> {
    let internal: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut violations = Vec::new();
    for package in packages {
        let me = short_name(&package.name);
        let allowed = allowed_deps(me);
        for dep in &package.deps {
            let is_dev = dep.kind.as_deref() == Some("dev");
            if SANS_IO.contains(&me) && dep.name == "tokio" && dep.kind.is_none() {
                violations.push(format!(
                    "{} ({}): depends on tokio, but {me} must stay sans-IO (rule: no tokio in {})",
                    package.name,
                    package.manifest,
                    SANS_IO.join(", ")
                ));
            }
            if !internal.contains(&dep.name.as_str()) || (is_dev && me != "testkit") {
                continue;
            }
            let target = short_name(&dep.name);
            match allowed {
                None => violations.push(format!(
                    "{} ({}): depends on {}, but {me} is not in the dependency table (rule: every \
                     internal edge is in the table in xtask/src/tidy.rs, reviewed as an architecture change)",
                    package.name, package.manifest, dep.name
                )),
                Some(Allowed::Only(list)) if !list.contains(&target) => violations.push(format!(
                    "{} ({}): {}dependency on {} is not allowed (rule: {me} may depend on: {})",
                    package.name,
                    package.manifest,
                    if is_dev { "dev-" } else { "" },
                    dep.name,
                    if list.is_empty() { "no internal crate".to_owned() } else { list.join(", ") }
                )),
                Some(_) => {}
            }
        }
    }
    violations
}

/// Every `.rs` file under `crates/` and `xtask/`, relative to the workspace root, skipping `target`.
fn rust_files() -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(root, &path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
            }
        }
    }
    let root = workspace_root();
    let mut files = Vec::new();
    walk(&root, &root.join("crates"), &mut files);
    walk(&root, &root.join("xtask"), &mut files);
    files.sort();
    files
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(workspace_root().join(file)).unwrap_or_default()
}

/// Whether the first non-empty line is a `//!` inner doc comment.
fn has_header(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// Lines declaring a `static` whose type names a global-state holder, as `(line number, line)`.
fn global_statics(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let mut rest = line.trim_start();
            if let Some(after) = rest.strip_prefix("pub") {
                rest = match after.strip_prefix('(') {
                    Some(scoped) => scoped.split_once(')').map_or("", |(_, r)| r),
                    None => after,
                }
                .trim_start();
            }
            rest.starts_with("static ") && GLOBAL_TYPES.iter().any(|t| rest.contains(t))
        })
        .map(|(i, line)| (i + 1, line.trim()))
        .collect()
}

/// Test code, where long files are fine: `tests/` directories and `tests.rs` files.
fn is_test_file(file: &Path) -> bool {
    file.components().any(|c| c.as_os_str() == "tests")
        || file
            .file_name()
            .is_some_and(|n| n == "tests.rs" || n.to_string_lossy().ends_with("_tests.rs"))
}

fn assert_none(violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "tidy found {} problem(s):\n  {}\n",
        violations.len(),
        violations.join("\n  ")
    );
}

#[test]
fn tidy_dependency_table() {
    assert_none(dependency_violations(&workspace_packages()));
}

#[test]
fn tidy_file_headers() {
    let violations = rust_files()
        .into_iter()
        .filter(|f| !has_header(&read(f)))
        .map(|f| {
            format!("{}: the first line must be a `//!` comment saying what the file is for (rule: //! header)", f.display())
        })
        .collect();
    assert_none(violations);
}

#[test]
fn tidy_no_global_statics() {
    let mut violations = Vec::new();
    for file in rust_files()
        .into_iter()
        .filter(|f| !f.starts_with("crates/proxy"))
    {
        for (line, text) in global_statics(&read(&file)) {
            violations.push(format!(
                "{}:{line}: `{text}`: no static holding shared state outside crates/proxy; pass it \
                 explicitly (rule: no static ArcSwap/Lazy/OnceLock/OnceCell)",
                file.display()
            ));
        }
    }
    assert_none(violations);
}

#[test]
fn tidy_file_size() {
    for file in rust_files().into_iter().filter(|f| !is_test_file(f)) {
        let lines = read(&file).lines().count();
        if lines > MAX_LINES {
            eprintln!(
                "tidy warning: {} has {lines} lines; split it before it grows (rule: files under ~{MAX_LINES} lines)",
                file.display()
            );
        }
    }
}

#[test]
fn file_checks_catch_what_they_should() {
    assert!(has_header("\n//! What this is.\nfn main() {}"));
    assert!(!has_header("// A plain comment.\n//! Too late."));
    assert!(!has_header("#![allow(dead_code)]\n//! Too late."));
    assert!(!has_header(""));

    let found = global_statics(
        "pub static A: Lazy<Config> = Lazy::new(x);\n    static B: OnceLock<u8> = OnceLock::new();\npub(crate) static C: ArcSwap<S> = x;\nstatic D: u32 = 1;\nlet s = \"static E: Lazy\";",
    );
    assert_eq!(
        found.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    assert!(is_test_file(Path::new("crates/session/src/relay/tests.rs")));
    assert!(is_test_file(Path::new("crates/e2e/tests/it/main.rs")));
    assert!(!is_test_file(Path::new("crates/session/src/relay.rs")));
}

#[test]
fn dependency_check_catches_what_it_should() {
    let package = |name: &str, deps: &[(&str, Option<&str>)]| Package {
        name: name.to_owned(),
        manifest: format!("crates/{name}/Cargo.toml"),
        deps: deps
            .iter()
            .map(|(n, k)| Dep {
                name: (*n).to_owned(),
                kind: k.map(str::to_owned),
            })
            .collect(),
    };
    let packages = [
        package("pgsplit-wire", &[("tokio", Some("dev"))]),
        package(
            "pgsplit-router",
            &[
                ("pgsplit-backend", None),
                ("tokio", None),
                ("pgsplit-testkit", Some("dev")),
            ],
        ),
        package("pgsplit-backend", &[("pgsplit-wire", None)]),
        package(
            "pgsplit-testkit",
            &[("pgsplit-wire", None), ("pgsplit", Some("dev"))],
        ),
        package("pgsplit", &[("pgsplit-router", None)]),
        package("pgsplit-e2e", &[("pgsplit", Some("dev"))]),
        package("pgsplit-new", &[("pgsplit-wire", None)]),
    ];
    let violations = dependency_violations(&packages);
    let expect = [
        "pgsplit-router (crates/pgsplit-router/Cargo.toml): dependency on pgsplit-backend",
        "pgsplit-router (crates/pgsplit-router/Cargo.toml): depends on tokio",
        "pgsplit-testkit (crates/pgsplit-testkit/Cargo.toml): dev-dependency on pgsplit ",
        "pgsplit-new (crates/pgsplit-new/Cargo.toml): depends on pgsplit-wire, but new is not in the dependency table",
    ];
    assert_eq!(violations.len(), expect.len(), "{violations:#?}");
    for (found, expect) in violations.iter().zip(expect) {
        assert!(
            found.starts_with(expect),
            "{found}\n  does not start with\n{expect}"
        );
    }
}
