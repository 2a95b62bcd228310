//! The classifier: cache → guarded lexer → pg_query → cache.

use crate::cache::Cache;
use crate::class::{Class, Classification, Reason};
use crate::effects::session_effects;
use crate::fast;
use crate::functions::{FnClass, FunctionLists, UnknownFunctions};
use crate::hint::leading_hint;
use crate::lexer::{Token, Tokens};
use crate::parse::{self, Policy};
use crate::shape::shape_key_into;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// The buffer each thread builds shape keys in, so that a cache hit allocates nothing.
    /// Scratch space only: nothing is kept in it between calls.
    static SHAPE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The largest shape-key buffer a thread keeps between calls.
const SHAPE_SCRATCH_KEEP: usize = 64 * 1024;

/// What the shape key found in the cache.
enum Shape {
    /// No shape key: the text is cached under its exact self or its normalization.
    None,
    /// The verdict shared under the key.
    Hit(Arc<Classification>),
    /// Not cached yet: the key, to remember the verdict under.
    Miss(Vec<u8>),
}

/// How often the classification cache answered, shared by the classifiers of successive
/// config generations so that the totals only grow (a reload builds a new classifier and an
/// empty cache, but passes the same counters on in [`Options::cache_counters`]).
///
/// Counted with one relaxed atomic add per lookup; nothing else is done on the hot path.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheCounters {
    /// Lookups the cache answered.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups the cache could not answer (the text was classified, then remembered if it
    /// fits). With the cache disabled every lookup is a miss.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// What the classifier is told by configuration (YAML `functions:` and cache size).
#[derive(Clone, Debug)]
pub struct Options {
    /// Extra functions that write or are session-bound (`functions.write`): calls route to
    /// the primary. Lower-case names, optionally schema-qualified, `*` suffix for a prefix.
    pub write_functions: Vec<String>,
    /// Functions known to be read-only (`functions.read`). Overrides the built-in write list.
    pub read_functions: Vec<String>,
    /// What to do with functions in no list (`functions.unknown`, default primary).
    pub unknown_functions: UnknownFunctions,
    /// How many distinct statement texts to remember (about; 0 disables the cache).
    pub cache_entries: usize,
    /// How many bytes of statement text to remember (about).
    pub cache_bytes: usize,
    /// Where cache hits and misses are counted (a fresh pair by default; pass the previous
    /// generation's to keep the totals monotonic across reloads).
    pub cache_counters: Arc<CacheCounters>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            write_functions: Vec::new(),
            read_functions: Vec::new(),
            unknown_functions: UnknownFunctions::Primary,
            cache_entries: 10_000,
            cache_bytes: 32 * 1024 * 1024,
            cache_counters: Arc::default(),
        }
    }
}

/// Classifies SQL text. Build one per configuration generation: a reload that changes the
/// function lists builds a new one, which also drops the old cache.
///
/// Shareable across threads (`&self` everywhere; the cache is sharded behind short locks).
#[derive(Debug)]
pub struct Classifier {
    functions: FunctionLists,
    unknown: UnknownFunctions,
    cache: Cache,
    counters: Arc<CacheCounters>,
}

impl Classifier {
    /// A classifier for `options`.
    pub fn new(options: Options) -> Classifier {
        Classifier {
            functions: FunctionLists::new(&options.write_functions, &options.read_functions),
            unknown: options.unknown_functions,
            cache: Cache::new(options.cache_entries, options.cache_bytes),
            counters: options.cache_counters,
        }
    }

    /// Classifies `sql` (one Simple Query string or one prepared statement's text), with
    /// `standard_conforming_strings = on` (the server default since 9.1).
    ///
    /// Never fails and never panics: anything it cannot settle is [`Class::Unknown`], which
    /// routes to the primary. A repeated text is answered from the cache without allocating.
    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        self.classify_with(sql, true)
    }

    /// Like [`Classifier::classify`], for a session whose `standard_conforming_strings` is
    /// as given. With it off, a backslash in a string literal escapes the quote, which
    /// pg_query (always on) would lex differently, so any text with a backslash is
    /// [`Class::Unknown`] with reason `nonstandard_strings`.
    pub fn classify_with(
        &self,
        sql: &str,
        standard_conforming_strings: bool,
    ) -> Arc<Classification> {
        if !standard_conforming_strings && sql.contains('\\') {
            let mut c = Classification::unknown(Reason::NonstandardStrings);
            c.hint = leading_hint(sql);
            c.effects = session_effects(sql);
            return Arc::new(c);
        }
        // Texts that differ only in their constants (`... WHERE id = 42` from ORMs and
        // pgbench) share one verdict: under a shape key when a one-pass lexer settles where
        // the constants are, else under PostgreSQL's own normalization (`... = $1`), which
        // costs a raw parse instead of a full parse and tree decode. The shape key is tried
        // first: most texts have one, and then the exact text (nearly always unique, as its
        // constants are) need not be hashed and looked up in vain.
        let shape = SHAPE_SCRATCH.with_borrow_mut(|key| {
            let shape = if !shape_key_into(sql, key) {
                Shape::None
            } else {
                match self.shared_hit(key, sql) {
                    Some(hit) => Shape::Hit(hit),
                    None => Shape::Miss(key.clone()),
                }
            };
            // One huge text (a bulk INSERT) must not pin its size in every thread's buffer.
            if key.capacity() > SHAPE_SCRATCH_KEEP {
                *key = Vec::new();
            }
            shape
        });
        let shape = match shape {
            Shape::Hit(hit) => return hit,
            Shape::Miss(key) => Some(key),
            Shape::None => None,
        };
        // Verdicts that are not shared (SET, BEGIN, EXPLAIN) are kept under the exact text.
        if let Some(hit) = self.cache.get(sql.as_bytes()) {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return hit;
        }
        let normalized = match shape {
            Some(key) => Some(key),
            None => {
                let key = normalized(sql).map(String::into_bytes);
                if let Some(k) = key.as_deref()
                    && let Some(hit) = self.shared_hit(k, sql)
                {
                    return hit;
                }
                key
            }
        };
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let verdict = Arc::new(self.classify_uncached(sql));
        match normalized.as_deref() {
            Some(key) if shareable(&verdict) => self.cache.insert(key, Arc::clone(&verdict)),
            _ => self.cache.insert(sql.as_bytes(), Arc::clone(&verdict)),
        }
        verdict
    }

    /// The verdict cached under the shared key `key` for `sql`, if its leading hint is the
    /// same (hints are not part of the key, and must not be shared).
    fn shared_hit(&self, key: &[u8], sql: &str) -> Option<Arc<Classification>> {
        let hit = self
            .cache
            .get(key)
            .filter(|hit| hit.hint == leading_hint(sql))?;
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(hit)
    }

    /// Classifies without touching the cache (benchmarks, `EXPLAIN ROUTE`, tests).
    pub fn classify_uncached(&self, sql: &str) -> Classification {
        match fast::classify(sql) {
            Some(mut c) => {
                c.hint = leading_hint(sql);
                c.effects = session_effects(sql);
                c
            }
            // Sets the hint and the effects itself.
            None => self.classify_parsed(sql),
        }
    }

    /// The pg_query path alone, without the fast path or the cache (tests compare the two).
    pub fn classify_parsed(&self, sql: &str) -> Classification {
        let mut c = if sql.contains('\0') {
            Classification::unknown(Reason::Unparsed)
        } else {
            let policy = Policy {
                functions: &self.functions,
                unknown: self.unknown,
            };
            // pg_query reports errors (incl. its nesting limit) as `Err`; the unwind guard
            // is a second line so that no input can take a session down.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                parse::classify(sql, &policy)
            }))
            .ok()
            .flatten()
            .unwrap_or_else(|| Classification::unknown(Reason::Unparsed))
        };
        self.safety_net(sql, &mut c);
        c.hint = leading_hint(sql);
        c.effects = session_effects(sql);
        c
    }

    /// A second, independent look for writing functions: if the text calls a function
    /// from a write list (`name (` outside literals and comments) and the verdict is still
    /// a read, the walk missed it somewhere, so fail closed.
    fn safety_net(&self, sql: &str, c: &mut Classification) {
        if c.class != Class::Read {
            return;
        }
        let mut prev: Option<&str> = None;
        let mut lower = String::new();
        for tok in Tokens::new(sql) {
            if let (Some(word), Token::Other) = (prev, tok) {
                lower.clear();
                lower.push_str(word);
                lower.make_ascii_lowercase();
                if self.functions.class_of(&lower) == FnClass::Write && next_is_paren(sql, word) {
                    *c = Classification {
                        class: Class::Write,
                        reason: Reason::WritingFunction,
                        ..std::mem::replace(c, Classification::unknown(Reason::Unparsed))
                    };
                    return;
                }
            }
            prev = match tok {
                Token::Word(w) => Some(w),
                _ => None,
            };
        }
    }

    /// How a call written as `name` (lower-case, dots between schema and name) is classed
    /// by this classifier's function lists.
    pub fn function_class(&self, name: &str) -> FnClass {
        self.functions.class_of(name)
    }

    /// What this classifier does with functions in no list.
    pub fn unknown_functions(&self) -> UnknownFunctions {
        self.unknown
    }

    /// Number of cached verdicts (for stats).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The cache hit and miss counters [`Classifier::classify_with`] feeds (shared with
    /// the classifiers of earlier and later generations when they were passed on).
    pub fn cache_counters(&self) -> &Arc<CacheCounters> {
        &self.counters
    }
}

/// Whether the first occurrence of `word` in `sql` (a slice of it) is followed by `(`.
fn next_is_paren(sql: &str, word: &str) -> bool {
    // `word` borrows from `sql`, so its offset is exact.
    let start = word.as_ptr() as usize - sql.as_ptr() as usize;
    sql[start + word.len()..].trim_start().starts_with('(')
}

/// Longest text worth normalizing before a full parse (longer ones are rare and cached by
/// their exact text).
const NORMALIZE_LIMIT: usize = 16 * 1024;

/// PostgreSQL's normalization of `sql` (every constant replaced by `$n`, with its own lexer,
/// so dollar quotes, `E''` strings and comments are handled exactly as the server does), when
/// it differs from `sql`. `None` for text without constants, text that does not parse, and
/// very long text.
fn normalized(sql: &str) -> Option<String> {
    if sql.len() > NORMALIZE_LIMIT || sql.contains('\0') {
        return None;
    }
    // Without a digit or a quote there is no constant to replace.
    if !sql
        .bytes()
        .any(|b| b.is_ascii_digit() || b == b'\'' || b == b'$')
    {
        return None;
    }
    let normalized = std::panic::catch_unwind(|| pg_query::normalize(sql))
        .ok()?
        .ok()?;
    (normalized != sql).then_some(normalized)
}

/// Whether a verdict holds for every text with the same normalized form: constants never
/// change what a SELECT or a DML statement is, but they are the value of a SET, and EXPLAIN
/// options (`ANALYZE false`) decide its reason, so those are cached by exact text only.
fn shareable(c: &Classification) -> bool {
    matches!(c.class, Class::Read | Class::Write)
        && c.setting.is_none()
        && !matches!(
            c.reason,
            Reason::ExplainRead | Reason::ExplainWrite | Reason::ExplainAnalyzeWrite
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A huge text is classified, but the thread's shape-key buffer does not keep its size.
    #[test]
    fn a_huge_text_does_not_pin_the_shape_buffer() {
        let c = Classifier::new(Options::default());
        let values = vec!["(1, 'x')"; 20_000].join(", ");
        let sql = format!("INSERT INTO t VALUES {values}");
        assert!(sql.len() > SHAPE_SCRATCH_KEEP);
        assert_eq!(c.classify(&sql).class, Class::Write);
        SHAPE_SCRATCH.with_borrow(|key| assert!(key.capacity() <= SHAPE_SCRATCH_KEEP));
        assert_eq!(c.classify("SELECT 1 FROM t WHERE a = 2").class, Class::Read);
        SHAPE_SCRATCH.with_borrow(|key| assert!(key.capacity() > 0, "small keys are kept"));
    }

    #[test]
    fn cached_hit_is_shared() {
        let c = Classifier::new(Options::default());
        let a = c.classify("SELECT 1");
        let b = c.classify("SELECT 1");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.class, Class::Read);
    }

    #[test]
    fn cache_lookups_are_counted_and_counters_can_be_shared() {
        let c = Classifier::new(Options::default());
        c.classify("SELECT 1");
        c.classify("SELECT 1");
        c.classify("SELECT a FROM t");
        c.classify("SELECT 1");
        // Same shape as `SELECT 1`: a hit.
        c.classify("SELECT 2");
        // Not a lookup: the text is refused before the cache is asked.
        c.classify_with("SELECT '\\'", false);
        c.classify_uncached("SELECT 1");
        let counters = Arc::clone(c.cache_counters());
        assert_eq!((counters.hits(), counters.misses()), (3, 2));
        // The next generation: an empty cache, the same counters.
        let next = Classifier::new(Options {
            cache_counters: Arc::clone(&counters),
            ..Options::default()
        });
        next.classify("SELECT 1");
        next.classify("SELECT 1");
        assert_eq!((counters.hits(), counters.misses()), (4, 3));
        // A disabled cache misses every time.
        let off = Classifier::new(Options {
            cache_entries: 0,
            ..Options::default()
        });
        off.classify("SELECT 1");
        off.classify("SELECT 1");
        let counters = off.cache_counters();
        assert_eq!((counters.hits(), counters.misses()), (0, 2));
    }

    #[test]
    fn nonstandard_strings_fail_closed() {
        let c = Classifier::new(Options::default());
        let sql = "SELECT 'a\\', $$'; DELETE FROM t; --$$";
        assert_eq!(c.classify_with(sql, false).class, Class::Unknown);
        assert_eq!(c.classify_with("SELECT 1", false).class, Class::Read);
    }

    #[test]
    fn nul_and_garbage_never_panic() {
        let c = Classifier::new(Options::default());
        for sql in [
            "SELECT 1\0",
            "\u{0}",
            "SELEC",
            "'",
            "$$",
            "((((",
            "SELECT (",
            "é",
        ] {
            assert_eq!(c.classify(sql).class, Class::Unknown, "{sql:?}");
        }
    }
}
