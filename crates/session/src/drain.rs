//! The drain signal as sessions wait for it: one flag for the proxy and one waker slot per
//! session, so that waiting costs no lock on the hot path.
//!
//! Every unit waits for two or three events at once (client bytes, server bytes, "the proxy
//! drains"). A `watch::Receiver::changed()` in each of those `select!`s put a waiter on the
//! channel's list under its mutex and took it off again, several times per unit. Here a wait
//! is an atomic load and an [`AtomicWaker`] registration; only a session's start and end and
//! the drain itself take the registry's lock.

// Seeded per map, and several times faster than SipHash on short keys (names, ids).
use foldhash::{HashMap, HashMapExt};
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::watch;

/// The drain flag and the sessions waiting for it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    draining: AtomicBool,
    /// The shutdown channel, until the task that follows it is started.
    source: Mutex<Option<watch::Receiver<bool>>>,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

impl Drain {
    /// A drain that starts when `shutdown` turns `true` (or its sender is dropped).
    pub fn new(shutdown: watch::Receiver<bool>) -> Drain {
        let draining = *shutdown.borrow();
        Drain {
            inner: Arc::new(Inner {
                draining: AtomicBool::new(draining),
                source: Mutex::new(Some(shutdown)),
                next_id: AtomicU64::new(0),
                waiting: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether the proxy is draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Starts the drain now and wakes every waiting session.
    pub fn start(&self) {
        self.inner.start();
    }

    /// A waiter for one session. The first one, made inside the runtime, starts the task
    /// that follows the shutdown channel.
    pub(crate) fn watch(&self) -> DrainWatch {
        if let Some(mut rx) = self.inner.source.lock().take() {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                while !*rx.borrow_and_update() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
                inner.start();
            });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.inner.waiting.lock().insert(id, waker.clone());
        DrainWatch {
            inner: self.inner.clone(),
            id,
            waker,
        }
    }
}

impl Inner {
    fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for waker in self.waiting.lock().values() {
            waker.wake();
        }
    }
}

/// One session's view of the drain; leaves the registry when dropped.
#[derive(Debug)]
pub(crate) struct DrainWatch {
    inner: Arc<Inner>,
    id: u64,
    waker: Arc<AtomicWaker>,
}

impl DrainWatch {
    /// Whether the proxy is draining.
    pub(crate) fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Resolves once the proxy drains. Cancel safe, and cheap to create and drop: polling
    /// registers this task's waker (no lock), then reads the flag.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.draining() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // The flag is read again after registering, so a drain that started in between
            // is not missed (it woke the old waker or none).
            if self.draining() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl Drop for DrainWatch {
    fn drop(&mut self) {
        self.inner.waiting.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_session_wakes_when_the_channel_turns_true() {
        let (tx, rx) = watch::channel(false);
        let drain = Drain::new(rx);
        let watch = drain.watch();
        assert!(!watch.draining());
        let waiter = tokio::spawn(async move {
            watch.wait().await;
            watch.draining()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "no drain yet");
        tx.send(true).unwrap();
        let woke = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(woke.expect("woken by the drain").unwrap());
        assert!(drain.is_draining());
    }

    #[tokio::test]
    async fn a_dropped_sender_drains_and_a_late_watch_sees_it() {
        let (tx, rx) = watch::channel(false);
        let drain = Drain::new(rx);
        let first = drain.watch();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), first.wait())
            .await
            .expect("a dropped sender means stop");
        let late = drain.watch();
        assert!(late.draining());
        late.wait().await;
    }

    #[tokio::test]
    async fn start_wakes_every_waiter_and_dropped_watches_leave_the_registry() {
        let (_tx, rx) = watch::channel(false);
        let drain = Drain::new(rx);
        let watches: Vec<_> = (0..3).map(|_| drain.watch()).collect();
        drop(drain.watch());
        assert_eq!(drain.inner.waiting.lock().len(), 3);
        let tasks: Vec<_> = watches
            .into_iter()
            .map(|w| tokio::spawn(async move { w.wait().await }))
            .collect();
        tokio::task::yield_now().await;
        drain.start();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("woken")
                .unwrap();
        }
        assert!(drain.inner.waiting.lock().is_empty());
    }
}
