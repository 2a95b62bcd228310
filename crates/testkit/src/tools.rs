//! External programs some tests run: where to find them.

use std::path::PathBuf;

/// `promtool` (Debian's `prometheus` package, which `cargo xtask install` installs): Debian's
/// and the usual local path first, then the `PATH`. `None` when it is nowhere.
pub fn promtool() -> Option<PathBuf> {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::var_os("PATH").into_iter().flat_map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("promtool"))
                .collect::<Vec<_>>()
        }))
        .find(|p| p.is_file())
}
