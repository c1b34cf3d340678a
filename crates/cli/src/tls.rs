//! TLS for runnelctl's Kafka client: the CA certificates to trust, and a
//! client certificate for listeners that ask for one.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::aws_lc_rs::default_provider};

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("read certificates from {}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM CERTIFICATE in it", path.display());
    }
    Ok(certs)
}

pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).with_context(|| format!("CA certificate in {}", ca.display()))?;
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(default_provider())).with_safe_default_protocol_versions()?.with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("read the private key in {}", key.display()))?;
            builder.with_client_auth_cert(certificates(cert)?, key).with_context(|| format!("client certificate {}", cert.display()))?
        }
    };
    Ok(Arc::new(config))
}
