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

/// A TLS connection to a server.
pub type ServerTlsStream = tokio_rustls::client::TlsStream<TcpStream>;
/// The read half of a TLS connection to a server.
pub type ServerTlsRead = ReadHalf<ServerTlsStream>;
/// The write half of a TLS connection to a server.
pub type ServerTlsWrite = TlsWrite<WriteHalf<ServerTlsStream>>;
/// The read half of a server connection.
pub type ServerRead = Stream<OwnedReadHalf, ServerTlsRead>;
/// The write half of a server connection.
pub type ServerWrite = Stream<OwnedWriteHalf, ServerTlsWrite>;

/// The write half of a TLS stream, made to behave as a socket's: a write counts as done only
/// once its records left for the socket.
///
/// A TLS stream takes plaintext at once and keeps the records it made until a flush pushes
/// them to the socket. pgsplit's writers (the outboxes, `write_all`) stop polling once their
/// bytes are taken, so records a full socket could not take would stay behind and the peer
/// would wait for them forever. Here the bytes taken are reported only after the records are
/// flushed; until then the write is pending, and the writer, whose bytes still count as
/// unsent, keeps polling. It must retry with the same bytes, as an outbox and `write_all` do.
#[derive(Debug)]
pub struct TlsWrite<W> {
    inner: W,
    /// Plaintext bytes the TLS stream took whose records are not flushed yet.
    taken: usize,
}

impl<W> TlsWrite<W> {
    /// Wraps the write half of a TLS stream.
    pub fn new(inner: W) -> TlsWrite<W> {
        TlsWrite { inner, taken: 0 }
    }

    /// The TLS stream's write half.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: AsyncWrite + Unpin> TlsWrite<W> {
    /// Hands the bytes to the TLS stream with `write` unless some are still being flushed,
    /// then reports them once their records are flushed.
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut W>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.taken == 0 {
            match write(Pin::new(&mut self.inner), cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(n)) => self.taken = n,
                other => return other,
            }
        }
        self.poll_report(cx)
    }

    /// Flushes what was taken, then reports it.
    fn poll_report(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(std::mem::take(&mut self.taken))),
            Poll::Ready(Err(e)) => {
                self.taken = 0;
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TlsWrite<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_take(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_take(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The crypto provider pgsplit's TLS uses (ring), passed to rustls explicitly.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    parse_certs(&text)
}

/// The certificates of PEM text, in order; at least one.
pub fn parse_certs(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_message(&e))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in the file".to_owned());
    }
    Ok(certs)
}

/// What is wrong with a PEM file, in words.
pub fn pem_message(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => format!("cannot read the file: {e}"),
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM block of that kind in the file".to_owned()
        }
        other => format!("not a usable PEM file: {other:?}"),
    }
}

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
    /// The TLS settings of a configured server, shared: a pool compares them with those a
    /// connection was opened with at every release, which the shared pointer makes one
    /// comparison of addresses while the config is unchanged.
    pub fn of(server: &pgsplit_config::Server) -> Arc<ServerTls> {
        Arc::new(ServerTls {
            mode: server.sslmode,
            rootcert: server.sslrootcert.clone(),
            host: server.host.clone(),
        })
    }

    /// Plain text.
    pub fn disabled() -> Arc<ServerTls> {
        Arc::new(ServerTls {
            mode: SslMode::Disable,
            rootcert: None,
            host: String::new(),
        })
    }

    /// Checks that the files these settings name can be used (what a connect would read),
    /// for `pgsplit check`, start and reload.
    pub fn check(&self) -> Result<(), String> {
        client_config(self.mode, self.rootcert.as_deref()).map(|_| ())
    }
}

/// The rustls client configuration for `mode`: the CA certificates of `rootcert` for the
/// verify modes, no certificate check for `prefer` and `require` (as libpq; and as libpq,
/// `require` with a `rootcert` checks the chain as `verify-ca` does). Reads the file.
pub fn client_config(
    mode: SslMode,
    rootcert: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, rootcert) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
            Arc::new(AnyCertificate(provider.clone()))
        }
        (SslMode::VerifyCa | SslMode::VerifyFull | SslMode::Require, _) => {
            let path = rootcert.ok_or("`sslrootcert` is required for this sslmode")?;
            let in_file = |e: String| format!("sslrootcert {}: {e}", path.display());
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(load_certs(path).map_err(in_file)?);
            if added == 0 {
                return Err(in_file("no usable CA certificate in the file".to_owned()));
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| in_file(e.to_string()))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
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

/// Why TLS could not be set up on a server connection.
#[derive(Debug)]
pub(crate) enum NegotiateError {
    /// The socket failed (connection reset, closed): as any I/O failure, worth retrying.
    Io(io::Error),
    /// TLS itself failed: the server declined it, the handshake or the certificate check
    /// failed, or the files could not be used.
    Tls(String),
}

/// Opens TLS on `stream` as `params` says: SSLRequest, then the handshake when the server
/// answers `S`. `Ok(Err(stream))` when the server declined and `prefer` allows plain text (or
/// TLS is disabled): the stream is handed back unchanged.
pub(crate) async fn negotiate(
    mut stream: TcpStream,
    params: &ServerTls,
) -> Result<Result<ServerTlsStream, TcpStream>, NegotiateError> {
    if params.mode == SslMode::Disable {
        return Ok(Err(stream));
    }
    let config =
        client_config(params.mode, params.rootcert.as_deref()).map_err(NegotiateError::Tls)?;
    let mut buf = BytesMut::with_capacity(8);
    pgsplit_wire::encode::ssl_request(&mut buf);
    stream.write_all(&buf).await.map_err(NegotiateError::Io)?;
    let answer = stream.read_u8().await.map_err(NegotiateError::Io)?;
    match answer {
        b'S' => {}
        b'N' if params.mode == SslMode::Prefer => return Ok(Err(stream)),
        b'N' => {
            return Err(NegotiateError::Tls(format!(
                "the server does not support TLS, and sslmode is {}",
                params.mode.as_str()
            )));
        }
        other => {
            return Err(NegotiateError::Tls(format!(
                "unexpected answer {:?} to SSLRequest",
                char::from(other)
            )));
        }
    }
    let name = ServerName::try_from(params.host.to_owned()).map_err(|e| {
        NegotiateError::Tls(format!(
            "host {:?} is not a valid TLS server name: {e}",
            params.host
        ))
    })?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map(Ok)
        .map_err(|e| {
            // rustls reports its own failures (alerts, certificates) as InvalidData errors
            // that carry a `rustls::Error`; anything else is the socket's.
            if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                NegotiateError::Tls(format!("TLS handshake: {e}"))
            } else {
                NegotiateError::Io(e)
            }
        })
}

/// Moves a TLS connection's socket to the calling thread's event loop: the socket is
/// duplicated and the copy registered here, then the original is dropped (deregistered from
/// the loop that watched it, and closed). The TLS session stays as it is.
pub(crate) fn rehome(
    rd: ServerTlsRead,
    wr: ServerTlsWrite,
) -> io::Result<(ServerTlsRead, ServerTlsWrite)> {
    if wr.taken != 0 {
        return Err(io::Error::other("records of a write are still unflushed"));
    }
    let mut stream = rd.unsplit(wr.into_inner());
    let (socket, _) = stream.get_mut();
    let copy = std::os::fd::AsFd::as_fd(&*socket).try_clone_to_owned()?;
    let copy = TcpStream::from_std(std::net::TcpStream::from(copy))?;
    drop(std::mem::replace(socket, copy));
    let (rd, wr) = tokio::io::split(stream);
    Ok((rd, TlsWrite::new(wr)))
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

#[cfg(test)]
mod tests {
    use super::TlsWrite;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use tokio::io::AsyncWrite;

    /// A TLS stream's write side as tokio-rustls behaves: it takes plaintext at once, and its
    /// records leave only when a flush gets through, here after `stuck` pending flushes.
    #[derive(Default)]
    struct Records {
        taken: Vec<u8>,
        sent: usize,
        stuck: usize,
    }

    impl AsyncWrite for Records {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().taken.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.stuck > 0 {
                this.stuck -= 1;
                return Poll::Pending;
            }
            this.sent = this.taken.len();
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_write_is_reported_only_once_its_records_left() {
        let mut w = TlsWrite::new(Records {
            stuck: 2,
            ..Records::default()
        });
        let mut cx = Context::from_waker(Waker::noop());
        // The socket is full: the bytes are taken but not reported, so the writer keeps them
        // as unsent and polls again with the same bytes.
        assert!(Pin::new(&mut w).poll_write(&mut cx, b"rows").is_pending());
        assert!(Pin::new(&mut w).poll_write(&mut cx, b"rows").is_pending());
        assert_eq!(w.inner.taken, b"rows", "taken once, not again");
        assert_eq!(w.inner.sent, 0);
        match Pin::new(&mut w).poll_write(&mut cx, b"rows") {
            Poll::Ready(Ok(4)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!((w.inner.taken.as_slice(), w.inner.sent), (&b"rows"[..], 4));
        // With room in the socket a write is reported at once.
        match Pin::new(&mut w).poll_write(&mut cx, b"Z") {
            Poll::Ready(Ok(1)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(w.inner.sent, 5);
    }
}
