//! Reusing coroutines between task calls.
//!
//! Every task call runs in a coroutine. Creating one per call costs a
//! thread object and its stack, and the garbage collector then has to
//! trace and free them: on the benchmark plan that was a large part of
//! the Lua overhead per request. A shard's VM keeps the coroutines that
//! finished (returned, or died with an error and were then closed by the
//! driver) and hands them out again; one left suspended (its user was
//! stopped mid-request) is left to the collector.

use std::cell::RefCell;

use mlua::Lua;

use crate::raw::Coroutine;

/// Finished coroutines kept for reuse: enough for the users of a shard
/// that finish a task at the same moment, without holding memory for
/// thousands after a burst.
const KEEP: usize = 256;

/// The free coroutines of one VM (boxed: a loan then moves a pointer,
/// not the whole handle, on every task call).
#[derive(Default)]
pub struct ThreadPool {
    #[allow(clippy::vec_box, reason = "a loan moves the box's pointer out of the vector, not the handle")]
    free: RefCell<Vec<Box<Coroutine>>>,
}

impl ThreadPool {
    /// A coroutine with an empty stack: push its function and arguments,
    /// then drive it.
    pub fn take(&self, lua: &Lua) -> mlua::Result<Pooled<'_>> {
        let reused = self.free.borrow_mut().pop();
        let coroutine = match reused {
            Some(coroutine) => coroutine,
            None => Box::new(Coroutine::new(lua)?),
        };
        Ok(Pooled { pool: self, coroutine: Some(coroutine) })
    }
}

/// A coroutine on loan: it goes back to the pool when dropped, if it ran
/// to its end.
pub struct Pooled<'a> {
    pool: &'a ThreadPool,
    coroutine: Option<Box<Coroutine>>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Coroutine;
    fn deref(&self) -> &Coroutine {
        self.coroutine.as_ref().expect("a pooled coroutine is present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Coroutine {
        self.coroutine.as_mut().expect("a pooled coroutine is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(coroutine) = self.coroutine.take() else { return };
        // Reusable: it returned (and the driver emptied its stack), rather
        // than died with an error or was left suspended.
        if !coroutine.is_reusable() {
            return;
        }
        let mut free = self.pool.free.borrow_mut();
        if free.len() < KEEP {
            free.push(coroutine);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Clients;
    use crate::driver::{self, Bridge};
    use crate::responses::Responses;
    use mlua::Function;

    #[tokio::test(flavor = "current_thread")]
    async fn a_finished_coroutine_is_reused_and_an_unfinished_one_is_not() {
        let lua = Lua::new();
        let pool = ThreadPool::default();
        let bridge = Bridge {
            clients: Clients::default(),
            responses: Responses::new(&lua, lua.create_table().unwrap()).unwrap(),
            pending: Default::default(),
        };
        let double: Function = lua.load("return function(x) return x * 2 end").eval().unwrap();
        let first_ptr = {
            let mut thread = pool.take(&lua).unwrap();
            let n = thread.push_args((double.clone(), 21)).unwrap();
            let out = driver::drive(&bridge, &mut thread, n - 1, true, &Default::default())
                .await
                .unwrap()
                .into_result()
                .unwrap();
            assert_eq!(out, mlua::Value::Integer(42));
            thread.thread().to_pointer()
        };
        let halt: Function = lua.load("return function(sleep) coroutine.yield(3600, sleep) end").eval().unwrap();
        {
            let mut thread = pool.take(&lua).unwrap();
            assert_eq!(thread.thread().to_pointer(), first_ptr, "the finished coroutine is handed out again");
            let n = thread.push_args((halt.clone(), crate::raw::operation_codes().1)).unwrap();
            // A sleep of an hour: dropped while suspended, so not kept.
            let busy = std::cell::Cell::default();
            let drive = driver::drive(&bridge, &mut thread, n - 1, true, &busy);
            assert!(tokio::time::timeout(std::time::Duration::from_millis(20), drive).await.is_err());
        }
        assert!(pool.free.borrow().is_empty());
        let mut thread = pool.take(&lua).unwrap();
        assert_ne!(thread.thread().to_pointer(), first_ptr);
        let n = thread.push_args((double.clone(), 5)).unwrap();
        let out =
            driver::drive(&bridge, &mut thread, n - 1, true, &Default::default()).await.unwrap().into_result().unwrap();
        assert_eq!(out, mlua::Value::Integer(10));
    }
}
