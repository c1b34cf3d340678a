//! TLS on Kafka listeners whose security protocol is SSL or SASL_SSL
//! (rustls, TLS 1.2 and 1.3). The certificate chain and key come from PEM
//! files and are read again when a file changes (checked at each new
//! connection, so a renewed certificate is served without a restart; a
//! renewal that does not load is logged and the previous one kept). With a
//! client CA file, clients may (`requested`) or must (`required`) present a
//! certificate signed by it; its subject is the connection's principal.

use runnel_controller::tls::{FileStamp, file_stamps, private_key, provider};
use rustls_pki_types::CertificateDer;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            _ => Err(format!("unknown client auth {s:?}: use none, requested or required")),
        }
    }
}

/// Where a TLS listener's certificate, key and client CA come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate chain, leaf first (PEM).
    pub certificate: PathBuf,
    /// The server certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates (PEM); needed unless
    /// client auth is none.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// A failure to load the TLS files; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The server side of TLS listeners, loaded once and reloaded when its
/// files change.
pub struct TlsServer {
    files: TlsFiles,
    current: Mutex<Loaded>,
}

struct Loaded {
    stamps: Vec<FileStamp>,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer").field("files", &self.files).finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Loads the files now: a node with a TLS listener does not start
    /// without a certificate it can serve.
    pub fn load(files: TlsFiles) -> Result<TlsServer, TlsError> {
        if files.client_auth != ClientAuth::None && files.client_ca.is_none() {
            return Err(TlsError(format!("ssl_client_auth {:?} needs the CAs that sign client certificates: set ssl_client_ca_file", files.client_auth)));
        }
        let stamps = stamps(&files);
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&files)?));
        Ok(TlsServer { files, current: Mutex::new(Loaded { stamps, acceptor }) })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The acceptor for a new connection: reloaded first if a file changed
    /// since the last load (its modification time or size).
    pub fn acceptor(&self) -> TlsAcceptor {
        let now = stamps(&self.files);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if now != current.stamps {
            match server_config(&self.files) {
                Ok(config) => {
                    tracing::info!(certificate = %self.files.certificate.display(), "TLS files changed; new connections get the new certificate");
                    current.acceptor = TlsAcceptor::from(Arc::new(config));
                }
                Err(e) => tracing::warn!(error = %e, "TLS files changed but do not load; still serving the previous certificate"),
            }
            // A broken file is reported once, not at every connection.
            current.stamps = now;
        }
        current.acceptor.clone()
    }
}

fn stamps(files: &TlsFiles) -> Vec<FileStamp> {
    file_stamps([Some(&files.certificate), Some(&files.key), files.client_ca.as_ref()].into_iter().flatten().map(PathBuf::as_path))
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    runnel_controller::tls::certificates(path, what).map_err(TlsError)
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = certificates(&files.certificate, "ssl_certificate_file")?;
    let key = private_key(&files.key, "ssl_key_file").map_err(TlsError)?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| TlsError(format!("TLS versions: {e}")))?;
    let builder = match (&files.client_ca, files.client_auth) {
        (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
        (Some(ca), auth) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "ssl_client_ca_file")? {
                roots.add(cert).map_err(|e| TlsError(format!("ssl_client_ca_file {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError(format!("ssl_client_ca_file {}: {e}", ca.display())))?)
        }
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("ssl_certificate_file {} with ssl_key_file {}: {e}", files.certificate.display(), files.key.display())))
}

/// The principal of a client certificate: its subject as an RFC 4514
/// distinguished name (`CN=alice,O=Example`), as Kafka's default principal
/// builder names it `User:CN=alice,O=Example`.
pub fn certificate_principal(leaf: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    Some(cert.tbs_certificate.subject.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;

    struct Pki {
        dir: tempfile::TempDir,
        ca: rcgen::CertifiedKey,
    }

    impl Pki {
        fn new() -> Pki {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Pki { dir: tempfile::tempdir().unwrap(), ca: rcgen::CertifiedKey { cert, key_pair: key } }
        }

        fn issue(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.ca.cert, &self.ca.key_pair).unwrap();
            let cert_path = self.dir.path().join(format!("{name}.pem"));
            let key_path = self.dir.path().join(format!("{name}.key"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        }

        fn ca_file(&self) -> PathBuf {
            let path = self.dir.path().join("ca.pem");
            std::fs::write(&path, self.ca.cert.pem()).unwrap();
            path
        }
    }

    fn files(certificate: PathBuf, key: PathBuf) -> TlsFiles {
        TlsFiles { certificate, key, client_ca: None, client_auth: ClientAuth::None }
    }

    #[test]
    fn loads_a_certificate_and_names_the_file_that_does_not_load() {
        let pki = Pki::new();
        let (cert, key) = pki.issue("server", "broker");
        TlsServer::load(files(cert.clone(), key.clone())).expect("a good pair loads");

        let missing = TlsServer::load(files(pki.dir.path().join("nope.pem"), key.clone())).unwrap_err();
        assert!(missing.0.contains("ssl_certificate_file") && missing.0.contains("nope.pem"), "{missing}");

        std::fs::write(pki.dir.path().join("empty.pem"), "not pem\n").unwrap();
        let empty = TlsServer::load(files(pki.dir.path().join("empty.pem"), key.clone())).unwrap_err();
        assert!(empty.0.contains("no PEM CERTIFICATE"), "{empty}");

        let no_key = TlsServer::load(files(cert.clone(), cert.clone())).unwrap_err();
        assert!(no_key.0.contains("ssl_key_file"), "{no_key}");

        let (_, other_key) = pki.issue("other", "other");
        let mismatch = TlsServer::load(files(cert.clone(), other_key)).unwrap_err();
        assert!(mismatch.0.contains("ssl_certificate_file") && mismatch.0.contains("ssl_key_file"), "{mismatch}");

        let no_ca = TlsServer::load(TlsFiles { client_auth: ClientAuth::Required, ..files(cert, key) }).unwrap_err();
        assert!(no_ca.0.contains("ssl_client_ca_file"), "{no_ca}");
    }

    #[test]
    fn client_auth_parses_kafka_values() {
        assert_eq!("required".parse::<ClientAuth>(), Ok(ClientAuth::Required));
        assert_eq!("REQUESTED".parse::<ClientAuth>(), Ok(ClientAuth::Requested));
        assert_eq!("none".parse::<ClientAuth>(), Ok(ClientAuth::None));
        assert!("sometimes".parse::<ClientAuth>().unwrap_err().contains("none, requested or required"));
    }

    #[test]
    fn principal_is_the_subject() {
        let pki = Pki::new();
        let (cert, _) = pki.issue("alice", "alice");
        let der = CertificateDer::from_pem_file(&cert).unwrap();
        assert_eq!(certificate_principal(&der).as_deref(), Some("CN=alice"));
    }

    /// A TLS client that trusts `ca` and completes a handshake with the
    /// server, optionally presenting a client certificate.
    async fn handshake(server: &TlsServer, ca: &Path, client_cert: Option<(PathBuf, PathBuf)>) -> Result<Option<String>, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = server.acceptor();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let principal = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(certificate_principal);
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            tls.write_all(&byte).await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(principal)
        });
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca, "ca").unwrap() {
            roots.add(cert).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
        let config = match client_cert {
            Some((cert, key)) => builder.with_client_auth_cert(certificates(&cert, "cert").unwrap(), PrivateKeyDer::from_pem_file(&key).unwrap()).unwrap(),
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let client = async {
            let mut tls = connector.connect("localhost".try_into().unwrap(), tcp).await.map_err(|e| e.to_string())?;
            tls.write_all(b"x").await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        let (client, server) =
            tokio::time::timeout(std::time::Duration::from_secs(10), async { (client.await, accept.await.unwrap()) }).await.expect("handshake finishes");
        client?;
        server
    }

    #[tokio::test]
    async fn a_changed_certificate_is_served_to_new_connections_and_a_broken_one_is_not() {
        let pki = Pki::new();
        let (cert, key) = pki.issue("server", "broker");
        let server = TlsServer::load(files(cert.clone(), key.clone())).unwrap();
        let ca = pki.ca_file();
        handshake(&server, &ca, None).await.expect("trusted certificate");

        // Renewed under another CA: new connections get the new one, so a
        // client that trusts only the old CA now fails.
        let other = Pki::new();
        let (new_cert, new_key) = other.issue("server", "broker");
        std::fs::copy(&new_cert, &cert).unwrap();
        std::fs::copy(&new_key, &key).unwrap();
        assert!(handshake(&server, &ca, None).await.is_err(), "the old CA no longer verifies the served certificate");
        handshake(&server, &other.ca_file(), None).await.expect("the new certificate is served");

        // A half-written renewal keeps the last good one.
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\ngarbage\n").unwrap();
        handshake(&server, &other.ca_file(), None).await.expect("the previous certificate is still served");
    }

    #[tokio::test]
    async fn required_client_auth_refuses_clients_without_a_signed_certificate() {
        let pki = Pki::new();
        let (cert, key) = pki.issue("server", "broker");
        let ca = pki.ca_file();
        let server = TlsServer::load(TlsFiles { client_ca: Some(ca.clone()), client_auth: ClientAuth::Required, ..files(cert, key) }).unwrap();
        assert!(handshake(&server, &ca, None).await.is_err(), "no client certificate");
        let strangers = Pki::new();
        let stranger = strangers.issue("mallory", "mallory");
        assert!(handshake(&server, &ca, Some(stranger)).await.is_err(), "a certificate from another CA");
        let alice = pki.issue("alice", "alice");
        assert_eq!(handshake(&server, &ca, Some(alice)).await, Ok(Some("CN=alice".into())));
    }

    #[tokio::test]
    async fn requested_client_auth_lets_anonymous_clients_in() {
        let pki = Pki::new();
        let (cert, key) = pki.issue("server", "broker");
        let ca = pki.ca_file();
        let server = TlsServer::load(TlsFiles { client_ca: Some(ca.clone()), client_auth: ClientAuth::Requested, ..files(cert, key) }).unwrap();
        assert_eq!(handshake(&server, &ca, None).await, Ok(None));
        let bob = pki.issue("bob", "bob");
        assert_eq!(handshake(&server, &ca, Some(bob)).await, Ok(Some("CN=bob".into())));
    }
}
