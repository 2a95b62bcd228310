//! Where PostgreSQL's programs live and which OS user runs them: `postgres` when xtask runs as root
//! (the server refuses to run as root), the current user otherwise.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;

/// The error for a machine without the PostgreSQL server programs.
pub(crate) const NOT_INSTALLED: &str =
    "PostgreSQL is not installed: run `cargo xtask install` or apt-get install postgresql";

/// The OS user PostgreSQL runs as when xtask is root.
const PG_OS_USER: &str = "postgres";

/// Programs the cluster commands need from the server's bin directory.
const CLUSTER_TOOLS: [&str; 5] = ["initdb", "pg_ctl", "pg_basebackup", "psql", "postgres"];

/// Environment variables that would redirect PostgreSQL programs away from the node we name explicitly.
const PG_ENV: [&str; 9] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGOPTIONS",
    "PGSERVICE",
    "PGPASSWORD",
    "PGDATA",
];

/// A PostgreSQL installation and the OS user its programs run as.
pub(crate) struct Pg {
    /// Directory holding `initdb`, `pg_ctl`, `psql`, ...
    bindir: PathBuf,
    /// `Some` when we are root: programs run through `runuser` as this user, and the directories
    /// we create are handed to it.
    owner: Option<OsUser>,
}

struct OsUser {
    name: &'static str,
    uid: u32,
    gid: u32,
}

impl Pg {
    /// Finds the installation and the OS user; fails with [`NOT_INSTALLED`] when programs are missing.
    pub(crate) fn detect() -> Result<Pg> {
        let bindir = find_bindir().context(NOT_INSTALLED)?;
        if let Some(tool) = CLUSTER_TOOLS.iter().find(|t| !bindir.join(t).is_file()) {
            bail!("{NOT_INSTALLED} ({} has no `{tool}`)", bindir.display());
        }
        let owner = if is_root()? {
            Some(OsUser::lookup(PG_OS_USER)?)
        } else {
            None
        };
        Ok(Pg { bindir, owner })
    }

    pub(crate) fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Who runs the servers, for messages.
    pub(crate) fn user_label(&self) -> String {
        match &self.owner {
            Some(user) => format!("OS user `{}` via runuser", user.name),
            None => "the current OS user".to_owned(),
        }
    }

    /// A command for one of the PostgreSQL programs, run as the right OS user, from `/`
    /// (the `postgres` user may not be allowed into the caller's directory).
    pub(crate) fn tool(&self, name: &str) -> Command {
        self.as_owner(&self.bindir.join(name))
    }

    /// A command for any program (such as `pgbouncer`, which also refuses to run as root), run as
    /// the PostgreSQL OS user when we are root, from `/`, without the `PG*` environment.
    pub(crate) fn as_owner(&self, program: &Path) -> Command {
        let mut cmd = match &self.owner {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user.name, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        cmd.current_dir("/");
        cmd
    }

    /// A client program from the bin directory (`psql`, `pgbench`) run as the current OS user,
    /// without the `PG*` environment: clients connect over TCP and may run as root.
    pub(crate) fn client(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(name));
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Hands a file or directory we created to the PostgreSQL OS user (no-op when not root).
    pub(crate) fn give(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.owner {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .with_context(|| format!("chown {} to {}", path.display(), user.name))?;
        }
        Ok(())
    }
}

impl OsUser {
    fn lookup(name: &'static str) -> Result<OsUser> {
        let id = |flag: &str| -> Result<u32> {
            let out = cmd::output(Command::new("id").args([flag, name])).with_context(|| {
                format!(
                    "xtask runs as root, so PostgreSQL must run as the OS user `{name}`, which does not exist; \
                     run `cargo xtask install` (the postgresql package creates it) or run as a non-root user"
                )
            })?;
            out.trim()
                .parse()
                .with_context(|| format!("`id {flag} {name}` printed {out:?}"))
        };
        Ok(OsUser {
            name,
            uid: id("-u")?,
            gid: id("-g")?,
        })
    }
}

/// Whether xtask runs as root.
pub(crate) fn is_root() -> Result<bool> {
    let uid = cmd::output(Command::new("id").arg("-u"))?;
    Ok(uid.trim() == "0")
}

/// The PostgreSQL bin directory: `pg_config --bindir` when it holds `initdb`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps server programs off the PATH), else the
/// directory of an `initdb` on the PATH.
pub(crate) fn find_bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_initdb(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| has_initdb(dir))
}
