//! A bounded, sharded cache of verdicts keyed by statement text (exact, or a shape key).
//!
//! Each shard keeps two generations: lookups check `hot`, then `cold` (promoting a hit back
//! into `hot`); when `hot` reaches its share of the entry or byte budget, `cold` is dropped
//! and `hot` becomes `cold`. That keeps recently used statements, bounds memory to twice
//! the budget, and costs O(1) per operation with no per-entry bookkeeping. A hit does not
//! allocate and hashes the key once: the hash picks the shard and is kept with the entry, the
//! key is compared as bytes and the verdict is an `Arc`.

use crate::class::Classification;
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A cached verdict with its key and the key's hash.
#[derive(Debug)]
struct Entry {
    hash: u64,
    key: Box<[u8]>,
    value: Arc<Classification>,
}

type Map = HashTable<Entry>;

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

    /// The key's hash and its shard. The shard comes from bits the tables use neither for
    /// the bucket (low bits) nor for the tag (top 7 bits).
    fn locate(&self, key: &[u8]) -> (u64, &Mutex<Shard>) {
        let h = self.hasher.hash_one(key);
        (h, &self.shards[((h >> 40) as usize) % SHARDS])
    }

    /// The cached verdict for `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<Classification>> {
        let (hash, shard) = self.locate(key);
        let mut shard = shard.lock();
        let same = |e: &Entry| e.hash == hash && *e.key == *key;
        if let Some(e) = shard.hot.find(hash, same) {
            return Some(Arc::clone(&e.value));
        }
        let entry = shard.cold.find_entry(hash, same).ok()?.remove().0;
        let out = Arc::clone(&entry.value);
        shard.insert(entry, self.max_entries, self.max_bytes);
        Some(out)
    }

    /// Remembers `value` for `key` unless the key alone exceeds the byte budget.
    pub(crate) fn insert(&self, key: &[u8], value: Arc<Classification>) {
        if self.max_entries == 0 || key.len() > self.max_bytes {
            return;
        }
        let (hash, shard) = self.locate(key);
        let entry = Entry {
            hash,
            key: key.into(),
            value,
        };
        shard.lock().insert(entry, self.max_entries, self.max_bytes);
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
    fn insert(&mut self, entry: Entry, entries: usize, bytes: usize) {
        if self.hot.len() >= entries || self.hot_bytes + entry.key.len() > bytes {
            self.cold = std::mem::take(&mut self.hot);
            self.hot_bytes = 0;
        }
        match self.hot.entry(
            entry.hash,
            |e| e.hash == entry.hash && e.key == entry.key,
            |e| e.hash,
        ) {
            // A racing insert of the same key: keep the first.
            hashbrown::hash_table::Entry::Occupied(_) => {}
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.hot_bytes += entry.key.len();
                v.insert(entry);
            }
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
            cache.insert(format!("SELECT {i}").as_bytes(), Arc::clone(&v));
        }
        assert!(cache.len() <= 64 + 2 * SHARDS, "len {}", cache.len());
        cache.insert(b"SELECT keep", Arc::clone(&v));
        for i in 0..10_000 {
            assert!(cache.get(b"SELECT keep").is_some(), "lost after {i}");
            cache.insert(format!("SELECT x{i}").as_bytes(), Arc::clone(&v));
        }
    }

    #[test]
    fn byte_budget() {
        let cache = Cache::new(1_000_000, 32 * 1024);
        let v = Arc::new(Classification::new(Class::Read, Reason::Select));
        let big = "x".repeat(4096);
        cache.insert(big.as_bytes(), Arc::clone(&v));
        assert!(
            cache.get(big.as_bytes()).is_none(),
            "larger than a shard's budget"
        );
        for i in 0..1000 {
            cache.insert(
                format!("{i} {}", "y".repeat(500)).as_bytes(),
                Arc::clone(&v),
            );
        }
        assert!(cache.len() < 200, "len {}", cache.len());
    }
}
