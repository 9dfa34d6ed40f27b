//! Who may join a cluster: a shared token, proved both ways, and TLS.
//!
//! Neither side ever sends the token. The worker's `Hello` carries a fresh
//! nonce; the master answers with its own nonce and
//! `HMAC(token, "master" | worker nonce | master nonce)`; the worker checks
//! it (a master that cannot is refused: the worker never runs its plan) and
//! answers `HMAC(token, "worker" | master nonce | worker nonce)`, which the
//! master checks before it accepts anything else. Fresh nonces on both
//! sides make a recorded exchange useless. TLS (rustls, optionally mutual)
//! encrypts the stream; without it the token is still never exposed, but
//! the traffic is readable, and both sides say so in their log.

use std::path::PathBuf;

use crate::error::{ClusterError, TokenTooShort};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The shared secret of a cluster.
#[derive(Clone)]
pub struct ClusterToken(Vec<u8>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(…)")
    }
}

/// Tokens shorter than this are refused: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

impl ClusterToken {
    /// A token given by the user; errors say why it is not acceptable.
    pub fn new(text: &str) -> Result<Self, TokenTooShort> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN {
            return Err(TokenTooShort);
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    /// A fresh random token (for `--processes`, whose workers are our children).
    pub fn random() -> Self {
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes())
    }

    /// The token's text (to hand to child processes).
    pub fn expose(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    fn mac(&self, role: &[u8], first: &[u8], second: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length: new_from_slice cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(role);
        mac.update(&(first.len() as u32).to_be_bytes());
        mac.update(first);
        mac.update(second);
        mac.finalize().into_bytes().to_vec()
    }

    /// The master's proof over both nonces.
    pub fn master_proof(&self, worker_nonce: &[u8], master_nonce: &[u8]) -> Vec<u8> {
        self.mac(b"master", worker_nonce, master_nonce)
    }

    /// The worker's proof over both nonces.
    pub fn worker_proof(&self, master_nonce: &[u8], worker_nonce: &[u8]) -> Vec<u8> {
        self.mac(b"worker", master_nonce, worker_nonce)
    }

    /// True if `proof` is the master's proof for these nonces (compared in constant time).
    pub fn check_master_proof(&self, worker_nonce: &[u8], master_nonce: &[u8], proof: &[u8]) -> bool {
        self.master_proof(worker_nonce, master_nonce).ct_eq(proof).into()
    }

    /// True if `proof` is the worker's proof for these nonces (compared in constant time).
    pub fn check_worker_proof(&self, master_nonce: &[u8], worker_nonce: &[u8], proof: &[u8]) -> bool {
        self.worker_proof(master_nonce, worker_nonce).ct_eq(proof).into()
    }
}

/// A fresh 32-byte nonce.
pub fn nonce() -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// TLS of the cluster port (all PEM files).
#[derive(Clone, Debug, Default)]
pub struct ClusterTls {
    /// Master: its certificate chain and key. Worker: a client certificate
    /// for mutual TLS.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (given together with it).
    pub key: Option<PathBuf>,
    /// Master: require client certificates signed by this CA (mutual TLS).
    /// Worker: trust this CA for the master's certificate.
    pub ca: Option<PathBuf>,
    /// Worker: the name the master's certificate must carry (default: the
    /// master host).
    pub server_name: Option<String>,
}

impl ClusterTls {
    /// True when the cluster port uses TLS: a certificate or a CA is given.
    pub fn is_enabled(&self) -> bool {
        self.cert.is_some() || self.ca.is_some()
    }
}

pub(crate) fn read(path: &PathBuf, flag: &'static str) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path).map_err(|source| ClusterError::File { flag, path: path.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_only_with_the_same_token_and_nonces() {
        let token = ClusterToken::new("correct horse battery staple").unwrap();
        let other = ClusterToken::new("another token of enough length").unwrap();
        let (w, m) = (nonce(), nonce());
        assert!(token.check_master_proof(&w, &m, &token.master_proof(&w, &m)));
        assert!(!token.check_master_proof(&w, &m, &other.master_proof(&w, &m)));
        assert!(!token.check_master_proof(&w, &nonce(), &token.master_proof(&w, &m)), "a replayed proof fails");
        assert!(!token.check_worker_proof(&m, &w, &token.master_proof(&w, &m)), "roles differ");
        assert!(token.check_worker_proof(&m, &w, &token.worker_proof(&m, &w)));
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(ClusterToken::new("short").unwrap_err().to_string().contains("at least 16"));
        assert_eq!(ClusterToken::random().expose().len(), 48);
    }
}
