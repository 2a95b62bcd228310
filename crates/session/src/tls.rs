//! TLS towards clients: the acceptor built from `tls:` (a PEM certificate chain and key), and
//! the client socket halves, plain TCP or TLS over it (the backend's [`Stream`]).
//!
//! The crypto provider (ring) is passed to rustls explicitly, so nothing process-wide is
//! installed. ALPN offers `postgresql`, as PostgreSQL 17 does: a client that offers only other
//! protocols is refused in the handshake.

use std::io;
use std::path::Path;
use std::sync::Arc;

use pgsplit_backend::tls::Stream;
use pgsplit_config::{TlsConfig, TlsMode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

/// What the proxy serves TLS with: built at start and at every reload (so a reload picks up
/// renewed certificate files), shared by every session.
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    mode: TlsMode,
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
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| error("tls.cert", &config.cert, pem_message(e)))?;
        if certs.is_empty() {
            let message = "no CERTIFICATE block in the file".to_owned();
            return Err(error("tls.cert", &config.cert, message));
        }
        let key = PrivateKeyDer::from_pem_file(&config.key)
            .map_err(|e| error("tls.key", &config.key, pem_message(e)))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
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
        }))
    }

    /// Whether plain-text clients are refused.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Runs the server side of the handshake on `stream`.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

fn pem_message(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => format!("cannot read the file: {e}"),
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM block of that kind in the file".to_owned()
        }
        other => format!("not a usable PEM file: {other:?}"),
    }
}

/// The read half of a client socket: plain TCP, or TLS after an SSLRequest.
pub(crate) type ClientRead = Stream<OwnedReadHalf, ReadHalf<TlsStream<TcpStream>>>;
/// The write half of a client socket.
pub(crate) type ClientWrite = Stream<OwnedWriteHalf, WriteHalf<TlsStream<TcpStream>>>;

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
