//! CPU time from /proc: a proxy's own, pgbench's, and the PostgreSQL servers' (each postmaster,
//! its live children, and the children it has reaped), read around each pgbench run.

use std::path::Path;

/// `USER_HZ`, the unit of the times in /proc (100 on Linux whatever the kernel's own HZ).
pub(crate) const CLOCK_TICKS: f64 = 100.0;

/// The fields of a /proc/PID/stat line that the bench uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// `utime + stime`: the process's own CPU time, all its threads.
    own: u64,
    /// `cutime + cstime`: the CPU time of the children it has reaped (and of theirs).
    reaped: u64,
}

/// Parses a /proc/PID/stat line, counting fields after the parenthesised command name (which
/// may contain spaces and parentheses).
fn parse_stat(stat: &str) -> Option<Stat> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // `fields[0]` is field 3 (state): field N is `fields[N - 3]`.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        own: field(14)? + field(15)?,
        reaped: field(16)? + field(17)?,
    })
}

fn stat_of(pid: &str) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The parent of `pid`.
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    stat_of(&pid.to_string()).map(|s| s.ppid)
}

/// The CPU time `pid` has used (all threads), in clock ticks.
pub(crate) fn process_ticks(pid: u32) -> Option<u64> {
    stat_of(&pid.to_string()).map(|s| s.own)
}

/// The CPU time of the children this process has reaped, in clock ticks. pgbench is the only
/// child reaped during a run, so the difference around one run is pgbench's own CPU time.
pub(crate) fn reaped_children_ticks() -> Option<u64> {
    stat_of("self").map(|s| s.reaped)
}

/// The CPU time of PostgreSQL servers, in clock ticks: each postmaster's own, what it reaped
/// (backends that exited, as with `pgbench -C` directly) and its live children's (backends,
/// walsender, checkpointer, ...).
pub(crate) fn servers_ticks(postmasters: &[u32]) -> Option<u64> {
    if postmasters.is_empty() {
        return None;
    }
    // The children, then the postmasters, then the children again: a child reaped in between
    // is in its postmaster's reaped time, so its own time counts only if it is still there
    // (a zombie not yet reaped still is). Exact whatever exits meanwhile, as happens at the
    // end of a run when its clients' backends exit together.
    let mut children: Vec<(String, u64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may exit between the listing and the read: it is then skipped.
        if let Some(stat) = stat_of(pid)
            && postmasters.contains(&stat.ppid)
        {
            children.push((pid.to_owned(), stat.own));
        }
    }
    let mut total = 0;
    for &pid in postmasters {
        let stat = stat_of(&pid.to_string())?;
        total += stat.own + stat.reaped;
    }
    for (pid, own) in children {
        if stat_of(&pid).is_some_and(|s| postmasters.contains(&s.ppid)) {
            total += own;
        }
    }
    Some(total)
}

/// The postmaster's PID of a running server, the first line of its data directory's
/// `postmaster.pid`.
pub(crate) fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// CPU milliseconds between two tick readings.
pub(crate) fn ms_between(before: Option<u64>, after: Option<u64>) -> Option<f64> {
    let (before, after) = (before?, after?);
    Some(after.saturating_sub(before) as f64 * 1000.0 / CLOCK_TICKS)
}

#[cfg(test)]
mod tests {
    use super::{
        Stat, ms_between, parse_stat, process_ticks, reaped_children_ticks, servers_ticks,
    };

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parentheses() {
        // Fields 3.. are: state, ppid 7, then 5 .. 13, utime 11, stime 12, cutime 13, cstime 14.
        let stat = "123 (post (a) b) S 7 5 6 7 8 9 10 11 12 13 11 12 13 14 20 0";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                ppid: 7,
                own: 23,
                reaped: 27
            })
        );
        assert_eq!(parse_stat("123 (cut short) S 7 5"), None);
    }

    #[test]
    fn readings_of_this_process() {
        let me = std::process::id();
        assert!(process_ticks(me).is_some());
        assert!(reaped_children_ticks().is_some());
        // This process stands in for a postmaster: its own time is counted.
        assert!(servers_ticks(&[me]).is_some());
        assert_eq!(servers_ticks(&[]), None);
        assert_eq!(ms_between(Some(10), Some(35)), Some(250.0));
        assert_eq!(ms_between(None, Some(35)), None);
    }
}
