//! The test's TLS trust (`--ca-cert`, `--insecure`, client certificate)
//! for what a plan's top level connects to outside any user: gRPC server
//! reflection. Users' clients carry the run's configuration themselves;
//! a top level runs before any user exists, and its first load before the
//! command line is parsed, so the binary sets the trust here twice: from
//! the raw flags before that first load, then from the parsed run
//! configuration.

use std::sync::{Arc, Mutex};

use swarmer_engine::LockExt;
use swarmer_http::ClientConfig;

/// The trust set last; `None` until the binary sets one (the Mozilla roots).
static TRUST: Mutex<Option<Arc<ClientConfig>>> = Mutex::new(None);

/// Use `config`'s TLS settings for top-level connections from now on.
pub fn set(config: Arc<ClientConfig>) {
    *TRUST.lock_or_recover() = Some(config);
}

/// The trust set last; `None` until the binary sets one (the caller's
/// default then: the Mozilla roots).
pub fn current() -> Option<Arc<ClientConfig>> {
    TRUST.lock_or_recover().clone()
}
