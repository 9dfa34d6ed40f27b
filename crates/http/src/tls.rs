//! rustls client configuration: roots, the `insecure` opt-out, client
//! certificates, and ALPN for HTTP/2.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{HttpVersionPreference, TlsOptions};
use crate::error::HttpError;

pub(crate) fn client_config(
    options: &TlsOptions,
    version: HttpVersionPreference,
) -> Result<rustls::ClientConfig, HttpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    let builder = if options.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in &options.ca_certs {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| HttpError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &options.client_cert {
        Some((cert_path, key_path)) => {
            let certs = read_certs(cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| HttpError::Tls(format!("{}: no private key found: {e}", key_path.display())))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| HttpError::Tls(format!("client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match version {
        HttpVersionPreference::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        HttpVersionPreference::Http1Only => vec![b"http/1.1".to_vec()],
        HttpVersionPreference::Http2Only => vec![b"h2".to_vec()],
    };
    Ok(config)
}

fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| HttpError::Tls(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| HttpError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(HttpError::Tls(format!("{}: no PEM certificate found", path.display())));
    }
    Ok(certs)
}

/// The `insecure` verifier: accepts any certificate, still checks that the
/// handshake signatures are valid so the connection works normally.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
