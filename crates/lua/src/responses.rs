//! How a response reaches Lua.
//!
//! The driver resumes a request's coroutine with a userdata without
//! payload whose user values are: 1 its parts, a table {status code, body,
//! headers as `name: value` lines, final URL}; 2 elapsed seconds; 3 the
//! headers table, made by the prelude on first use; 4 error; and for a
//! catch response 5 its number and 6 its client. Its metatable is the
//! prelude's `RESPONSE` (taken out of the plan's reach at start), through
//! which plans read `status_code`, `text`, `headers`, `json()`... It has
//! no `__gc` (no finalizer), and nothing of
//! the Rust response stays behind in Lua, so the garbage collector sees
//! all the memory a response holds.
//!
//! Load tests ask for the same URLs again and again, and servers often send
//! the same body and headers each time, so the last string of each part
//! is kept: when the next response has the same bytes, that Lua string is
//! reused instead of making (and later collecting) a new one. For the
//! header lines, the HTTP layer's head number (`Response::head_id`) says
//! in one comparison that they are the kept ones. The last parts table is
//! kept too, and shared by every response whose parts are all the kept
//! ones: then a response costs one small allocation and two user values.
//! Plans cannot reach a parts table (only the prelude reads user values),
//! so sharing it is invisible to them.

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
    /// The kept parts table (a registry slot) and its status code: `None`
    /// when the table in the slot does not hold the kept strings.
    parts: RegistryKey,
    kept_status: Cell<Option<u16>>,
    /// A buffer reused to build the header lines.
    scratch: RefCell<Vec<u8>>,
}

impl Responses {
    pub fn new(lua: &Lua, metatable: Table) -> mlua::Result<Self> {
        let empty = || lua.create_registry_value(lua.create_string("")?);
        Ok(Self {
            metatable: lua.create_registry_value(metatable)?,
            kept: [empty()?, empty()?, empty()?],
            kept_bytes: Default::default(),
            kept_head_id: Cell::new(0),
            parts: lua.create_registry_value(lua.create_table()?)?,
            kept_status: Cell::new(None),
            scratch: RefCell::default(),
        })
    }

    /// Push the response userdata for `response` onto the coroutine `l`
    /// (see the module doc); `catch` is its catch number and client.
    /// Returns how many values were pushed (1).
    ///
    /// The values are built on the VM's main state inside a protected call
    /// and moved onto `l` with `lua_xmove`: an allocation may run a step of
    /// the collector, whose `__gc` finalizers run on the allocating thread
    /// and may resume it, which must never be the suspended `l`; and an
    /// allocation failure (with a memory limit) raises, which must be
    /// caught. Nothing with a destructor lives in the protected frame.
    ///
    /// # Safety
    /// `l` is a live coroutine of this VM that is not running.
    pub unsafe fn push(
        &self,
        lua: &Lua,
        l: *mut ffi::lua_State,
        response: &Response,
        catch: Option<(u64, i64)>,
    ) -> mlua::Result<c_int> {
        let error_text = response.error.as_ref().map(|e| e.to_string());
        let head_id = response.head_id;
        // Header lines: the HTTP layer's head number says in one comparison
        // that they are the kept ones; else they are checked in place
        // rather than written out again. Written out (outside the protected
        // call) only when they differ.
        let same_head = (head_id != 0 && head_id == self.kept_head_id.get())
            || lines_match(self.kept(Part::Head), &response.headers);
        if same_head {
            self.kept_head_id.set(head_id);
        }
        let mut head = self.scratch.take();
        head.clear();
        if !same_head {
            for (name, value) in &response.headers {
                head.extend_from_slice(name.as_str().as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(value.as_bytes());
                head.push(b'\n');
            }
        }
        let mut moved = false;
        let (head_lines, error_text) = (&head[..], error_text.as_deref());
        // SAFETY: a protected call on the main state; the closure holds
        // only references and Cells; `l` is alive and not running, and
        // `lua_xmove` only copies values after `lua_checkstack` made room.
        let built = unsafe {
            lua.exec_raw::<()>((), |s| {
                self.build(s, response, catch, same_head, head_lines, error_text);
                if ffi::lua_checkstack(l, 1) != 0 {
                    ffi::lua_xmove(s, l, 1);
                    moved = true;
                }
            })
        };
        self.scratch.replace(head);
        built?;
        if moved { Ok(1) } else { Err(mlua::Error::StackError) }
    }

    /// Build the response userdata on `s`, a running state (inside a
    /// protected call), leaving it on top.
    unsafe fn build(
        &self,
        s: *mut ffi::lua_State,
        response: &Response,
        catch: Option<(u64, i64)>,
        same_head: bool,
        head_lines: &[u8],
        error_text: Option<&str>,
    ) {
        unsafe {
            let values = match (error_text, catch) {
                (_, Some(_)) => 6,
                (Some(_), None) => 4,
                (None, None) => 3,
            };
            ffi::lua_newuserdatauv(s, 0, values);
            self.push_parts(s, response, same_head, head_lines);
            ffi::lua_setiuservalue(s, -2, 1);
            ffi::lua_pushnumber(s, response.elapsed.as_secs_f64());
            ffi::lua_setiuservalue(s, -2, 2);
            if let Some(e) = error_text {
                push_bytes(s, e.as_bytes());
                ffi::lua_setiuservalue(s, -2, 4);
            }
            if let Some((seq, client)) = catch {
                ffi::lua_pushinteger(s, seq as ffi::lua_Integer);
                ffi::lua_setiuservalue(s, -2, 5);
                ffi::lua_pushinteger(s, client);
                ffi::lua_setiuservalue(s, -2, 6);
            }
            ffi::lua_rawgeti(s, ffi::LUA_REGISTRYINDEX, ffi::lua_Integer::from(self.metatable.id()));
            ffi::lua_setmetatable(s, -2);
        }
    }

    /// Push the parts table of `response`: the kept one when status, body,
    /// header lines and URL are all the kept ones, else a new one, which is
    /// then kept (if each of its strings could be).
    unsafe fn push_parts(&self, l: *mut ffi::lua_State, response: &Response, same_head: bool, head_lines: &[u8]) {
        unsafe {
            let status = response.status_code();
            let head_id = response.head_id;
            let same = same_head
                && self.kept_status.get() == Some(status)
                && self.kept(Part::Body) == &response.body[..]
                && self.kept(Part::Url) == response.url.as_bytes();
            let parts_slot = ffi::lua_Integer::from(self.parts.id());
            if same {
                ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, parts_slot);
                return;
            }
            // Until the new table is kept, none is: an allocation failure
            // part-way leaves no kept table that disagrees with the kept
            // strings.
            self.kept_status.set(None);
            ffi::lua_createtable(l, 4, 0);
            ffi::lua_pushinteger(l, ffi::lua_Integer::from(status));
            ffi::lua_rawseti(l, -2, 1);
            let mut all_kept = self.push_kept(l, Part::Body, &response.body);
            ffi::lua_rawseti(l, -2, 2);
            if same_head {
                self.push_kept_as_is(l, Part::Head);
            } else {
                let kept = self.push_kept(l, Part::Head, head_lines);
                self.kept_head_id.set(if kept { head_id } else { 0 });
                all_kept &= kept;
            }
            ffi::lua_rawseti(l, -2, 3);
            all_kept &= self.push_kept(l, Part::Url, response.url.as_bytes());
            ffi::lua_rawseti(l, -2, 4);
            // Kept only if it holds the kept strings: the test above
            // compares against those.
            if all_kept {
                ffi::lua_pushvalue(l, -1);
                ffi::lua_rawseti(l, ffi::LUA_REGISTRYINDEX, parts_slot);
            }
            self.kept_status.set(all_kept.then_some(status));
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
    /// same bytes, else a new one, which is then kept if it is not too
    /// long. Returns whether the pushed string is the kept one.
    unsafe fn push_kept(&self, l: *mut ffi::lua_State, part: Part, bytes: &[u8]) -> bool {
        unsafe {
            if self.kept(part) == bytes {
                self.push_kept_as_is(l, part);
                return true;
            }
            let slot = ffi::lua_Integer::from(self.kept[part as usize].id());
            ffi::lua_pushlstring(l, bytes.as_ptr() as *const c_char, bytes.len());
            if bytes.len() > MAX_KEPT {
                return false;
            }
            ffi::lua_pushvalue(l, -1);
            ffi::lua_rawseti(l, ffi::LUA_REGISTRYINDEX, slot);
            let mut len = 0;
            let data = ffi::lua_tolstring(l, -1, &mut len);
            self.kept_bytes[part as usize].set((data as *const u8, len));
            true
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

    fn response(body: &[u8], head_id: u64) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("content-type"), HeaderValue::from_static("text/plain"));
        Response {
            status: Some(swarmer_http::StatusCode::OK),
            headers,
            head_id,
            body: body.to_vec().into(),
            url: "http://127.0.0.1/x".into(),
            version: swarmer_http::Version::HTTP_11,
            elapsed: std::time::Duration::from_millis(1),
            ttfb: std::time::Duration::from_millis(1),
            error: None,
        }
    }

    thread_local! {
        static STATE: std::cell::Cell<*mut ffi::lua_State> = const { std::cell::Cell::new(std::ptr::null_mut()) };
    }

    /// The parts table of a response pushed onto a coroutine.
    fn parts_of(lua: &Lua, responses: &Responses, response: &Response) -> Table {
        // SAFETY: a protected call on this VM's state, leaving one table.
        let parts = unsafe {
            let thread = lua.create_thread(lua.create_function(|_, ()| Ok(())).unwrap()).unwrap();
            let l = lua.exec_raw::<()>(thread.clone(), |s| STATE.set(ffi::lua_tothread(s, -1))).map(|_| STATE.get());
            let l = l.unwrap();
            responses.push(lua, l, response, None).unwrap();
            lua.exec_raw::<Table>((), |s| {
                ffi::lua_xmove(l, s, 1);
                ffi::lua_getiuservalue(s, -1, 1);
                ffi::lua_replace(s, -2);
            })
        };
        parts.unwrap()
    }

    /// The body a pushed response shows (its parts' second slot).
    fn body_of(lua: &Lua, responses: &Responses, response: &Response) -> Vec<u8> {
        parts_of(lua, responses, response).get::<mlua::String>(2).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn responses_share_parts_only_when_status_body_headers_and_url_are_the_same() {
        let lua = Lua::new();
        let responses = Responses::new(&lua, lua.create_table().unwrap()).unwrap();
        // Not numbered (head number 0): the header lines are compared.
        let ok = response(b"same", 0);
        let first = parts_of(&lua, &responses, &ok);
        assert_eq!(first.get::<u16>(1).unwrap(), 200);
        assert_eq!(first.get::<String>(3).unwrap(), "content-type: text/plain\n");
        assert_eq!(first.get::<String>(4).unwrap(), "http://127.0.0.1/x");
        assert_eq!(parts_of(&lua, &responses, &ok).to_pointer(), first.to_pointer(), "shared");
        let mut teapot = response(b"same", 0);
        teapot.status = Some(swarmer_http::StatusCode::IM_A_TEAPOT);
        assert_eq!(parts_of(&lua, &responses, &teapot).get::<u16>(1).unwrap(), 418, "only the status differs");
        let mut moved = response(b"same", 0);
        moved.url = "http://127.0.0.1/y".into();
        assert_eq!(parts_of(&lua, &responses, &moved).get::<String>(4).unwrap(), "http://127.0.0.1/y");
        let mut retyped = response(b"same", 0);
        retyped.headers.insert(HeaderName::from_static("content-type"), HeaderValue::from_static("text/html"));
        let lines = parts_of(&lua, &responses, &retyped).get::<String>(3).unwrap();
        assert_eq!(lines, "content-type: text/html\n");
    }

    #[test]
    fn a_parts_table_holding_a_string_too_long_to_keep_is_not_shared() {
        let lua = Lua::new();
        let responses = Responses::new(&lua, lua.create_table().unwrap()).unwrap();
        let small = response(b"small", 7);
        let large_body = vec![b'x'; MAX_KEPT + 1];
        // Same status, headers (same head number) and URL: only the body
        // differs, and it is too long to be kept.
        let large = response(&large_body, 7);
        assert_eq!(body_of(&lua, &responses, &small), b"small");
        assert_eq!(body_of(&lua, &responses, &small), b"small");
        assert_eq!(body_of(&lua, &responses, &large), large_body);
        assert_eq!(body_of(&lua, &responses, &small), b"small", "not the large response's parts");
        assert_eq!(body_of(&lua, &responses, &response(b"other", 7)), b"other");
        // Headers too long to keep: the body of that response is kept, and
        // the next response with that body and the earlier headers must not
        // get the earlier parts.
        let mut long_head = response(b"new body", 8);
        let value = HeaderValue::from_bytes(&vec![b'v'; MAX_KEPT + 1]).unwrap();
        long_head.headers.insert(HeaderName::from_static("x-long"), value);
        assert_eq!(body_of(&lua, &responses, &long_head), b"new body");
        assert_eq!(body_of(&lua, &responses, &response(b"new body", 9)), b"new body");
    }

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
