//! The `pgsplit` binary: command line, logging, signals, and the proxy from the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use pgsplit_config::LogFormat;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

const USAGE: &str = "\
pgsplit: a PostgreSQL proxy that pools connections and splits reads from writes

usage:
  pgsplit --config FILE           run the proxy
  pgsplit check --config FILE     validate a config file and exit
  pgsplit --version               print the version
  pgsplit --help                  print this help
";

/// What the command line asked for.
#[derive(Debug, PartialEq)]
enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut check = false;
    let mut config = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Ok(Command::Help),
            "check" if !check && config.is_none() => check = true,
            "-c" | "--config" => {
                let v = it
                    .next()
                    .ok_or_else(|| format!("{arg} needs a file name"))?;
                config = Some(PathBuf::from(v));
            }
            other => match other.strip_prefix("--config=") {
                Some(v) => config = Some(PathBuf::from(v)),
                None => return Err(format!("unexpected argument {other:?}")),
            },
        }
    }
    let config = config.ok_or("missing --config FILE")?;
    Ok(if check {
        Command::Check(config)
    } else {
        Command::Run(config)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Command::Version) => {
            say(&format!("pgsplit {}", env!("CARGO_PKG_VERSION")));
            ExitCode::SUCCESS
        }
        Ok(Command::Help) => {
            say(USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Check(path)) => check(&path),
        Ok(Command::Run(path)) => match run(&path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pgsplit: {e:#}");
                ExitCode::FAILURE
            }
        },
        Err(msg) => {
            eprintln!("pgsplit: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Prints to stdout (the binary's intended output, not logging).
#[allow(clippy::print_stdout)]
fn say(text: &str) {
    println!("{}", text.trim_end());
}

/// Validates the file, and reads the TLS files it names as `pgsplit` would at start.
fn check(path: &std::path::Path) -> ExitCode {
    match pgsplit_config::load(path) {
        Ok(config) => match pgsplit::load_tls(&config) {
            Ok(_) => {
                say(&format!("{}: OK", path.display()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = pgsplit_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let format = match config.log.format {
        LogFormat::Text => pgsplit_telemetry::Format::Text,
        LogFormat::Json => pgsplit_telemetry::Format::Json,
    };
    pgsplit_telemetry::init_logging(format, &config.log.level)?;
    let runtime = build_runtime().context("cannot start the tokio runtime")?;
    runtime.block_on(serve(config))
}

/// The first event loop: a single-threaded runtime on the main thread. [`pgsplit::start`]
/// starts the other `workers - 1` loops on threads of their own.
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn serve(config: pgsplit_config::Config) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let handle = pgsplit::start(config).await?;
    info!(addr = %handle.client_addr(), version = env!("CARGO_PKG_VERSION"), "pgsplit started");
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: draining"); break; }
            _ = int.recv() => { info!("SIGINT: draining"); break; }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the config");
                // The outcome is logged, counted and shown in /status by the reloader.
                let _ = handle.reload().await;
            }
        }
    }
    handle.shutdown();
    let waited = handle.wait().await;
    if let Err(e) = &waited {
        error!(error = %e, "shutdown failed");
    }
    waited
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn command_line() {
        assert_eq!(
            parse_args(&args("--config a.yaml")),
            Ok(Command::Run("a.yaml".into()))
        );
        assert_eq!(
            parse_args(&args("check --config a.yaml")),
            Ok(Command::Check("a.yaml".into()))
        );
        assert_eq!(
            parse_args(&args("check --config=a.yaml")),
            Ok(Command::Check("a.yaml".into()))
        );
        assert_eq!(parse_args(&args("--version")), Ok(Command::Version));
        assert!(parse_args(&args("")).is_err());
        assert!(parse_args(&args("--config")).is_err());
        assert!(parse_args(&args("--bogus")).is_err());
    }
}
