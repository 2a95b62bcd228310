//! Which event loop the calling thread runs, so that a pool hands a session the idle server
//! connections whose sockets that same loop watches.
//!
//! With `workers: n` the proxy runs n event loops, each on its own thread. A socket is
//! registered with the loop of the thread that opened it, and every readiness event of that
//! socket is delivered by that loop: a session on another loop could use the connection, but each
//! of its reads would cost a wake-up across threads, so a checkout moves such a connection to
//! its own loop first (`ServerConn::adopt`). The proxy numbers its loops with
//! [`set_home`] when it starts them; threads it did not number (tests, tools) are loop 0.
//! This is a property of the thread, not configuration: it never changes once set.

use std::cell::Cell;

thread_local! {
    static HOME: Cell<usize> = const { Cell::new(0) };
}

/// Records that the calling thread runs event loop `worker`. Called once, by the thread itself,
/// before its loop starts.
pub fn set_home(worker: usize) {
    HOME.with(|h| h.set(worker));
}

/// The event loop of the calling thread (0 unless [`set_home`] said otherwise).
pub fn home() -> usize {
    HOME.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_thread() {
        assert_eq!(home(), 0);
        std::thread::spawn(|| {
            set_home(3);
            assert_eq!(home(), 3);
        })
        .join()
        .unwrap_or_else(|_| panic!("thread panicked"));
        assert_eq!(home(), 0, "another thread's setting does not leak");
    }
}
