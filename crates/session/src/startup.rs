//! Client startup: the startup packet (TLS when the config has `tls:`, GSS encryption
//! declined), protocol version negotiation, and client authentication (SCRAM-SHA-256, MD5,
//! trust).

use std::sync::Arc;

use bytes::Bytes;
use pgsplit_config::{AuthMethod, TlsMode, User};
use pgsplit_wire::frontend;
use pgsplit_wire::scram::{SCRAM_SHA_256, ScramSecret, ScramServer};
use pgsplit_wire::{ErrorFields, StartupPacket, encode, sqlstate};

use crate::client_io::ClientConn;
use crate::tls::TlsServer;
use crate::{SecretCache, SessionError};

/// The first thing a client says.
#[derive(Debug)]
pub(crate) enum Hello {
    /// A normal session.
    Session(ClientStartup),
    /// A CancelRequest carrying a key pgsplit issued.
    Cancel {
        /// Process id part of the key.
        pid: u32,
        /// Secret part of the key.
        secret: u32,
    },
}

/// What a client asked for at startup.
#[derive(Debug)]
pub(crate) struct ClientStartup {
    /// Login name.
    pub(crate) user: String,
    /// Database (defaults to the user name, as in PostgreSQL).
    pub(crate) database: String,
    /// Every other parameter (application_name, options, GUCs), in the client's order.
    pub(crate) params: Vec<(String, String)>,
}

/// Reads startup packets until a session start or a cancel request. An SSLRequest is
/// answered `S` and the connection continues in TLS when `tls` is given, `N` otherwise;
/// GSSENCRequest is always declined.
pub(crate) async fn read_hello(
    client: &mut ClientConn,
    tls: Option<&TlsServer>,
) -> Result<Hello, SessionError> {
    loop {
        match client.read_startup().await? {
            StartupPacket::SslRequest if client.tls => {
                return Err(refuse(
                    sqlstate::PROTOCOL_VIOLATION,
                    "SSL request on a connection that is already encrypted".to_owned(),
                ));
            }
            StartupPacket::SslRequest if tls.is_some() => {
                if let Some(tls) = tls {
                    client.start_tls(tls).await?;
                }
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                // Not offered (no `tls:` in the config, or GSS encryption): decline, the
                // client continues in plain text or gives up (sslmode=require).
                client.queue(|b| encode::ssl_response(b, false));
                client.flush().await?;
            }
            StartupPacket::Cancel { pid, secret } => return Ok(Hello::Cancel { pid, secret }),
            StartupPacket::Startup { protocol, params } => {
                if tls.is_some_and(|t| t.mode() == TlsMode::Require) && !client.tls {
                    return Err(refuse(
                        sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                        "pgsplit accepts only encrypted connections (tls.mode: require): connect with sslmode=require".to_owned(),
                    ));
                }
                return startup_from(client, protocol, params).map(Hello::Session);
            }
        }
    }
}

fn startup_from(
    client: &mut ClientConn,
    protocol: u32,
    params: Vec<(String, String)>,
) -> Result<ClientStartup, SessionError> {
    let (major, minor) = (protocol >> 16, protocol & 0xffff);
    if major != 3 {
        return Err(refuse(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("unsupported frontend protocol {major}.{minor}: server supports 3.0"),
        ));
    }
    let mut user = None;
    let mut database = None;
    let mut unrecognized = Vec::new();
    let mut rest = Vec::with_capacity(params.len());
    for (k, v) in params {
        match k.as_str() {
            "user" => user = Some(v),
            "database" => database = Some(v),
            "replication" if v != "false" && v != "off" && v != "0" && v != "no" => {
                return Err(refuse(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "replication connections are not supported through pgsplit".to_owned(),
                ));
            }
            "replication" => {}
            _ if k.starts_with("_pq_.") => unrecognized.push(k),
            _ => rest.push((k, v)),
        }
    }
    if minor > 0 || !unrecognized.is_empty() {
        let names: Vec<&str> = unrecognized.iter().map(String::as_str).collect();
        client.queue(|b| encode::negotiate_protocol_version(b, 0, &names));
    }
    let user = match user {
        Some(u) if !u.is_empty() => u,
        _ => {
            return Err(refuse(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                "no PostgreSQL user name specified in startup packet".to_owned(),
            ));
        }
    };
    let database = database
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(ClientStartup {
        user,
        database,
        params: rest,
    })
}

/// Authenticates the client as `name`, configured as `user` (None: unknown user, which fails
/// the same way a wrong password does so user names cannot be probed).
pub(crate) async fn authenticate(
    client: &mut ClientConn,
    name: &str,
    user: Option<&User>,
    secrets: &SecretCache,
) -> Result<(), SessionError> {
    let method = user.map_or(AuthMethod::ScramSha256, |u| u.auth);
    match method {
        AuthMethod::Trust => Ok(()),
        AuthMethod::Md5 => {
            let stored = user.map(|u| secrets.md5_stored(&u.name, &u.password));
            authenticate_md5(client, name, user.map(|u| u.name.as_str()).zip(stored)).await
        }
        AuthMethod::ScramSha256 => {
            let secret = match user {
                Some(u) => (*secrets.scram_secret(&u.name, &u.password)).clone(),
                None => unknown_user_secret(),
            };
            authenticate_scram(client, name, secret).await
        }
    }
}

/// `user`: the configured name and what its response is checked against (see
/// [`SecretCache::md5_stored`]).
async fn authenticate_md5(
    client: &mut ClientConn,
    name: &str,
    user: Option<(&str, Arc<str>)>,
) -> Result<(), SessionError> {
    let salt: [u8; 4] = rand::random();
    client.queue(|b| encode::auth_md5(b, salt));
    client.flush().await?;
    let body = read_password_message(client).await?;
    let response = frontend::parse_password(&body)?;
    match user {
        Some((user, stored)) if pgsplit_wire::md5::verify(user, &stored, salt, response) => Ok(()),
        _ => Err(password_failed(name)),
    }
}

async fn authenticate_scram(
    client: &mut ClientConn,
    name: &str,
    secret: ScramSecret,
) -> Result<(), SessionError> {
    client.queue(|b| encode::auth_sasl(b, &[SCRAM_SHA_256]));
    client.flush().await?;
    let body = read_password_message(client).await?;
    let (mechanism, data) = frontend::parse_sasl_initial(&body)?;
    if mechanism != SCRAM_SHA_256 {
        return Err(refuse(
            sqlstate::PROTOCOL_VIOLATION,
            format!("client selected an invalid SASL authentication mechanism {mechanism:?}"),
        ));
    }
    let Some(data) = data else {
        return Err(refuse(
            sqlstate::PROTOCOL_VIOLATION,
            "malformed SCRAM message".into(),
        ));
    };
    let mut server = ScramServer::new(secret);
    let first = server
        .handle_client_first(data)
        .map_err(|e| refuse(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
    client.queue(|b| encode::auth_sasl_continue(b, &first));
    client.flush().await?;
    let body = read_password_message(client).await?;
    let last = server
        .handle_client_final(&body)
        .map_err(|_| password_failed(name))?;
    client.queue(|b| encode::auth_sasl_final(b, &last));
    Ok(())
}

/// A random secret nobody knows, so an unknown user's SCRAM exchange runs and then fails.
fn unknown_user_secret() -> ScramSecret {
    let password: [u8; 16] = rand::random();
    let salt: [u8; 16] = rand::random();
    ScramSecret::from_password(&format!("{password:x?}"), &salt, 4096)
}

async fn read_password_message(client: &mut ClientConn) -> Result<Bytes, SessionError> {
    let frame = client.read_frame().await?;
    if frame.tag() != frontend::tags::PASSWORD {
        return Err(refuse(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "expected a password message, got message type {:?}",
                frame.tag() as char
            ),
        ));
    }
    Ok(frame.into_bytes().slice(pgsplit_wire::frame::HEADER_LEN..))
}

fn password_failed(name: &str) -> SessionError {
    refuse(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{name}\""),
    )
}

fn refuse(code: pgsplit_wire::SqlState, message: String) -> SessionError {
    SessionError::Refused(Box::new(ErrorFields::fatal(code, message)))
}
