//! Operator requests that travel from the admin console to the proxy: config reload and pause.
//!
//! The session crate cannot reload a config itself (reading files and building snapshots is the
//! composition root's job), so the console sends a [`ReloadRequest`] down a channel the proxy
//! consumes and waits for the answer. Pausing is a flag every session checks before it takes a
//! server connection: while it is set, sessions that need a new connection wait.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot, watch};

/// A request to re-read the config file, answered with the new generation or why it failed.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Where the proxy sends the outcome: the new snapshot's generation, or the error text
    /// (the old config stays in effect).
    pub reply: oneshot::Sender<Result<u64, String>>,
}

/// Reload requests and the pause flag, shared by every session through `Ctx`.
#[derive(Debug)]
pub struct Control {
    reload: mpsc::UnboundedSender<ReloadRequest>,
    /// Mirrors `paused` so the hot path (every checkout) reads one atomic, not a lock.
    paused_now: AtomicBool,
    paused: watch::Sender<bool>,
    /// Waiting for a resume ends when the proxy drains, so paused sessions can finish.
    shutdown: watch::Receiver<bool>,
}

impl Control {
    /// A control that is not paused, and the receiving end of its reload requests (the proxy
    /// consumes it). `shutdown` turns `true` when the proxy drains.
    pub fn new(
        shutdown: watch::Receiver<bool>,
    ) -> (Control, mpsc::UnboundedReceiver<ReloadRequest>) {
        let (reload, requests) = mpsc::unbounded_channel();
        let control = Control {
            reload,
            paused_now: AtomicBool::new(false),
            paused: watch::Sender::new(false),
            shutdown,
        };
        (control, requests)
    }

    /// Asks the proxy to reload its config file and waits for the outcome.
    pub async fn reload(&self) -> Result<u64, String> {
        let (reply, answer) = oneshot::channel();
        self.reload
            .send(ReloadRequest { reply })
            .map_err(|_| "the proxy no longer accepts reload requests (it is stopping)")?;
        answer
            .await
            .map_err(|_| "the proxy dropped the reload request (it is stopping)".to_owned())?
    }

    /// Sets the pause flag; returns whether it was already set.
    pub fn pause(&self) -> bool {
        self.paused_now.store(true, Ordering::SeqCst);
        self.paused.send_replace(true)
    }

    /// Clears the pause flag and wakes every waiting session; returns whether it was set.
    pub fn resume(&self) -> bool {
        self.paused_now.store(false, Ordering::SeqCst);
        self.paused.send_replace(false)
    }

    /// Whether sessions are held back from taking server connections.
    pub fn is_paused(&self) -> bool {
        self.paused_now.load(Ordering::Acquire)
    }

    /// Returns at once when not paused; otherwise waits until RESUME or until the proxy
    /// drains. Returns whether it waited. Cancel safe.
    pub async fn wait_resumed(&self) -> bool {
        if !self.is_paused() {
            return false;
        }
        let mut paused = self.paused.subscribe();
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = until(&mut paused, false) => {}
            _ = until(&mut shutdown, true) => {}
        }
        true
    }
}

/// Resolves once the watched flag equals `want` (or its sender is gone). The watch guard is
/// dropped inside, so callers stay `Send`.
async fn until(rx: &mut watch::Receiver<bool>, want: bool) {
    let _ = rx.wait_for(|v| *v == want).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn pause_holds_waiters_until_resume() {
        let (_stop, shutdown) = watch::channel(false);
        let (control, _requests) = Control::new(shutdown);
        let control = Arc::new(control);
        assert!(!control.wait_resumed().await, "not paused: returns at once");
        assert!(!control.pause());
        assert!(control.pause(), "second PAUSE sees the flag set");
        let waiter = tokio::spawn({
            let control = control.clone();
            async move { assert!(control.wait_resumed().await, "it waited") }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "a waiter must wait while paused");
        assert!(control.resume());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("resume wakes the waiter")
            .unwrap();
        assert!(!control.is_paused());
    }

    #[tokio::test]
    async fn draining_releases_paused_waiters() {
        let (stop, shutdown) = watch::channel(false);
        let (control, _requests) = Control::new(shutdown);
        control.pause();
        let wait = control.wait_resumed();
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .expect("a drain ends the wait");
        assert!(control.is_paused(), "draining does not clear the flag");
    }

    #[tokio::test]
    async fn reload_round_trip_and_closed_channel() {
        let (_stop, shutdown) = watch::channel(false);
        let (control, mut requests) = Control::new(shutdown);
        let server = tokio::spawn(async move {
            let req = requests.recv().await.unwrap();
            req.reply.send(Ok(7)).unwrap();
            let req = requests.recv().await.unwrap();
            req.reply.send(Err("bad yaml".into())).unwrap();
        });
        assert_eq!(control.reload().await, Ok(7));
        assert_eq!(control.reload().await, Err("bad yaml".into()));
        server.await.unwrap();
        // The receiver is gone now.
        let err = control.reload().await.unwrap_err();
        assert!(err.contains("stopping"), "{err}");
    }
}
