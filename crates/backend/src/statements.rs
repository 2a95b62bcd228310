//! Which prepared statements a server connection holds under pgsplit's own names: a bounded LRU
//! of opaque statement ids.
//!
//! In transaction pooling a client's named statements must exist on whichever server connection
//! its next transaction lands on. Sessions prepare them on demand under names derived from an
//! id, and this cache is how a connection remembers which ids it already has, so that a
//! statement is prepared once per connection rather than once per use.
//!
//! The backend gives ids no meaning (sessions derive them from the statement text); it only
//! bounds how many statements one server backend keeps, because each costs server memory for as
//! long as the connection lives. The cache is purely bookkeeping: it never talks to the server,
//! so when it evicts an id the caller must send the matching Close itself.

// Ids are keyed hashes already; foldhash is a few instructions on a u64.
use foldhash::{HashMap, HashMapExt};

/// How many statements a server connection keeps before the least recently used is closed.
pub const DEFAULT_STATEMENT_CAPACITY: usize = 256;

/// Marks the end of the recency list (no neighbour).
const NIL: usize = usize::MAX;

/// A bounded least-recently-used set of statement ids, with O(1) operations.
///
/// Ids live in a slab of nodes linked from newest to oldest, so touching an id on every use (the
/// hot path: each Bind of a named statement) moves one node without shifting the others.
#[derive(Debug)]
pub struct StatementCache {
    /// Most ids kept before [`StatementCache::insert`] evicts the oldest (at least 1).
    capacity: usize,
    /// Where each cached id sits in `nodes`.
    index: HashMap<u64, usize>,
    /// Slab of list nodes; slots listed in `free` are unused.
    nodes: Vec<Node>,
    /// Unused slots of `nodes`, reused before the slab grows.
    free: Vec<usize>,
    /// Slot of the most recently used id, or `NIL` when empty.
    newest: usize,
    /// Slot of the least recently used id (the next to evict), or `NIL` when empty.
    oldest: usize,
}

/// One id in the recency list.
#[derive(Debug, Clone, Copy)]
struct Node {
    id: u64,
    /// Slot of the next more recently used id, or `NIL`.
    newer: usize,
    /// Slot of the next less recently used id, or `NIL`.
    older: usize,
}

impl Default for StatementCache {
    /// An empty cache holding up to [`DEFAULT_STATEMENT_CAPACITY`] ids.
    fn default() -> Self {
        StatementCache::with_capacity(DEFAULT_STATEMENT_CAPACITY)
    }
}

impl StatementCache {
    /// An empty cache holding up to `capacity` ids (a capacity of 0 is taken as 1, because a
    /// statement must exist on the server at least while it is being used).
    pub fn with_capacity(capacity: usize) -> Self {
        StatementCache {
            capacity: capacity.max(1),
            index: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
        }
    }

    /// Most ids kept before an insert evicts one.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of ids cached.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no id is cached (always true for a new connection).
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether the connection holds statement `id`; does not change its recency.
    pub fn contains(&self, id: u64) -> bool {
        self.index.contains_key(&id)
    }

    /// Marks `id` as just used, so it is evicted last; false if it is not cached.
    pub fn touch(&mut self, id: u64) -> bool {
        let Some(&slot) = self.index.get(&id) else {
            return false;
        };
        if slot != self.newest {
            self.unlink(slot);
            self.link_newest(slot);
        }
        true
    }

    /// Records that the connection now holds `id`, as the most recently used.
    ///
    /// When the cache is full, the least recently used id is forgotten and returned: the caller
    /// must close that statement on the server (before preparing a new one, so the server never
    /// holds more than `capacity` of them). An id already cached is only touched.
    pub fn insert(&mut self, id: u64) -> Option<u64> {
        if self.touch(id) {
            return None;
        }
        let evicted = if self.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let slot = self.alloc(id);
        self.link_newest(slot);
        self.index.insert(id, slot);
        evicted
    }

    /// Puts back an id whose eviction did not happen on the server (its Close was never
    /// executed), as the least recently used, without evicting anything.
    ///
    /// This may leave the cache one over capacity; the caller restores only while rolling back
    /// the insert that caused the eviction, which brings it back to capacity. An id already
    /// cached is left where it is.
    pub fn restore(&mut self, id: u64) {
        if self.contains(id) {
            return;
        }
        let slot = self.alloc(id);
        self.nodes[slot].newer = self.oldest;
        match self.oldest {
            NIL => self.newest = slot,
            old => self.nodes[old].older = slot,
        }
        self.oldest = slot;
        self.index.insert(id, slot);
    }

    /// Forgets `id` (its Parse failed, or the server no longer has it); false if it was not
    /// cached.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.index.remove(&id) else {
            return false;
        };
        self.unlink(slot);
        self.free.push(slot);
        true
    }

    /// Forgets every id, for when the server dropped all its statements (`DISCARD ALL`,
    /// `DEALLOCATE ALL`).
    pub fn clear(&mut self) {
        self.index.clear();
        self.nodes.clear();
        self.free.clear();
        self.newest = NIL;
        self.oldest = NIL;
    }

    /// The cached ids from most to least recently used (for tests and diagnostics).
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        let mut slot = self.newest;
        std::iter::from_fn(move || {
            let node = self.nodes.get(slot)?;
            slot = node.older;
            Some(node.id)
        })
    }

    /// Removes and returns the least recently used id.
    fn pop_oldest(&mut self) -> Option<u64> {
        let id = self.nodes.get(self.oldest)?.id;
        self.remove(id);
        Some(id)
    }

    /// A detached node for `id`, in a reused slot when one is free.
    fn alloc(&mut self, id: u64) -> usize {
        let node = Node {
            id,
            newer: NIL,
            older: NIL,
        };
        match self.free.pop() {
            Some(slot) => {
                self.nodes[slot] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    /// Takes `slot` out of the recency list, joining its neighbours.
    fn unlink(&mut self, slot: usize) {
        let Node { newer, older, .. } = self.nodes[slot];
        match newer {
            NIL => self.newest = older,
            n => self.nodes[n].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.nodes[o].newer = newer,
        }
        self.nodes[slot].newer = NIL;
        self.nodes[slot].older = NIL;
    }

    /// Puts a detached `slot` at the most recently used end.
    fn link_newest(&mut self, slot: usize) {
        self.nodes[slot].older = self.newest;
        self.nodes[slot].newer = NIL;
        match self.newest {
            NIL => self.oldest = slot,
            n => self.nodes[n].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(cache: &StatementCache) -> Vec<u64> {
        cache.ids().collect()
    }

    #[test]
    fn a_new_cache_is_empty_with_the_default_capacity() {
        let cache = StatementCache::default();
        assert!(cache.is_empty());
        assert_eq!(cache.capacity(), DEFAULT_STATEMENT_CAPACITY);
        assert!(!cache.contains(7));
        assert_eq!(StatementCache::with_capacity(0).capacity(), 1);
    }

    #[test]
    fn insert_evicts_the_least_recently_used() {
        let mut cache = StatementCache::with_capacity(3);
        assert_eq!(cache.insert(1), None);
        assert_eq!(cache.insert(2), None);
        assert_eq!(cache.insert(3), None);
        assert!(cache.touch(1));
        assert_eq!(ids(&cache), [1, 3, 2]);
        assert_eq!(cache.insert(4), Some(2));
        assert_eq!(ids(&cache), [4, 1, 3]);
        assert!(!cache.contains(2));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn inserting_a_cached_id_only_touches_it() {
        let mut cache = StatementCache::with_capacity(2);
        cache.insert(1);
        cache.insert(2);
        assert_eq!(cache.insert(1), None);
        assert_eq!(ids(&cache), [1, 2]);
        assert!(!cache.touch(9));
    }

    #[test]
    fn remove_and_clear_forget_ids_and_slots_are_reused() {
        let mut cache = StatementCache::with_capacity(4);
        for id in 1..=4 {
            cache.insert(id);
        }
        assert!(cache.remove(2));
        assert!(!cache.remove(2));
        assert_eq!(ids(&cache), [4, 3, 1]);
        cache.insert(5);
        assert_eq!(ids(&cache), [5, 4, 3, 1]);
        assert_eq!(cache.nodes.len(), 4, "the freed slot was reused");
        assert!(cache.remove(1));
        assert!(cache.remove(5));
        assert_eq!(ids(&cache), [4, 3]);
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(ids(&cache), Vec::<u64>::new());
        assert_eq!(cache.insert(8), None);
        assert_eq!(ids(&cache), [8]);
    }

    #[test]
    fn restore_puts_an_id_back_as_the_oldest_without_evicting() {
        let mut cache = StatementCache::with_capacity(2);
        cache.insert(1);
        assert_eq!(cache.insert(2), None);
        assert_eq!(cache.insert(3), Some(1));
        // The Close of 1 never ran and the Parse of 3 failed: undo both.
        cache.restore(1);
        assert_eq!(ids(&cache), [3, 2, 1]);
        assert!(cache.remove(3));
        assert_eq!(ids(&cache), [2, 1]);
        cache.restore(2);
        assert_eq!(ids(&cache), [2, 1], "restoring a cached id changes nothing");
        let mut empty = StatementCache::with_capacity(1);
        empty.restore(5);
        assert_eq!(ids(&empty), [5]);
        assert_eq!(empty.insert(6), Some(5));
    }

    #[test]
    fn touching_keeps_the_list_consistent_under_churn() {
        let mut cache = StatementCache::with_capacity(8);
        let mut model: Vec<u64> = Vec::new();
        for step in 0u64..500 {
            let id = (step * 7919) % 13;
            match step % 5 {
                0..=2 => {
                    let evicted = cache.insert(id);
                    if let Some(pos) = model.iter().position(|&m| m == id) {
                        model.remove(pos);
                        assert_eq!(evicted, None);
                    } else if model.len() == 8 {
                        assert_eq!(evicted, model.pop());
                    }
                    model.insert(0, id);
                }
                3 => {
                    let hit = cache.touch(id);
                    assert_eq!(hit, model.contains(&id));
                    if let Some(pos) = model.iter().position(|&m| m == id) {
                        model.remove(pos);
                        model.insert(0, id);
                    }
                }
                _ => {
                    let had = model.iter().position(|&m| m == id);
                    assert_eq!(cache.remove(id), had.is_some());
                    if let Some(pos) = had {
                        model.remove(pos);
                    }
                }
            }
            assert_eq!(ids(&cache), model, "step {step}");
        }
    }
}
