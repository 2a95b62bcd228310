//! TLS towards clients: the acceptor built from `tls:` (a PEM certificate chain and key), and
//! the client socket halves, plain TCP or TLS over it (the backend's [`Stream`]).
//!
//! The crypto provider (ring) is passed to rustls explicitly, so nothing process-wide is
//! installed. ALPN offers `postgresql`, as PostgreSQL 17 does: a client that offers only other
//! protocols is refused in the handshake.

use std::io;
use std::path::Path;
use std::sync::Arc;

use pgsplit_backend::tls::{Stream, TlsWrite, pem_message, provider};
use pgsplit_config::{TlsConfig, TlsMode};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

/// What the proxy serves TLS with: built at start and at every reload (so a reload picks up
/// renewed certificate files), shared by every session.
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    mode: TlsMode,
    /// Hash of the certificate and key files it was built from.
    files: u64,
}

fn files_hash(cert: &[u8], key: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut hasher = DefaultHasher::new();
    hasher.write(cert);
    hasher.write_u8(0);
    hasher.write(key);
    hasher.finish()
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Why the TLS files could not be used; names the config key and the file.
#[derive(Debug, thiserror::Error)]
#[error("{key} ({path}): {message}")]
pub struct TlsError {
    /// `tls.cert` or `tls.key` (or `tls` for a pair that does not match).
    pub key: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl TlsServer {
    /// Reads the certificate chain and key of `config` and builds the acceptor.
    pub fn load(config: &TlsConfig) -> Result<Arc<TlsServer>, TlsError> {
        let error = |key: &'static str, path: &Path, message: String| TlsError {
            key,
            path: path.display().to_string(),
            message,
        };
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| error(key, path, format!("cannot read the file: {e}")))
        };
        let (cert_text, key_text) = (
            read("tls.cert", &config.cert)?,
            read("tls.key", &config.key)?,
        );
        let files = files_hash(&cert_text, &key_text);
        let certs = pgsplit_backend::tls::parse_certs(&cert_text)
            .map_err(|message| error("tls.cert", &config.cert, message))?;
        let key = PrivateKeyDer::from_pem_slice(&key_text)
            .map_err(|e| error("tls.key", &config.key, pem_message(&e)))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| error("tls", &config.cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                let message = format!("the certificate and the key do not go together: {e}");
                error("tls.key", &config.key, message)
            })?;
        server.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Arc::new(TlsServer {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            mode: config.mode,
            files,
        }))
    }

    /// A hash of the certificate and key files as they were when this was built; compare it
    /// with [`TlsServer::hash_files`] to know whether the files changed since.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// A hash of the two files as they are now (as [`TlsServer::files`] counts them), `None`
    /// when one cannot be read.
    pub fn hash_files(config: &TlsConfig) -> Option<u64> {
        let cert = std::fs::read(&config.cert).ok()?;
        let key = std::fs::read(&config.key).ok()?;
        Some(files_hash(&cert, &key))
    }

    /// Whether plain-text clients are refused.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Runs the server side of the handshake on `stream`. The handshake's state (a whole
    /// TLS session) is boxed: held inline, it would grow every session's future, and so every
    /// idle client's memory, by its size, whether the client uses TLS or not.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        Box::pin(self.acceptor.accept(stream)).await
    }
}

/// The read half of a client socket: plain TCP, or TLS after an SSLRequest.
pub(crate) type ClientRead = Stream<OwnedReadHalf, ReadHalf<TlsStream<TcpStream>>>;
/// The write half of a client socket.
pub(crate) type ClientWrite = Stream<OwnedWriteHalf, TlsWrite<WriteHalf<TlsStream<TcpStream>>>>;

#[cfg(test)]
mod tests {
    use super::TlsServer;
    use pgsplit_config::{TlsConfig, TlsMode};

    fn pair(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn loads_a_pair_and_names_the_key_and_file_of_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("pgsplit-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = pair(&dir, "a");
        let (_, other_key) = pair(&dir, "b");
        let config = |cert: &std::path::Path, key: &std::path::Path| TlsConfig {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            mode: TlsMode::Require,
        };
        let server = TlsServer::load(&config(&cert, &key)).unwrap();
        assert_eq!(server.mode(), TlsMode::Require);

        let missing = dir.join("missing.crt");
        let e = TlsServer::load(&config(&missing, &key)).unwrap_err();
        assert_eq!(e.key, "tls.cert");
        assert!(e.to_string().contains("missing.crt"), "{e}");
        assert!(e.message.contains("cannot read the file"), "{e}");

        // A key file given as the certificate: no CERTIFICATE block.
        let e = TlsServer::load(&config(&key, &key)).unwrap_err();
        assert_eq!(e.key, "tls.cert", "{e}");

        // A certificate given as the key: no key in it.
        let e = TlsServer::load(&config(&cert, &cert)).unwrap_err();
        assert_eq!(e.key, "tls.key", "{e}");

        // Another certificate's key.
        let e = TlsServer::load(&config(&cert, &other_key)).unwrap_err();
        assert_eq!(e.key, "tls.key", "{e}");
        assert!(e.message.contains("do not go together"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
