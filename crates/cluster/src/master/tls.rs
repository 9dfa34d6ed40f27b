//! TLS on the cluster port, done by the accept loop rather than by tonic,
//! so that a handshake that fails is logged with its reason (a worker
//! without a client certificate, one from another CA, one that does not
//! trust this master's certificate), at most one line a second.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::auth::{ClusterTls, read};
use crate::error::ClusterError;

/// A handshake that has not ended in this long closes the connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptor for `tls`, or `None` when the port has no certificate.
/// Errors name the flag whose file is at fault.
pub fn acceptor(tls: &ClusterTls) -> Result<Option<TlsAcceptor>, ClusterError> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        if tls.cert.is_some() || tls.key.is_some() {
            return Err(ClusterError::TlsPair);
        }
        return Ok(None);
    };
    let bad = |flag: &str, e: &dyn std::fmt::Display| ClusterError::Tls(format!("{flag}: {e}"));
    let chain = CertificateDer::pem_slice_iter(&read(cert, "--cluster-tls-cert")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("--cluster-tls-cert", &e))?;
    if chain.is_empty() {
        return Err(bad("--cluster-tls-cert", &"no certificate in the file"));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&read(key, "--cluster-tls-key")?).map_err(|e| bad("--cluster-tls-key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClusterError::Tls(e.to_string()))?;
    let builder = match &tls.ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(&read(ca, "--cluster-ca")?) {
                let certificate = certificate.map_err(|e| bad("--cluster-ca", &e))?;
                roots.add(certificate).map_err(|e| bad("--cluster-ca", &e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad("--cluster-ca", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| bad("--cluster-tls-cert", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// The TLS handshake of a connection from `peer`; a failure is logged with
/// its reason and gives `None`.
pub async fn handshake<S>(acceptor: TlsAcceptor, stream: S, peer: SocketAddr) -> Option<TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let why = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(e)) => reason(&e),
        Err(_) => format!("the TLS handshake did not end within {} s", HANDSHAKE_TIMEOUT.as_secs()),
    };
    super::incoming::warn_limited(
        super::incoming::Kind::Refused,
        format_args!("refused a connection from {peer}: {why}"),
    );
    None
}

/// Why a handshake failed, in the words of a cluster's configuration.
fn reason(e: &io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                "it closed the connection during the TLS handshake".into()
            }
            // The accept loop's own bounds say why themselves.
            _ => format!("TLS handshake failed: {e}"),
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => {
            "no client certificate (this master wants one signed by its --cluster-ca)".into()
        }
        rustls::Error::InvalidCertificate(why) => {
            format!("its client certificate is not accepted ({why:?}; this master trusts its --cluster-ca only)")
        }
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA | AlertDescription::BadCertificate | AlertDescription::CertificateUnknown,
        ) => "the worker does not trust this master's certificate (see the worker's log; check its --cluster-ca and \
              the name it expects)"
            .into(),
        rustls::Error::AlertReceived(alert) => format!("the worker ended the TLS handshake ({alert:?})"),
        other => format!("TLS handshake failed: {other}"),
    }
}
