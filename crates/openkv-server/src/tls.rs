//! HTTPS for [`serve`](crate::serve): loading a PEM certificate and key into a rustls
//! configuration, and a listener that runs TLS handshakes off the accept path.
//!
//! The listener wraps the plain one (`listen::Admitting`: the connection cap, TCP_NODELAY), so
//! the TLS path shares the plain path's connection handling (HTTP/1.1 and HTTP/2 on one port,
//! the limits, graceful shutdown) instead of re-implementing it. Only the handshake is ours:
//! each runs in its own task with a timeout, so a client that sends garbage, speaks plain HTTP
//! or never finishes the handshake costs one task and delays nobody else — and holds its place
//! under the connection cap meanwhile, so handshakes cannot pile up past it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::listen::{Accept, Accepted};

/// How long a client may take to complete the TLS handshake before the connection is closed.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocols offered, preferred first: Deno's client negotiates HTTP/2.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A certificate chain and its private key, ready to serve HTTPS with
/// [`ServerConfig::tls`](crate::ServerConfig::tls).
///
/// TLS 1.3 and 1.2 (rustls' safe defaults, ring cryptography), ALPN `h2` and `http/1.1`.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsConfig {
    // The rustls configuration holds the private key: show only what is safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &["h2", "http/1.1"])
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a certificate or key could not be used. Every message names the file (or, for
/// [`TlsConfig::from_pem`], which of the two inputs) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{file} is not valid PEM: {message}")]
    Pem {
        /// The file.
        file: String,
        /// What the PEM parser reported.
        message: String,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error(
        "{file} holds no PEM certificate (expected a \"-----BEGIN CERTIFICATE-----\" section)"
    )]
    NoCertificate {
        /// The file.
        file: String,
    },
    /// The key file holds no private key rustls can use.
    #[error(
        "{file} holds no PEM private key (expected \"-----BEGIN PRIVATE KEY-----\", \
         \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\"){hint}"
    )]
    NoKey {
        /// The file.
        file: String,
        /// More about what the file holds instead, if known.
        hint: &'static str,
    },
    /// The private key is not the key of the (first) certificate.
    #[error("the private key in {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// rustls refused the certificate or key (an unsupported key type, a malformed
    /// certificate).
    #[error("cannot use the certificate in {cert} with the key in {key}: {message}")]
    Rejected {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls reported.
        message: String,
    },
}

impl TlsConfig {
    /// Loads a PEM certificate chain (the server's certificate first, then intermediates) and
    /// a PEM private key (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`), and checks that the key belongs to the certificate.
    pub fn from_pem_files(
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|source| TlsError::Read { file: path.display().to_string(), source })
        };
        let (cert_file, key_file) = (cert_file.as_ref(), key_file.as_ref());
        let (cert_pem, key_pem) = (read(cert_file)?, read(key_file)?);
        build(
            &cert_pem,
            &cert_file.display().to_string(),
            &key_pem,
            &key_file.display().to_string(),
        )
    }

    /// Like [`from_pem_files`](Self::from_pem_files), from PEM text already in memory (a
    /// secret store, an environment variable).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsConfig, TlsError> {
        build(cert_pem, "the certificate PEM", key_pem, "the private key PEM")
    }

    /// How long a client may take to complete the handshake (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]); a connection still handshaking then is closed.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

fn build(cert_pem: &[u8], cert: &str, key_pem: &[u8], key: &str) -> Result<TlsConfig, TlsError> {
    let pem_error = |file: &str, e: rustls::pki_types::pem::Error| TlsError::Pem {
        file: file.to_owned(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { file: cert.to_owned() });
    }
    let private_key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            // The two mistakes seen in practice: an encrypted key, and a swapped pair of files.
            let hint = if contains(key_pem, b"ENCRYPTED PRIVATE KEY") {
                "; it holds an encrypted key, which is not supported: decrypt it first \
                 (openssl pkey -in KEY -out DECRYPTED)"
            } else if contains(key_pem, b"-----BEGIN CERTIFICATE-----") {
                "; it holds a certificate: were the certificate and key files swapped?"
            } else {
                ""
            };
            return Err(TlsError::NoKey { file: key.to_owned(), hint });
        }
        Err(e) => return Err(pem_error(key, e)),
    };
    // An explicit provider, so that the process-wide default (unset, or another crate's
    // choice) never matters.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected {
            cert: cert.to_owned(),
            key: key.to_owned(),
            message: e.to_string(),
        })?
        .with_no_client_auth();
    let mut server = builder.with_single_cert(chain, private_key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch { cert: cert.to_owned(), key: key.to_owned() }
        }
        e => TlsError::Rejected {
            cert: cert.to_owned(),
            key: key.to_owned(),
            message: e.to_string(),
        },
    })?;
    server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(TlsConfig { server: Arc::new(server), handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A listener whose connections come out TLS-terminated. Handshakes run in spawned tasks and
/// finished ones queue for [`accept`](Accept::accept); dropping the listener (at shutdown)
/// closes the port and abandons handshakes in progress.
pub(crate) struct TlsListener<A> {
    tcp: A,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    done_tx: mpsc::Sender<Accepted<TlsStream<TcpStream>>>,
    done_rx: mpsc::Receiver<Accepted<TlsStream<TcpStream>>>,
}

impl<A: Accept<Io = TcpStream>> TlsListener<A> {
    pub(crate) fn new(tcp: A, config: &TlsConfig) -> Self {
        // Bounded: handshakes finishing faster than connections are taken wait instead of
        // piling up.
        let (done_tx, done_rx) = mpsc::channel(64);
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config.server.clone()),
            handshake_timeout: config.handshake_timeout,
            done_tx,
            done_rx,
        }
    }

    fn spawn_handshake(&self, accepted: Accepted<TcpStream>) {
        let (acceptor, done, timeout) =
            (self.acceptor.clone(), self.done_tx.clone(), self.handshake_timeout);
        tokio::spawn(async move {
            let Accepted { io: tcp, peer, slot } = accepted;
            let handshake = tokio::time::timeout(timeout, acceptor.accept(tcp));
            let outcome = tokio::select! {
                outcome = handshake => outcome,
                // The server stopped accepting: nobody would serve this connection.
                _ = done.closed() => return,
            };
            match outcome {
                // Fails only if the server stopped meanwhile; the connection is then dropped.
                Ok(Ok(stream)) => drop(done.send(Accepted { io: stream, peer, slot }).await),
                // Warn: a client that does not trust the certificate, or speaks plain HTTP to
                // this port, shows up here and nowhere else on the server.
                Ok(Err(e)) => tracing::warn!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::warn!(%peer, "TLS handshake not completed within {timeout:?}"),
            }
        });
    }
}

impl<A: Accept<Io = TcpStream>> Accept for TlsListener<A> {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> Accepted<Self::Io> {
        loop {
            tokio::select! {
                // `done_rx` never ends: `self` holds a sender.
                Some(ready) = self.done_rx.recv() => return ready,
                // TCP_NODELAY is set there: TLS sends each handshake flight and response as
                // small records, which Nagle's algorithm would hold back for a delayed ACK.
                accepted = self.tcp.accept() => self.spawn_handshake(accepted),
            }
        }
    }
}
