//! A capped set of connections that several sessions draw on (Locust's
//! `pool_manager = PoolManager(maxsize=N, block=True)`, FastHttpUser's
//! `concurrency`).
//!
//! A session given a [`ConnectionPool`] keeps no connections of its own: for
//! each request it waits for one of the pool's `limit` slots (first come,
//! first served), takes an idle connection to the origin or opens one, and
//! gives it back once the response is read. At most `limit` connections are
//! open at any time, idle ones included: an idle connection to another
//! origin is closed to make room. A request that times out or fails drops
//! its connection and frees its slot.

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

/// A connection taken from the pool for one exchange, with its slot.
pub(crate) struct Leased {
    pub origin: Origin,
    pub connection: Connection,
    _slot: OwnedSemaphorePermit,
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

    /// Connections open now: those lent out and the idle ones.
    pub fn open_connections(&self) -> usize {
        let lent = self.limit - self.slots.available_permits();
        lent + self.idle.borrow().iter().filter(|(_, c)| c.is_usable()).count()
    }

    /// Wait for a slot, then an idle connection to `origin` or a new one.
    pub(crate) async fn lease(&self, origin: &Origin, config: &ClientConfig) -> Result<Leased, HttpError> {
        let slot = self.slots.clone().acquire_owned().await.map_err(|_| HttpError::Protocol("pool closed".into()))?;
        let reused = {
            let mut idle = self.idle.borrow_mut();
            idle.retain(|(_, c)| c.is_usable());
            idle.iter().rposition(|(o, _)| o == origin).map(|i| idle.swap_remove(i).1)
        };
        let connection = match reused {
            Some(connection) => connection,
            None => {
                // Room for one more: lent ones plus idle ones stay within the limit.
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
        Ok(Leased { origin: origin.clone(), connection, _slot: slot })
    }

    /// Take back a connection after a complete exchange; its slot frees.
    pub(crate) fn give_back(&self, leased: Leased) {
        if leased.connection.is_usable() {
            self.idle.borrow_mut().push((leased.origin, leased.connection));
        }
    }
}
