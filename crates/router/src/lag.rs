//! Replica lag from WAL positions: bytes behind, and time behind from a history of primary samples.
//!
//! Time lag is "how long ago the primary moved past the replica's replay position". It is
//! computed from the primary's own WAL positions as the health checker saw them, so it is
//! right on an idle primary (where `now() - pg_last_xact_replay_timestamp()` keeps growing
//! although the replica is fully caught up).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// A WAL position (`pg_lsn`), as a byte offset into the WAL stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's spelling of a `pg_lsn`: two hex halves, `16/B374D848`.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn(u64::from(hi) << 32 | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    /// PostgreSQL's spelling: two hex halves, `16/B374D848`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// How far a replica is behind the primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    /// Primary's latest known WAL position minus the replica's replay position.
    pub bytes: u64,
    /// How long ago the primary was first seen beyond the replica's replay position
    /// (zero when caught up). An underestimate by at most one probe interval.
    pub delay: Duration,
}

/// How many distinct primary positions are remembered. At the 500 ms default interval
/// this covers about a minute of a busy primary, far beyond any sensible `lag.max_delay`.
const HISTORY: usize = 128;

/// Recent primary WAL positions, one entry per change of position (an idle primary adds
/// nothing), each with the time it was first seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalHistory {
    samples: VecDeque<(Duration, Lsn)>,
}

impl WalHistory {
    /// Records a primary position seen at `at`. A position lower than the last one (a new
    /// primary on another timeline, a restored backup) starts the history afresh.
    pub fn record(&mut self, at: Duration, lsn: Lsn) {
        match self.samples.back() {
            Some(&(_, last)) if last == lsn => return,
            Some(&(_, last)) if lsn < last => self.samples.clear(),
            _ => {}
        }
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back((at, lsn));
    }

    /// Forgets every sample (the primary changed).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The primary's latest known position.
    pub fn latest(&self) -> Option<Lsn> {
        self.samples.back().map(|&(_, lsn)| lsn)
    }

    /// The lag of a replica that has replayed up to `replay`, at time `now`; `None` while
    /// no primary position is known.
    pub fn lag(&self, replay: Lsn, now: Duration) -> Option<Lag> {
        let latest = self.latest()?;
        if replay >= latest {
            return Some(Lag::default());
        }
        // The first sample beyond the replay position is when the primary was first seen
        // past it. If even the oldest sample is beyond it, the history does not reach back
        // far enough and the oldest sample gives a lower bound.
        let first_beyond = self
            .samples
            .iter()
            .find(|&&(_, lsn)| lsn > replay)
            .map_or(Duration::ZERO, |&(at, _)| at);
        Some(Lag {
            bytes: latest.0 - replay.0,
            delay: now.saturating_sub(first_beyond),
        })
    }
}
