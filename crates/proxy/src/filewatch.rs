//! Config file watching by polling: notices a rewritten file, an editor's write-and-rename and
//! the Kubernetes ConfigMap `..data` symlink swap, and asks for a reload once the new content
//! has settled.
//!
//! Every [`POLL_EVERY`] (half that while a change is settling) the watcher looks at the path the config was loaded from: the file it
//! resolves to through any symlinks, that file's device, inode, size and modification time,
//! and (when any of those moved) a hash of its content. A change is acted on once two polls in
//! a row see the same thing and its content differs from the content last acted on, so a file
//! caught half-written is not loaded, and `touch` or a swap to identical content does not
//! reload. A missing file (mid-swap, or deleted) changes nothing; it is logged once.
//!
//! Polling needs no platform notification API and cannot miss a change made through a symlink
//! chain, which is exactly where inotify-style watches lose track of ConfigMaps.

use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use pgsplit_session::Control;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How often the config file is looked at.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// The hash of the config file content last read for a reload, by any trigger (or found by
/// the watcher's first look), shared by the reloader and the watcher so that content already
/// tried (by `SIGHUP` or `RELOAD`) is not reloaded again when the watcher notices it.
pub(crate) type Tried = Arc<Mutex<Option<u64>>>;

/// The hash the watcher and the reloader compare config contents by.
pub(crate) fn content_hash(content: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(content);
    hasher.finish()
}

/// What one poll saw at the config path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// The path does not resolve to a readable file; the text says why.
    Missing(String),
    /// A file, identified by where it is and what it holds.
    File(Fingerprint),
}

/// The identity and content of the file a path resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    /// The path with every symlink resolved (a ConfigMap swap changes it).
    target: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    modified: Option<SystemTime>,
    /// Hash of the content.
    hash: u64,
}

impl Fingerprint {
    /// Whether `other` is the same file in the same state, judged by metadata alone.
    fn same_metadata(&self, other: &Fingerprint) -> bool {
        self.target == other.target
            && self.dev == other.dev
            && self.ino == other.ino
            && self.size == other.size
            && self.modified == other.modified
    }
}

/// Looks at `path`. When the metadata equals `previous`'s, the previous hash is reused and the
/// content is not read again.
fn observe(path: &Path, previous: Option<&Seen>) -> Seen {
    let target = match std::fs::canonicalize(path) {
        Ok(t) => t,
        Err(e) => return Seen::Missing(e.to_string()),
    };
    let meta = match std::fs::metadata(&target) {
        Ok(m) => m,
        Err(e) => return Seen::Missing(e.to_string()),
    };
    let mut fp = Fingerprint {
        target,
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        modified: meta.modified().ok(),
        hash: 0,
    };
    if let Some(Seen::File(prev)) = previous
        && prev.same_metadata(&fp)
    {
        fp.hash = prev.hash;
        return Seen::File(fp);
    }
    match std::fs::read(&fp.target) {
        Ok(content) => {
            fp.hash = content_hash(&content);
            Seen::File(fp)
        }
        Err(e) => Seen::Missing(e.to_string()),
    }
}

/// The watcher's memory between polls: synchronous, so it can be tested without timers.
#[derive(Debug)]
pub(crate) struct FileWatch {
    path: PathBuf,
    /// What the previous poll saw.
    last: Seen,
    /// The content hash last acted on, by this watcher or another trigger (or found at start).
    tried: Tried,
    /// Whether the missing file was already reported.
    reported_missing: bool,
}

impl FileWatch {
    /// Starts watching `path`; its current content counts as tried.
    pub(crate) fn new(path: PathBuf, tried: Tried) -> FileWatch {
        let last = observe(&path, None);
        if let Seen::File(fp) = &last {
            *tried.lock() = Some(fp.hash);
        }
        FileWatch {
            path,
            last,
            tried,
            reported_missing: false,
        }
    }

    /// Looks at the file once; `true` when it changed and has settled, so it should be
    /// reloaded now. After `true`, the same content never gives `true` again.
    pub(crate) fn poll(&mut self) -> bool {
        let seen = observe(&self.path, Some(&self.last));
        let settled = seen == self.last;
        self.last = seen;
        match &self.last {
            Seen::Missing(why) => {
                if settled && !self.reported_missing {
                    self.reported_missing = true;
                    warn!(path = %self.path.display(), error = %why,
                        "the config file cannot be read; the running config stays");
                }
                false
            }
            Seen::File(fp) => {
                if self.reported_missing {
                    self.reported_missing = false;
                    info!(path = %self.path.display(), "the config file is back");
                }
                if !settled {
                    return false;
                }
                let mut tried = self.tried.lock();
                if *tried == Some(fp.hash) {
                    return false;
                }
                *tried = Some(fp.hash);
                debug!(path = %self.path.display(), target = %fp.target.display(), "config file changed");
                true
            }
        }
    }
}

impl FileWatch {
    /// Whether the last poll saw new content that has not settled yet (the next poll should
    /// come soon).
    pub(crate) fn pending(&self) -> bool {
        matches!(&self.last, Seen::File(fp) if *self.tried.lock() != Some(fp.hash))
    }
}

/// Takes the first look at `path` (its content then counts as the one running), so that a
/// change made any time after this returns is noticed.
pub(crate) async fn first_look(path: PathBuf, tried: Tried) -> FileWatch {
    let (fallback, tried2) = (path.clone(), tried.clone());
    tokio::task::spawn_blocking(move || FileWatch::new(path, tried))
        .await
        .unwrap_or_else(|_| FileWatch::new(fallback, tried2))
}

/// Polls the file of `state` every `every` until the proxy drains, asking `control` for a
/// reload whenever the file changed and settled.
pub(crate) async fn watch_config(
    mut state: FileWatch,
    every: Duration,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let path = state.path.clone();
    info!(path = %path.display(), every = ?every, "watching the config file");
    loop {
        // New content is confirmed after half a period, so a change shows within about
        // 1.5 periods (plus the reload itself).
        let wait = if state.pending() { every / 2 } else { every };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = async { drop(shutdown.wait_for(|d| *d).await) } => return,
        }
        let polled = tokio::task::spawn_blocking(move || {
            let changed = state.poll();
            (state, changed)
        })
        .await;
        let Ok((next, changed)) = polled else { return };
        state = next;
        if changed {
            info!(path = %path.display(), "config file changed: reloading");
            // The outcome is logged and recorded by the reloader.
            if control.reload().await.is_err() && *shutdown.borrow() {
                return;
            }
        }
    }
}

/// How long after a reload that a TLS file change triggered failed the next try waits.
const TLS_RETRY: Duration = Duration::from_secs(5);

/// Watches the TLS files the current config names (`tls.cert`, `tls.key`) and asks `control`
/// for a reload when their content differs from what the running acceptor was built from and
/// has settled (two polls in a row): a renewed certificate, written in place or swapped in by
/// the kubelet for a Secret volume, is served without a `SIGHUP`. A reload that fails (say, the
/// key of a pair written one file after the other) is tried again every [`TLS_RETRY`] while
/// the files still differ; a reload by any other trigger counts, as it rebuilds the acceptor.
pub(crate) async fn watch_tls(
    snapshot: Arc<arc_swap::ArcSwap<pgsplit_session::Snapshot>>,
    running: Arc<arc_swap::ArcSwapOption<pgsplit_session::TlsServer>>,
    every: Duration,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_seen: Option<u64> = None;
    let mut next_try = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = async { drop(shutdown.wait_for(|d| *d).await) } => return,
        }
        let Some(config) = snapshot.load().config.tls.clone() else {
            last_seen = None;
            continue;
        };
        let Some(acceptor) = running.load_full() else {
            continue;
        };
        let seen =
            tokio::task::spawn_blocking(move || pgsplit_session::TlsServer::hash_files(&config))
                .await
                .ok()
                .flatten();
        let settled = seen.is_some() && seen == last_seen;
        last_seen = seen;
        if !settled || seen == Some(acceptor.files()) || tokio::time::Instant::now() < next_try {
            continue;
        }
        info!("the TLS files changed: reloading");
        if control.reload().await.is_err() {
            if *shutdown.borrow() {
                return;
            }
            next_try = tokio::time::Instant::now() + TLS_RETRY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        /// `test` names the directory, so tests running in parallel never share one.
        fn new(test: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("pgsplit-watch-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a temp file and renames it over `path`, like editors and config tools do.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// Polls until one poll says "reload", returning how many polls that took (at most 5).
    fn polls_until_change(w: &mut FileWatch) -> Option<usize> {
        (1..=5).find(|_| w.poll())
    }

    #[test]
    fn an_unchanged_file_never_reloads() {
        let dir = Dir::new("an_unchanged_file_never_reloads");
        let path = dir.path("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let mut w = FileWatch::new(path, Tried::default());
        assert_eq!(polls_until_change(&mut w), None);
    }

    #[test]
    fn a_replaced_file_reloads_once_after_it_settled() {
        let dir = Dir::new("a_replaced_file_reloads_once_after_it_settled");
        let path = dir.path("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let mut w = FileWatch::new(path.clone(), Tried::default());
        replace(&path, "a: 2\n");
        // The first poll sees the change, the second confirms it.
        assert_eq!(polls_until_change(&mut w), Some(2));
        assert_eq!(polls_until_change(&mut w), None);
        // An in-place rewrite (same inode) is noticed too.
        std::fs::write(&path, "a: 333\n").unwrap();
        assert_eq!(polls_until_change(&mut w), Some(2));
    }

    #[test]
    fn a_file_still_changing_waits_until_it_is_stable() {
        let dir = Dir::new("a_file_still_changing_waits_until_it_is_stable");
        let path = dir.path("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let mut w = FileWatch::new(path.clone(), Tried::default());
        std::fs::write(&path, "a: 1\nb:").unwrap();
        assert!(!w.poll(), "first sight of a change");
        assert!(w.pending());
        std::fs::write(&path, "a: 1\nb: 2\n").unwrap();
        assert!(!w.poll(), "the content moved since the last poll");
        assert!(w.poll(), "stable now");
        assert!(!w.pending());
    }

    #[test]
    fn the_same_content_does_not_reload() {
        let dir = Dir::new("the_same_content_does_not_reload");
        let path = dir.path("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let mut w = FileWatch::new(path.clone(), Tried::default());
        // A new inode and mtime with the same bytes.
        replace(&path, "a: 1\n");
        assert_eq!(polls_until_change(&mut w), None);
    }

    #[test]
    fn a_missing_file_changes_nothing_and_its_return_with_new_content_reloads() {
        let dir =
            Dir::new("a_missing_file_changes_nothing_and_its_return_with_new_content_reloads");
        let path = dir.path("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let mut w = FileWatch::new(path.clone(), Tried::default());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(polls_until_change(&mut w), None);
        assert!(w.reported_missing);
        std::fs::write(&path, "a: 2\n").unwrap();
        assert_eq!(polls_until_change(&mut w), Some(2));
        assert!(!w.reported_missing);
    }

    #[test]
    fn content_another_trigger_already_tried_is_not_reloaded_again() {
        let dir = Dir::new("tried_elsewhere");
        let path = dir.path("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let tried = Tried::default();
        let mut w = FileWatch::new(path.clone(), tried.clone());
        replace(&path, "a: 2\n");
        assert!(!w.poll());
        // SIGHUP or RELOAD read the new content in between.
        *tried.lock() = Some(content_hash(b"a: 2\n"));
        assert_eq!(polls_until_change(&mut w), None);
    }

    #[test]
    fn a_configmap_style_symlink_swap_reloads() {
        // dir/config.yaml -> ..data/config.yaml, dir/..data -> ..v1; the update writes ..v2
        // and renames a new ..data symlink over the old one.
        let dir = Dir::new("configmap");
        std::fs::create_dir(dir.path("..v1")).unwrap();
        std::fs::write(dir.path("..v1/config.yaml"), "a: 1\n").unwrap();
        std::os::unix::fs::symlink("..v1", dir.path("..data")).unwrap();
        std::os::unix::fs::symlink("..data/config.yaml", dir.path("config.yaml")).unwrap();
        let mut w = FileWatch::new(dir.path("config.yaml"), Tried::default());
        assert_eq!(polls_until_change(&mut w), None);

        std::fs::create_dir(dir.path("..v2")).unwrap();
        std::fs::write(dir.path("..v2/config.yaml"), "a: 2\n").unwrap();
        std::os::unix::fs::symlink("..v2", dir.path("..data_tmp")).unwrap();
        std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).unwrap();
        std::fs::remove_dir_all(dir.path("..v1")).unwrap();
        assert_eq!(polls_until_change(&mut w), Some(2));
        assert_eq!(polls_until_change(&mut w), None);
    }
}
