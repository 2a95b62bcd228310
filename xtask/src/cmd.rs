//! Running external programs: print what runs, run it, and turn a failure into an error that carries its output.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root: xtask always works on the checkout it was built from.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// `cargo` (the one that runs us, when known), started in the workspace root.
pub(crate) fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    cmd
}

/// The command line as a shell user would type it.
pub(crate) fn display(cmd: &Command) -> String {
    // `$CARGO` is a long toolchain path; the user would type `cargo`.
    let program = Path::new(cmd.get_program());
    let program = match program.file_name() {
        Some(name) if name == "cargo" => name,
        _ => program.as_os_str(),
    };
    let mut words = vec![quote(&program.to_string_lossy())];
    words.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    words.join(" ")
}

fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Prints and runs `cmd` with the terminal as its stdio; fails on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    println!("  $ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not run `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; on failure the error shows stderr and stdout.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    output_with_input(cmd, "")
}

/// Like [`output`], feeding `input` on stdin.
pub(crate) fn output_with_input(cmd: &mut Command, input: &str) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run `{}`", display(cmd)))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that exits without reading its input closes the pipe; its exit status tells the story.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`{}` failed ({}):\n{}{}",
            display(cmd),
            out.status,
            stderr.trim_end(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!("\n{}", stdout.trim_end())
            }
        );
    }
    Ok(stdout)
}

/// Cargo's target directory, which `CARGO_TARGET_DIR` or a config file may move.
pub(crate) fn target_dir() -> Result<PathBuf> {
    let out = output(cargo().args(["metadata", "--no-deps", "--format-version", "1"]))?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    let dir = json["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("psql");
        cmd.args(["-c", "SELECT 1", "-p", "15432", "it's"]);
        assert_eq!(
            super::display(&cmd),
            r"psql -c 'SELECT 1' -p 15432 'it'\''s'"
        );
    }
}
