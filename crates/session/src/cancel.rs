//! The cancel-key registry: clients get keys issued by pgsplit, and a CancelRequest carrying
//! one is forwarded to the server connection currently running that client's query.

// Seeded per map, and several times faster than SipHash on short keys (names, ids).
use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Where a client's cancel request must go right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelTarget {
    /// `host:port` of the server.
    pub addr: String,
    /// The server's (process id, secret).
    pub key: (u32, u32),
}

#[derive(Debug)]
struct Entry {
    secret: u32,
    slot: Arc<CancelSlot>,
}

/// Where one client's queries run now, updated by its session without touching the registry
/// (so attaching and detaching a server connection takes no shared lock).
#[derive(Debug, Default)]
pub struct CancelSlot {
    /// The client holds the server connection in `target`.
    attached: AtomicBool,
    /// The last server connection the client held (kept after detaching; a new one is copied
    /// into the same `String`, so attaching allocates nothing). Locked by its own session
    /// once per attach and by the rare cancel request: never contended in practice.
    target: Mutex<Option<CancelTarget>>,
}

impl CancelSlot {
    /// The client now holds the connection with this address and cancel key.
    pub fn attach(&self, addr: &str, key: (u32, u32)) {
        {
            let mut target = self.target.lock();
            match target.as_mut() {
                Some(t) => {
                    if t.key != key || t.addr != addr {
                        t.key = key;
                        addr.clone_into(&mut t.addr);
                    }
                }
                None => {
                    *target = Some(CancelTarget {
                        addr: addr.to_owned(),
                        key,
                    });
                }
            }
        }
        self.attached.store(true, Ordering::Release);
    }

    /// The client gave its connection back: its cancel key reaches nothing now.
    pub fn detach(&self) {
        self.attached.store(false, Ordering::Release);
    }

    fn current(&self) -> Option<CancelTarget> {
        if !self.attached.load(Ordering::Acquire) {
            return None;
        }
        self.target.lock().clone()
    }
}

/// Every client's cancel key and where its queries run.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<u32, Entry>>,
}

impl CancelRegistry {
    /// Registers the key `pid`/`secret` of a client whose session updates `slot`.
    pub fn register(&self, pid: u32, secret: u32, slot: Arc<CancelSlot>) {
        self.entries.lock().insert(pid, Entry { secret, slot });
    }

    /// Forgets a client's key.
    pub fn remove(&self, pid: u32) {
        self.entries.lock().remove(&pid);
    }

    /// Where a cancel request with this key must go; `None` for an unknown key, a wrong
    /// secret, or a client that holds no server connection.
    pub fn lookup(&self, pid: u32, secret: u32) -> Option<CancelTarget> {
        let slot = {
            let entries = self.entries.lock();
            let e = entries.get(&pid)?;
            if e.secret != secret {
                return None;
            }
            Arc::clone(&e.slot)
        };
        slot.current()
    }

    /// Number of registered keys.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no key is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_secret_is_like_unknown_key() {
        let r = CancelRegistry::default();
        let slot = Arc::new(CancelSlot::default());
        r.register(7, 42, Arc::clone(&slot));
        assert_eq!(r.lookup(7, 42), None, "no connection held yet");
        let t = CancelTarget {
            addr: "127.0.0.1:1".into(),
            key: (99, 100),
        };
        slot.attach(&t.addr, t.key);
        assert_eq!(r.lookup(7, 42), Some(t.clone()));
        slot.detach();
        assert_eq!(r.lookup(7, 42), None, "detached: the key reaches nothing");
        slot.attach("127.0.0.1:2", (1, 2));
        assert_eq!(r.lookup(7, 42).map(|t| t.key), Some((1, 2)));
        assert_eq!(r.lookup(7, 43), None);
        assert_eq!(r.lookup(8, 42), None);
        r.remove(7);
        assert_eq!(r.lookup(7, 42), None);
        assert!(r.is_empty());
    }
}
