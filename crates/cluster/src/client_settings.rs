//! The HTTP client settings a master ships to its workers, and how a
//! worker applies them: the master's, except where the worker's own flags
//! (or environment) say otherwise. Certificates travel as their PEM
//! contents; a client key only over an encrypted cluster port. A worker
//! writes them into a private folder of its own.

use std::path::Path;
use std::time::Duration;

use swarmer_engine::{ClientConfig, HttpVersionPreference, TlsOptions};

use crate::error::ClusterError;
use crate::proto;

/// Which client settings a worker's own flags or environment fixed (they
/// win over the master's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnClientFlags {
    /// `--http-version` was given.
    pub http_version: bool,
    /// `--insecure` was given.
    pub insecure: bool,
    /// `--connect-timeout` was given.
    pub connect_timeout: bool,
    /// `--request-timeout` was given.
    pub request_timeout: bool,
    /// `--max-body-size` was given.
    pub max_body: bool,
    /// `--ca-cert` was given.
    pub ca_certs: bool,
    /// `--client-cert` (and `--client-key`) was given.
    pub client_cert: bool,
}

/// The settings of `config`, as a master ships them, with the contents of
/// the certificate files of `tls`; the client key only when `encrypted`
/// (the cluster port uses TLS). Errors name the file that cannot be read.
pub fn to_proto(
    config: &ClientConfig,
    tls: &TlsOptions,
    encrypted: bool,
) -> Result<proto::ClientSettings, ClusterError> {
    let read = |flag: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| ClusterError::File { flag, path: path.to_path_buf(), source })
    };
    let ca_certs = tls.ca_certs.iter().map(|p| read("--ca-cert", p)).collect::<Result<Vec<_>, _>>()?;
    let (client_cert, client_key) = match (&tls.client_cert, encrypted) {
        (Some((cert, key)), true) => (read("--client-cert", cert)?, read("--client-key", key)?),
        (Some(_), false) => {
            tracing::warn!(
                "--client-cert/--client-key are not sent over an unencrypted cluster port (workers of \
                 --processes get them as flags): give them to each other worker, or use --cluster-tls-cert"
            );
            (Vec::new(), Vec::new())
        }
        (None, _) => (Vec::new(), Vec::new()),
    };
    Ok(proto::ClientSettings {
        http_version: config.version.name().to_owned(),
        insecure: config.insecure(),
        connect_timeout_seconds: config.connect_timeout.as_secs_f64(),
        request_timeout_seconds: config.timeout.map_or(0.0, |t| t.as_secs_f64()),
        max_body_bytes: config.max_body_bytes as u64,
        ca_certs,
        client_cert,
        client_key,
    })
}

/// The client a worker runs with: `shipped` from the master, except what
/// `own` flags fixed in `current`; `tls` holds the worker's own certificate
/// files. Shipped certificates are written into `private` (a folder only
/// this user can read). Errors name what could not be used.
pub fn apply(
    shipped: &proto::ClientSettings,
    current: &ClientConfig,
    tls: &TlsOptions,
    own: OwnClientFlags,
    private: &Path,
) -> Result<ClientConfig, ClusterError> {
    let mut tls = tls.clone();
    let write = |name: String, content: &[u8]| {
        let path = private.join(name);
        std::fs::write(&path, content).map(|()| path.clone()).map_err(|source| ClusterError::File {
            flag: "the master's certificates",
            path,
            source,
        })
    };
    if !own.ca_certs && !shipped.ca_certs.is_empty() {
        tls.ca_certs = shipped
            .ca_certs
            .iter()
            .enumerate()
            .map(|(i, pem)| write(format!("ca-{i}.pem"), pem))
            .collect::<Result<Vec<_>, _>>()?;
    }
    if !own.client_cert && !shipped.client_cert.is_empty() && !shipped.client_key.is_empty() {
        tls.client_cert =
            Some((write("client.pem".into(), &shipped.client_cert)?, write("client.key".into(), &shipped.client_key)?));
    }
    let version = if own.http_version {
        current.version
    } else {
        HttpVersionPreference::from_name(&shipped.http_version).ok_or_else(|| {
            ClusterError::Refused(format!("the master sent an unknown HTTP version {:?}", shipped.http_version))
        })?
    };
    let insecure = if own.insecure { current.insecure() } else { shipped.insecure };
    let seconds = |value: f64, what: &str| {
        Duration::try_from_secs_f64(value)
            .map_err(|_| ClusterError::Refused(format!("the master sent an invalid {what}: {value}")))
    };
    let mut config =
        ClientConfig::new(&TlsOptions { insecure, ..tls }, version).map_err(|e| ClusterError::Tls(e.to_string()))?;
    config.connect_timeout = if own.connect_timeout {
        current.connect_timeout
    } else {
        seconds(shipped.connect_timeout_seconds, "connect timeout")?
    };
    config.timeout = if own.request_timeout {
        current.timeout
    } else {
        let timeout = seconds(shipped.request_timeout_seconds, "request timeout")?;
        (!timeout.is_zero()).then_some(timeout)
    };
    config.max_body_bytes = if own.max_body {
        current.max_body_bytes
    } else {
        usize::try_from(shipped.max_body_bytes).unwrap_or(usize::MAX)
    };
    config.max_redirects = current.max_redirects;
    config.user_agent = current.user_agent.clone();
    Ok(config)
}

/// One line for the worker's log: what its users run with.
pub fn describe(config: &ClientConfig) -> String {
    format!(
        "HTTP version {}, {}, connect timeout {:?}, request timeout {}, bodies up to {} bytes",
        config.version.name(),
        if config.insecure() { "certificates not verified" } else { "certificates verified" },
        config.connect_timeout,
        config.timeout.map_or("none".to_owned(), |t| format!("{t:?}")),
        config.max_body_bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> ClientConfig {
        let mut config =
            ClientConfig::new(&TlsOptions { insecure: true, ..Default::default() }, HttpVersionPreference::Http2Only)
                .expect("no files to read");
        config.connect_timeout = Duration::from_secs(3);
        config.timeout = None;
        config.max_body_bytes = 1000;
        config
    }

    #[test]
    fn a_worker_takes_the_masters_settings() {
        let shipped = to_proto(&master(), &TlsOptions::default(), false).expect("no files");
        let worker = ClientConfig::default_config();
        let private = tempfile::tempdir().expect("a temporary folder");
        let applied =
            apply(&shipped, &worker, &TlsOptions::default(), OwnClientFlags::default(), private.path()).expect("valid");
        assert_eq!(applied.version, HttpVersionPreference::Http2Only);
        assert!(applied.insecure());
        assert_eq!(applied.connect_timeout, Duration::from_secs(3));
        assert_eq!(applied.timeout, None);
        assert_eq!(applied.max_body_bytes, 1000);
    }

    #[test]
    fn a_workers_own_flags_win() {
        let shipped = to_proto(&master(), &TlsOptions::default(), false).expect("no files");
        let mut worker = ClientConfig::new(&TlsOptions::default(), HttpVersionPreference::Http1Only).expect("valid");
        worker.timeout = Some(Duration::from_secs(5));
        let own = OwnClientFlags { http_version: true, insecure: true, request_timeout: true, ..Default::default() };
        let private = tempfile::tempdir().expect("a temporary folder");
        let applied = apply(&shipped, &worker, &TlsOptions::default(), own, private.path()).expect("valid");
        assert_eq!(applied.version, HttpVersionPreference::Http1Only);
        assert!(!applied.insecure());
        assert_eq!(applied.timeout, Some(Duration::from_secs(5)));
        assert_eq!(applied.connect_timeout, Duration::from_secs(3), "not fixed by the worker: the master's");
    }

    #[test]
    fn nonsense_from_the_master_is_refused_by_name() {
        let private = tempfile::tempdir().expect("a temporary folder");
        let mut shipped = to_proto(&master(), &TlsOptions::default(), false).expect("no files");
        shipped.http_version = "3".into();
        let error =
            apply(&shipped, &master(), &TlsOptions::default(), OwnClientFlags::default(), private.path()).unwrap_err();
        assert!(error.to_string().contains("HTTP version \"3\""), "{error}");
        let mut shipped = to_proto(&master(), &TlsOptions::default(), false).expect("no files");
        shipped.connect_timeout_seconds = -1.0;
        let error =
            apply(&shipped, &master(), &TlsOptions::default(), OwnClientFlags::default(), private.path()).unwrap_err();
        assert!(error.to_string().contains("connect timeout"), "{error}");
    }
}
