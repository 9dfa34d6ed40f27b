//! A capped set of connections that several sessions draw on (Locust's
//! `pool_manager = PoolManager(maxsize=N, block=True)`, FastHttpUser's
//! `concurrency`).
//!
//! A session given a [`ConnectionPool`] keeps no connections of its own:
//! each request first waits for one of the pool's `limit` slots (first
//! come, first served), holds it until its response is read, and for each
//! hop takes an idle connection to the origin or opens one, giving it back
//! afterwards. As with urllib3's blocking pool, the wait for a slot counts
//! in the response time but not against the request's timeout, which
//! starts once the slot is held. At most `limit` connections are open at
//! any time, idle ones included: an idle connection to another origin is
//! closed to make room. A request that times out or fails drops its
//! connection and frees its slot.

use std::cell::RefCell;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ClientConfig;
use crate::connection::{self, Connection, Origin};
use crate::error::HttpError;

/// Connections shared by the sessions given it; lives on one shard.
pub struct ConnectionPool {
    limit: usize,
    slots: Arc<Semaphore>,
    idle: RefCell<Vec<(Origin, Connection)>>,
}

/// A connection taken from the pool for one exchange (its request holds
/// a slot meanwhile).
pub(crate) struct Leased {
    pub origin: Origin,
    pub connection: Connection,
}

impl ConnectionPool {
    /// A pool of at most `limit` connections (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self { limit, slots: Arc::new(Semaphore::new(limit)), idle: RefCell::new(Vec::new()) }
    }

    /// The most connections open at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Connections open now: one per request holding a slot, and the idle ones.
    pub fn open_connections(&self) -> usize {
        let lent = self.limit - self.slots.available_permits();
        lent + self.idle.borrow().iter().filter(|(_, c)| c.is_usable()).count()
    }

    /// Wait for a slot: one request's right to a connection, freed when
    /// dropped.
    pub(crate) async fn slot(&self) -> Result<OwnedSemaphorePermit, HttpError> {
        self.slots.clone().acquire_owned().await.map_err(|_| HttpError::Protocol("pool closed".into()))
    }

    /// An idle connection to `origin` or a new one, for a request that
    /// holds a slot.
    pub(crate) async fn lease(&self, origin: &Origin, config: &ClientConfig) -> Result<Leased, HttpError> {
        let reused = {
            let mut idle = self.idle.borrow_mut();
            idle.retain(|(_, c)| c.is_usable());
            idle.iter().rposition(|(o, _)| o == origin).map(|i| idle.swap_remove(i).1)
        };
        let connection = match reused {
            Some(connection) => connection,
            None => {
                // Room for one more: requests holding a slot (this one
                // included) plus idle connections stay within the limit.
                let lent = self.limit - self.slots.available_permits();
                {
                    let mut idle = self.idle.borrow_mut();
                    while !idle.is_empty() && lent + idle.len() > self.limit {
                        idle.remove(0);
                    }
                }
                Box::pin(connection::connect(origin, config)).await?
            }
        };
        Ok(Leased { origin: origin.clone(), connection })
    }

    /// Take back a connection after a complete exchange.
    pub(crate) fn give_back(&self, leased: Leased) {
        if leased.connection.is_usable() {
            self.idle.borrow_mut().push((leased.origin, leased.connection));
        }
    }
}
