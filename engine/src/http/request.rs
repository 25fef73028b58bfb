//! Request heads: parsing and the strict validation a gateway owes its upstreams.
//!
//! [`RequestHead::parse`] runs httparse over the connection's read buffer with a stack array
//! of uninitialised header slots, then records every name and value as a [`Span`] (offsets
//! into that buffer). One `RequestHead` lives per connection and is refilled per request; its
//! field vector keeps its capacity, so after the first request parsing **never allocates**:
//! no allocation per header, no `String` per request.
//!
//! Rules enforced on top of httparse (which already rejects NUL and other control bytes,
//! obs-fold, whitespace before the colon, bare CR, multiple spaces in the request line and
//! versions other than HTTP/1.0 and HTTP/1.1):
//!
//! - Line endings are CRLF only; a bare LF is rejected (400). httparse tolerates bare LF
//!   (RFC 9112 §2.2 permits it), but two parsers that disagree on where a line ends can be
//!   made to disagree on where a message ends.
//! - Limits: request line (414), head size and field count (431).
//! - Framing (RFC 9112 §6.1, §6.3): Content-Length must be decimal digits and every value
//!   equal; Transfer-Encoding must be exactly one `chunked` (across all fields, any case),
//!   never beside Content-Length, never in HTTP/1.0. `chunked` not last or repeated → 400;
//!   `chunked` last after another coding (`gzip, chunked`) → 501, since the framing is clear
//!   but the gateway does not implement the coding (RFC 9112 §6.1 says 501 for unknown codings).
//! - Host (RFC 9112 §3.2): exactly one field in HTTP/1.1, at most one in HTTP/1.0, and a
//!   valid `host[:port]` value (reg-name of `ALPHA DIGIT - . _ ~`, or an IPv6 literal).
//! - Request target (RFC 9112 §3.2): origin-form; asterisk-form only for OPTIONS;
//!   absolute-form with `http`/`https`, no userinfo and a non-empty path (the authority then
//!   wins over Host, RFC 9112 §3.2.2). Non-ASCII bytes and `#` are rejected. CONNECT
//!   (authority-form) is answered 501: the gateway never tunnels.
//! - Expect (RFC 9110 §10.1.1): only `100-continue`, otherwise 417.
//! - Authorization (RFC 9110 §11.6.2): at most one field (400), so the credentials the
//!   gateway checks are the only ones the upstream can see.
//! - Names that equal a framing, routing or hop-by-hop name once `_` is read as `-`
//!   (`Content_Length`, `X_Forwarded_For`) are rejected (400): CGI-style upstreams merge the
//!   two spellings.
//!
//! Per-field work is a length switch and a few short compares that usually stop at the first
//! byte; the whole head is scanned once more, branch-free, for bare LF. Measured cost: about
//! 6.8k instructions to parse a 571-byte, 15-field browser request, of which httparse itself
//! is 3.7k (callgrind on a release build, x86-64 with httparse's AVX2 path; a criterion bench
//! should track it). No I/O, no async: the proxy loop feeds bytes in.

use std::fmt;
use std::mem::MaybeUninit;

use super::fields::{self, ContentLength, NameMatch, TransferCodings};

/// Most header fields a request may carry whatever the configuration says: the size of the
/// stack array handed to httparse (256 × 32 bytes).
pub const HEADER_COUNT_LIMIT: usize = 256;

/// A range of the buffer a head was parsed from. Offsets are `u32` to keep fields small;
/// heads are capped far below 4 GiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte, inclusive.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The bytes of this span in `buf`, which must be the buffer the head was parsed from
    /// (panics if the span lies outside `buf`, a caller bug never caused by input).
    #[inline]
    pub fn get<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// Size limits applied while parsing a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes, counted from the start of the buffer through its CRLF
    /// (so any leading empty lines count too). Longer → 414.
    pub request_line_bytes_max: usize,
    /// Longest head in bytes, request line and final empty line included. Longer → 431.
    /// Values above `u32::MAX` act as `u32::MAX`.
    pub header_bytes_max: usize,
    /// Most header fields. More → 431. Values above [`HEADER_COUNT_LIMIT`] act as it.
    pub header_count_max: usize,
}

/// A request method (RFC 9110 §9). Methods are case-sensitive: `get` is [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH (RFC 5789)
    Patch,
    /// OPTIONS
    Options,
    /// CONNECT. [`RequestHead::parse`] rejects it (501); it exists for callers that build
    /// requests of their own.
    Connect,
    /// TRACE
    Trace,
    /// Any other token; its bytes are in [`RequestHead::method_span`].
    Other,
}

impl Method {
    /// Classifies a method token (exact, case-sensitive match).
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// The method name, for the known methods.
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other => return None,
        })
    }

    /// Idempotent per RFC 9110 §9.2.2 (safe methods plus PUT and DELETE): a request that
    /// may be sent again when a reused connection failed before any response. Unknown
    /// methods are not.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither Content-Length nor Transfer-Encoding.
    None,
    /// Exactly this many bytes follow the head (may be 0).
    Length(u64),
    /// Chunked transfer coding; decode with [`super::ChunkedDecoder`].
    Chunked,
}

/// One header field line, as offsets into the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderField {
    /// The name, as sent (original case).
    pub name: Span,
    /// The value without leading and trailing whitespace.
    pub value: Span,
    /// What the gateway knows the field to be.
    pub kind: HeaderKind,
    /// Meant for this connection only: never forwarded. True for the kinds listed in
    /// [`HeaderKind::is_hop_by_hop`] and for [`HeaderKind::Other`] fields named as an option
    /// in a Connection field (RFC 9110 §7.6.1).
    pub hop_by_hop: bool,
}

/// The header fields the codec treats specially; everything else is [`HeaderKind::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// Host
    Host,
    /// Content-Length
    ContentLength,
    /// Transfer-Encoding
    TransferEncoding,
    /// Connection
    Connection,
    /// Keep-Alive
    KeepAlive,
    /// TE
    Te,
    /// Trailer
    Trailer,
    /// Upgrade
    Upgrade,
    /// Any name starting with `Proxy-` (Proxy-Authorization, Proxy-Connection, …)
    ProxyAny,
    /// Expect
    Expect,
    /// X-Forwarded-For
    XForwardedFor,
    /// X-Forwarded-Proto
    XForwardedProto,
    /// X-Forwarded-Host
    XForwardedHost,
    /// Any other name starting with `X-Forwarded-` (X-Forwarded-Port, -Prefix, -Ssl, …):
    /// forwarding claims only a trusted proxy may make.
    XForwardedOther,
    /// Forwarded (RFC 7239): never passed on, since the gateway does not vouch for it.
    Forwarded,
    /// X-Real-IP: always written by the gateway itself.
    XRealIp,
    /// Authorization
    Authorization,
    /// Anything else
    Other,
}

impl HeaderKind {
    /// Hop-by-hop kinds (RFC 9110 §7.6.1), plus Transfer-Encoding (the gateway re-frames
    /// bodies itself) and Expect (the gateway answers `100-continue` itself).
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            HeaderKind::Connection
                | HeaderKind::KeepAlive
                | HeaderKind::Te
                | HeaderKind::Trailer
                | HeaderKind::Upgrade
                | HeaderKind::ProxyAny
                | HeaderKind::TransferEncoding
                | HeaderKind::Expect
        )
    }
}

/// Why a request head was refused. The caller answers `status` (with `reason`, which is
/// short and safe to show a client) and closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// 400, 414, 417, 431 or 501.
    pub status: u16,
    /// What was wrong, in a few words.
    pub reason: &'static str,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for RequestError {}

const fn bad(reason: &'static str) -> RequestError {
    RequestError {
        status: 400,
        reason,
    }
}

const URI_TOO_LONG: RequestError = RequestError {
    status: 414,
    reason: "request line too long",
};
const HEAD_TOO_LARGE: RequestError = RequestError {
    status: 431,
    reason: "request head too large",
};
const TOO_MANY_FIELDS: RequestError = RequestError {
    status: 431,
    reason: "too many header fields",
};

/// Bytes after the target in a request line: SP, `HTTP/1.x`, CRLF.
const REQUEST_LINE_TAIL_BYTES: usize = 11;

/// A parsed request head. Reusable: [`RequestHead::parse`] clears and refills it, keeping the
/// capacity of `headers`. After an error or `Ok(None)` its contents are unspecified.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// The method, classified.
    pub method: Method,
    /// The method token as sent.
    pub method_span: Span,
    /// The whole request target as sent.
    pub target: Span,
    /// The path without the query: starts with `/`, or is exactly `*` (asterisk-form).
    /// For absolute-form it is the path part of the target.
    pub path: Span,
    /// The query, without the `?` (may be empty when the target ends in `?`).
    pub query: Option<Span>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Every field in order of arrival.
    pub headers: Vec<HeaderField>,
    /// Length of the head, leading empty lines and final CRLF included: the body or the
    /// next pipelined request starts at `buf[head_len..]`.
    pub head_len: usize,
    /// The authority the request is for: the absolute-form target's authority if used,
    /// else the Host value. `None` only for HTTP/1.0 without Host.
    pub host: Option<Span>,
    /// How the body is delimited.
    pub body: BodyFraming,
    /// Whether the client connection may serve another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request (ignored in HTTP/1.0 per RFC 9110
    /// §10.1.1).
    pub expect_continue: bool,
    /// The client asked for a protocol upgrade (an Upgrade field and an `upgrade` Connection
    /// option, RFC 9110 §7.8). The gateway never forwards Upgrade, so it may serve the
    /// request as a plain one or refuse it.
    pub upgrade: bool,
}

impl Default for RequestHead {
    fn default() -> Self {
        Self::new()
    }
}

/// Field slots reserved up front: enough for typical browser requests, so a connection's
/// first request grows the vector at most rarely.
const HEADERS_CAPACITY_INITIAL: usize = 32;

impl RequestHead {
    /// An empty head, ready for [`RequestHead::parse`].
    pub fn new() -> Self {
        RequestHead {
            method: Method::Get,
            method_span: Span::default(),
            target: Span::default(),
            path: Span::default(),
            query: None,
            version_minor: 1,
            headers: Vec::with_capacity(HEADERS_CAPACITY_INITIAL),
            head_len: 0,
            host: None,
            body: BodyFraming::None,
            keep_alive: false,
            expect_continue: false,
            upgrade: false,
        }
    }

    /// Parses the request head at the start of `buf`.
    ///
    /// `Ok(None)`: the head is incomplete, read more and call again with the grown buffer.
    /// `Ok(Some(head_len))`: a complete, valid head is `buf[..head_len]` (also stored in
    /// [`RequestHead::head_len`]); what follows is body or the next pipelined request.
    /// `Err`: answer it and close; never forward anything of this connection again.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, RequestError> {
        self.headers.clear();
        let header_bytes_max = limits.header_bytes_max.min(u32::MAX as usize);
        let count_max = limits.header_count_max.min(HEADER_COUNT_LIMIT);

        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_COUNT_LIMIT];
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(buf, &mut slots[..count_max]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                // The request line is complete once the CRLF after the version is in.
                let line_complete = match (req.path, req.version) {
                    (Some(target), Some(_)) => {
                        buf.len() >= end_offset(buf, target.as_bytes()) + REQUEST_LINE_TAIL_BYTES
                    }
                    _ => false,
                };
                if !line_complete && buf.len() >= limits.request_line_bytes_max {
                    return Err(URI_TOO_LONG);
                }
                if buf.len() >= header_bytes_max {
                    return Err(HEAD_TOO_LARGE);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(TOO_MANY_FIELDS),
            Err(e) => return Err(bad(httparse_reason(e))),
        };
        if head_len > header_bytes_max {
            return Err(HEAD_TOO_LARGE);
        }
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            // httparse fills all three before reporting a complete head.
            return Err(bad("malformed request line"));
        };
        let target_span = fields::span_of(buf, target.as_bytes());
        if target_span.end as usize + REQUEST_LINE_TAIL_BYTES > limits.request_line_bytes_max {
            return Err(URI_TOO_LONG);
        }
        if !fields::line_endings_are_crlf(&buf[..head_len]) {
            return Err(bad("line ending is not CRLF"));
        }

        self.method = Method::from_token(method.as_bytes());
        if self.method == Method::Connect {
            return Err(RequestError {
                status: 501,
                reason: "CONNECT is not supported",
            });
        }
        self.method_span = fields::span_of(buf, method.as_bytes());
        self.version_minor = version;
        self.target = target_span;
        let target_authority = self.split_target(target.as_bytes())?;

        let mut host_count = 0u32;
        let mut authorization_count = 0u32;
        let mut host_field = None;
        let mut content_length = ContentLength::default();
        let mut codings = TransferCodings::default();
        let mut expect_continue = false;
        let mut upgrade_field = false;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            let kind = match fields::classify_name(name) {
                (kind, NameMatch::Exact) => kind,
                (_, NameMatch::Underscore) => {
                    return Err(bad("underscore in a reserved header name"));
                }
                (_, NameMatch::No) => HeaderKind::Other,
            };
            let value = fields::span_of(buf, h.value);
            match kind {
                HeaderKind::Host => {
                    host_count += 1;
                    host_field = Some(value);
                }
                HeaderKind::ContentLength => content_length.add(h.value).map_err(bad)?,
                HeaderKind::TransferEncoding => codings.add(h.value),
                HeaderKind::Expect => {
                    if !h.value.eq_ignore_ascii_case(b"100-continue") {
                        return Err(RequestError {
                            status: 417,
                            reason: "unsupported expectation",
                        });
                    }
                    expect_continue = true;
                }
                HeaderKind::Upgrade => upgrade_field = true,
                HeaderKind::Authorization => authorization_count += 1,
                _ => {}
            }
            self.headers.push(HeaderField {
                name: fields::span_of(buf, name),
                value,
                kind,
                hop_by_hop: kind.is_hop_by_hop(),
            });
        }

        // RFC 9112 §3.2: exactly one valid Host in HTTP/1.1; at most one anywhere.
        if host_count > 1 {
            return Err(bad("multiple Host fields"));
        }
        if let Some(host) = host_field {
            if !is_valid_authority(host.get(buf)) {
                return Err(bad("invalid Host"));
            }
        } else if version == 1 {
            return Err(bad("missing Host"));
        }
        self.host = target_authority.or(host_field);
        // RFC 9110 §11.6.2: one set of credentials. With two, the gateway could check one
        // while the upstream acts on the other.
        if authorization_count > 1 {
            return Err(bad("multiple Authorization fields"));
        }

        // RFC 9112 §6.1 and §6.3.
        self.body = if codings.present {
            if version == 0 {
                return Err(bad("Transfer-Encoding in HTTP/1.0"));
            }
            if content_length.value.is_some() {
                return Err(bad("both Content-Length and Transfer-Encoding"));
            }
            if !codings.chunked_last {
                return Err(bad("chunked is not the final transfer coding"));
            }
            if codings.chunked_count > 1 {
                return Err(bad("chunked applied more than once"));
            }
            if !codings.is_exactly_chunked() {
                return Err(RequestError {
                    status: 501,
                    reason: "unsupported transfer coding",
                });
            }
            BodyFraming::Chunked
        } else {
            match content_length.value {
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::None,
            }
        };

        let options = fields::connection_options(buf, &mut self.headers).map_err(bad)?;
        self.keep_alive = !options.close && (version == 1 || options.keep_alive);
        self.expect_continue = expect_continue && version == 1;
        self.upgrade = upgrade_field && options.upgrade;
        self.head_len = head_len;
        Ok(Some(head_len))
    }

    /// Frees the header table while the connection is idle; it grows again on the next
    /// request.
    pub fn release_memory(&mut self) {
        self.headers = Vec::new();
    }

    /// The value of the first field named `lower_name` (compared case-insensitively).
    pub fn header<'b>(&self, buf: &'b [u8], lower_name: &str) -> Option<&'b [u8]> {
        let name = lower_name.as_bytes();
        self.headers
            .iter()
            .find(|f| f.name.get(buf).eq_ignore_ascii_case(name))
            .map(|f| f.value.get(buf))
    }

    /// Checks the target form and fills `path` and `query`. Returns the authority of an
    /// absolute-form target.
    fn split_target(&mut self, target: &[u8]) -> Result<Option<Span>, RequestError> {
        const INVALID: RequestError = bad("invalid request target");
        // httparse admits VCHAR and valid UTF-8; a request target is ASCII (RFC 3986 §2) and
        // carries no fragment (RFC 9112 §3.2).
        // No early exit: a branch-free loop the compiler vectorises.
        let mut invalid = false;
        for &b in target {
            invalid |= b >= 0x80 || b == b'#';
        }
        if invalid {
            return Err(INVALID);
        }
        let query_at = target.iter().position(|&b| b == b'?');
        let base = self.target.start;
        let end = query_at.unwrap_or(target.len());
        self.query = query_at.map(|q| Span {
            start: base + q as u32 + 1,
            end: self.target.end,
        });

        if target.first() == Some(&b'/') {
            self.path = Span {
                start: base,
                end: base + end as u32,
            };
            return Ok(None);
        }
        if target == b"*" {
            if self.method != Method::Options {
                return Err(INVALID);
            }
            self.path = self.target;
            return Ok(None);
        }
        // absolute-form (RFC 9112 §3.2.2).
        let scheme_len = if starts_with_ignore_case(target, b"http://") {
            7
        } else if starts_with_ignore_case(target, b"https://") {
            8
        } else {
            return Err(INVALID);
        };
        let authority_end = target[scheme_len..end]
            .iter()
            .position(|&b| b == b'/')
            .map(|i| scheme_len + i)
            .ok_or(bad("absolute-form target without path"))?;
        if !is_valid_authority(&target[scheme_len..authority_end]) {
            return Err(bad("invalid authority in request target"));
        }
        self.path = Span {
            start: base + authority_end as u32,
            end: base + end as u32,
        };
        Ok(Some(Span {
            start: base + scheme_len as u32,
            end: base + authority_end as u32,
        }))
    }
}

/// The offset just past `part` in `buf` (a subslice of it).
fn end_offset(buf: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - buf.as_ptr() as usize + part.len()
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2), deliberately narrower than the
/// RFC: the host is an IPv6 literal or a name of `ALPHA DIGIT - . _ ~`; the port, when
/// present, is 1 to 5 digits. No userinfo, whitespace, percent-encoding or sub-delims
/// (a `,` would let `a.com,b.com` read as two hosts to someone downstream).
/// The bytes of a registered name or IPv4 address in a Host (unreserved, RFC 3986 §2.3),
/// as a table: one load per byte on every request.
static HOST_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    table
};

fn is_valid_authority(authority: &[u8]) -> bool {
    let (host_ok, port) = if let Some(rest) = authority.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        match &rest[close + 1..] {
            [] => (ok, None),
            [b':', port @ ..] => (ok, Some(port)),
            _ => return false,
        }
    } else {
        let (host, port) = match authority.iter().position(|&b| b == b':') {
            Some(i) => (&authority[..i], Some(&authority[i + 1..])),
            None => (authority, None),
        };
        let ok = !host.is_empty() && host.iter().all(|&b| HOST_BYTE[usize::from(b)]);
        (ok, port)
    };
    host_ok && port.is_none_or(|p| (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit))
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::Token => "invalid request line",
        _ => "malformed request head",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        request_line_bytes_max: 8192,
        header_bytes_max: 16384,
        header_count_max: 100,
    };

    fn parse(raw: &[u8]) -> Result<Option<usize>, RequestError> {
        RequestHead::new().parse(raw, &LIMITS)
    }

    fn ok(raw: &[u8]) -> RequestHead {
        let mut head = RequestHead::new();
        let n = head.parse(raw, &LIMITS).unwrap().expect("complete head");
        assert_eq!(n, head.head_len);
        head
    }

    fn status(raw: &[u8]) -> u16 {
        match parse(raw) {
            Err(e) => e.status,
            Ok(r) => panic!(
                "expected an error, got {r:?} for {:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    #[test]
    fn browser_request() {
        let raw: &[u8] = b"GET /search/results?q=rust&page=2 HTTP/1.1\r\n\
            Host: www.example.com\r\n\
            User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
            Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
            Accept-Language: en-US,en;q=0.5\r\n\
            Accept-Encoding: gzip, deflate, br, zstd\r\n\
            Referer: https://www.example.com/\r\n\
            Connection: keep-alive\r\n\
            Cookie: session=abc123; theme=dark\r\n\
            Upgrade-Insecure-Requests: 1\r\n\
            Sec-Fetch-Dest: document\r\n\
            Sec-Fetch-Mode: navigate\r\n\
            Sec-Fetch-Site: same-origin\r\n\
            Sec-Fetch-User: ?1\r\n\
            Priority: u=0, i\r\n\
            Cache-Control: max-age=0\r\n\
            \r\n";
        let head = ok(raw);
        assert_eq!(head.head_len, raw.len());
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.method_span.get(raw), b"GET");
        assert_eq!(head.target.get(raw), b"/search/results?q=rust&page=2");
        assert_eq!(head.path.get(raw), b"/search/results");
        assert_eq!(head.query.unwrap().get(raw), b"q=rust&page=2");
        assert_eq!(head.version_minor, 1);
        assert_eq!(head.headers.len(), 15);
        assert_eq!(head.host.unwrap().get(raw), b"www.example.com");
        assert_eq!(head.body, BodyFraming::None);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert!(!head.upgrade);
        assert_eq!(
            head.header(raw, "cookie"),
            Some(&b"session=abc123; theme=dark"[..])
        );
        assert_eq!(
            head.header(raw, "accept-encoding"),
            Some(&b"gzip, deflate, br, zstd"[..])
        );
        assert_eq!(head.header(raw, "x-missing"), None);
        let conn = head
            .headers
            .iter()
            .find(|f| f.kind == HeaderKind::Connection)
            .unwrap();
        assert!(conn.hop_by_hop);
        let ua = &head.headers[1];
        assert_eq!(ua.name.get(raw), b"User-Agent");
        assert_eq!(ua.kind, HeaderKind::Other);
        assert!(!ua.hop_by_hop);
    }

    #[test]
    fn pipelined_requests() {
        let raw: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut head = RequestHead::new();
        let mut at = 0;
        let mut paths = Vec::new();
        while at < raw.len() {
            let buf = &raw[at..];
            let n = head.parse(buf, &LIMITS).unwrap().unwrap();
            paths.push(head.path.get(buf).to_vec());
            at += n;
            if let BodyFraming::Length(len) = head.body {
                assert_eq!(&buf[n..n + len as usize], b"hello");
                at += len as usize;
            }
        }
        assert_eq!(paths, vec![b"/a".to_vec(), b"/b".to_vec(), b"/c".to_vec()]);
        assert_eq!(at, raw.len());
    }

    #[test]
    fn reuse_keeps_capacity_and_clears() {
        let mut head = RequestHead::new();
        let big = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        head.parse(big, &LIMITS).unwrap().unwrap();
        let capacity = head.headers.capacity();
        head.parse(b"GET / HTTP/1.1\r\nHost: y\r\n\r\n", &LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(head.headers.len(), 1);
        assert_eq!(head.headers.capacity(), capacity);
    }

    #[test]
    fn partial_heads() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(raw), Ok(Some(raw.len())));
    }

    #[test]
    fn http10() {
        let raw = b"GET /old HTTP/1.0\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.version_minor, 0);
        assert_eq!(head.host, None);
        assert!(!head.keep_alive);
        let head = ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n");
        assert!(head.keep_alive);
        let head = ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(!head.keep_alive);
        // RFC 9110 §10.1.1: 100-continue in HTTP/1.0 is ignored.
        let head = ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!head.expect_continue);
    }

    #[test]
    fn keep_alive_tokens_across_fields() {
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n").keep_alive);
        assert!(
            !ok(b"GET / HTTP/1.1\r\nConnection: foo\r\nHost: a\r\nConnection: ,close,\r\n\r\n")
                .keep_alive
        );
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n").keep_alive);
    }

    #[test]
    fn connection_options_mark_hop_by_hop() {
        let raw = b"GET / HTTP/1.1\r\nX-Secret: 1\r\nHost: a\r\nConnection: x-secret, host\r\n\
            Content-Length: 0\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: b\r\nTE: trailers\r\n\r\n";
        let head = ok(raw);
        let hop: Vec<(&[u8], bool)> = head
            .headers
            .iter()
            .map(|f| (f.name.get(raw), f.hop_by_hop))
            .collect();
        assert_eq!(
            hop,
            vec![
                (&b"X-Secret"[..], true),
                (&b"Host"[..], false),
                (&b"Connection"[..], true),
                (&b"Content-Length"[..], false),
                (&b"Keep-Alive"[..], true),
                (&b"Proxy-Authorization"[..], true),
                (&b"TE"[..], true),
            ]
        );
    }

    #[test]
    fn too_many_connection_options() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: ".to_vec();
        for i in 0..=fields::CONNECTION_OPTIONS_MAX {
            raw.extend_from_slice(format!("o{i},").as_bytes());
        }
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(status(&raw), 400);
    }

    #[test]
    fn upgrade_needs_field_and_option() {
        let head =
            ok(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        assert!(head.upgrade);
        assert!(head
            .headers
            .iter()
            .all(|f| f.hop_by_hop || f.kind == HeaderKind::Host));
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n").upgrade);
    }

    #[test]
    fn absolute_form() {
        let raw = b"GET http://api.example.com:8080/v1/users?id=7 HTTP/1.1\r\nHost: other\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.host.unwrap().get(raw), b"api.example.com:8080");
        assert_eq!(head.path.get(raw), b"/v1/users");
        assert_eq!(head.query.unwrap().get(raw), b"id=7");
        let raw = b"GET HTTPS://[::1]:443/ HTTP/1.0\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.host.unwrap().get(raw), b"[::1]:443");
        assert_eq!(head.path.get(raw), b"/");
        // Host is still required in HTTP/1.1 (RFC 9112 §3.2).
        assert_eq!(status(b"GET http://a/ HTTP/1.1\r\n\r\n"), 400);
        // No path, userinfo, other schemes, empty authority.
        assert_eq!(status(b"GET http://a HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET http:/// HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn query_split() {
        let raw = b"GET /p?a=1?b HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.path.get(raw), b"/p");
        assert_eq!(head.query.unwrap().get(raw), b"a=1?b");
        let raw = b"GET /p? HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.path.get(raw), b"/p");
        assert_eq!(head.query.unwrap().get(raw), b"");
        let raw = b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(ok(raw).query, None);
    }

    #[test]
    fn target_forms() {
        let raw = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.path.get(raw), b"*");
        assert_eq!(head.method, Method::Options);
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET foo HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(
            status("GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes()),
            400
        );
        assert_eq!(status(b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(
            status(b"CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n"),
            501
        );
    }

    #[test]
    fn methods() {
        let raw = b"PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.method, Method::Other);
        assert_eq!(head.method_span.get(raw), b"PURGE");
        assert_eq!(
            ok(b"get / HTTP/1.1\r\nHost: h\r\n\r\n").method,
            Method::Other
        );
        assert_eq!(Method::Patch.as_str(), Some("PATCH"));
        assert_eq!(Method::Other.as_str(), None);
        assert!(Method::Put.is_idempotent());
        assert!(!Method::Post.is_idempotent());
        assert!(!Method::Other.is_idempotent());
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
        ] {
            assert_eq!(Method::from_token(m.as_bytes()).as_str(), Some(m));
        }
    }

    #[test]
    fn leading_empty_line_is_skipped() {
        let raw = b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.method_span.get(raw), b"GET");
        assert_eq!(head.head_len, raw.len());
    }

    #[test]
    fn limits() {
        let limits = Limits {
            request_line_bytes_max: 32,
            header_bytes_max: 64,
            header_count_max: 2,
        };
        let mut head = RequestHead::new();
        let mut parse = |raw: &[u8]| head.parse(raw, &limits).map_err(|e| e.status);
        // A request line of exactly 32 bytes (CRLF included) passes; 33 does not.
        let line = b"GET /aaaaaaaaaaaaaaaa HTTP/1.1\r\n";
        assert_eq!(line.len(), 32);
        assert_eq!(
            parse(&[&line[..], b"Host: h\r\n\r\n"].concat()),
            Ok(Some(43))
        );
        let long = b"GET /aaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(parse(long), Err(414));
        // Incomplete request line already at the limit: 414 without waiting for more.
        assert_eq!(parse(&[&b"GET /"[..], &[b'a'; 27]].concat()), Err(414));
        assert_eq!(parse(&[&b"GET /"[..], &[b'a'; 26]].concat()), Ok(None));
        // Head over 64 bytes: complete → 431; incomplete with 64 bytes buffered → 431.
        let big = b"GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789012345678901234567890123\r\n\r\n";
        assert!(big.len() > 64);
        assert_eq!(parse(big), Err(431));
        assert_eq!(parse(&big[..64]), Err(431));
        assert_eq!(parse(&big[..63]), Ok(None));
        // Field count.
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n"),
            Ok(Some(33))
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n"),
            Err(431)
        );
    }

    #[test]
    fn header_count_is_capped_at_256() {
        let limits = Limits {
            request_line_bytes_max: 1024,
            header_bytes_max: 1 << 20,
            header_count_max: 10_000,
        };
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for _ in 0..HEADER_COUNT_LIMIT {
            raw.extend_from_slice(b"A: b\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        let err = RequestHead::new().parse(&raw, &limits).unwrap_err();
        assert_eq!(err.status, 431);
    }

    #[test]
    fn content_length() {
        let head = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n");
        assert_eq!(head.body, BodyFraming::Length(42));
        let head =
            ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(head.body, BodyFraming::Length(5));
        let head =
            ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(head.body, BodyFraming::Length(u64::MAX));
        for bad in [
            &b"Content-Length: 5\r\nContent-Length: 6"[..],
            b"Content-Length: 5, 6",
            b"Content-Length: ",
            b"Content-Length: +5",
            b"Content-Length: -5",
            b"Content-Length: 0x5",
            b"Content-Length: 5 5",
            b"Content-Length: 5,",
            b"Content-Length: 1e3",
            b"Content-Length: 18446744073709551616",
        ] {
            let raw = [&b"POST / HTTP/1.1\r\nHost: h\r\n"[..], bad, b"\r\n\r\n"].concat();
            assert_eq!(status(&raw), 400, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn transfer_encoding() {
        let head = ok(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(head.body, BodyFraming::Chunked);
        let te = head
            .headers
            .iter()
            .find(|f| f.kind == HeaderKind::TransferEncoding)
            .unwrap();
        assert!(te.hop_by_hop);
        let head = ok(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.body, BodyFraming::Chunked);
        for (te, want) in [
            (&b"Transfer-Encoding: chunked\r\nContent-Length: 5"[..], 400),
            (b"Content-Length: 5\r\nTransfer-Encoding: chunked", 400),
            (b"Transfer-Encoding: gzip", 400),
            (b"Transfer-Encoding: chunked, gzip", 400),
            (
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
                400,
            ),
            (b"Transfer-Encoding: chunked, chunked", 400),
            (
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                400,
            ),
            (b"Transfer-Encoding: ", 400),
            (b"Transfer-Encoding: xchunked", 400),
            (b"Transfer-Encoding: chunked;x=1", 400),
            (b"Transfer-Encoding: gzip, chunked", 501),
            (
                b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
                501,
            ),
        ] {
            let raw = [&b"POST / HTTP/1.1\r\nHost: h\r\n"[..], te, b"\r\n\r\n"].concat();
            assert_eq!(status(&raw), want, "{}", String::from_utf8_lossy(te));
        }
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        for host in [
            &b""[..],
            b"a b",
            b"user@a",
            b"a/b",
            b"a,b",
            b"a:",
            b"a:123456",
            b"a:8x",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"a\\b",
            b"%61",
        ] {
            let raw = [&b"GET / HTTP/1.1\r\nHost: "[..], host, b"\r\n\r\n"].concat();
            assert_eq!(status(&raw), 400, "{}", String::from_utf8_lossy(host));
        }
        for host in [
            &b"example.com"[..],
            b"a-b.c_d~e",
            b"10.0.0.1:8080",
            b"[2001:db8::1]",
            b"[::1]:80",
        ] {
            let raw = [&b"GET / HTTP/1.1\r\nHost: "[..], host, b"\r\n\r\n"].concat();
            let head = ok(&raw);
            assert_eq!(head.host.unwrap().get(&raw), host);
        }
    }

    #[test]
    fn expect() {
        let head =
            ok(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n");
        assert!(head.expect_continue);
        let expect = head
            .headers
            .iter()
            .find(|f| f.kind == HeaderKind::Expect)
            .unwrap();
        assert!(expect.hop_by_hop);
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n"),
            417
        );
        assert_eq!(status(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect:\r\n\r\n"), 417);
    }

    #[test]
    fn syntax_rejected_by_httparse_or_us() {
        for raw in [
            // whitespace between name and colon
            &b"GET / HTTP/1.1\r\nHost: h\r\nFoo : bar\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo\t: bar\r\n\r\n",
            // obs-fold
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo: bar\r\n baz\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo: bar\r\n\tbaz\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
            // bare CR
            b"GET / HTTP/1.1\rHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo: a\r\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n",
            // bare LF
            b"GET / HTTP/1.1\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\n",
            b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\nHost: h\n\n",
            // NUL and control characters
            b"GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nFo\0o: ab\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo: a\x7fb\r\n\r\n",
            b"GE\0T / HTTP/1.1\r\nHost: h\r\n\r\n",
            // request line shape and version
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            b"GET /\r\nHost: h\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            // missing colon, empty name
            b"GET / HTTP/1.1\r\nHost: h\r\nFoo\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n",
        ] {
            assert_eq!(status(raw), 400, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn underscore_lookalikes_rejected() {
        for name in [
            "Content_Length",
            "Transfer_Encoding",
            "X_Forwarded_For",
            "Connection_",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: h\r\n{name}: 5\r\n\r\n");
            let want = if name == "Connection_" {
                None
            } else {
                Some(400)
            };
            assert_eq!(
                parse(raw.as_bytes()).err().map(|e| e.status),
                want,
                "{name}"
            );
        }
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX_Api_Key: k\r\n\r\n";
        assert_eq!(ok(raw).header(raw, "x_api_key"), Some(&b"k"[..]));
    }

    #[test]
    fn one_authorization_field_at_most() {
        let one = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer a\r\n\r\n";
        assert_eq!(
            ok(one).headers[1].kind,
            HeaderKind::Authorization,
            "classified"
        );
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nAUTHORIZATION: Basic a\r\nHost: h\r\nAuthorization: Bearer a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: \r\nAuthorization: Bearer a\r\n\r\n",
        ] {
            assert_eq!(status(raw), 400, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn obs_text_value_is_kept() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9\t \r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.header(raw, "x-name"), Some(&b"caf\xc3\xa9"[..]));
    }

    #[test]
    fn empty_value_span_is_inside_buffer() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Blank:   \r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.header(raw, "x-empty"), Some(&b""[..]));
        assert_eq!(head.header(raw, "x-blank"), Some(&b""[..]));
    }

    /// A tiny deterministic generator, so the tests need no dependency.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// The fuzz contract in small: mutated heads never panic; an accepted head has every
    /// span inside `buf[..head_len]`, and each of its prefixes is merely incomplete.
    #[test]
    fn mutations_never_panic_and_prefixes_agree() {
        let base: &[u8] = b"POST /a?b HTTP/1.1\r\nHost: h:1\r\nContent-Length: 3\r\n\
            Transfer-Encoding: chunked\r\nConnection: x, close\r\nX: y\r\nExpect: 100-continue\r\n\r\nabc";
        let alphabet = b"\r\n :,;\t\0\x7f\x80aZ09-_/?#*@[]";
        let mut next = xorshift(7);
        let mut accepted = 0;
        for _ in 0..5000 {
            let mut raw = base.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() % raw.len() as u64) as usize;
                let byte = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => raw[at] = byte,
                    1 => raw.insert(at, byte),
                    _ => {
                        raw.remove(at);
                    }
                }
            }
            let mut head = RequestHead::new();
            let Ok(Some(n)) = head.parse(&raw, &LIMITS) else {
                continue;
            };
            accepted += 1;
            let mut spans = vec![head.method_span, head.target, head.path];
            spans.extend(head.query);
            spans.extend(head.host);
            for f in &head.headers {
                spans.extend([f.name, f.value]);
            }
            assert!(spans
                .iter()
                .all(|s| s.start <= s.end && s.end as usize <= n));
            for cut in 0..n {
                assert_eq!(RequestHead::new().parse(&raw[..cut], &LIMITS), Ok(None));
            }
        }
        assert!(accepted > 100, "only {accepted} mutants accepted");
    }
}
