//! A bounded, sharded cache of verdicts keyed by the exact statement text.
//!
//! Each shard keeps two generations: lookups check `hot`, then `cold` (promoting a hit back
//! into `hot`); when `hot` reaches its share of the entry or byte budget, `cold` is dropped
//! and `hot` becomes `cold`. That keeps recently used statements, bounds memory to twice
//! the budget, and costs O(1) per operation with no per-entry bookkeeping. A hit does not
//! allocate: the map is looked up with the borrowed `&str` and the verdict is an `Arc`.

use crate::class::Classification;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

type Map = HashMap<Box<str>, Arc<Classification>, foldhash::fast::FixedState>;

const SHARDS: usize = 16;

/// The cache; cheap to share behind the classifier.
#[derive(Debug)]
pub(crate) struct Cache {
    hasher: foldhash::fast::FixedState,
    shards: Box<[Mutex<Shard>]>,
    /// Entries per shard generation.
    max_entries: usize,
    /// Key bytes per shard generation.
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Shard {
    hot: Map,
    cold: Map,
    hot_bytes: usize,
}

impl Cache {
    /// A cache for about `entries` statements and `bytes` of statement text in all.
    pub(crate) fn new(entries: usize, bytes: usize) -> Cache {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        Cache {
            hasher: foldhash::fast::FixedState::with_seed(0x0070_6773_706c_6974),
            shards,
            max_entries: entries.div_ceil(2 * SHARDS),
            max_bytes: bytes.div_ceil(2 * SHARDS),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key);
        &self.shards[(h as usize) % SHARDS]
    }

    /// The cached verdict for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Classification>> {
        let mut shard = self.shard(key).lock();
        if let Some(v) = shard.hot.get(key) {
            return Some(Arc::clone(v));
        }
        let (k, v) = shard.cold.remove_entry(key)?;
        let out = Arc::clone(&v);
        shard.insert(k, v, self.max_entries, self.max_bytes);
        Some(out)
    }

    /// Remembers `value` for `key` unless the key alone exceeds the byte budget.
    pub(crate) fn insert(&self, key: &str, value: Arc<Classification>) {
        if self.max_entries == 0 || key.len() > self.max_bytes {
            return;
        }
        let mut shard = self.shard(key).lock();
        shard.insert(key.into(), value, self.max_entries, self.max_bytes);
    }

    /// Number of entries in all generations (for tests and stats).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.hot.len() + s.cold.len()
            })
            .sum()
    }
}

impl Shard {
    fn insert(&mut self, key: Box<str>, value: Arc<Classification>, entries: usize, bytes: usize) {
        if self.hot.len() >= entries || self.hot_bytes + key.len() > bytes {
            self.cold = std::mem::take(&mut self.hot);
            self.hot_bytes = 0;
        }
        self.hot_bytes += key.len();
        if let Some(_old) = self.hot.insert(key, value) {
            // A racing insert of the same key: the bytes were counted twice; harmless.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{Class, Reason};

    #[test]
    fn bounded_and_promotes() {
        let cache = Cache::new(64, 1 << 20);
        let v = Arc::new(Classification::new(Class::Read, Reason::Select));
        for i in 0..10_000 {
            cache.insert(&format!("SELECT {i}"), Arc::clone(&v));
        }
        assert!(cache.len() <= 64 + 2 * SHARDS, "len {}", cache.len());
        cache.insert("SELECT keep", Arc::clone(&v));
        for i in 0..10_000 {
            assert!(cache.get("SELECT keep").is_some(), "lost after {i}");
            cache.insert(&format!("SELECT x{i}"), Arc::clone(&v));
        }
    }

    #[test]
    fn byte_budget() {
        let cache = Cache::new(1_000_000, 32 * 1024);
        let v = Arc::new(Classification::new(Class::Read, Reason::Select));
        let big = "x".repeat(4096);
        cache.insert(&big, Arc::clone(&v));
        assert!(cache.get(&big).is_none(), "larger than a shard's budget");
        for i in 0..1000 {
            cache.insert(&format!("{i} {}", "y".repeat(500)), Arc::clone(&v));
        }
        assert!(cache.len() < 200, "len {}", cache.len());
    }
}
