//! A scripted mock PostgreSQL server on `127.0.0.1:0`, built on `pgsplit-wire`.
//!
//! It accepts any startup with trust authentication (AuthenticationOk), reports the usual
//! ParameterStatus set and a BackendKeyData, then answers queries from a [`Script`]: simple
//! and extended protocol, COPY in both directions, notices, notifications, errors, sleeps that a
//! CancelRequest interrupts, and abrupt closes.
//! Everything clients send is recorded, so a test can check what a proxy forwarded.
//!
//! It is for protocol edge cases that a real server will not produce on demand; behaviour that
//! a real server can show is tested against the real cluster.

mod script;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use pgsplit_wire::frontend::FrontendMessage;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

pub use script::{Match, Reply, Script};

use crate::cluster::Node;

/// Something a client sent to the mock, in arrival order across all sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A StartupMessage with its parameters.
    Startup(Vec<(String, String)>),
    /// A CancelRequest.
    Cancel {
        /// Target process id.
        pid: u32,
        /// Secret key.
        secret: u32,
    },
    /// A simple Query.
    Query(String),
    /// Parse of a statement.
    Parse {
        /// Statement name.
        name: String,
        /// SQL text.
        sql: String,
    },
    /// Bind.
    Bind {
        /// Portal name.
        portal: String,
        /// Statement name.
        statement: String,
    },
    /// Describe (`S` or `P`).
    Describe(u8, String),
    /// Execute of a portal.
    Execute(String),
    /// Close (`S` or `P`).
    Close(u8, String),
    /// Sync.
    Sync,
    /// Flush.
    Flush,
    /// Terminate.
    Terminate,
    /// CopyData of this many bytes.
    CopyData(usize),
    /// CopyDone.
    CopyDone,
    /// CopyFail with its message.
    CopyFail(String),
    /// Any other message, by tag.
    Other(u8),
}

impl Received {
    fn from_message(m: &FrontendMessage<'_>) -> Received {
        match m {
            FrontendMessage::Query { sql } => Received::Query((*sql).to_owned()),
            FrontendMessage::Parse { name, sql, .. } => Received::Parse {
                name: (*name).to_owned(),
                sql: (*sql).to_owned(),
            },
            FrontendMessage::Bind { portal, statement } => Received::Bind {
                portal: (*portal).to_owned(),
                statement: (*statement).to_owned(),
            },
            FrontendMessage::Describe { kind, name } => {
                Received::Describe(*kind, (*name).to_owned())
            }
            FrontendMessage::Execute { portal, .. } => Received::Execute((*portal).to_owned()),
            FrontendMessage::Close { kind, name } => Received::Close(*kind, (*name).to_owned()),
            FrontendMessage::Sync => Received::Sync,
            FrontendMessage::Flush => Received::Flush,
            FrontendMessage::Terminate => Received::Terminate,
            FrontendMessage::CopyData { data } => Received::CopyData(data.len()),
            FrontendMessage::CopyDone => Received::CopyDone,
            FrontendMessage::CopyFail { message } => Received::CopyFail((*message).to_owned()),
            FrontendMessage::FunctionCall { .. } => Received::Other(b'F'),
            FrontendMessage::Password { .. } => Received::Other(b'p'),
        }
    }
}

/// State shared by the accept loop and every session.
struct Shared {
    script: Script,
    log: Mutex<Vec<Received>>,
    /// Cancel wake-ups of live sessions, by pid.
    cancels: Mutex<HashMap<u32, Arc<Notify>>>,
    next_pid: AtomicU32,
}

impl Shared {
    fn record(&self, r: Received) {
        self.log.lock().push(r);
    }

    fn next_pid(&self) -> u32 {
        self.next_pid.fetch_add(1, Ordering::Relaxed)
    }
}

/// The secret key the mock hands out with `pid` (derived, so tests can predict it).
pub fn secret_of(pid: u32) -> u32 {
    pid.wrapping_mul(2_654_435_761) ^ 0x5eed
}

/// A running mock server; it stops, closing every session, when dropped.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Binds 127.0.0.1:0 and starts serving `script` on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// When the listener cannot be bound.
    pub async fn start(script: Script) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock server: bind");
        let addr = listener.local_addr().expect("mock server: local address");
        let shared = Arc::new(Shared {
            script,
            log: Mutex::new(Vec::new()),
            cancels: Mutex::new(HashMap::new()),
            next_pid: AtomicU32::new(1000),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        MockServer { addr, shared, task }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening address as a [`Node`], for [`crate::ProxyYaml::new`].
    pub fn node(&self) -> Node {
        Node {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
        }
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().clone()
    }

    /// The SQL of every Query and Parse received so far, in order.
    pub fn queries(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .iter()
            .filter_map(|r| match r {
                Received::Query(sql) | Received::Parse { sql, .. } => Some(sql.clone()),
                _ => None,
            })
            .collect()
    }

    /// The parameters of every StartupMessage received so far.
    pub fn startups(&self) -> Vec<Vec<(String, String)>> {
        self.shared
            .log
            .lock()
            .iter()
            .filter_map(|r| match r {
                Received::Startup(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Sessions live in the set, so aborting this task (on drop) ends them too.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                sessions.spawn(session::Session::serve(stream, shared.clone()));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}
