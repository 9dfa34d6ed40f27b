//! Login for the web UI and API (`--web-login`), so the UI can face a
//! network without an nginx and a password file in front of it.
//!
//! - Credentials come as `user:password` lines (a file or an environment
//!   variable). Passwords are kept only as salted SHA-256 digests and
//!   compared in constant time; every account is compared, so the time
//!   taken does not tell whether a user name exists. A password may also
//!   be an htpasswd hash, bcrypt or `{SHA}`, so an nginx or Apache
//!   password file serves as it is (bcrypt lines made with `htpasswd -B`).
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
use std::str::FromStr;
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
    /// Digests of user names, with their password's check.
    accounts: Vec<([u8; 32], Secret)>,
    /// A bcrypt hash of the file's cost, checked when the user named has
    /// none, so the time taken does not tell which users exist.
    decoy: Option<String>,
    /// Digests of (user, password) pairs a bcrypt hash accepted: an API
    /// client sending basic auth on every request pays the hash once.
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
}

/// How a password is checked.
enum Secret {
    /// A password given in clear, kept as a salted digest.
    Plain([u8; 32]),
    /// An htpasswd bcrypt hash (`$2y$`, `$2b$`, `$2a$`).
    Bcrypt(String),
    /// An htpasswd `{SHA}` hash: SHA-1 of the password, base64.
    Sha1([u8; 20]),
}

/// Most (user, password) pairs remembered as verified.
const MOST_VERIFIED: usize = 1024;

impl Credentials {
    /// Parse `user:password` lines (blank lines and `#` comments skipped).
    /// A password may also be an htpasswd hash: bcrypt (`htpasswd -B`) or
    /// `{SHA}` (`htpasswd -s`). `source` names where they came from, for
    /// errors.
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
            let secret = secret_of(&salt, password).map_err(|reason| bad_line(i, reason))?;
            accounts.push((digest(&salt, user.as_bytes()), secret));
        }
        if accounts.is_empty() {
            return Err(CredentialsError::Empty(source.to_owned()));
        }
        // The costliest hash, so no user's check takes longer than a decoy's.
        let decoy = accounts
            .iter()
            .filter_map(|(_, secret)| match secret {
                Secret::Bcrypt(hash) => Some(hash),
                _ => None,
            })
            .max_by_key(|hash| bcrypt::HashParts::from_str(hash).map_or(0, |parts| parts.get_cost()))
            .cloned();
        Ok(Self { salt, accounts, decoy, verified: Mutex::default() })
    }

    /// True when `user` and `password` match an account. A bcrypt hash
    /// takes its cost in time (tens of milliseconds): call it off the
    /// async threads.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let pair = self.pair_digest(user, password);
        if self.verified.lock_or_recover().contains(&pair) {
            return true;
        }
        let (given_user, given_password) =
            (digest(&self.salt, user.as_bytes()), digest(&self.salt, password.as_bytes()));
        let given_sha1: [u8; 20] = <sha1::Sha1 as sha1::Digest>::digest(password.as_bytes()).into();
        // Every account is compared, so the time does not depend on which
        // one matches; only the user's own bcrypt hash (or the decoy) runs.
        let mut ok = subtle::Choice::from(0);
        let mut hashed = None;
        for (name, secret) in &self.accounts {
            let same_user = name.ct_eq(&given_user);
            match secret {
                Secret::Plain(stored) => ok |= same_user & stored.ct_eq(&given_password),
                Secret::Sha1(stored) => ok |= same_user & stored.ct_eq(&given_sha1),
                Secret::Bcrypt(hash) => {
                    if bool::from(same_user) {
                        hashed = Some(hash);
                    }
                }
            }
        }
        let by_hash = match (hashed, &self.decoy) {
            (Some(hash), _) => bcrypt::verify(password, hash).unwrap_or(false),
            (None, Some(decoy)) => {
                let _ = bcrypt::verify(password, decoy);
                false
            }
            (None, None) => false,
        };
        if by_hash {
            let mut verified = self.verified.lock_or_recover();
            if verified.len() >= MOST_VERIFIED {
                verified.clear();
            }
            verified.insert(pair);
        }
        bool::from(ok) || by_hash
    }

    /// The digest a verified (user, password) pair is remembered by.
    fn pair_digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update((user.len() as u64).to_le_bytes());
        hasher.update(user.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
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

/// How the password (or hash) of a line is checked; an error says why a
/// hash cannot be used.
fn secret_of(salt: &[u8], password: &str) -> Result<Secret, &'static str> {
    if ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|id| password.starts_with(id)) {
        // Parsed now, so a damaged hash is an error at its line.
        return match bcrypt::HashParts::from_str(password) {
            Ok(_) => Ok(Secret::Bcrypt(password.to_owned())),
            Err(_) => Err("a bcrypt hash ($2y$...) that does not parse"),
        };
    }
    if let Some(encoded) = password.strip_prefix("{SHA}") {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| "a {SHA} hash that is not base64")?;
        return <[u8; 20]>::try_from(bytes).map(Secret::Sha1).map_err(|_| "a {SHA} hash that is not 20 bytes");
    }
    if ["$apr1$", "$1$", "$5$", "$6$"].iter().any(|id| password.starts_with(id)) {
        return Err("MD5 and SHA-crypt hashes ($apr1$, $1$, $5$, $6$) are not supported: \
                    recreate the line with `htpasswd -B` (bcrypt)");
    }
    Ok(Secret::Plain(digest(salt, password.as_bytes())))
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
        let Secret::Plain(stored) = creds.accounts[0].1 else { panic!("a plain password") };
        assert!(!stored.windows(6).any(|w| w == b"s3cret"));
        assert_ne!(stored, digest(b"", b"s3cret"), "salted");
        assert_eq!(stored, digest(&creds.salt, b"s3cret"));
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

    /// Lines as `htpasswd -B` and `htpasswd -s` write them (Apache 2.4),
    /// beside a plain one.
    #[test]
    fn htpasswd_bcrypt_and_sha_lines_are_checked() {
        let bcrypt_line = format!("seed:{}", bcrypt::hash("swarm", 4).unwrap().replace("$2b$", "$2y$"));
        // `htpasswd -nbs ops letmein`
        // Made by glibc's crypt(3), not by this crate.
        let other = "crypt:$2y$05$abcdefghijklmnopqrstuuvy/xekwREmTVfHxy5g7pw2qI0RiiN06";
        let text = format!("{bcrypt_line}\nops:{{SHA}}t6h1/B6iKLkGEEG3zsS9PFKrPOM=\nalice:s3cret\n{other}\n");
        let creds = Credentials::parse(&text, "htpasswd").unwrap();
        assert!(creds.verify("seed", "swarm"));
        assert_eq!(creds.verified.lock().unwrap().len(), 1, "the pair is remembered");
        assert!(creds.verify("seed", "swarm"), "again, from memory");
        assert!(!creds.verify("seed", "swarm!"));
        assert!(!creds.verify("ops", "swarm"));
        assert!(creds.verify("ops", "letmein"));
        assert!(!creds.verify("ops", "letmein2"));
        assert!(creds.verify("alice", "s3cret"));
        assert!(!creds.verify("nobody", "swarm"));
        assert!(creds.verify("crypt", "swarm") && !creds.verify("crypt", "swarn"));
        let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("seed:swarm"));
        assert!(creds.verify_basic(&header));
    }

    #[test]
    fn unsupported_or_damaged_hashes_name_their_line() {
        let err = Credentials::parse("a:x\nb:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\n", "pw").err().unwrap();
        assert!(err.to_string().starts_with("pw:2: MD5 and SHA-crypt hashes"), "{err}");
        assert!(err.to_string().contains("htpasswd -B"), "{err}");
        let err = Credentials::parse("a:$2y$05$short", "pw").err().unwrap();
        assert_eq!(err.to_string(), "pw:1: a bcrypt hash ($2y$...) that does not parse");
        let err = Credentials::parse("a:{SHA}abc", "pw").err().unwrap();
        assert!(err.to_string().starts_with("pw:1: a {SHA} hash"), "{err}");
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
