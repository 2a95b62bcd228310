//! pgsplit authenticating to a server as a client: trust, cleartext, MD5 and SCRAM-SHA-256.

use bytes::BytesMut;
use pgsplit_wire::backend::{self, AuthRequest, BackendMessage};
use pgsplit_wire::encode;
use pgsplit_wire::scram::{SCRAM_SHA_256, ScramClient};

use crate::BackendError;
use crate::conn::ServerConn;

/// Runs the authentication exchange until AuthenticationOk.
pub(crate) async fn authenticate(
    conn: &mut ServerConn,
    user: &str,
    password: Option<&str>,
) -> Result<(), BackendError> {
    let mut scram: Option<ScramClient> = None;
    let mut buf = BytesMut::with_capacity(256);
    loop {
        let frame = conn.read_frame().await?;
        let msg = backend::parse(&frame).map_err(|e| conn.protocol_error(e))?;
        let req = match msg {
            BackendMessage::Authentication(req) => req,
            BackendMessage::ErrorResponse(fields) => {
                return Err(BackendError::Server {
                    addr: conn.addr.clone(),
                    fields: Box::new(fields),
                });
            }
            BackendMessage::NoticeResponse(_) | BackendMessage::NegotiateProtocolVersion { .. } => {
                continue;
            }
            _ => {
                return Err(BackendError::Unexpected {
                    addr: conn.addr.clone(),
                    tag: frame.tag() as char,
                    phase: "authentication",
                });
            }
        };
        buf.clear();
        let need_password = || {
            password.ok_or_else(|| BackendError::Auth {
                addr: conn.addr.clone(),
                reason: "the server asks for a password and none is configured (server_password)"
                    .into(),
            })
        };
        match req {
            AuthRequest::Ok => return Ok(()),
            AuthRequest::CleartextPassword => encode::password(&mut buf, need_password()?),
            AuthRequest::Md5Password { salt } => {
                let resp = pgsplit_wire::md5::client_response(user, need_password()?, salt);
                encode::password(&mut buf, &resp);
            }
            AuthRequest::Sasl { mechanisms } => {
                if !mechanisms.contains(&SCRAM_SHA_256) {
                    return Err(BackendError::Auth {
                        addr: conn.addr.clone(),
                        reason: format!("unsupported SASL mechanisms {mechanisms:?}"),
                    });
                }
                let client = ScramClient::new(need_password()?);
                encode::sasl_initial_response(&mut buf, SCRAM_SHA_256, &client.client_first());
                scram = Some(client);
            }
            AuthRequest::SaslContinue { data } => {
                let client = scram.as_mut().ok_or_else(|| out_of_order(conn))?;
                let reply = client
                    .handle_server_first(data)
                    .map_err(|e| BackendError::Auth {
                        addr: conn.addr.clone(),
                        reason: e.to_string(),
                    })?;
                encode::sasl_response(&mut buf, &reply);
            }
            AuthRequest::SaslFinal { data } => {
                let client = scram.as_ref().ok_or_else(|| out_of_order(conn))?;
                client
                    .verify_server_final(data)
                    .map_err(|e| BackendError::Auth {
                        addr: conn.addr.clone(),
                        reason: format!("the server's SCRAM signature is wrong: {e}"),
                    })?;
                continue;
            }
            AuthRequest::Other { code } => {
                return Err(BackendError::Auth {
                    addr: conn.addr.clone(),
                    reason: format!("unsupported authentication request {code}"),
                });
            }
        }
        conn.write_all(&buf).await?;
    }
}

fn out_of_order(conn: &ServerConn) -> BackendError {
    BackendError::Auth {
        addr: conn.addr.clone(),
        reason: "SASL message out of order".into(),
    }
}
