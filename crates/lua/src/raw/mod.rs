//! Every call into Lua's C API (`mlua::ffi`) that the crate makes, behind
//! safe functions; the rest of the crate denies `unsafe` code.
//!
//! The hot path of a Lua plan (two resumes per request) talks to its
//! coroutines through the C API rather than through mlua's value
//! conversions, which take a registry reference for every string, table
//! and userdata that crosses. What keeps that sound, and which each unsafe
//! block below relies on:
//! - **Live states.** A [`Coroutine`] holds its VM (a `Lua` handle) and
//!   its thread, so its raw state outlives every use; a [`Slot`] knows
//!   which VM it belongs to and is refused by any other.
//! - **Nothing allocates on a suspended coroutine.** An allocation may run
//!   a step of the garbage collector, whose `__gc` finalizers run on the
//!   allocating thread, and Lua lets a finalizer resume the very
//!   coroutine it runs on, unwinding frames still in use (a hostile plan
//!   crashed the process that way). Values for a suspended coroutine are
//!   built on the VM's main state ([`Coroutine::build`]) and moved across
//!   with `lua_xmove`, which only copies. On the coroutine itself only
//!   reads of known types, pops, registry reads and `lua_checkstack`
//!   (which may grow the stack but runs no collector step) happen.
//! - **Whatever may raise runs protected.** Allocation raises once a
//!   memory limit is set, so while a VM has one ([`set_memory_limit`] is
//!   the only way to set it; clippy refuses mlua's setter elsewhere) every
//!   push that allocates runs inside a protected call (`Lua::exec_raw`,
//!   our own `lua_pcall`) or a C function Lua called. Without a limit a
//!   failed allocation aborts the process instead of raising, and values
//!   are built on the idle main state without a protected call (the
//!   pushes used raise nothing else; a finalizer's error is caught by
//!   Lua's own protected call around it). Either way the Rust frames an
//!   error could unwind with `longjmp` hold only references and plain
//!   values, never a destructor: values to build are described by
//!   [`Piece`]s and pushed by an interpreter in this module, so no code
//!   from elsewhere runs inside those frames. (A pending operation's value,
//!   `crate::pending`, is built by mlua on the main state between resumes,
//!   where mlua protects its own allocations, then handed over as a
//!   [`Slot`].)
//! - **The stack is checked, not assumed.** Room is made with
//!   `lua_checkstack` before pushes; reads of yielded values check their
//!   index against the top, and a coroutine whose stack changed under the
//!   driver (a plan resumed or closed it from elsewhere) is left alone.
//! - **Plans cannot reach native code.** The debug library is taken out
//!   of their reach before any of their code runs ([`new_lua`]), as are
//!   `package.loadlib`, the C searchers and binary chunks.
//! - **The count hook** yields only the coroutine being driven, only where
//!   `lua_isyieldable` allows, with no values, as Lua requires of hooks.
//!   On the coroutines the driver resumes it is set from a signal handler
//!   (`preempt`), the one use Lua documents `lua_sethook` for there.
//! - **One private field is read**, never written: how many results the
//!   caller of `client:get` wants (`wanted`), at a place checked once per
//!   process against calls whose counts are known; unchecked, it is not
//!   read.

mod coroutine;
mod hook;
mod pieces;
mod preempt;
mod requests;
mod vm;
mod wanted;

pub use coroutine::{Coroutine, Kind, Resumed, Yielded};
pub use hook::{install_hook, reset_busy};
pub use pieces::{Piece, Slot};
pub use requests::{CheckedRequest, Operation, operation_codes, request_methods};
pub use vm::{new_lua, set_memory_limit};
