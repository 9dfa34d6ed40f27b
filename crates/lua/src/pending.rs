//! Operations a plan starts in Rust and waits for with a yield: a Rust
//! function of the `swarmer` module (a gRPC call, say) files a future
//! here and returns its number; the prelude yields that number with the
//! await code; the driver takes the future out, awaits it, and resumes
//! the coroutine with the value it makes.
//!
//! The value is made on the VM's main state, after the wait, by the
//! future's output (a closure given the `Lua`): nothing is built on the
//! suspended coroutine (see `crate::raw`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use mlua::{Lua, Value};

/// What a finished operation gives: a function making its Lua value (a
/// table or a string), or the error message to resume with.
pub type Finish = Box<dyn FnOnce(&Lua) -> Result<Value, String>>;

type Operation = Pin<Box<dyn Future<Output = Finish>>>;

/// Most operations filed and not yet awaited in one VM, and most bytes of
/// requests they hold: a plan that starts calls and never waits for them
/// (its own `coroutine.wrap` catching the yield, a stopped user) cannot
/// grow memory outside Lua's limit without bound; beyond either, new calls
/// are refused with an error.
const MOST: usize = 10_000;
const MOST_BYTES: usize = 256 << 20;

/// The operations filed and not yet awaited, by number (never reused, so a
/// number kept by a plan cannot reach a later operation).
#[derive(Default)]
pub struct Pending {
    operations: RefCell<HashMap<i64, (Operation, usize)>>,
    next: Cell<i64>,
    bytes: Cell<usize>,
}

impl Pending {
    /// File `operation`, holding about `bytes` of request; its number for
    /// the yield.
    pub fn file(&self, operation: impl Future<Output = Finish> + 'static, bytes: usize) -> mlua::Result<i64> {
        let mut operations = self.operations.borrow_mut();
        if operations.len() >= MOST || self.bytes.get().saturating_add(bytes) > MOST_BYTES {
            return Err(mlua::Error::runtime(format!(
                "too many calls started and not awaited (at most {MOST}, {} MiB of requests)",
                MOST_BYTES >> 20
            )));
        }
        let id = self.next.get() + 1;
        self.next.set(id);
        self.bytes.set(self.bytes.get() + bytes);
        operations.insert(id, (Box::pin(operation), bytes));
        Ok(id)
    }

    /// Take operation `id` out, to await it.
    pub fn take(&self, id: i64) -> Option<Operation> {
        let (operation, bytes) = self.operations.borrow_mut().remove(&id)?;
        self.bytes.set(self.bytes.get().saturating_sub(bytes));
        Some(operation)
    }
}
