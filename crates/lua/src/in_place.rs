//! Boxing a future without copying it: the box is allocated before the
//! future is made, so the future can be written straight into it. A boxed
//! `async` value is otherwise built on the stack and then copied, all of
//! its size, on every request.

use std::future::Future;
use std::pin::Pin;

/// `make()` in a box allocated before `make` is called.
pub fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    let slot = Box::<F>::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}
