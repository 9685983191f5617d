//! Optional TLS for the server: a certificate chain and private key in PEM files, served
//! with rustls (the `ring` provider, TLS 1.2 and 1.3, ALPN `http/1.1`).
//!
//! Loading happens once, when the server binds, so that a bad file is reported before
//! anything listens. Client certificates are not asked for; authentication is the job of
//! [`super::AuthMode`].
//!
//! ```text
//! config.tls = Some(TlsFiles { cert: "cert.pem".into(), key: "key.pem".into() });
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{Error, Result};

/// The PEM files of a TLS server identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Builds the rustls configuration for `files`.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let tls_error = |path: &PathBuf, reason: String| Error::Tls {
        path: path.clone(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|error| tls_error(&files.cert, format!("cannot read certificates: {error}")))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|error| tls_error(&files.cert, format!("invalid certificate: {error}")))?;
    if certs.is_empty() {
        return Err(tls_error(
            &files.cert,
            "no certificate in the file".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|error| tls_error(&files.key, format!("cannot read a private key: {error}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(&files.cert, error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| {
            tls_error(
                &files.key,
                format!("key does not fit the certificate: {error}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
