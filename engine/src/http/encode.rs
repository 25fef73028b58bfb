//! The heads the gateway writes: requests forwarded upstream, responses relayed to clients,
//! and its own error responses.
//!
//! Encoders append to a caller-owned `Vec<u8>` (a pooled buffer) and copy field bytes
//! straight from the read buffer through the parsed [`Span`](super::Span)s: no allocation
//! beyond the output buffer's growth, no per-header `String`.
//!
//! What is never forwarded (RFC 9110 §7.6.1): hop-by-hop fields, the fields named by
//! Connection, and the framing fields, which are re-emitted once in normalised form from the
//! validated framing (RFC 9112 §6), so the next hop reads exactly the framing the gateway
//! read. Requests always go upstream as HTTP/1.1 without a Connection field (keep-alive is
//! the default, RFC 9112 §9.3). A response head with none of these to change, and no edits,
//! goes out as it came ([`relays_verbatim`]): the usual keep-alive answer costs no encoding.

use std::io::Write as _;
use std::net::IpAddr;

use super::fields::{is_field_value_byte, is_tchar, same_folded_name};
use super::forwarded::ClientAddr;
use super::request::{BodyFraming, HeaderKind, RequestHead};
use super::response::{ResponseBody, ResponseHead};

/// What the gateway adds to a forwarded request.
#[derive(Clone, Copy, Debug)]
pub struct Forward<'a> {
    /// The request target to send: path and query, already rewritten by the router.
    pub path_and_query: &'a [u8],
    /// Who the request is from ([`ClientAddr::resolve`]): the peer appended to
    /// X-Forwarded-For, the client written as X-Real-IP, and whether the peer's forwarding
    /// fields are kept.
    pub client: ClientAddr,
    /// The client-facing scheme for X-Forwarded-Proto: `"http"` or `"https"`.
    pub proto: &'static str,
    /// The Host sent when the request has none (HTTP/1.0 without Host).
    pub default_host: &'a [u8],
    /// The route's edits: identity headers only the gateway may set, a consumed API-key
    /// header, and the route's configured request-header edits.
    pub edits: FieldEdits<'a>,
}

/// Edits to the fields of a head the gateway writes, applied as the received fields are
/// copied: drop, rename, then append.
#[derive(Clone, Copy, Debug, Default)]
pub struct FieldEdits<'a> {
    /// Names of received fields to leave out, folded ([`super::fold_name`]): a received
    /// field is left out when its name folds to one of them, so `X_User_Id` goes with
    /// `x-user-id` (a CGI-style upstream would read the two as one).
    pub drop: &'a [Box<str>],
    /// `(lower-case from, to)`: a received field `from` goes out named `to`.
    pub rename: &'a [(Box<str>, Box<str>)],
    /// Complete `Name: value\r\n` lines appended after the received fields, validated by
    /// the caller.
    pub extra: &'a [u8],
}

impl FieldEdits<'_> {
    /// Copies one received field unless dropped, under its new name if renamed.
    fn copy_field(&self, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        if self
            .drop
            .iter()
            .any(|d| same_folded_name(name, d.as_bytes()))
        {
            return;
        }
        let name = self
            .rename
            .iter()
            .find(|(from, _)| from.as_bytes().eq_ignore_ascii_case(name))
            .map_or(name, |(_, to)| to.as_bytes());
        push_field(out, name, value);
    }
}

/// Appends the head of `head` (parsed from `buf`) as forwarded upstream:
///
/// ```text
/// METHOD SP path_and_query SP HTTP/1.1
/// Host: <request's host, else default_host>
/// <every field except hop-by-hop, Host, framing and forwarding fields, as sent>
/// X-Forwarded-For: <client.peer>               (from a trusted peer: <received values, ", ">, <client.peer>)
/// X-Forwarded-Proto: <proto>                    (unless a trusted peer sent one)
/// X-Forwarded-Host: <request's host>            (when the request had one, unless a trusted peer sent one)
/// X-Real-IP: <client.ip>
/// Transfer-Encoding: chunked | Content-Length: N  (from the validated framing)
/// ```
///
/// Host goes first (RFC 9110 §7.2); for an absolute-form request it is the target's
/// authority (RFC 9112 §3.2.2). From a peer that is not a trusted proxy, every forwarding
/// field it sent (`Forwarded`, `X-Real-IP`, `X-Forwarded-*`) is dropped: only the gateway
/// knows the truth about them. A trusted proxy's `X-Forwarded-*` fields are kept (it saw
/// the client's scheme and host) and its X-Forwarded-For is appended to. `Forwarded` and
/// `X-Real-IP` are never passed on: the gateway does not consult them, so it cannot vouch
/// for them, and a framework that prefers `Forwarded` (Spring) falls back to the
/// `X-Forwarded-*` fields written here.
pub fn encode_request_head(buf: &[u8], head: &RequestHead, fwd: &Forward, out: &mut Vec<u8>) {
    out.extend_from_slice(head.method_span.get(buf));
    out.push(b' ');
    out.extend_from_slice(fwd.path_and_query);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = head.host.map(|h| h.get(buf));
    push_field(out, b"Host", host.unwrap_or(fwd.default_host));
    let trusted = fwd.client.peer_trusted;
    let (mut sent_proto, mut sent_host) = (false, false);
    for field in &head.headers {
        let regenerated = match field.kind {
            HeaderKind::Host
            | HeaderKind::ContentLength
            | HeaderKind::TransferEncoding
            | HeaderKind::XForwardedFor
            | HeaderKind::Forwarded
            | HeaderKind::XRealIp => true,
            HeaderKind::XForwardedProto => {
                sent_proto = trusted;
                !trusted
            }
            HeaderKind::XForwardedHost => {
                sent_host = trusted;
                !trusted
            }
            HeaderKind::XForwardedOther => !trusted,
            _ => false,
        };
        if !field.hop_by_hop && !regenerated {
            fwd.edits
                .copy_field(out, field.name.get(buf), field.value.get(buf));
        }
    }
    out.extend_from_slice(fwd.edits.extra);
    out.extend_from_slice(b"X-Forwarded-For: ");
    if trusted {
        for field in &head.headers {
            let value = field.value.get(buf);
            if field.kind == HeaderKind::XForwardedFor && !value.is_empty() {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
    }
    let peer_at = out.len();
    push_ip(out, fwd.client.peer);
    let peer_text = peer_at..out.len();
    out.extend_from_slice(b"\r\n");
    if !sent_proto {
        push_field(out, b"X-Forwarded-Proto", fwd.proto.as_bytes());
    }
    if let Some(host) = host.filter(|_| !sent_host) {
        push_field(out, b"X-Forwarded-Host", host);
    }
    out.extend_from_slice(b"X-Real-IP: ");
    if fwd.client.ip == fwd.client.peer {
        // The usual case: the address is already written out once, above.
        out.extend_from_within(peer_text);
    } else {
        push_ip(out, fwd.client.ip);
    }
    out.extend_from_slice(b"\r\n");
    match head.body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => push_content_length(out, n),
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the head of the upstream response `head` (parsed from `buf`) as relayed to the
/// client: `HTTP/1.1 status reason` (the upstream's reason, or the standard one when it sent
/// none), every field except hop-by-hop ones, then the framing:
///
/// - `Length(n)` → `Content-Length: n`;
/// - `Chunked` and `chunked_to_client` → `Transfer-Encoding: chunked` (the body is passed
///   through); `Chunked` otherwise → nothing (the proxy decodes and must close);
/// - `UntilClose` and `chunked_to_client` → `Transfer-Encoding: chunked` (the proxy
///   re-frames the body, so that one cut short is seen as such); `UntilClose` otherwise →
///   nothing (the proxy must close);
/// - `None` → the upstream's own Content-Length is kept as sent for HEAD responses and 304,
///   where it describes the representation (RFC 9110 §8.6), and dropped for 1xx and 204,
///   which must not carry one.
///
/// `close` adds `Connection: close`. It must be set when the end of the body is marked by
/// closing the connection (`UntilClose` or `Chunked`, without `chunked_to_client`).
pub fn encode_response_head(
    buf: &[u8],
    head: &ResponseHead,
    chunked_to_client: bool,
    close: bool,
    edits: &FieldEdits<'_>,
    out: &mut Vec<u8>,
) {
    debug_assert!(
        close
            || match head.body {
                ResponseBody::None | ResponseBody::Length(_) => true,
                ResponseBody::Chunked | ResponseBody::UntilClose => chunked_to_client,
            },
        "a body delimited by closing needs close"
    );
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(head.status));
    out.push(b' ');
    let reason = head.reason.get(buf);
    if reason.is_empty() {
        out.extend_from_slice(reason_phrase(head.status).as_bytes());
    } else {
        out.extend_from_slice(reason);
    }
    out.extend_from_slice(b"\r\n");
    let keep_content_length =
        head.body == ResponseBody::None && !(100..200).contains(&head.status) && head.status != 204;
    for field in &head.headers {
        if field.hop_by_hop || (field.kind == HeaderKind::ContentLength && !keep_content_length) {
            continue;
        }
        edits.copy_field(out, field.name.get(buf), field.value.get(buf));
    }
    out.extend_from_slice(edits.extra);
    match head.body {
        ResponseBody::Length(n) => push_content_length(out, n),
        ResponseBody::Chunked | ResponseBody::UntilClose if chunked_to_client => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        ResponseBody::None | ResponseBody::Chunked | ResponseBody::UntilClose => {}
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether the upstream's response head (`head`, parsed from `buf`) can go to the client as
/// it came, bytes and all, because [`encode_response_head`] would write the same fields with
/// the same meaning: an HTTP/1.1 status line with a reason phrase, a body framed by one
/// Content-Length in its shortest form, no hop-by-hop field, no edits, and no `close` to add.
/// The usual response of a keep-alive upstream is such a head, and relaying it this way
/// spares encoding it and copying it (the head and body already read leave in one write).
pub fn relays_verbatim(buf: &[u8], head: &ResponseHead, close: bool, edits: &FieldEdits) -> bool {
    let ResponseBody::Length(n) = head.body else {
        return false;
    };
    if close
        || head.version_minor != 1
        || head.reason.get(buf).is_empty()
        || !(edits.drop.is_empty() && edits.rename.is_empty() && edits.extra.is_empty())
    {
        return false;
    }
    let mut lengths = 0;
    for field in &head.headers {
        if field.hop_by_hop {
            return false;
        }
        if field.kind == HeaderKind::ContentLength {
            lengths += 1;
            if field.value.get(buf).len() != decimal_len(n) {
                // "013", or a list such as "13, 13": re-encoded as plain "13".
                return false;
            }
        }
    }
    lengths == 1
}

/// Appends a complete error response written by the gateway itself:
///
/// ```text
/// HTTP/1.1 <status> <reason_phrase(status)>
/// Content-Type: application/json
/// Content-Length: <n>
/// Connection: close            (when close)
/// <extra fields>
///
/// {"error":"<message, JSON-escaped>","status":<status>}
/// ```
///
/// `extra` holds fields such as `Allow` or `Retry-After`. A pair that is not a valid field
/// (name not a token, value with CR, LF or another control byte) is skipped, so no caller
/// can split the response; debug builds assert instead.
pub fn error_response(
    status: u16,
    message: &str,
    close: bool,
    extra: &[(&str, &str)],
    out: &mut Vec<u8>,
) {
    debug_assert!((100..=599).contains(&status), "status {status}");
    const BODY_START: &[u8] = b"{\"error\":\"";
    const BODY_STATUS: &[u8] = b"\",\"status\":";
    let status_digits = decimal_len(u64::from(status));
    let message_len: usize = message.bytes().map(json_escaped_len).sum();
    let body_len = BODY_START.len() + message_len + BODY_STATUS.len() + status_digits + 1;

    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\n");
    push_content_length(out, body_len as u64);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for &(name, value) in extra {
        let valid = !name.is_empty()
            && name.bytes().all(is_tchar)
            && value.bytes().all(is_field_value_byte);
        debug_assert!(valid, "invalid extra field {name:?}: {value:?}");
        if valid {
            push_field(out, name.as_bytes(), value.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    let body_start = out.len();
    out.extend_from_slice(BODY_START);
    for b in message.bytes() {
        push_json_escaped(out, b);
    }
    out.extend_from_slice(BODY_STATUS);
    push_decimal(out, u64::from(status));
    out.push(b'}');
    debug_assert_eq!(out.len() - body_start, body_len);
}

/// The standard reason phrase of `status` (RFC 9110 §15), or `""` for codes without one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        511 => "Network Authentication Required",
        _ => "",
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes an address the way `Display` does, IPv4 (the common case) without going through
/// `fmt`, which costs about ten times as much.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Built on the stack, then one copy: "255.255.255.255" is 15 bytes.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.extend_from_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

fn push_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// The two-character escape of `b` in a JSON string (RFC 8259 §7), if it has one.
fn json_short_escape(b: u8) -> Option<u8> {
    Some(match b {
        b'"' => b'"',
        b'\\' => b'\\',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x08 => b'b',
        0x0c => b'f',
        _ => return None,
    })
}

fn json_escaped_len(b: u8) -> usize {
    if json_short_escape(b).is_some() {
        2
    } else if b < 0x20 {
        6
    } else {
        1
    }
}

fn push_json_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if let Some(c) = json_short_escape(b) {
        out.extend_from_slice(&[b'\\', c]);
    } else if b < 0x20 {
        out.extend_from_slice(b"\\u00");
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    } else {
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Limits;
    use crate::http::Method;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LIMITS: Limits = Limits {
        request_line_bytes_max: 8192,
        header_bytes_max: 16384,
        header_count_max: 100,
    };

    fn request(raw: &[u8]) -> RequestHead {
        let mut head = RequestHead::new();
        head.parse(raw, &LIMITS).unwrap().unwrap();
        head
    }

    fn forward(raw: &[u8], path: &[u8], ip: IpAddr) -> String {
        forward_from(raw, path, ClientAddr::peer(ip))
    }

    fn forward_from(raw: &[u8], path: &[u8], client: ClientAddr) -> String {
        let head = request(raw);
        let mut out = Vec::new();
        let fwd = Forward {
            path_and_query: path,
            client,
            proto: "https",
            default_host: b"backend:8080",
            edits: FieldEdits::default(),
        };
        encode_request_head(raw, &head, &fwd, &mut out);
        String::from_utf8(out).unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

    #[test]
    fn request_head_rewritten() {
        let raw = b"POST /api/v1/items?x=1 HTTP/1.1\r\n\
            Host: api.example.com\r\n\
            User-Agent: curl/8.5\r\n\
            X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\
            Connection: keep-alive, X-Trace\r\n\
            X-Trace: abc\r\n\
            Keep-Alive: timeout=5\r\n\
            X-Forwarded-Proto: http\r\n\
            X-Forwarded-Host: evil\r\n\
            Expect: 100-continue\r\n\
            Content-Length: 0005\r\n\
            TE: trailers\r\n\
            Proxy-Authorization: Basic x\r\n\
            X-Forwarded-For: 10.0.0.3\r\n\
            Accept: */*\r\n\
            \r\n";
        assert_eq!(
            forward(raw, b"/items?x=1", CLIENT),
            "POST /items?x=1 HTTP/1.1\r\n\
            Host: api.example.com\r\n\
            User-Agent: curl/8.5\r\n\
            Accept: */*\r\n\
            X-Forwarded-For: 203.0.113.7\r\n\
            X-Forwarded-Proto: https\r\n\
            X-Forwarded-Host: api.example.com\r\n\
            X-Real-IP: 203.0.113.7\r\n\
            Content-Length: 5\r\n\
            \r\n"
        );
    }

    #[test]
    fn an_untrusted_peers_forwarding_fields_are_replaced() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=1.1.1.1\r\nX-REAL-IP: 1.1.1.1\r\n\
            x-forwarded-port: 1\r\nX-Forwarded-Prefix: /p\r\nX-Forwarded-For: 1.1.1.1\r\n\
            X-Forwarded-Proto: ftp\r\nX-Forwarded-Host: evil\r\nX-Keep: 1\r\n\r\n";
        assert_eq!(
            forward(raw, b"/", CLIENT),
            "GET / HTTP/1.1\r\nHost: h\r\nX-Keep: 1\r\nX-Forwarded-For: 203.0.113.7\r\n\
            X-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\nX-Real-IP: 203.0.113.7\r\n\r\n"
        );
    }

    #[test]
    fn a_trusted_peers_chain_is_appended_to() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let trusted = ClientAddr {
            ip: CLIENT,
            peer,
            peer_trusted: true,
        };
        // Its X-Forwarded-* fields are kept (and the gateway's own Proto and Host are then
        // not added); Forwarded and X-Real-IP are still replaced.
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=1.1.1.1\r\nX-Real-IP: 1.1.1.1\r\n\
            X-Forwarded-For: 1.1.1.1, 203.0.113.7\r\nX-Forwarded-Port: 443\r\n\
            X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
        assert_eq!(
            forward_from(raw, b"/", trusted),
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Proto: https\r\n\
            X-Forwarded-Host: shop\r\nX-Forwarded-For: 1.1.1.1, 203.0.113.7, 10.0.0.1, 10.0.0.9\r\n\
            X-Real-IP: 203.0.113.7\r\n\r\n"
        );
        // Without Proto and Host of its own, the gateway's are added.
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n";
        assert_eq!(
            forward_from(raw, b"/", trusted),
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.9\r\n\
            X-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\nX-Real-IP: 203.0.113.7\r\n\r\n"
        );
    }

    #[test]
    fn request_head_chunked_http10_ipv6() {
        let raw = b"PUT /u HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n";
        assert_eq!(
            forward(raw, b"/u", IpAddr::V6(Ipv6Addr::LOCALHOST)),
            "PUT /u HTTP/1.1\r\nHost: h\r\nx-a: 1\r\nX-Forwarded-For: ::1\r\n\
            X-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\nX-Real-IP: ::1\r\n\
            Transfer-Encoding: chunked\r\n\r\n"
        );
        let raw = b"GET /old HTTP/1.0\r\nX-Forwarded-For:\r\n\r\n";
        assert_eq!(
            forward(raw, b"/old", CLIENT),
            "GET /old HTTP/1.1\r\nHost: backend:8080\r\nX-Forwarded-For: 203.0.113.7\r\n\
            X-Forwarded-Proto: https\r\nX-Real-IP: 203.0.113.7\r\n\r\n"
        );
        // Absolute-form: the target's authority replaces Host (RFC 9112 §3.2.2).
        let raw = b"GET http://real.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n";
        assert_eq!(
            forward(raw, b"/x", CLIENT),
            "GET /x HTTP/1.1\r\nHost: real.example\r\nX-Forwarded-For: 203.0.113.7\r\n\
            X-Forwarded-Proto: https\r\nX-Forwarded-Host: real.example\r\nX-Real-IP: 203.0.113.7\r\n\r\n"
        );
    }

    fn relay(raw: &[u8], method: Method, chunked_to_client: bool, close: bool) -> String {
        let mut head = ResponseHead::new();
        head.parse(raw, method, 16384).unwrap().unwrap();
        let mut out = Vec::new();
        encode_response_head(
            raw,
            &head,
            chunked_to_client,
            close,
            &FieldEdits::default(),
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_head_relayed() {
        let raw = b"HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\
            Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\n\r\n";
        assert_eq!(
            relay(raw, Method::Get, true, false),
            "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n\
            Content-Length: 12\r\n\r\n"
        );
        let raw = b"HTTP/1.1 201\r\nTransfer-Encoding: chunked\r\nETag: \"x\"\r\n\r\n";
        assert_eq!(
            relay(raw, Method::Post, true, false),
            "HTTP/1.1 201 Created\r\nETag: \"x\"\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        // HTTP/1.0 client: decoded body, end marked by close.
        assert_eq!(
            relay(raw, Method::Post, false, true),
            "HTTP/1.1 201 Created\r\nETag: \"x\"\r\nConnection: close\r\n\r\n"
        );
        // Close-delimited: re-framed as chunked for an HTTP/1.1 client, so a body cut short
        // shows; only the close marks the end for an HTTP/1.0 one.
        let raw = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\n";
        assert_eq!(
            relay(raw, Method::Get, true, false),
            "HTTP/1.1 200 OK\r\nServer: old\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            relay(raw, Method::Get, false, true),
            "HTTP/1.1 200 OK\r\nServer: old\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_content_length_without_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
        assert_eq!(
            relay(raw, Method::Head, true, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        );
        let raw = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n";
        assert_eq!(
            relay(raw, Method::Get, true, false),
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n"
        );
        let raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            relay(raw, Method::Get, true, false),
            "HTTP/1.1 204 No Content\r\n\r\n"
        );
    }

    #[test]
    fn error_responses() {
        let mut out = Vec::new();
        error_response(404, "no route matches", false, &[], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 41\r\n\r\n\
            {\"error\":\"no route matches\",\"status\":404}"
        );
        let mut out = Vec::new();
        error_response(
            405,
            "say \"hi\"\\\n\u{1}é",
            true,
            &[("Allow", "GET, HEAD")],
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        let body = "{\"error\":\"say \\\"hi\\\"\\\\\\n\\u0001é\",\"status\":405}";
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
                Content-Length: {}\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n{body}",
                body.len()
            )
        );
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "invalid extra field"))]
    fn error_response_skips_invalid_extra_fields() {
        let mut out = Vec::new();
        error_response(503, "x", true, &[("Retry-After", "1\r\nX: y")], &mut out);
        assert!(!String::from_utf8(out).unwrap().contains("Retry-After"));
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(299), "");
        let raw = b"HTTP/1.1 299\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            relay(raw, Method::Get, true, false),
            "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn encoded_heads_parse_back() {
        let raw = b"POST http://h.example/x?y HTTP/1.1\r\nHost: h\r\nA: 1\r\n\
            Transfer-Encoding: chunked\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
        let encoded = forward(raw, b"/x?y", CLIENT);
        let head = request(encoded.as_bytes());
        let buf = encoded.as_bytes();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path.get(buf), b"/x");
        assert_eq!(head.host.unwrap().get(buf), b"h.example");
        assert_eq!(head.body, BodyFraming::Chunked);
        assert_eq!(
            head.header(buf, "x-forwarded-for"),
            Some(&b"203.0.113.7"[..])
        );
        assert_eq!(head.header(buf, "x-real-ip"), Some(&b"203.0.113.7"[..]));

        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n";
        let encoded = relay(raw, Method::Get, true, false);
        let mut head = ResponseHead::new();
        head.parse(encoded.as_bytes(), Method::Get, 1024)
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.body, head.keep_alive),
            (200, ResponseBody::Length(2), true)
        );
    }

    #[test]
    fn only_a_plain_keep_alive_head_is_relayed_verbatim() {
        let verbatim = |raw: &[u8], close: bool, edits: &FieldEdits| {
            let mut head = ResponseHead::new();
            head.parse(raw, Method::Get, 16384).unwrap().unwrap();
            relays_verbatim(raw, &head, close, edits)
        };
        let plain = FieldEdits::default();
        let typical: &[u8] =
            b"HTTP/1.1 200 OK\r\nX-Origin: a\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n";
        assert!(verbatim(typical, false, &plain));
        // What encoding would change: the close, edits, the version, the missing reason, a
        // hop-by-hop field, a Content-Length not in its shortest form or repeated, framing
        // other than a length.
        assert!(!verbatim(typical, true, &plain));
        let extra = FieldEdits {
            extra: b"X-Added: 1\r\n",
            ..FieldEdits::default()
        };
        assert!(!verbatim(typical, false, &extra));
        let dropped = ["x-origin".into()];
        let drop = FieldEdits {
            drop: &dropped,
            ..FieldEdits::default()
        };
        assert!(!verbatim(typical, false, &drop));
        for raw in [
            &b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 02\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ] {
            assert!(
                !verbatim(raw, false, &plain),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        // And where it is verbatim, encoding gives the same fields (Content-Length last).
        assert_eq!(
            relay(typical, Method::Get, true, false),
            "HTTP/1.1 200 OK\r\nX-Origin: a\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
        );
    }

    #[test]
    fn ip_addresses() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.20.3.4",
            "100.5.10.209",
            "::",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let mut out = Vec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
            assert_eq!(decimal_len(n), out.len());
        }
    }

    #[test]
    fn dropped_fields_go_and_extra_lines_are_added() {
        // Underscore and dot spellings are the same field to a CGI-style upstream.
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-User-Id: forged\r\nX_User_Id: forged\r\nx-api-key: k\r\nX.Api_Key: k\r\nAccept: */*\r\n\r\n";
        let head = request(raw);
        let mut out = Vec::new();
        let fwd = Forward {
            path_and_query: b"/",
            client: ClientAddr::peer("192.0.2.1".parse().unwrap()),
            proto: "http",
            default_host: b"b",
            edits: FieldEdits {
                drop: &["x-user-id".into(), "x-api-key".into()],
                rename: &[("accept".into(), "X-Accept".into())],
                extra: b"X-User-Id: alice\r\n",
            },
        };
        encode_request_head(raw, &head, &fwd, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("forged"), "{text}");
        assert!(!text.contains("x-api-key"), "{text}");
        assert!(!text.contains("Api_Key"), "{text}");
        assert!(text.contains("X-Accept: */*\r\n"), "{text}");
        assert_eq!(text.matches("X-User-Id: alice\r\n").count(), 1, "{text}");
    }
}
