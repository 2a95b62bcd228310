//! `cargo xtask demo`: the development cluster plus pgsplit with `examples/local.yaml`, in the foreground.

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::cluster::{self, Cluster, DEFAULT_BASE_PORT};
use crate::flags::Flags;
use crate::pg::Pg;
use crate::{cmd, install};

const CONFIG: &str = "examples/local.yaml";

pub(crate) fn main(args: Vec<String>) -> Result<()> {
    let mut flags = Flags::new(args);
    let cluster = Cluster::from_flags(&mut flags)?;
    let extra = flags.finish()?;
    if !extra.is_empty() {
        bail!("`cargo xtask demo` takes no arguments, got {extra:?}");
    }
    let root = cmd::workspace_root();
    if !root.join(CONFIG).is_file() {
        bail!("{CONFIG} does not exist yet");
    }
    if cluster.base_port != DEFAULT_BASE_PORT {
        println!(
            "note: {CONFIG} expects the primary on port {DEFAULT_BASE_PORT}, the cluster uses {}",
            cluster.base_port
        );
    }
    install::ensure()?;
    let pg = Pg::detect()?;
    cluster::up(&pg, &cluster)?;
    println!("\n==> building pgsplit (release)");
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "pgsplit"]))?;
    let binary = cmd::target_dir()?.join("release").join("pgsplit");
    let url = "postgres://app:app@127.0.0.1:6432/app";
    println!("\n==> pgsplit runs in the foreground; Ctrl-C stops it (the cluster keeps running)");
    println!("  connect:       {url}");
    println!("  psql:          psql \"{url}\"");
    println!("  admin console: psql \"postgres://admin:admin@127.0.0.1:6432/pgsplit\"");
    println!("  HTTP:          http://127.0.0.1:9930/status");
    println!("  afterwards:    cargo xtask cluster down   (stops the PostgreSQL cluster)\n");
    let mut pgsplit = Command::new(&binary);
    pgsplit.args(["--config", CONFIG]).current_dir(&root);
    println!("  $ {}", cmd::display(&pgsplit));
    // exec: Ctrl-C reaches pgsplit alone, and its exit status becomes ours.
    let error = pgsplit.exec();
    Err(error).with_context(|| format!("could not run {}", binary.display()))
}
