//! The per-client state machine of pgsplit: startup, client authentication, then the relay
//! loop that moves protocol messages between the client and its server connection.
//!
//! What it does not do: it binds no sockets and installs no signal handlers (that is the
//! `pgsplit` binary crate), and it opens server connections only through `pgsplit-backend`.
//! Classification, routing and pooling plug into [`flow`] as their issues land; today every
//! client gets a dedicated connection to the primary.
//!
//! # Cancel safety
//! [`run`] owns the client socket and is meant to be spawned as a task; dropping it closes the
//! client and its server connection abruptly (used only at the end of a shutdown timeout).
//! Inside, the relay loop only awaits cancel-safe operations in `select!`: `read_buf` into
//! buffers the session owns and single `write_vectored` calls, so no byte is lost or duplicated
//! when another branch wins.
#![warn(missing_docs)]

#[doc(hidden)]
pub mod bench;
mod cancel;
mod client_io;
mod clients;
mod console;
mod control;
mod cstr;
mod ctx;
mod drain;
mod error;
mod extended;
mod flow;
mod internal;
mod outbox;
mod relay;
mod replay;
mod routing;
mod startup;
mod state;
mod tls;

pub use cancel::{CancelRegistry, CancelSlot, CancelTarget};
pub use clients::{
    Activity, ClientGuard, ClientRegistry, ClientRow, DbTotals, NewClient, OTHER_DATABASES, Work,
};
pub use control::{Control, ReloadRequest};
pub use ctx::{Ctx, CtxInbox, GreetingCache, SecretCache, ServerEvent};
pub use drain::Drain;
pub use error::SessionError;
pub use flow::{reject, run};
pub use pgsplit_router::Snapshot;
pub use routing::RouteKit;
pub use tls::{TlsError, TlsServer};
