//! SCRAM-SHA-256 (RFC 5802 / RFC 7677) for both sides, without channel binding.
//!
//! The client side authenticates pgsplit to PostgreSQL servers; the server side authenticates
//! clients such as libpq and tokio-postgres against a stored [`ScramSecret`].
//! Like PostgreSQL, the user name inside the SCRAM exchange is ignored (libpq sends `n=`), and
//! passwords are normalized with SASLprep, falling back to the raw bytes when SASLprep rejects
//! them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::WireError;
use crate::md5::constant_time_eq;

/// The SASL mechanism name.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Iteration count PostgreSQL uses by default when it stores a new secret.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Random bytes in a nonce, as PostgreSQL uses (24 characters once base64-encoded).
const NONCE_BYTES: usize = 18;

/// Random bytes in a salt made by [`ScramSecret::generate`], as PostgreSQL uses.
const SALT_BYTES: usize = 16;

/// The GS2 header of a client without channel binding, base64-encoded (`"n,,"`).
const CBIND_NONE: &str = "biws";

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA-256 of the concatenated `parts`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `data`.
fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `Hi()` of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block.
///
/// An iteration count of 0 is treated as 1.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed = HmacSha256::new_from_slice(password).expect("HMAC accepts keys of any length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        xor_into(&mut out, &u);
    }
    out
}

fn xor_into(acc: &mut [u8; 32], other: &[u8; 32]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// SASLprep, or the raw bytes when SASLprep rejects the password (as PostgreSQL does).
fn normalize(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.as_bytes().to_vec(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// A fresh random nonce: printable, without commas.
fn random_nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// True for a valid SCRAM nonce: printable ASCII other than `,`.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Escapes a SCRAM `saslname` (`=` and `,` become `=3D` and `=2C`).
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Decodes SCRAM data as UTF-8, or fails with `what`.
fn utf8<'a>(data: &'a [u8], what: &'static str) -> Result<&'a str, WireError> {
    std::str::from_utf8(data).map_err(|_| WireError::Auth(what))
}

/// The value of attribute `name` (`"r"` in `"r=value"`), if `attr` is that attribute.
fn attr(attr: Option<&str>, name: char) -> Option<&str> {
    let attr = attr?;
    let mut chars = attr.chars();
    (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &attr[2..])
}

/// Decodes a 32-byte base64 value.
fn decode_key(b64: &str) -> Option<[u8; 32]> {
    B64.decode(b64).ok()?.try_into().ok()
}

/// What a SCRAM client derives from its password for one salt and iteration count: the
/// costly part of a login (`Hi()`, thousands of HMAC rounds), the same for every login of a
/// role to a server until its password changes. Callers may keep it to skip that work on the
/// next login ([`ScramClient::handle_server_first_with`]); it is as secret as the password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ScramKeys {
    client_key: [u8; 32],
    server_key: [u8; 32],
}

impl ScramKeys {
    /// Derives the keys of `password` (not yet SASLprep'd) for `salt` and `iterations`.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        ScramKeys::from_normalized(&normalize(password), salt, iterations)
    }

    fn from_normalized(password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
        let salted = hi(password, salt, iterations);
        ScramKeys {
            client_key: hmac(&salted, &[b"Client Key"]),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

/// pgsplit as a SCRAM client authenticating to a server.
pub struct ScramClient {
    /// SASLprep'd password.
    password: Vec<u8>,
    /// Client nonce.
    nonce: String,
    /// `n=<user>,r=<nonce>`, the part of the first message that enters the AuthMessage.
    client_first_bare: String,
    /// The signature the server must prove, known once server-first has been handled.
    server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    /// A client with a random nonce that sends an empty user name, as libpq does.
    pub fn new(password: &str) -> Self {
        Self::with_nonce(password, &random_nonce())
    }

    /// A client with a fixed nonce, for tests. The nonce must be printable ASCII without `,`.
    pub fn with_nonce(password: &str, nonce: &str) -> Self {
        Self::with_username_and_nonce("", password, nonce)
    }

    /// A client that names `username` in its first message (PostgreSQL ignores it; RFC test
    /// vectors need it). The nonce must be printable ASCII without `,`.
    pub fn with_username_and_nonce(username: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            password: normalize(password),
            nonce: nonce.to_owned(),
            client_first_bare: format!("n={},r={}", escape_name(username), nonce),
            server_signature: None,
        }
    }

    /// The client-first-message, `n,,n=,r=<nonce>`, for SASLInitialResponse.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Checks the server-first-message (from SASLContinue) and returns the client-final-message.
    pub fn handle_server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, WireError> {
        self.handle_server_first_with(data, |_, _, derive| derive())
    }

    /// [`ScramClient::handle_server_first`], with the keys for the server's salt and iteration
    /// count supplied by `keys(salt, iterations, derive)`: keys kept from an earlier login, or
    /// `derive()` (the costly derivation from this client's password). The returned message
    /// is the same either way; keys that do not belong to the password make the server refuse
    /// the proof.
    pub fn handle_server_first_with(
        &mut self,
        data: &[u8],
        keys: impl FnOnce(&[u8], u32, &dyn Fn() -> ScramKeys) -> ScramKeys,
    ) -> Result<Vec<u8>, WireError> {
        if self.server_signature.is_some() {
            return Err(WireError::Auth("unexpected second server-first-message"));
        }
        let server_first = utf8(data, "server-first-message is not UTF-8")?;
        if server_first.starts_with("m=") {
            return Err(WireError::Auth(
                "server requires an unsupported SCRAM extension",
            ));
        }
        let mut attrs = server_first.split(',');
        let bad = WireError::Auth("malformed server-first-message");
        let nonce = attr(attrs.next(), 'r').ok_or(bad.clone())?;
        let salt = attr(attrs.next(), 's').ok_or(bad.clone())?;
        let iterations = attr(attrs.next(), 'i').ok_or(bad.clone())?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() || !valid_nonce(nonce)
        {
            return Err(WireError::Auth(
                "server nonce does not extend the client nonce",
            ));
        }
        let salt = B64.decode(salt).map_err(|_| bad.clone())?;
        let iterations = match iterations.parse::<u32>() {
            Ok(i) if i > 0 => i,
            _ => return Err(bad),
        };

        let password = &self.password;
        let derive = || ScramKeys::from_normalized(password, &salt, iterations);
        let ScramKeys {
            client_key,
            server_key,
        } = keys(&salt, iterations, &derive);
        let stored_key = sha256(&client_key);
        let without_proof = format!("c={CBIND_NONE},r={nonce}");
        let auth_message: [&[u8]; 5] = [
            self.client_first_bare.as_bytes(),
            b",",
            server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let mut proof = hmac(&stored_key, &auth_message);
        xor_into(&mut proof, &client_key);
        self.server_signature = Some(hmac(&server_key, &auth_message));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message (from SASLFinal): the server must prove it knows the
    /// secret too.
    pub fn verify_server_final(&self, data: &[u8]) -> Result<(), WireError> {
        let Some(expected) = self.server_signature else {
            return Err(WireError::Auth(
                "server-final-message before server-first-message",
            ));
        };
        let server_final = utf8(data, "server-final-message is not UTF-8")?;
        let first = server_final.split(',').next();
        if attr(first, 'e').is_some() {
            return Err(WireError::Auth("server reported a SCRAM error"));
        }
        let signature = attr(first, 'v')
            .and_then(|v| B64.decode(v).ok())
            .ok_or(WireError::Auth("malformed server-final-message"))?;
        if constant_time_eq(&signature, &expected) {
            Ok(())
        } else {
            Err(WireError::Auth("server signature does not match"))
        }
    }
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("nonce", &self.nonce)
            .field("server_first_handled", &self.server_signature.is_some())
            .finish_non_exhaustive()
    }
}

/// A stored SCRAM-SHA-256 secret, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// Salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl ScramSecret {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields).
    pub fn parse(verifier: &str) -> Option<Self> {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let iterations = iterations.parse::<u32>().ok().filter(|&i| i > 0)?;
        Some(ScramSecret {
            iterations,
            salt: B64.decode(salt).ok()?,
            stored_key: decode_key(stored_key)?,
            server_key: decode_key(server_key)?,
        })
    }

    /// Derives the secret for `password`, the way PostgreSQL stores it.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let keys = ScramKeys::derive(password, salt, iterations);
        ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&keys.client_key),
            server_key: keys.server_key,
        }
    }

    /// Derives a secret with a random 16-byte salt and 4096 iterations, like PostgreSQL's
    /// defaults.
    pub fn generate(password: &str) -> Self {
        let mut salt = [0u8; SALT_BYTES];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::from_password(password, &salt, DEFAULT_ITERATIONS)
    }

    /// The verifier string, in the format [`ScramSecret::parse`] reads.
    pub fn to_verifier(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramSecret {
    /// Shows the parameters but never the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt", &B64.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

/// Where a server-side exchange stands.
enum ServerState {
    /// Waiting for the client-first-message.
    Initial,
    /// Waiting for the client-final-message.
    SentFirst {
        /// The client's first message without its GS2 header.
        client_first_bare: String,
        /// The server-first-message we sent.
        server_first: String,
        /// Client nonce followed by ours.
        nonce: String,
        /// The `c=` value the client must send back: its GS2 header, base64-encoded.
        channel_binding: String,
    },
    /// The exchange is over (successfully or not); nothing more is accepted.
    Done,
}

/// pgsplit as a SCRAM server authenticating a client.
pub struct ScramServer {
    /// The secret the client must prove knowledge of.
    secret: ScramSecret,
    /// Our part of the nonce.
    server_nonce: String,
    /// Progress of the exchange.
    state: ServerState,
}

impl ScramServer {
    /// A server for one exchange against `secret`, with a random nonce part.
    pub fn new(secret: ScramSecret) -> Self {
        Self::with_nonce(secret, &random_nonce())
    }

    /// A server with a fixed nonce part, for tests. It must be printable ASCII without `,`.
    pub fn with_nonce(secret: ScramSecret, server_nonce: &str) -> Self {
        ScramServer {
            secret,
            server_nonce: server_nonce.to_owned(),
            state: ServerState::Initial,
        }
    }

    /// Reads the client-first-message (from SASLInitialResponse) and returns the
    /// server-first-message (for SASLContinue).
    ///
    /// Any user name is accepted, since PostgreSQL clients send an empty one.
    /// Channel binding (`p=`) and authorization identities (`a=`) are rejected.
    pub fn handle_client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, WireError> {
        if !matches!(self.state, ServerState::Initial) {
            return Err(WireError::Auth("unexpected client-first-message"));
        }
        self.state = ServerState::Done;
        let msg = utf8(data, "client-first-message is not UTF-8")?;
        let bad = WireError::Auth("malformed client-first-message");
        let (gs2_header, client_first_bare) = match msg.as_bytes() {
            [b'n' | b'y', b',', b',', ..] => msg.split_at(3),
            [b'p', b'=', ..] => return Err(WireError::Auth("channel binding is not supported")),
            [b'n' | b'y', b',', b'a', b'=', ..] => {
                return Err(WireError::Auth("authorization identity is not supported"));
            }
            _ => return Err(bad),
        };
        if client_first_bare.starts_with("m=") {
            return Err(WireError::Auth(
                "client requires an unsupported SCRAM extension",
            ));
        }
        let mut attrs = client_first_bare.split(',');
        attr(attrs.next(), 'n').ok_or(bad.clone())?;
        let client_nonce = attr(attrs.next(), 'r').ok_or(bad.clone())?;
        if !valid_nonce(client_nonce) {
            return Err(bad);
        }
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.secret.salt),
            self.secret.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::SentFirst {
            client_first_bare: client_first_bare.to_owned(),
            server_first,
            nonce,
            channel_binding: B64.encode(gs2_header),
        };
        Ok(reply)
    }

    /// Reads the client-final-message (from SASLResponse), checks the client's proof and returns
    /// the server-final-message (for SASLFinal).
    ///
    /// A wrong proof is `Err(WireError::Auth("password"))`.
    pub fn handle_client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, WireError> {
        let ServerState::SentFirst {
            client_first_bare,
            server_first,
            nonce,
            channel_binding,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(WireError::Auth("unexpected client-final-message"));
        };
        let msg = utf8(data, "client-final-message is not UTF-8")?;
        let bad = WireError::Auth("malformed client-final-message");
        // The proof is the last attribute, and everything before it enters the AuthMessage.
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(bad.clone())?;
        let mut attrs = without_proof.split(',');
        if attr(attrs.next(), 'c') != Some(channel_binding.as_str()) {
            return Err(WireError::Auth("channel binding data does not match"));
        }
        if attr(attrs.next(), 'r') != Some(nonce.as_str()) {
            return Err(WireError::Auth("nonce does not match"));
        }
        let proof = decode_key(proof).ok_or(bad)?;

        let auth_message: [&[u8]; 5] = [
            client_first_bare.as_bytes(),
            b",",
            server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let mut client_key = hmac(&self.secret.stored_key, &auth_message);
        xor_into(&mut client_key, &proof);
        if !constant_time_eq(&sha256(&client_key), &self.secret.stored_key) {
            return Err(WireError::Auth("password"));
        }
        let signature = hmac(&self.secret.server_key, &auth_message);
        Ok(format!("v={}", B64.encode(signature)).into_bytes())
    }
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ServerState::Initial => "initial",
            ServerState::SentFirst { .. } => "sent server-first",
            ServerState::Done => "done",
        };
        f.debug_struct("ScramServer")
            .field("secret", &self.secret)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
