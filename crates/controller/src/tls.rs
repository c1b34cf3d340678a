//! Mutual TLS between nodes (`rpc_tls_*`), with certificates that are read
//! again when their files change.
//!
//! Every node's gRPC port serves this node's certificate and requires a
//! client certificate the cluster's CA signed; every link this node opens
//! presents the same certificate and trusts only that CA. The three PEM
//! files are checked at each new connection, served or dialled (a `stat`
//! each): a renewed certificate, key or CA is used from the next connection
//! on, without a restart, and a renewal that does not load (a half-written
//! file) is logged once and the previous one kept. Connections already
//! open stay as they were, as TLS sessions do.
//!
//! tonic's own TLS takes its configuration once, so the server side is a
//! stream of connections this module's acceptor completed, and the client
//! side a connector that does the handshake with the current configuration.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use tonic::codegen::http::Uri;

/// The crypto provider of every TLS configuration Runnel builds.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates of a PEM file; the error names `what` and the file.
pub fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM CERTIFICATE in it", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// What tells that a file changed: its modification time and size (none
/// while it cannot be read).
pub type FileStamp = Option<(SystemTime, u64)>;

/// The stamps of `paths`, in order.
pub fn file_stamps<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<FileStamp> {
    paths.into_iter().map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

/// The files of `rpc_tls_*`: this node's certificate chain (leaf first) and
/// key, and the CA that signs every node's and runnelctl's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcTlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl RpcTlsFiles {
    fn paths(&self) -> [&Path; 3] {
        [&self.certificate, &self.key, &self.ca]
    }
}

/// The TLS of the gRPC port and of the links to other nodes, reloaded
/// when its files change.
#[derive(Debug)]
pub struct RpcTls {
    files: RpcTlsFiles,
    current: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamps: Vec<FileStamp>,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// HTTP/2 over TLS is negotiated by ALPN; gRPC needs it.
const ALPN_H2: &[u8] = b"h2";

/// gRPC connections that failed their TLS handshake since the process
/// started (a peer without a certificate the cluster's CA signed, a
/// handshake that did not finish in time); connections closed before a
/// handshake began (liveness probes) are not counted. The broker's
/// `/metrics` exports it.
pub static HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// How long a connection may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl RpcTls {
    /// Loads the files now: a node does not start with TLS files it cannot use.
    pub fn load(files: RpcTlsFiles) -> Result<RpcTls, String> {
        let stamps = file_stamps(files.paths());
        let (server, client) = configs(&files)?;
        Ok(RpcTls { files, current: Mutex::new(Loaded { stamps, server, client }) })
    }

    /// The configuration to serve a new connection with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.refreshed(|l| l.server.clone())
    }

    /// The configuration to dial a new connection with.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.refreshed(|l| l.client.clone())
    }

    fn refreshed<T>(&self, pick: impl FnOnce(&Loaded) -> T) -> T {
        let now = file_stamps(self.files.paths());
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if now != current.stamps {
            match configs(&self.files) {
                Ok((server, client)) => {
                    tracing::info!(certificate = %self.files.certificate.display(), "gRPC TLS files changed; new connections use them");
                    current.server = server;
                    current.client = client;
                }
                Err(e) => tracing::warn!(error = %e, "gRPC TLS files changed but do not load; new connections still use the previous ones"),
            }
            // A broken file is reported once, not at every connection.
            current.stamps = now;
        }
        pick(&current)
    }

    /// Accepts connections on `listener` and completes their TLS handshakes,
    /// each in its own task, yielding those that succeed: the incoming
    /// stream of a tonic server. Accepting stops when the stream is dropped.
    pub fn incoming(self: Arc<Self>, listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let accept = async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, usually: try again shortly.
                        tracing::warn!(error = %e, "the gRPC port could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Request/response on long-lived connections: no Nagle.
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let failure = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                            return;
                        }
                        // Closed before a word: the liveness probes of the
                        // controller and its voters (a TCP connect), or a
                        // load balancer's health check.
                        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            tracing::trace!(%peer, "a gRPC connection closed before its TLS handshake began");
                            return;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "it did not finish in time".to_string(),
                    };
                    HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
                    // A peer without the cluster's certificate retrying in a
                    // loop: one line a second at most.
                    static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
                    let second = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    if LAST_LOGGED.swap(second, Ordering::Relaxed) != second {
                        tracing::info!(%peer, error = %failure, "a gRPC connection failed its TLS handshake (further failures this second are not logged)");
                    }
                });
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(accept));
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

fn configs(files: &RpcTlsFiles) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), String> {
    let chain = certificates(&files.certificate, "rpc_tls_certificate_file")?;
    let key = private_key(&files.key, "rpc_tls_key_file")?;
    let mut roots = RootCertStore::empty();
    for cert in certificates(&files.ca, "rpc_tls_ca_file")? {
        roots.add(cert).map_err(|e| format!("rpc_tls_ca_file {}: {e}", files.ca.display()))?;
    }
    let roots = Arc::new(roots);
    let both = |e: rustls::Error| format!("rpc_tls_certificate_file {} with rpc_tls_key_file {}: {e}", files.certificate.display(), files.key.display());

    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build().map_err(|e| format!("rpc_tls_ca_file {}: {e}", files.ca.display()))?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(both)?;
    server.alpn_protocols = vec![ALPN_H2.to_vec()];

    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(both)?;
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((Arc::new(server), Arc::new(client)))
}

/// A connector for tonic channels that dials TCP and completes a TLS
/// handshake with the configuration current at that moment, so a channel
/// that reconnects presents a renewed certificate.
#[derive(Debug, Clone)]
pub struct TlsDialer(pub Arc<RpcTls>);

type Dialed = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower_service::Service<Uri> for TlsDialer {
    type Response = Dialed;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Dialed>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.0.clone();
        Box::pin(async move {
            let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what} in {uri}"));
            let host = uri.host().ok_or_else(|| invalid("no host"))?.trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            let name = ServerName::try_from(host.clone()).map_err(|_| invalid("not a host name or address"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let config = tls.client_config();
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the TLS handshake did not finish in time"))??;
            Ok(TokioIo::new(stream))
        })
    }
}
