//! Operations a plan starts in Rust and waits for with a yield: a Rust
//! function of the `swarmer` module (a gRPC call, say) files a future
//! here and returns its number; the prelude yields that number with the
//! await code; the driver takes the future out, awaits it, and resumes
//! the coroutine with the value it makes.
//!
//! The value is made on the VM's main state, after the wait, by the
//! future's output (a closure given the `Lua`): nothing is built on the
//! suspended coroutine (see `crate::raw`).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

use mlua::{Lua, Value};
use slab::Slab;

/// What a finished operation gives: a function making its Lua value (a
/// table or a string), or the error message to resume with.
pub type Finish = Box<dyn FnOnce(&Lua) -> Result<Value, String>>;

type Operation = Pin<Box<dyn Future<Output = Finish>>>;

/// More filed and not awaited than this is a plan misusing the module's
/// internals; refused rather than kept.
const MOST: usize = 100_000;

/// The operations filed and not yet awaited, by number.
#[derive(Default)]
pub struct Pending {
    operations: RefCell<Slab<Operation>>,
}

impl Pending {
    /// File `operation`; its number for the yield.
    pub fn file(&self, operation: impl Future<Output = Finish> + 'static) -> mlua::Result<i64> {
        let mut operations = self.operations.borrow_mut();
        if operations.len() >= MOST {
            return Err(mlua::Error::runtime("too many operations started and not awaited"));
        }
        Ok(operations.insert(Box::pin(operation)) as i64)
    }

    /// Take operation `id` out, to await it.
    pub fn take(&self, id: i64) -> Option<Operation> {
        let id = usize::try_from(id).ok()?;
        self.operations.borrow_mut().try_remove(id)
    }
}
