//! The cancel-key registry: clients get keys issued by pgsplit, and a CancelRequest carrying
//! one is forwarded to the server connection currently running that client's query.

use std::collections::HashMap;

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
    target: Option<CancelTarget>,
}

/// Client cancel keys → current server. Lock sections are tiny and never span an await.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<u32, Entry>>,
}

impl CancelRegistry {
    /// Registers the key pgsplit gave a client.
    pub fn register(&self, pid: u32, secret: u32) {
        self.entries.lock().insert(
            pid,
            Entry {
                secret,
                target: None,
            },
        );
    }

    /// Points a client's key at the server connection it is using (or at none).
    pub fn set_target(&self, pid: u32, target: Option<CancelTarget>) {
        if let Some(e) = self.entries.lock().get_mut(&pid) {
            e.target = target;
        }
    }

    /// Forgets a client's key when it disconnects.
    pub fn remove(&self, pid: u32) {
        self.entries.lock().remove(&pid);
    }

    /// The server to cancel for this key, if the key is valid and the client is on a server.
    /// A wrong secret yields `None`, exactly like an unknown key, so keys cannot be probed.
    pub fn lookup(&self, pid: u32, secret: u32) -> Option<CancelTarget> {
        let entries = self.entries.lock();
        let e = entries.get(&pid)?;
        if e.secret != secret {
            return None;
        }
        e.target.clone()
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no client is registered.
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
        r.register(7, 42);
        let t = CancelTarget {
            addr: "127.0.0.1:1".into(),
            key: (99, 100),
        };
        r.set_target(7, Some(t.clone()));
        assert_eq!(r.lookup(7, 42), Some(t));
        assert_eq!(r.lookup(7, 43), None);
        assert_eq!(r.lookup(8, 42), None);
        r.remove(7);
        assert_eq!(r.lookup(7, 42), None);
        assert!(r.is_empty());
    }
}
