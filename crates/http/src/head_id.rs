//! Numbers for response heads, so that a consumer can tell in one
//! comparison that a response's header list is the very one it saw before.
//!
//! Load tests fetch the same resources again and again and servers send the
//! same head each time (until the `Date` changes), so each thread keeps the
//! bytes of the last head it read: a head with the same bytes gets the same
//! number, a different one a new number. Numbers come from one counter for
//! the whole process and are never reused, so two responses with the same
//! nonzero number have byte-identical heads, hence the same status line and
//! the same headers in the same order. 0 means "no number": on a thread
//! that did not ask for numbers (the comparison is not free), or for an
//! HTTP/2 response.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// Heads longer than this get a fresh number without being kept.
const MAX_KEPT: usize = 8 * 1024;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LAST: RefCell<(Vec<u8>, u64)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Number the heads of the responses read on this thread from now on.
pub fn number_heads_on_this_thread() {
    ON.with(|on| on.set(true));
}

/// The number of the head whose raw bytes (status line and header lines)
/// are `head`.
pub(crate) fn of(head: &[u8]) -> u64 {
    if !ON.try_with(Cell::get).unwrap_or(false) {
        return 0;
    }
    LAST.try_with(|last| {
        let mut last = last.borrow_mut();
        if last.1 != 0 && last.0 == head {
            return last.1;
        }
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if head.len() <= MAX_KEPT {
            last.0.clear();
            last.0.extend_from_slice(head);
            last.1 = id;
        } else {
            last.1 = 0;
        }
        id
    })
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_number_and_different_bytes_a_new_one() {
        let a = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        let b = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(of(a), 0, "not numbered unless asked");
        number_heads_on_this_thread();
        let first = of(a);
        assert_ne!(first, 0);
        assert_eq!(of(a), first);
        let second = of(b);
        assert_ne!(second, first);
        assert_eq!(of(b), second);
        // Back to the first bytes: a new number (only the last head is kept).
        let third = of(a);
        assert!(third != first && third != second);
        // Another thread numbers the same bytes differently.
        let elsewhere = std::thread::spawn(move || {
            number_heads_on_this_thread();
            of(a)
        })
        .join()
        .unwrap();
        assert!(elsewhere != third && elsewhere != 0);
    }
}
