//! The last log lines of this process, for `GET /logs` and the Logs tab.
//!
//! The command line's logger writes every formatted line here as well as
//! to its usual output; the buffer keeps a bounded number of them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use swarmer_engine::LockExt;

/// How many lines `/logs` returns at most (Locust keeps 500).
const CAPACITY: usize = 500;

/// A cloneable ring of log lines.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<VecDeque<String>>>);

impl LogBuffer {
    /// Add one line (a trailing newline is dropped).
    pub fn push(&self, line: &str) {
        let plain = strip_ansi(line);
        let line = plain.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            return;
        }
        let mut lines = self.0.lock_or_recover();
        if lines.len() == CAPACITY {
            lines.pop_front();
        }
        lines.push_back(line.to_owned());
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock_or_recover().iter().cloned().collect()
    }
}

/// `text` without terminal colour codes (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `std::io::Write` into the buffer, for a logger's writer: each write
/// call carries one formatted event, which may hold several lines.
impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for line in String::from_utf8_lossy(buf).lines() {
            self.push(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_lines_only() {
        let logs = LogBuffer::default();
        for i in 0..CAPACITY + 3 {
            logs.push(&format!("line {i}\n"));
        }
        let lines = logs.lines();
        assert_eq!(lines.len(), CAPACITY);
        assert_eq!(lines[0], "line 3");
        assert_eq!(lines.last().map(String::as_str), Some(&*format!("line {}", CAPACITY + 2)));
    }

    #[test]
    fn colour_codes_are_dropped() {
        let logs = LogBuffer::default();
        logs.push("\u{1b}[32m INFO\u{1b}[0m swarmer: hello");
        assert_eq!(logs.lines(), [" INFO swarmer: hello"]);
    }
}
