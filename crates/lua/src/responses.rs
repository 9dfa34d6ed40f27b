//! How a response reaches Lua.
//!
//! The driver resumes a request's coroutine with a userdata without
//! payload whose user values are: 1 status code, 2 body, 3 headers as
//! `name: value` lines, 4 elapsed seconds, 5 final URL, 6 error, and for
//! a catch response 7 its number and 8 its client: one allocation per
//! response. Its metatable is the prelude's `RESPONSE` (taken out of the
//! plan's reach at start), through which plans read `status_code`, `text`,
//! `headers`, `json()`... It has no `__gc` (no finalizer), and nothing of
//! the Rust response stays behind in Lua, so the garbage collector sees
//! all the memory a response holds.
//!
//! Load tests ask for the same URLs again and again, and servers often send
//! the same body and headers each time, so the last string of each part
//! is kept: when the next response has the same bytes, that Lua string is
//! reused instead of making (and later collecting) a new one. For the
//! header lines, the HTTP layer's head number (`Response::head_id`) says
//! in one comparison that they are the kept ones.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int};

use mlua::{Lua, RegistryKey, Table, ffi};
use swarmer_engine::Response;
use swarmer_http::HeaderMap;

use crate::driver::push_bytes;

/// Strings longer than this are not kept for reuse (the comparison stays
/// cheap and a large body is not held after its test needed it).
const MAX_KEPT: usize = 64 * 1024;

/// The parts whose last string is kept.
#[derive(Clone, Copy)]
enum Part {
    Body = 0,
    Head = 1,
    Url = 2,
}

/// Per VM: the response metatable and the kept strings (registry slots
/// whose values the driver replaces in place).
pub struct Responses {
    metatable: RegistryKey,
    kept: [RegistryKey; 3],
    /// The bytes of each kept string, read once when it was kept (Lua
    /// does not move strings, and the registry holds it until replaced).
    kept_bytes: [Cell<(*const u8, usize)>; 3],
    /// The HTTP layer's number of the head whose lines are kept (0: none;
    /// see `Response::head_id`).
    kept_head_id: Cell<u64>,
    /// A buffer reused to build the header lines.
    scratch: RefCell<Vec<u8>>,
}

impl Responses {
    pub fn new(lua: &Lua, metatable: Table) -> mlua::Result<Self> {
        // A VM lives on its shard's thread, where its users' responses are read.
        swarmer_http::number_heads_on_this_thread();
        let empty = || lua.create_registry_value(lua.create_string("")?);
        Ok(Self {
            metatable: lua.create_registry_value(metatable)?,
            kept: [empty()?, empty()?, empty()?],
            kept_bytes: Default::default(),
            kept_head_id: Cell::new(0),
            scratch: RefCell::default(),
        })
    }

    /// Push the response userdata for `response` onto `l` (see the module
    /// doc); `catch` is its catch number and client. Returns how many
    /// values were pushed (1).
    ///
    /// # Safety
    /// `l` is a live coroutine of this VM that is not running.
    pub unsafe fn push(
        &self,
        l: *mut ffi::lua_State,
        response: &Response,
        catch: Option<(u64, i64)>,
    ) -> mlua::Result<c_int> {
        unsafe {
            if ffi::lua_checkstack(l, 4) == 0 {
                return Err(mlua::Error::StackError);
            }
            let values = match (&response.error, catch) {
                (_, Some(_)) => 8,
                (Some(_), None) => 6,
                (None, None) => 5,
            };
            ffi::lua_newuserdatauv(l, 0, values);
            ffi::lua_pushinteger(l, ffi::lua_Integer::from(response.status_code()));
            ffi::lua_setiuservalue(l, -2, 1);
            self.push_kept(l, Part::Body, &response.body);
            ffi::lua_setiuservalue(l, -2, 2);
            // Header lines: most responses repeat the last ones. The HTTP
            // layer's head number says so in one comparison; else they are
            // checked in place rather than written out again.
            let head_id = response.head_id;
            if head_id != 0 && head_id == self.kept_head_id.get() {
                self.push_kept_as_is(l, Part::Head);
            } else if lines_match(self.kept(Part::Head), &response.headers) {
                self.push_kept_as_is(l, Part::Head);
                self.kept_head_id.set(head_id);
            } else {
                let mut head = self.scratch.borrow_mut();
                head.clear();
                for (name, value) in &response.headers {
                    head.extend_from_slice(name.as_str().as_bytes());
                    head.extend_from_slice(b": ");
                    head.extend_from_slice(value.as_bytes());
                    head.push(b'\n');
                }
                self.push_kept(l, Part::Head, &head);
                // Kept only if short enough: else no number stands for it.
                let kept = head.len() <= MAX_KEPT;
                self.kept_head_id.set(if kept { head_id } else { 0 });
            }
            ffi::lua_setiuservalue(l, -2, 3);
            ffi::lua_pushnumber(l, response.elapsed.as_secs_f64());
            ffi::lua_setiuservalue(l, -2, 4);
            self.push_kept(l, Part::Url, response.url.as_bytes());
            ffi::lua_setiuservalue(l, -2, 5);
            if let Some(e) = &response.error {
                push_bytes(l, e.to_string().as_bytes());
                ffi::lua_setiuservalue(l, -2, 6);
            }
            if let Some((seq, client)) = catch {
                ffi::lua_pushinteger(l, seq as ffi::lua_Integer);
                ffi::lua_setiuservalue(l, -2, 7);
                ffi::lua_pushinteger(l, client);
                ffi::lua_setiuservalue(l, -2, 8);
            }
            ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, ffi::lua_Integer::from(self.metatable.id()));
            ffi::lua_setmetatable(l, -2);
            Ok(1)
        }
    }

    /// The bytes of the kept string for `part`.
    fn kept(&self, part: Part) -> &[u8] {
        let (data, len) = self.kept_bytes[part as usize].get();
        if len == 0 {
            return &[];
        }
        // SAFETY: the registry holds the string until `push_kept` replaces
        // it (and updates these bytes); Lua does not move strings.
        unsafe { std::slice::from_raw_parts(data, len) }
    }

    /// Push the kept string for `part`.
    unsafe fn push_kept_as_is(&self, l: *mut ffi::lua_State, part: Part) {
        let slot = ffi::lua_Integer::from(self.kept[part as usize].id());
        unsafe { ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, slot) };
    }

    /// Push a string with `bytes`: the kept one for `part` if it has the
    /// same bytes, else a new one, which is then kept.
    unsafe fn push_kept(&self, l: *mut ffi::lua_State, part: Part, bytes: &[u8]) {
        unsafe {
            if self.kept(part) == bytes {
                self.push_kept_as_is(l, part);
                return;
            }
            let slot = ffi::lua_Integer::from(self.kept[part as usize].id());
            ffi::lua_pushlstring(l, bytes.as_ptr() as *const c_char, bytes.len());
            if bytes.len() <= MAX_KEPT {
                ffi::lua_pushvalue(l, -1);
                ffi::lua_rawseti(l, ffi::LUA_REGISTRYINDEX, slot);
                let mut len = 0;
                let data = ffi::lua_tolstring(l, -1, &mut len);
                self.kept_bytes[part as usize].set((data as *const u8, len));
            }
        }
    }
}

/// Whether `kept` is exactly the `name: value` lines of `headers`.
fn lines_match(kept: &[u8], headers: &HeaderMap) -> bool {
    let mut rest = kept;
    for (name, value) in headers {
        let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
        let len = name.len() + 2 + value.len() + 1;
        if rest.len() < len {
            return false;
        }
        let (line, after) = rest.split_at(len);
        let (head, tail) = line.split_at(name.len());
        // The separators byte by byte: a library comparison costs more
        // than it saves on two bytes.
        if tail[0] != b':' || tail[1] != b' ' || tail[len - name.len() - 1] != b'\n' {
            return false;
        }
        if head != name || &tail[2..tail.len() - 1] != value {
            return false;
        }
        rest = after;
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_http::HeaderName;
    use swarmer_http::HeaderValue;

    #[test]
    fn header_lines_match_only_the_same_headers_in_the_same_order() {
        let mut headers = HeaderMap::new();
        let (content_type, set_cookie) =
            (HeaderName::from_static("content-type"), HeaderName::from_static("set-cookie"));
        headers.insert(content_type, HeaderValue::from_static("text/html"));
        headers.append(set_cookie.clone(), HeaderValue::from_static("a=1"));
        headers.append(set_cookie, HeaderValue::from_static("b=2"));
        let lines = b"content-type: text/html\nset-cookie: a=1\nset-cookie: b=2\n";
        assert!(lines_match(lines, &headers));
        assert!(!lines_match(&lines[..lines.len() - 1], &headers));
        assert!(!lines_match(b"content-type: text/html\nset-cookie: a=1\nset-cookie: b=3\n", &headers));
        assert!(!lines_match(b"content-type: text/html\nset-cookie: a=1\nset-cookie: b=2\nx: y\n", &headers));
        assert!(!lines_match(b"content-typ: text/html\nset-cookie: a=1\nset-cookie: b=2\n", &headers));
        assert!(lines_match(b"", &HeaderMap::new()));
        assert!(!lines_match(b"x: y\n", &HeaderMap::new()));
    }
}
