//! Preemption on demand: the count hook is set on a coroutine the driver
//! resumes only once that resume has run for a while.
//!
//! A count hook costs every Lua instruction a call into Lua's debug code
//! (Lua 5.4 traps each instruction while any hook is set): about a
//! tenth of a Lua plan's time per request, and more for plans that
//! compute. So the coroutines the driver resumes run without one. A
//! watchdog thread looks at each shard thread every [`TICK`]; a thread
//! still inside the same resume as at its last look gets a signal, whose
//! handler sets the count hook on the coroutine being driven, as Lua's
//! own interpreter does on Ctrl-C (`lua_sethook` is meant to be called
//! from a signal handler). The hook then yields that coroutine at its
//! next instruction, and the driver takes the hook off again.
//!
//! Code the driver does not resume keeps the hook it always had: the
//! main state (the plan's top level, listeners) and a plan's own
//! coroutines (`coroutine.create` and `coroutine.wrap` are replaced by
//! versions that set it), which cannot be yielded and are only stopped
//! after about a billion instructions (see `super::hook`).

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::Duration;

use mlua::ffi;

/// How often the watchdog looks: a resume is paused after one to two of
/// these without waiting.
const TICK: Duration = Duration::from_millis(2);

/// The signal that asks a thread to set the hook. Its default action is
/// to be ignored, and nothing else in the process uses it (Go's runtime
/// preempts goroutines with it for the same reason).
const SIGNAL: c_int = libc::SIGURG;

/// One thread that resumes coroutines, as the watchdog sees it.
struct Watched {
    thread: libc::pthread_t,
    /// Resumes begun plus resumes ended: odd while inside a resume.
    resumes: AtomicU64,
    /// False once the thread has ended; the watchdog signals only while
    /// holding this lock with `true` in it, so never a thread that is gone.
    alive: Mutex<bool>,
}

/// The thread's registration; it says the thread is gone when the thread
/// ends.
struct Registration(Arc<Watched>);

impl Drop for Registration {
    fn drop(&mut self) {
        *self.0.alive.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }
}

thread_local! {
    static REGISTRATION: Option<Registration> = register();
}

static WATCHED: Mutex<Vec<Arc<Watched>>> = Mutex::new(Vec::new());
static START: Once = Once::new();
/// Whether the handler is installed and the watchdog runs.
static STARTED: AtomicBool = AtomicBool::new(false);

/// Register the calling thread with the watchdog (starting it, and
/// installing the signal handler, the first time). `None` if the handler
/// could not be installed: the caller then keeps the count hook on.
fn register() -> Option<Registration> {
    START.call_once(|| {
        if install_handler() && std::thread::Builder::new().name("swarmer-lua-watchdog".into()).spawn(watch).is_ok() {
            STARTED.store(true, Ordering::Release);
        }
    });
    if !STARTED.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: `pthread_self` has no preconditions.
    let thread = unsafe { libc::pthread_self() };
    let watched = Arc::new(Watched { thread, resumes: AtomicU64::new(0), alive: Mutex::new(true) });
    WATCHED.lock().unwrap_or_else(PoisonError::into_inner).push(watched.clone());
    Some(Registration(watched))
}

/// Whether coroutines resumed on this thread are preempted by the
/// watchdog (so they need no hook of their own).
pub(super) fn available() -> bool {
    // (A thread that is ending is not preempted any more.)
    REGISTRATION.try_with(Option::is_some).unwrap_or(false)
}

/// Note that this thread begins (or ends) a resume.
#[inline]
pub(super) fn mark_resume() {
    let _ = REGISTRATION.try_with(|registration| {
        if let Some(Registration(watched)) = registration {
            // Only this thread writes its counter; the watchdog reads it.
            let resumes = watched.resumes.load(Ordering::Relaxed);
            watched.resumes.store(resumes.wrapping_add(1), Ordering::Release);
        }
    });
}

/// The watchdog: every tick, signal each thread still inside the resume
/// it was in at the last tick (once per resume).
fn watch() {
    // Per thread: the counter at the last look, and whether that resume
    // was signalled already.
    let mut seen: Vec<(Arc<Watched>, u64, bool)> = Vec::new();
    loop {
        std::thread::sleep(TICK);
        {
            let mut watched = WATCHED.lock().unwrap_or_else(PoisonError::into_inner);
            watched.retain(|w| *w.alive.lock().unwrap_or_else(PoisonError::into_inner));
            seen.retain(|(w, _, _)| watched.iter().any(|x| Arc::ptr_eq(x, w)));
            for w in watched.iter() {
                if !seen.iter().any(|(x, _, _)| Arc::ptr_eq(x, w)) {
                    seen.push((w.clone(), 0, false));
                }
            }
        }
        for (watched, last, signalled) in &mut seen {
            let now = watched.resumes.load(Ordering::Acquire);
            if now != *last {
                (*last, *signalled) = (now, false);
                continue;
            }
            if now % 2 == 1 && !*signalled {
                *signalled = true;
                let alive = watched.alive.lock().unwrap_or_else(PoisonError::into_inner);
                if *alive {
                    // SAFETY: the thread is alive (it marks itself gone
                    // under this lock before it ends), so its id is valid.
                    unsafe { libc::pthread_kill(watched.thread, SIGNAL) };
                }
            }
        }
    }
}

/// Install [`on_signal`] for [`SIGNAL`], restarting interrupted system
/// calls. False if that failed.
fn install_handler() -> bool {
    // SAFETY: a zeroed `sigaction` is a valid value to fill; the handler
    // is async-signal-safe (see `on_signal`).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(SIGNAL, &action, std::ptr::null_mut()) == 0
    }
}

/// The signal handler: set the count hook on the coroutine this thread is
/// driving, if any, to fire at its next instruction.
extern "C" fn on_signal(_: c_int) {
    let driven = super::hook::driven();
    if !driven.is_null() {
        // SAFETY: `driven` is the coroutine whose resume this thread is
        // in (or was just in: the hook then fires on its next resume,
        // which the driver treats as a pause). Lua documents `lua_sethook`
        // as callable from a signal handler: it only stores the hook's
        // fields and marks the state's Lua frames to trap.
        unsafe { ffi::lua_sethook(driven, Some(super::hook::count_hook), ffi::LUA_MASKCOUNT, 1) };
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    use mlua::{Function, ffi};

    use crate::client::Clients;
    use crate::driver::{self, Bridge};
    use crate::raw::{Coroutine, install_hook, new_lua};
    use crate::responses::Responses;

    /// `mask(thread)`: the thread's hook mask.
    unsafe extern "C-unwind" fn mask(l: *mut ffi::lua_State) -> std::ffi::c_int {
        // SAFETY: called by Lua with a thread as its first argument
        // (checked); pushes one value within the free slots of a C call.
        unsafe {
            ffi::luaL_checktype(l, 1, ffi::LUA_TTHREAD);
            ffi::lua_pushinteger(l, ffi::lua_gethookmask(ffi::lua_tothread(l, 1)).into());
            1
        }
    }

    #[test]
    fn driven_coroutines_run_without_the_hook_until_they_run_long_and_a_plans_own_keep_it() {
        // On a thread of its own: were preemption broken, the endless loop
        // below would never give its thread back, and the test would hang.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(check())));
            let _ = done.send(outcome.map_err(|panic| {
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            }));
        });
        match finished.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => panic!("{}", message.unwrap_or_default()),
            Err(_) => panic!("an endless loop in a driven coroutine was never paused"),
        }
    }

    async fn check() {
        let (lua, _) = new_lua().unwrap();
        install_hook(&lua).unwrap();
        assert!(super::available(), "this platform preempts on demand");
        // SAFETY: `mask` follows Lua's protocol for C functions.
        lua.globals().set("mask", unsafe { lua.create_c_function(mask) }.unwrap()).unwrap();
        let count = i64::from(ffi::LUA_MASKCOUNT);
        let own: (i64, i64, i64) = lua
            .load(
                "return mask(coroutine.running()), mask(coroutine.create(function() end)), \
                 coroutine.wrap(function() return mask((coroutine.running())) end)()",
            )
            .eval()
            .unwrap();
        assert_eq!(own, (count, count, count), "the main state and a plan's own coroutines keep the hook");

        let bridge = Bridge {
            clients: Clients::default(),
            responses: Responses::new(&lua, lua.create_table().unwrap()).unwrap(),
            pending: Default::default(),
        };
        let probe: Function = lua.load("return function() return mask((coroutine.running())) end").eval().unwrap();
        let mut driven = Coroutine::new(&lua).unwrap();
        let n = driven.push_args(probe).unwrap();
        let out = driver::drive(&bridge, &mut driven, n - 1, true, &Cell::default()).await.unwrap();
        assert_eq!(out.into_result().unwrap(), mlua::Value::Integer(0), "no hook while it waits or runs briefly");

        // An endless loop is paused (the shard's other tasks run) after a
        // tick or two, again and again.
        let spin: Function = lua.load("return function() local x = 0 while true do x = x + 1 end end").eval().unwrap();
        let mut spinning = Coroutine::new(&lua).unwrap();
        let n = spinning.push_args(spin).unwrap();
        let busy_since = Cell::default();
        let others = Cell::new(0u32);
        let started = Instant::now();
        let other = async {
            loop {
                tokio::task::yield_now().await;
                others.set(others.get() + 1);
            }
        };
        tokio::select! {
            _ = driver::drive(&bridge, &mut spinning, n - 1, false, &busy_since) => panic!("it never ends"),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = other => {}
        }
        assert!(busy_since.get().is_some_and(|since: Instant| since >= started), "it was paused");
        assert!(others.get() >= 20, "other tasks ran while it spun: {} turns", others.get());
    }
}
