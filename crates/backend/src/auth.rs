//! pgsplit authenticating to a server as a client: trust, cleartext, MD5 and SCRAM-SHA-256.

use std::collections::HashMap;

use bytes::BytesMut;
use parking_lot::Mutex;
use pgsplit_wire::backend::{self, AuthRequest, BackendMessage};
use pgsplit_wire::encode;
use pgsplit_wire::scram::{SCRAM_SHA_256, ScramClient, ScramKeys};

use crate::BackendError;
use crate::conn::ServerConn;

/// Most sets of keys a [`ScramKeyCache`] keeps (one per password, salt and iteration count;
/// it starts over when full).
const MAX_KEYS: usize = 256;

/// SCRAM keys derived for earlier server logins, by password, salt and iteration count. A
/// server sends the same salt and count at every login of a role until its password changes,
/// so only a pool's first connection pays for the derivation (4096 HMAC rounds by default,
/// about 10 million instructions: more than all the rest of opening a connection).
#[derive(Default)]
pub struct ScramKeyCache {
    keys: Mutex<HashMap<KeyOf, ScramKeys>>,
}

/// What keys are derived from: password, salt, iteration count.
type KeyOf = (String, Vec<u8>, u32);

impl ScramKeyCache {
    /// The keys for `password`, `salt` and `iterations`: kept ones, else `derive()`'s, kept.
    pub fn get_or_derive(
        &self,
        password: &str,
        salt: &[u8],
        iterations: u32,
        derive: impl FnOnce() -> ScramKeys,
    ) -> ScramKeys {
        let key = (password.to_owned(), salt.to_vec(), iterations);
        if let Some(keys) = self.keys.lock().get(&key) {
            return *keys;
        }
        // Derived outside the lock: a concurrent login of another role is not held up.
        let keys = derive();
        let mut map = self.keys.lock();
        if map.len() >= MAX_KEYS {
            map.clear();
        }
        map.insert(key, keys);
        keys
    }

    /// How many sets of keys are kept.
    pub fn len(&self) -> usize {
        self.keys.lock().len()
    }

    /// Whether no keys are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for ScramKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramKeyCache({} kept)", self.len())
    }
}

/// Runs the authentication exchange until AuthenticationOk. With `keys`, SCRAM keys derived
/// for an earlier login with the same password and salt are reused.
pub(crate) async fn authenticate(
    conn: &mut ServerConn,
    user: &str,
    password: Option<&str>,
    keys: Option<&ScramKeyCache>,
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
                    .handle_server_first_with(data, |salt, iterations, derive| {
                        match (keys, password) {
                            (Some(cache), Some(password)) => {
                                cache.get_or_derive(password, salt, iterations, derive)
                            }
                            _ => derive(),
                        }
                    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_once_per_password_salt_and_count() {
        let cache = ScramKeyCache::default();
        let derivations = std::cell::Cell::new(0);
        let get = |password: &str, salt: &[u8], iterations: u32| {
            cache.get_or_derive(password, salt, iterations, || {
                derivations.set(derivations.get() + 1);
                ScramKeys::derive(password, salt, iterations)
            })
        };
        let first = get("pw", b"salt", 16);
        assert_eq!(get("pw", b"salt", 16), first);
        assert_eq!(derivations.get(), 1, "the second login reuses the keys");
        assert_eq!(first, ScramKeys::derive("pw", b"salt", 16));
        // A new password, salt or count (the role's password changed) derives again.
        assert_ne!(get("pw2", b"salt", 16), first);
        assert_ne!(get("pw", b"salt2", 16), first);
        assert_ne!(get("pw", b"salt", 17), first);
        assert_eq!(derivations.get(), 4);
        assert_eq!(cache.len(), 4);
        assert!(!format!("{cache:?}").contains("pw"));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = ScramKeyCache::default();
        for i in 0..(MAX_KEYS * 2 + 3) {
            cache.get_or_derive(&format!("pw{i}"), b"s", 1, || {
                ScramKeys::derive("x", b"s", 1)
            });
            assert!(cache.len() <= MAX_KEYS);
        }
    }
}
