//! PostgreSQL v3 wire protocol, sans-IO.
//!
//! # What this crate does
//!
//! - Frames tagged messages out of a read buffer without copying ([`next_frame`]) and parses the
//!   untagged first packet of a connection ([`next_startup`]): StartupMessage, SSLRequest,
//!   GSSENCRequest and CancelRequest.
//! - Parses every protocol 3.0 message into borrowing views: [`frontend::parse`] for what
//!   clients send, [`backend::parse`] for what servers send, plus cheap peeks for the relay hot
//!   path ([`backend::ready_status`], [`backend::error_code`]).
//! - Encodes every protocol 3.0 message into a `BytesMut` ([`encode`]).
//! - Runs SCRAM-SHA-256 ([`scram`]) and MD5 ([`md5`]) authentication as pure state machines,
//!   on both the client and the server side.
//! - Names SQLSTATE codes ([`SqlState`]) and builds and reads ErrorResponse/NoticeResponse
//!   fields ([`ErrorFields`]).
//!
//! # What it does not do
//!
//! - No IO, no async runtime, no TLS, no global state: callers own sockets and buffers, and
//!   feed bytes in.
//! - No policy: it does not decide which authentication method to use, whether to accept a
//!   protocol minor version, or where a message goes.
//! - No SQL understanding: query strings are borrowed as `&str` and passed on.
//! - No value decoding: DataRow and Bind values stay raw bytes.
//! - No channel binding (`SCRAM-SHA-256-PLUS`), GSSAPI or SSPI exchanges; their messages are
//!   framed and encoded, but not interpreted.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use pgsplit_wire::{encode, frontend, next_frame};
//!
//! let mut buf = BytesMut::new();
//! encode::query(&mut buf, "SELECT 1");
//! buf.extend_from_slice(b"S\0\0"); // the first bytes of the next message
//!
//! let frame = next_frame(&mut buf, 1 << 20)?.expect("one whole message is buffered");
//! assert_eq!(frontend::parse(&frame)?, frontend::FrontendMessage::Query { sql: "SELECT 1" });
//! assert_eq!(next_frame(&mut buf, 1 << 20)?, None); // the rest is incomplete
//! # Ok::<(), pgsplit_wire::WireError>(())
//! ```
//!
//! # Invariants
//!
//! - Parsing never panics on malformed input; it returns [`WireError`].
//! - Incomplete input is `Ok(None)`, never an error.
//! - Declared lengths are checked against the caller's limit before anything is buffered for
//!   them, and no parser allocates based on an unchecked length.
#![warn(missing_docs)]

mod cursor;

pub mod backend;
pub mod encode;
pub mod errfields;
pub mod error;
pub mod frame;
pub mod frontend;
pub mod md5;
pub mod scram;
pub mod sqlstate;
pub mod startup;

pub use errfields::ErrorFields;
pub use error::WireError;
pub use frame::{Frame, next_frame};
pub use sqlstate::SqlState;
pub use startup::{StartupPacket, next_startup};
