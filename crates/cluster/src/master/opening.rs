//! What a connection's first bytes say it is: the start the cluster port
//! expects (a TLS ClientHello, or HTTP/2's preface without TLS), or
//! something else, named for the log (a refusal never shows the bytes).

/// What the cluster port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// TLS (`--cluster-tls-cert`), then HTTP/2.
    Tls,
    /// HTTP/2 without TLS.
    Http2,
}

/// HTTP/2's connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes that decide: the preface's length.
pub const DECIDING_BYTES: usize = PREFACE.len();

/// The judgement on the first bytes seen so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Too few bytes to tell.
    Undecided,
    /// The expected start.
    Expected,
    /// Something else: why it is refused.
    Refused(&'static str),
}

/// Judge `head`, the first bytes a connection sent (at most
/// [`DECIDING_BYTES`] are looked at).
pub fn judge(expect: Expect, head: &[u8]) -> Verdict {
    let head = &head[..head.len().min(DECIDING_BYTES)];
    if head.is_empty() {
        return Verdict::Undecided;
    }
    let looks_like_tls = head[0] == 0x16 && head.get(1).is_none_or(|&major| major == 0x03);
    let looks_like_h2 = PREFACE.starts_with(head);
    match expect {
        Expect::Tls if looks_like_tls => return Verdict::Expected,
        Expect::Http2 if looks_like_h2 && head.len() == DECIDING_BYTES => return Verdict::Expected,
        Expect::Http2 if looks_like_h2 => return Verdict::Undecided,
        _ => {}
    }
    if expect == Expect::Tls && looks_like_h2 {
        if head.len() < 4 {
            return Verdict::Undecided;
        }
        return Verdict::Refused("HTTP/2 without TLS, but the cluster port needs TLS (give the worker --cluster-ca)");
    }
    if expect == Expect::Http2 && looks_like_tls {
        return Verdict::Refused(
            "a TLS handshake, but the cluster port has no TLS (start the master with --cluster-tls-cert, or the \
             worker without --cluster-ca)",
        );
    }
    match http1_method(head) {
        None => Verdict::Undecided,
        Some(true) => Verdict::Refused("plain HTTP/1 (the cluster port is for workers, not browsers or proxies)"),
        Some(false) => Verdict::Refused("bytes that are neither TLS nor HTTP/2"),
    }
}

/// Whether `head` starts as an HTTP/1 request line does (`Some(true)`),
/// cannot be one (`Some(false)`), or is too short to tell (`None`).
fn http1_method(head: &[u8]) -> Option<bool> {
    const METHODS: [&[u8]; 9] =
        [b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];
    if METHODS.iter().any(|m| head.starts_with(m)) {
        return Some(true);
    }
    if METHODS.iter().any(|m| m.starts_with(head)) {
        return None;
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_is_judged_as_soon_as_it_can_be() {
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00];
        assert_eq!(judge(Expect::Tls, &hello), Verdict::Expected);
        assert_eq!(judge(Expect::Tls, &hello[..1]), Verdict::Expected);
        assert_eq!(judge(Expect::Http2, PREFACE), Verdict::Expected);
        assert_eq!(judge(Expect::Http2, &PREFACE[..10]), Verdict::Undecided);
        assert_eq!(judge(Expect::Http2, b""), Verdict::Undecided);
        let refused = |expect, head: &[u8]| match judge(expect, head) {
            Verdict::Refused(why) => why,
            other => panic!("{head:?}: {other:?}"),
        };
        assert!(refused(Expect::Tls, PREFACE).contains("HTTP/2 without TLS"));
        assert!(refused(Expect::Http2, &hello).contains("TLS handshake, but the cluster port has no TLS"));
        assert!(refused(Expect::Http2, b"GET / HTTP/1.1\r\n").starts_with("plain HTTP/1"));
        assert!(refused(Expect::Tls, b"POST /x HTTP/1.1\r\n").starts_with("plain HTTP/1"));
        assert!(refused(Expect::Tls, b"\x00\xff garbage").starts_with("bytes that are neither"));
        assert!(refused(Expect::Http2, b"PRI * HTTP/1.1 nope\r\n\r\n").starts_with("bytes that are neither"));
        assert_eq!(judge(Expect::Http2, b"GE"), Verdict::Undecided);
        assert_eq!(judge(Expect::Tls, b"PR"), Verdict::Undecided);
    }
}
