//! TLS on pgsplit's connections: towards servers (SSLRequest, then a rustls handshake checked
//! as `sslmode` says), and the socket halves, plain or TLS, that both sides of the proxy use.
//!
//! The crypto provider (ring) is passed to rustls explicitly; nothing process-wide is set.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use pgsplit_config::SslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One half of a socket: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream<P, T> {
    /// Plain TCP.
    Plain(P),
    /// TLS.
    Tls(T),
    /// Only while the socket is taken apart (a TLS handshake, a move to another event loop);
    /// any I/O fails.
    Detached,
}

/// The read half of a server connection.
pub type ServerRead = Stream<OwnedReadHalf, ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>;
/// The write half of a server connection.
pub type ServerWrite =
    Stream<OwnedWriteHalf, WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>>;

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket is being taken apart",
    )
}

impl<P: AsyncRead + Unpin, T: AsyncRead + Unpin> AsyncRead for Stream<P, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(r) => Pin::new(r).poll_read(cx, buf),
            Stream::Tls(r) => Pin::new(r).poll_read(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl<P: AsyncWrite + Unpin, T: AsyncWrite + Unpin> AsyncWrite for Stream<P, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(w) => Pin::new(w).poll_write(cx, buf),
            Stream::Tls(w) => Pin::new(w).poll_write(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Stream::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(w) => w.is_write_vectored(),
            Stream::Tls(w) => w.is_write_vectored(),
            Stream::Detached => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(w) => Pin::new(w).poll_flush(cx),
            Stream::Tls(w) => Pin::new(w).poll_flush(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(w) => Pin::new(w).poll_shutdown(cx),
            Stream::Tls(w) => Pin::new(w).poll_shutdown(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

/// How to reach one server over TLS: its `sslmode`, `sslrootcert` and host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// The server's `sslmode`.
    pub mode: SslMode,
    /// Its `sslrootcert`.
    pub rootcert: Option<std::path::PathBuf>,
    /// The host name or address the certificate must be made out to (`verify-full`), also
    /// sent as SNI when it is a name.
    pub host: String,
}

impl ServerTls {
    /// The TLS settings of a configured server.
    pub fn of(server: &pgsplit_config::Server) -> ServerTls {
        ServerTls {
            mode: server.sslmode,
            rootcert: server.sslrootcert.clone(),
            host: server.host.clone(),
        }
    }

    /// Plain text.
    pub fn disabled() -> ServerTls {
        ServerTls {
            mode: SslMode::Disable,
            rootcert: None,
            host: String::new(),
        }
    }

    /// Checks that the files these settings name can be used (what a connect would read),
    /// for `pgsplit check`, start and reload.
    pub fn check(&self) -> Result<(), String> {
        client_config(self.mode, self.rootcert.as_deref()).map(|_| ())
    }
}

/// The rustls client configuration for `mode`: the CA certificates of `rootcert` for the
/// verify modes, no certificate check for `prefer` and `require` (as libpq). Reads the file.
pub fn client_config(
    mode: SslMode,
    rootcert: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(AnyCertificate(provider.clone()))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let path = rootcert.ok_or("`sslrootcert` is required for this sslmode")?;
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| format!("sslrootcert {}: {e:?}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {}: no usable CA certificate in the file",
                    path.display()
                ));
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            if mode == SslMode::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens TLS on `stream` as `params` says: SSLRequest, then the handshake when the server
/// answers `S`. `Ok(None)` when the server declined and `prefer` allows plain text (or TLS is
/// disabled): the stream is handed back unchanged.
pub(crate) async fn negotiate(
    mut stream: TcpStream,
    params: &ServerTls,
) -> Result<Result<tokio_rustls::client::TlsStream<TcpStream>, TcpStream>, String> {
    if params.mode == SslMode::Disable {
        return Ok(Err(stream));
    }
    let config = client_config(params.mode, params.rootcert.as_deref())?;
    let mut buf = BytesMut::with_capacity(8);
    pgsplit_wire::encode::ssl_request(&mut buf);
    stream.write_all(&buf).await.map_err(|e| e.to_string())?;
    let answer = stream.read_u8().await.map_err(|e| e.to_string())?;
    match answer {
        b'S' => {}
        b'N' if params.mode == SslMode::Prefer => return Ok(Err(stream)),
        b'N' => {
            return Err(format!(
                "the server does not support TLS, and sslmode is {}",
                params.mode.as_str()
            ));
        }
        other => {
            return Err(format!(
                "unexpected answer {:?} to SSLRequest",
                char::from(other)
            ));
        }
    }
    let name = ServerName::try_from(params.host.to_owned())
        .map_err(|e| format!("host {:?} is not a valid TLS server name: {e}", params.host))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map(Ok)
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// `prefer` and `require`: the connection is encrypted, the certificate is not checked (as
/// libpq does in those modes). The handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the certificate chain must lead to `sslrootcert`; the name in it is not
/// compared with the host.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
