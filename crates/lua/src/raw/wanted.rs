//! How many results the caller of a running C function wants: lets
//! `self.client:get(...)` written as a statement skip building a response
//! object nobody can read.
//!
//! Lua's API does not say it; the count is the `nresults` field of the C
//! function's call record (`CallInfo`, lstate.h), which `lua_getstack`
//! hands out as the private last field of `lua_Debug`. Its place is
//! checked once per process against calls whose wanted counts are known
//! ([`check_layout`]); until that check passes, or if it fails, nothing is
//! read and every caller is assumed to want the result.

use std::ffi::{c_int, c_void};
use std::mem::{MaybeUninit, size_of};
use std::sync::atomic::{AtomicU8, Ordering};

use mlua::{Lua, ffi};

// The layout below is Lua 5.4's: mlua's `lua54` feature (this crate's
// Cargo.toml) builds 5.4 from the `lua-src` crate.

/// `lua_Debug`'s size on a 64-bit target (its last field, the call
/// record's pointer, ends it).
const LUA_DEBUG_SIZE: usize = 136;

/// Where `nresults` (a C `short`) lies in a 5.4 `CallInfo`: after four
/// pointers (`func`, `top`, `previous`, `next`), the 24-byte union `u`
/// and the 4-byte union `u2`. The record is 64 bytes long.
const NRESULTS_AT: usize = 60;

const UNCHECKED: u8 = 0;
const TRUSTED: u8 = 1;
const REFUSED: u8 = 2;

/// Whether [`NRESULTS_AT`] was found right in this process.
static LAYOUT: AtomicU8 = AtomicU8::new(UNCHECKED);

/// The calls [`check_layout`] makes, and the counts their callers want.
const PROBE: &str = "local probe, take = ...\n\
                     probe()\n\
                     local a = probe()\n\
                     local b, c, d = probe()\n\
                     take(probe())\n\
                     return a, b, c, d";
const EXPECTED: [i16; 4] = [0, 1, 3, -1];

/// The results wanted by the caller of the C function running on `l`
/// (-1: all of them), or `None` when that cannot be told.
///
/// # Safety
/// `l` is a running state inside a C function that Lua called.
pub(super) unsafe fn wanted_results(l: *mut ffi::lua_State) -> Option<i16> {
    if LAYOUT.load(Ordering::Relaxed) != TRUSTED {
        return None;
    }
    // SAFETY: per the contract, level 0 is the running C function, whose
    // call record Lua keeps alive for the call; the layout check passed,
    // so the read stays inside that 64-byte record.
    unsafe { read_nresults(l) }
}

/// # Safety
/// As [`wanted_results`], and the layout is 5.4's (a 64-byte record).
unsafe fn read_nresults(l: *mut ffi::lua_State) -> Option<i16> {
    // SAFETY: `lua_getstack` only fills the zeroed `lua_Debug`; its last
    // field is the record's pointer (lua.h: `struct CallInfo *i_ci`).
    unsafe {
        let mut ar = MaybeUninit::<ffi::lua_Debug>::zeroed();
        if ffi::lua_getstack(l, 0, ar.as_mut_ptr()) == 0 {
            return None;
        }
        let at = size_of::<ffi::lua_Debug>() - size_of::<*const c_void>();
        let record = ar.as_ptr().cast::<u8>().add(at).cast::<*const u8>().read();
        if record.is_null() {
            return None;
        }
        Some(record.add(NRESULTS_AT).cast::<i16>().read_unaligned())
    }
}

thread_local! {
    static SEEN: std::cell::RefCell<Vec<i16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The probe's C function: notes what its caller wants.
unsafe extern "C-unwind" fn probe(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls it as a C function on the running `l`; before the
    // check the read assumes 5.4's layout, which the `lua54` feature pins
    // (the record is 64 bytes in every 5.4 release).
    let wanted = unsafe { read_nresults(l) }.unwrap_or(i16::MIN);
    SEEN.with(|seen| seen.borrow_mut().push(wanted));
    0
}

/// Check once per process that `nresults` is where [`NRESULTS_AT`] says,
/// by calls whose wanted counts are known. Cheap after the first VM.
pub fn check_layout(lua: &Lua) {
    if LAYOUT.load(Ordering::Relaxed) != UNCHECKED {
        return;
    }
    if !cfg!(target_pointer_width = "64") || size_of::<ffi::lua_Debug>() != LUA_DEBUG_SIZE {
        // Another layout: not even probed.
        LAYOUT.store(REFUSED, Ordering::Relaxed);
        return;
    }
    SEEN.with(|seen| seen.borrow_mut().clear());
    let ran = (|| -> mlua::Result<()> {
        // SAFETY: `probe` follows Lua's protocol for C functions.
        let probe = unsafe { lua.create_c_function(probe)? };
        let take = lua.create_function(|_, _: mlua::MultiValue| Ok(()))?;
        lua.load(PROBE).set_name("=swarmer probe").call::<()>((probe, take))
    })();
    let seen = SEEN.with(|seen| std::mem::take(&mut *seen.borrow_mut()));
    let verdict = if ran.is_ok() && seen == EXPECTED { TRUSTED } else { REFUSED };
    if verdict == REFUSED {
        tracing::debug!(?seen, "Lua call records differ from 5.4's layout: every response is built");
    }
    LAYOUT.store(verdict, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_check_passes_on_the_vendored_lua() {
        let (lua, _) = super::super::new_lua().unwrap();
        check_layout(&lua);
        assert_eq!(LAYOUT.load(Ordering::Relaxed), TRUSTED);
    }
}
