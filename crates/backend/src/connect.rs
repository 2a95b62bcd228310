//! Opening a server connection: TCP, TLS as `sslmode` says, startup packet, authentication,
//! startup state.

use std::sync::Arc;

use bytes::BytesMut;
use pgsplit_wire::backend::{self, BackendMessage};
use pgsplit_wire::encode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Duration, Instant, timeout};

use crate::auth::{ScramKeyCache, authenticate};
use crate::conn::{READ_BUF, ServerConn};
use crate::tls::{NegotiateError, ServerTls, Stream, TlsWrite, negotiate};
use crate::{BackendError, StatementCache};
use pgsplit_config::SslMode;
use tracing::debug;

/// What to connect to and as whom.
#[derive(Clone, Debug)]
pub struct ConnectParams<'a> {
    /// `host:port`.
    pub addr: &'a str,
    /// Role on the server.
    pub user: &'a str,
    /// Password on the server, if it asks for one.
    pub password: Option<&'a str>,
    /// Database name.
    pub database: &'a str,
    /// Other startup parameters (application_name, options, GUCs) sent as they are.
    pub params: &'a [(String, String)],
    /// Limit for connect + authentication + startup.
    pub connect_timeout: Duration,
    /// Largest message accepted from the server.
    pub max_message: usize,
    /// SCRAM keys kept from earlier logins, to reuse and to add to.
    pub scram_keys: Option<&'a ScramKeyCache>,
    /// Whether and how to use TLS.
    pub tls: &'a Arc<ServerTls>,
}

/// Connects, authenticates and reads the server's startup state up to ReadyForQuery.
pub async fn connect(p: &ConnectParams<'_>) -> Result<ServerConn, BackendError> {
    match timeout(p.connect_timeout, connect_inner(p)).await {
        Ok(res) => res,
        Err(_) => Err(BackendError::ConnectTimeout {
            addr: p.addr.to_owned(),
        }),
    }
}

async fn connect_inner(p: &ConnectParams<'_>) -> Result<ServerConn, BackendError> {
    let io_err = |source| BackendError::Io {
        addr: p.addr.to_owned(),
        source,
    };
    let created_at = Instant::now();
    let stream = TcpStream::connect(p.addr).await.map_err(io_err)?;
    stream.set_nodelay(true).map_err(io_err)?;
    let negotiated = match negotiate(stream, p.tls).await {
        // As libpq: under `prefer`, a failed handshake is followed by a plain-text attempt.
        Err(NegotiateError::Tls(reason)) if p.tls.mode == SslMode::Prefer => {
            debug!(addr = p.addr, %reason, "TLS failed under sslmode prefer: connecting in plain text");
            let stream = TcpStream::connect(p.addr).await.map_err(io_err)?;
            stream.set_nodelay(true).map_err(io_err)?;
            Ok(Err(stream))
        }
        other => other,
    };
    let (rd, wr) = match negotiated {
        Ok(Ok(tls)) => {
            let (rd, wr) = tokio::io::split(tls);
            (Stream::Tls(rd), Stream::Tls(TlsWrite::new(wr)))
        }
        Ok(Err(plain)) => {
            let (rd, wr) = plain.into_split();
            (Stream::Plain(rd), Stream::Plain(wr))
        }
        Err(NegotiateError::Io(source)) => return Err(io_err(source)),
        Err(NegotiateError::Tls(reason)) => {
            return Err(BackendError::Tls {
                addr: p.addr.to_owned(),
                reason,
            });
        }
    };
    let mut conn = ServerConn {
        addr: p.addr.to_owned(),
        rd,
        wr,
        rbuf: BytesMut::with_capacity(READ_BUF),
        max_message: p.max_message,
        params: Arc::default(),
        params_hash: 0,
        key: (0, 0),
        txn_status: b'I',
        created_at,
        home: crate::home::home(),
        state_tag: 0,
        statements: StatementCache::default(),
        tls_settings: Arc::clone(p.tls),
        notifications: Vec::new(),
    };
    let mut startup: Vec<(&str, &str)> = Vec::with_capacity(p.params.len() + 2);
    startup.push(("user", p.user));
    startup.push(("database", p.database));
    for (k, v) in p.params {
        if k != "user" && k != "database" {
            startup.push((k, v));
        }
    }
    let mut buf = BytesMut::with_capacity(256);
    encode::startup(&mut buf, &startup);
    conn.write_all(&buf).await?;
    authenticate(&mut conn, p.user, p.password, p.scram_keys).await?;
    read_startup_state(&mut conn).await?;
    Ok(conn)
}

/// After AuthenticationOk: collect ParameterStatus and BackendKeyData until ReadyForQuery.
async fn read_startup_state(conn: &mut ServerConn) -> Result<(), BackendError> {
    loop {
        let frame = conn.read_frame().await?;
        let msg = backend::parse(&frame).map_err(|e| conn.protocol_error(e))?;
        match msg {
            BackendMessage::ParameterStatus { name, value } => {
                Arc::make_mut(&mut conn.params).push((name.to_owned(), value.to_owned()));
            }
            BackendMessage::BackendKeyData { pid, secret } => conn.key = (pid, secret),
            BackendMessage::ReadyForQuery { status } => {
                conn.txn_status = status;
                conn.rehash_params();
                return Ok(());
            }
            BackendMessage::NoticeResponse(_) | BackendMessage::NegotiateProtocolVersion { .. } => {
            }
            BackendMessage::ErrorResponse(fields) => {
                return Err(BackendError::Server {
                    addr: conn.addr.clone(),
                    fields: Box::new(fields),
                });
            }
            _ => {
                return Err(BackendError::Unexpected {
                    addr: conn.addr.clone(),
                    tag: frame.tag() as char,
                    phase: "startup",
                });
            }
        }
    }
}

/// Sends a CancelRequest for the server process `key` at `addr`.
pub async fn cancel(addr: &str, key: (u32, u32), limit: Duration) -> Result<(), BackendError> {
    let io_err = |source| BackendError::Io {
        addr: addr.to_owned(),
        source,
    };
    let work = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io_err)?;
        let mut buf = BytesMut::with_capacity(16);
        encode::cancel_request(&mut buf, key.0, key.1);
        stream.write_all(&buf).await.map_err(io_err)?;
        // The server closes the socket without answering; wait briefly for that so the request
        // is processed before we return.
        let mut scratch = [0u8; 1];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut scratch).await;
        Ok(())
    };
    match timeout(limit, work).await {
        Ok(res) => res,
        Err(_) => Err(BackendError::ConnectTimeout {
            addr: addr.to_owned(),
        }),
    }
}
