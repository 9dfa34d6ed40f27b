//! Login for the web UI and API (`--web-login`), so the UI can face a
//! network without an nginx and a password file in front of it.
//!
//! - Credentials come as `user:password` lines (a file or an environment
//!   variable). Passwords are kept only as salted SHA-256 digests and
//!   compared in constant time; every account is compared, so the time
//!   taken does not tell whether a user name exists.
//! - A browser logs in with the form at `/login` and gets a random session
//!   token in a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under TLS).
//!   The server keeps only a digest of each token.
//! - API clients send HTTP basic auth on every request instead.
//!
//! Everything else answers 401 (API) or redirects to the login page (the UI).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use swarmer_engine::LockExt;

use crate::start_error::CredentialsError;

/// Name of the session cookie.
pub const COOKIE: &str = "swarmer_session";
/// How long a browser session lasts without a new login.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The accounts allowed in.
pub struct Credentials {
    salt: [u8; 16],
    /// Digests of (user name, password).
    accounts: Vec<([u8; 32], [u8; 32])>,
}

impl Credentials {
    /// Parse `user:password` lines (blank lines and `#` comments skipped).
    /// `source` names where they came from, for errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, CredentialsError> {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let mut accounts = Vec::new();
        let bad_line = |index: usize, reason| CredentialsError::BadLine {
            source_name: source.to_owned(),
            line: index + 1,
            reason,
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(bad_line(i, "expected user:password"));
            };
            if user.is_empty() || password.is_empty() {
                return Err(bad_line(i, "user name and password must not be empty"));
            }
            accounts.push((digest(&salt, user.as_bytes()), digest(&salt, password.as_bytes())));
        }
        if accounts.is_empty() {
            return Err(CredentialsError::Empty(source.to_owned()));
        }
        Ok(Self { salt, accounts })
    }

    /// True when `user` and `password` match an account.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (given_user, given_password) =
            (digest(&self.salt, user.as_bytes()), digest(&self.salt, password.as_bytes()));
        let mut ok = subtle::Choice::from(0);
        for (name, stored) in &self.accounts {
            ok |= name.ct_eq(&given_user) & stored.ct_eq(&given_password);
        }
        ok.into()
    }

    /// Check an `Authorization: Basic …` header value.
    pub fn verify_basic(&self, header: &str) -> bool {
        let Some(encoded) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Ok(text) = String::from_utf8(decoded) else { return false };
        match text.split_once(':') {
            Some((user, password)) => self.verify(user, password),
            None => false,
        }
    }
}

fn digest(salt: &[u8], data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(data);
    hasher.finalize().into()
}

/// Browser sessions: digests of the tokens handed out, with their expiry.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Sessions {
    /// A new session; returns the token to put in the cookie.
    pub fn open(&self) -> String {
        let mut token = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut token);
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        {
            let mut live = self.live.lock_or_recover();
            let now = Instant::now();
            live.retain(|_, expires| *expires > now);
            live.insert(digest(b"", text.as_bytes()), now + SESSION_LIFETIME);
        }
        text
    }

    /// True if `token` belongs to an open session that has not expired (sessions last 12 hours).
    pub fn is_valid(&self, token: &str) -> bool {
        let key = digest(b"", token.as_bytes());
        self.live.lock_or_recover().get(&key).is_some_and(|expires| *expires > Instant::now())
    }

    /// End the session of `token` (logging out); unknown tokens are ignored.
    pub fn close(&self, token: &str) {
        self.live.lock_or_recover().remove(&digest(b"", token.as_bytes()));
    }
}

/// The session token in a `Cookie` header, if any.
pub fn session_cookie(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|pair| pair.strip_prefix(COOKIE)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_user_and_password_pass() {
        let creds = Credentials::parse("# team\nalice:s3cret\nbob:hunter2\n", "test").unwrap();
        assert!(creds.verify("alice", "s3cret"));
        assert!(creds.verify("bob", "hunter2"));
        assert!(!creds.verify("alice", "hunter2"));
        assert!(!creds.verify("carol", "s3cret"));
        assert!(!creds.verify("", ""));
    }

    #[test]
    fn passwords_are_not_kept_in_clear() {
        let creds = Credentials::parse("alice:s3cret", "test").unwrap();
        assert!(!creds.accounts[0].1.windows(6).any(|w| w == b"s3cret"));
        assert_ne!(creds.accounts[0].1, digest(b"", b"s3cret"), "salted");
        assert_eq!(creds.accounts[0].1, digest(&creds.salt, b"s3cret"));
    }

    #[test]
    fn basic_auth_headers_are_decoded() {
        let creds = Credentials::parse("alice:s3:cret", "test").unwrap();
        let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:s3:cret"));
        assert!(creds.verify_basic(&header));
        assert!(!creds.verify_basic("Basic !!!"));
        assert!(!creds.verify_basic("Bearer x"));
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let err = Credentials::parse("alice:x\nbob\n", "users.txt").err().unwrap();
        assert_eq!(err.to_string(), "users.txt:2: expected user:password");
        assert!(matches!(err, CredentialsError::BadLine { line: 2, .. }));
        assert_eq!(Credentials::parse("\n# nothing\n", "env").err(), Some(CredentialsError::Empty("env".into())));
    }

    #[test]
    fn sessions_open_check_and_close() {
        let sessions = Sessions::default();
        let token = sessions.open();
        assert!(sessions.is_valid(&token));
        assert!(!sessions.is_valid("forged"));
        sessions.close(&token);
        assert!(!sessions.is_valid(&token));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(session_cookie("a=1; swarmer_session=tok; b=2"), Some("tok"));
        assert_eq!(session_cookie("swarmer_sessionx=tok"), None);
    }
}
