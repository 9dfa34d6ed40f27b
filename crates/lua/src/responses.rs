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
//! reused instead of making (and later collecting) a new one (a copy of
//! its bytes is kept on the Rust side to compare with). For the header
//! lines, the HTTP layer's head number (`Response::head_id`) says in one
//! comparison that they are the kept ones. The last parts table is
//! kept too, and shared by every response whose parts are all the kept
//! ones: then a response costs one small allocation and two user values.
//! Plans cannot reach a parts table (only the prelude reads user values),
//! so sharing it is invisible to them.

use std::cell::RefCell;
use std::ffi::c_int;

use mlua::{Lua, Table};
use swarmer_engine::Response;
use swarmer_http::HeaderMap;

use crate::raw::{Coroutine, Piece, Slot};

/// Strings longer than this are not kept for reuse (the comparison stays
/// cheap and a large body is not held after its test needed it).
const MAX_KEPT: usize = 64 * 1024;

/// The parts whose last string is kept, by their index in [`Kept::parts`].
const BODY: usize = 0;
const HEAD: usize = 1;
const URL: usize = 2;

/// Per VM: the response metatable, the kept parts table and strings.
pub struct Responses {
    metatable: Slot,
    /// The kept parts table.
    parts: Slot,
    kept: RefCell<Kept>,
}

struct Kept {
    /// Body, header lines, URL.
    parts: [KeptString; 3],
    /// The HTTP layer's number of the head whose lines are kept (0: none;
    /// see `Response::head_id`).
    head_id: u64,
    /// The status code in the kept parts table: `None` when that table
    /// does not hold the kept strings.
    status: Option<u16>,
    /// A buffer reused to write the header lines.
    scratch: Vec<u8>,
}

/// A kept string: in a registry slot, with a copy of its bytes.
struct KeptString {
    slot: Slot,
    bytes: Vec<u8>,
    /// False while the slot may hold other bytes (a build failed part-way).
    valid: bool,
}

/// What a response part becomes.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    /// The kept string.
    Reuse,
    /// A new string, kept from now on.
    Keep,
    /// A new string, too long to keep.
    Plain,
}

impl KeptString {
    fn decide(&self, bytes: &[u8]) -> Use {
        if self.valid && self.bytes == bytes {
            Use::Reuse
        } else if bytes.len() <= MAX_KEPT {
            Use::Keep
        } else {
            Use::Plain
        }
    }

    fn piece<'a>(&'a self, decided: Use, bytes: &'a [u8]) -> Piece<'a> {
        match decided {
            Use::Reuse => Piece::Slot(&self.slot),
            Use::Keep => Piece::Kept(bytes, &self.slot),
            Use::Plain => Piece::Bytes(bytes),
        }
    }
}

impl Responses {
    pub fn new(lua: &Lua, metatable: Table) -> mlua::Result<Self> {
        let empty = || -> mlua::Result<KeptString> {
            Ok(KeptString { slot: Slot::new(lua, "")?, bytes: Vec::new(), valid: true })
        };
        Ok(Self {
            metatable: Slot::new(lua, metatable)?,
            parts: Slot::new(lua, lua.create_table()?)?,
            kept: RefCell::new(Kept {
                parts: [empty()?, empty()?, empty()?],
                head_id: 0,
                status: None,
                scratch: Vec::new(),
            }),
        })
    }

    /// Push the response userdata for `response` onto `coroutine` (see
    /// the module doc); `catch` is its catch number and client. Returns
    /// how many values were pushed (1).
    pub fn push(&self, coroutine: &Coroutine, response: &Response, catch: Option<(u64, i64)>) -> mlua::Result<c_int> {
        let mut kept = self.kept.try_borrow_mut().map_err(|_| mlua::Error::runtime("internal: nested response"))?;
        let kept = &mut *kept;
        let status = response.status_code();
        let head_id = response.head_id;
        // Header lines: the HTTP layer's head number says in one comparison
        // that they are the kept ones; else they are checked in place
        // rather than written out again. Written out only when they differ.
        let same_head = kept.parts[HEAD].valid
            && ((head_id != 0 && head_id == kept.head_id) || lines_match(&kept.parts[HEAD].bytes, &response.headers));
        let mut head = std::mem::take(&mut kept.scratch);
        head.clear();
        if !same_head {
            for (name, value) in &response.headers {
                head.extend_from_slice(name.as_str().as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(value.as_bytes());
                head.push(b'\n');
            }
        }
        let uses = [
            kept.parts[BODY].decide(&response.body),
            if same_head { Use::Reuse } else { kept.parts[HEAD].decide(&head) },
            kept.parts[URL].decide(response.url.as_bytes()),
        ];
        let all_reused = uses.iter().all(|u| *u == Use::Reuse) && kept.status == Some(status);
        let all_kept = !uses.contains(&Use::Plain);
        // Until the build succeeded, what it replaces is not trusted.
        for (part, used) in kept.parts.iter_mut().zip(uses) {
            part.valid &= used != Use::Keep;
        }
        if !all_reused {
            kept.status = None;
        }
        // The kept lines are this head's, or will be replaced.
        kept.head_id = if same_head { head_id } else { 0 };
        let built = self.build(coroutine, response, catch, kept, &uses, (all_reused, all_kept), &head);
        if built.is_ok() {
            for (i, used) in uses.into_iter().enumerate() {
                if used != Use::Keep {
                    continue;
                }
                let bytes = &mut kept.parts[i].bytes;
                match i {
                    BODY => copy_into(bytes, &response.body),
                    HEAD => std::mem::swap(bytes, &mut head),
                    _ => copy_into(bytes, response.url.as_bytes()),
                }
                kept.parts[i].valid = true;
            }
            if uses[HEAD] == Use::Keep {
                kept.head_id = head_id;
            }
            if !all_reused && all_kept {
                kept.status = Some(status);
            }
        }
        kept.scratch = head;
        built
    }

    /// Build the response userdata on `coroutine`: the kept parts table
    /// when everything is reused, else a new one (kept when its strings
    /// all are).
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        coroutine: &Coroutine,
        response: &Response,
        catch: Option<(u64, i64)>,
        kept: &Kept,
        uses: &[Use; 3],
        (all_reused, all_kept): (bool, bool),
        head: &[u8],
    ) -> mlua::Result<c_int> {
        let items = [
            Piece::Integer(i64::from(response.status_code())),
            kept.parts[BODY].piece(uses[BODY], &response.body),
            kept.parts[HEAD].piece(uses[HEAD], head),
            kept.parts[URL].piece(uses[URL], response.url.as_bytes()),
        ];
        let parts =
            if all_reused { Piece::Slot(&self.parts) } else { Piece::Table(&items, all_kept.then_some(&self.parts)) };
        let error_text = response.error.as_ref().map(|e| e.to_string());
        let error = error_text.as_deref().map_or(Piece::Nil, |e| Piece::Bytes(e.as_bytes()));
        let elapsed = Piece::Number(response.elapsed.as_secs_f64());
        // User values: parts, elapsed, headers (made by the prelude), error,
        // and for a catch response its number and client.
        let values = match catch {
            Some((seq, client)) => {
                [parts, elapsed, Piece::Nil, error, Piece::Integer(seq as i64), Piece::Integer(client)]
            }
            None => [parts, elapsed, Piece::Nil, error, Piece::Nil, Piece::Nil],
        };
        let count = match (&error_text, catch) {
            (_, Some(_)) => 6,
            (Some(_), None) => 4,
            (None, None) => 3,
        };
        coroutine.build(&[Piece::Userdata(&values[..count], &self.metatable)])
    }
}

fn copy_into(kept: &mut Vec<u8>, bytes: &[u8]) {
    kept.clear();
    kept.extend_from_slice(bytes);
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

    /// The parts table of a response pushed onto a coroutine: the
    /// coroutine runs `debug.getuservalue(response, 1)`.
    fn parts_of(lua: &Lua, responses: &Responses, response: &Response) -> Table {
        let getuservalue: mlua::Function = lua.named_registry_value("getuservalue").unwrap();
        let mut coroutine = Coroutine::new(lua).unwrap();
        coroutine.push_args(getuservalue).unwrap();
        responses.push(&coroutine, response, None).unwrap();
        coroutine.push_args(1).unwrap();
        let crate::raw::Resumed::Returned(n) = coroutine.resume(2) else { panic!("getuservalue failed") };
        match coroutine.finish_returned(n, true).unwrap() {
            mlua::Value::Table(parts) => parts,
            other => panic!("parts: {other:?}"),
        }
    }

    /// A VM with `debug.getuservalue` in its registry, and its responses.
    fn vm() -> (Lua, Responses) {
        let (lua, debug) = crate::raw::new_lua().unwrap();
        lua.set_named_registry_value("getuservalue", debug.get::<mlua::Function>("getuservalue").unwrap()).unwrap();
        let responses = Responses::new(&lua, lua.create_table().unwrap()).unwrap();
        (lua, responses)
    }

    /// The body a pushed response shows (its parts' second slot).
    fn body_of(lua: &Lua, responses: &Responses, response: &Response) -> Vec<u8> {
        parts_of(lua, responses, response).get::<mlua::String>(2).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn responses_share_parts_only_when_status_body_headers_and_url_are_the_same() {
        let (lua, responses) = vm();
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
        let (lua, responses) = vm();
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
    fn a_response_that_does_not_fit_a_memory_limit_is_an_error_and_later_ones_are_whole() {
        let (lua, responses) = vm();
        let small = response(b"small", 3);
        assert_eq!(body_of(&lua, &responses, &small), b"small");
        // Just under the kept size, so building it would also keep it.
        let large = response(&vec![b'y'; MAX_KEPT], 3);
        crate::raw::set_memory_limit(&lua, lua.used_memory() + 16 * 1024).unwrap();
        let coroutine = Coroutine::new(&lua).unwrap();
        let error = responses.push(&coroutine, &large, None).unwrap_err();
        assert!(error.to_string().contains("memory"), "{error}");
        crate::raw::set_memory_limit(&lua, 0).unwrap();
        assert_eq!(body_of(&lua, &responses, &large), large.body, "not the body kept before the failure");
        assert_eq!(body_of(&lua, &responses, &small), b"small");
        assert_eq!(body_of(&lua, &responses, &small), b"small");
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
