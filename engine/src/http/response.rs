//! Upstream response heads: parsing, validation and body framing (RFC 9112 §6.3).
//!
//! Like requests, the head is parsed with httparse into a stack array of uninitialised
//! header slots and kept as [`Span`]s into the upstream read buffer; one `ResponseHead` per
//! exchange is reused and **never allocates per header**.
//!
//! An upstream is trusted no more than a client: anything ambiguous is an error, which the
//! proxy answers with 502 (RFC 9112 §5.2 allows exactly that for obs-fold, and §6.3 for bad
//! framing). On top of what httparse rejects (control bytes, obs-fold, whitespace before the
//! colon, bare CR, versions other than 1.0/1.1): bare LF line endings, bytes before the
//! status line (a stray CRLF after the previous body means the framing went wrong), status
//! codes outside 100..=599, 101 (the gateway never forwards Upgrade), malformed or differing
//! Content-Length, Transfer-Encoding in HTTP/1.0, and any Transfer-Encoding other than
//! exactly `chunked`. That last rule is stricter than RFC 9112 §6.3 (which reads a body with
//! a non-chunked final coding until close): the gateway strips Transfer-Encoding as
//! hop-by-hop and re-frames bodies, so it could not relay such a coding faithfully.
//!
//! Framing, in RFC 9112 §6.3 order: a response to HEAD, 1xx, 204 and 304 have no body;
//! then Transfer-Encoding `chunked` (winning over a Content-Length, but the connection is
//! then not reused); then Content-Length; else the body runs until the upstream closes.

use std::fmt;
use std::mem::MaybeUninit;

use super::fields::{self, ContentLength, TransferCodings};
use super::request::{HeaderField, HeaderKind, Method, Span, HEADER_COUNT_LIMIT};

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: response to HEAD, 1xx, 204, 304.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunked transfer coding; decode with [`super::ChunkedDecoder`].
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// Why an upstream response head was refused. The proxy answers 502 and drops the upstream
/// connection; `reason` is for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseError {
    /// What was wrong, in a few words.
    pub reason: &'static str,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid upstream response: {}", self.reason)
    }
}

impl std::error::Error for ResponseError {}

const fn invalid(reason: &'static str) -> ResponseError {
    ResponseError { reason }
}

/// Offset of the status code's last digit + 1 in `HTTP/1.1 200`.
const STATUS_LINE_CODE_END: usize = 12;

/// A parsed response head. Reusable: [`ResponseHead::parse`] clears and refills it. After
/// an error or `Ok(None)` its contents are unspecified.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// Status code, 100..=599 except 101.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The reason phrase as sent (may be empty).
    pub reason: Span,
    /// Every field in order of arrival.
    pub headers: Vec<HeaderField>,
    /// Length of the head: the body starts at `buf[head_len..]`.
    pub head_len: usize,
    /// How the body is delimited.
    pub body: ResponseBody,
    /// Whether the upstream connection may carry another request after this response's body.
    pub keep_alive: bool,
}

/// Field slots reserved up front.
const HEADERS_CAPACITY_INITIAL: usize = 32;

/// An empty head that has not allocated: what a connection holds between responses.
impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            status: 0,
            version_minor: 1,
            reason: Span::default(),
            headers: Vec::new(),
            head_len: 0,
            body: ResponseBody::None,
            keep_alive: false,
        }
    }
}

impl ResponseHead {
    /// An empty head, ready for [`ResponseHead::parse`].
    pub fn new() -> Self {
        ResponseHead {
            headers: Vec::with_capacity(HEADERS_CAPACITY_INITIAL),
            ..ResponseHead::default()
        }
    }

    /// Parses the response head at the start of `buf`, for a request made with
    /// `request_method` (HEAD responses have no body).
    ///
    /// `Ok(None)`: incomplete, read more. `Ok(Some(head_len))`: a valid head is
    /// `buf[..head_len]`; for a 1xx the next head follows it. `Err`: answer 502, close the
    /// upstream connection. A head of more than `header_bytes_max` bytes (or more than
    /// [`HEADER_COUNT_LIMIT`] fields) is an error.
    pub fn parse(
        &mut self,
        buf: &[u8],
        request_method: Method,
        header_bytes_max: usize,
    ) -> Result<Option<usize>, ResponseError> {
        self.headers.clear();
        let header_bytes_max = header_bytes_max.min(u32::MAX as usize);
        if matches!(buf.first(), Some(b'\r' | b'\n')) {
            return Err(invalid("bytes before the status line"));
        }

        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_COUNT_LIMIT];
        let mut resp = httparse::Response::new(&mut []);
        // The default configuration is the strict one: no obs-fold, no space before the
        // colon, no skipped invalid lines, single spaces in the status line.
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
        let head_len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() >= header_bytes_max {
                    return Err(invalid("response head too large"));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(invalid("too many header fields")),
            Err(e) => return Err(invalid(httparse_reason(e))),
        };
        if head_len > header_bytes_max {
            return Err(invalid("response head too large"));
        }
        let (Some(version), Some(status)) = (resp.version, resp.code) else {
            // httparse fills both before reporting a complete head.
            return Err(invalid("malformed status line"));
        };
        let head = &buf[..head_len];
        if !fields::line_endings_are_crlf(head) {
            return Err(invalid("line ending is not CRLF"));
        }
        if !(100..=599).contains(&status) {
            return Err(invalid("invalid status code"));
        }
        if status == 101 {
            return Err(invalid("protocol upgrade not supported"));
        }
        // The status line starts at 0 (no leading empty lines) and is `HTTP/1.x NNN`, then
        // either CRLF or SP reason CRLF. httparse hides a reason holding obs-text, so the
        // span is taken from the bytes.
        let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(0);
        self.reason = if head.get(STATUS_LINE_CODE_END) == Some(&b' ') {
            Span {
                start: STATUS_LINE_CODE_END as u32 + 1,
                end: line_end.saturating_sub(1).max(STATUS_LINE_CODE_END + 1) as u32,
            }
        } else {
            Span {
                start: STATUS_LINE_CODE_END as u32,
                end: STATUS_LINE_CODE_END as u32,
            }
        };

        let mut content_length = ContentLength::default();
        let mut codings = TransferCodings::default();
        for h in resp.headers.iter() {
            let name = h.name.as_bytes();
            let kind = fields::classify(name);
            match kind {
                HeaderKind::ContentLength => content_length.add(h.value).map_err(invalid)?,
                HeaderKind::TransferEncoding => codings.add(h.value),
                _ => {}
            }
            self.headers.push(HeaderField {
                name: fields::span_of(buf, name),
                value: fields::span_of(buf, h.value),
                kind,
                hop_by_hop: kind.is_hop_by_hop(),
            });
        }
        let options = fields::connection_options(buf, &mut self.headers).map_err(invalid)?;

        if codings.present {
            if version == 0 {
                return Err(invalid("Transfer-Encoding in HTTP/1.0"));
            }
            if !codings.is_exactly_chunked() {
                return Err(invalid("unsupported transfer coding"));
            }
        }
        let no_body = request_method == Method::Head
            || (100..200).contains(&status)
            || status == 204
            || status == 304;
        self.body = if no_body {
            ResponseBody::None
        } else if codings.present {
            ResponseBody::Chunked
        } else if let Some(n) = content_length.value {
            ResponseBody::Length(n)
        } else {
            ResponseBody::UntilClose
        };
        // RFC 9112 §6.3 rule 3: both framings present may be a smuggling attempt; the body is
        // read as chunked and the connection is not reused.
        let both = codings.present && content_length.value.is_some();
        self.keep_alive = !options.close
            && (version == 1 || options.keep_alive)
            && !both
            && self.body != ResponseBody::UntilClose;
        self.status = status;
        self.version_minor = version;
        self.head_len = head_len;
        Ok(Some(head_len))
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Version => "unsupported HTTP version",
        _ => "malformed response head",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16384;

    fn parse_for(raw: &[u8], method: Method) -> Result<Option<usize>, ResponseError> {
        ResponseHead::new().parse(raw, method, MAX)
    }

    fn ok_for(raw: &[u8], method: Method) -> ResponseHead {
        let mut head = ResponseHead::new();
        let n = head
            .parse(raw, method, MAX)
            .unwrap()
            .expect("complete head");
        assert_eq!(n, raw.len());
        assert_eq!(n, head.head_len);
        head
    }

    fn ok(raw: &[u8]) -> ResponseHead {
        ok_for(raw, Method::Get)
    }

    fn framing(raw: &[u8], method: Method) -> (ResponseBody, bool) {
        let head = ok_for(raw, method);
        (head.body, head.keep_alive)
    }

    #[test]
    fn typical_response() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\
            Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n";
        let head = ok(raw);
        assert_eq!(head.status, 200);
        assert_eq!(head.version_minor, 1);
        assert_eq!(head.reason.get(raw), b"OK");
        assert_eq!(head.headers.len(), 4);
        assert_eq!(head.headers[0].name.get(raw), b"Content-Type");
        assert_eq!(head.headers[0].value.get(raw), b"application/json");
        assert_eq!(head.body, ResponseBody::Length(13));
        assert!(head.keep_alive);
        let hop: Vec<bool> = head.headers.iter().map(|f| f.hop_by_hop).collect();
        assert_eq!(hop, vec![false, false, true, true]);
    }

    #[test]
    fn framing_table() {
        use ResponseBody::*;
        let get = Method::Get;
        let cases: &[(&[u8], Method, ResponseBody, bool)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                get,
                Length(5),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Method::Head,
                None,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                get,
                Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                get,
                Chunked,
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", get, UntilClose, false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", get, None, true),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
                get,
                None,
                true,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                get,
                None,
                true,
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", Method::Post, None, true),
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
                get,
                None,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                get,
                Length(0),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                get,
                Length(5),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
                get,
                Length(5),
                true,
            ),
            (b"HTTP/1.0 200 OK\r\n\r\n", get, UntilClose, false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
                get,
                UntilClose,
                false,
            ),
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 5, 5\r\n\r\n",
                get,
                Length(5),
                true,
            ),
        ];
        for (raw, method, body, keep_alive) in cases {
            assert_eq!(
                framing(raw, *method),
                (*body, *keep_alive),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn rejected() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\n",
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
        ] {
            assert!(
                parse_for(raw, Method::Get).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn reason_phrase_spans() {
        let raw = b"HTTP/1.1 200\r\n\r\n";
        assert_eq!(ok(raw).reason.get(raw), b"");
        let raw = b"HTTP/1.1 200 \r\n\r\n";
        assert_eq!(ok(raw).reason.get(raw), b"");
        let raw = b"HTTP/1.1 404 Not  Found \r\n\r\n";
        assert_eq!(ok(raw).reason.get(raw), b"Not  Found ");
        let raw = b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(ok(raw).reason.get(raw), b"Tr\xe8s bien");
    }

    #[test]
    fn interim_then_final_in_one_buffer() {
        let raw =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        let mut head = ResponseHead::new();
        let n = head.parse(raw, Method::Post, MAX).unwrap().unwrap();
        assert_eq!((head.status, head.body), (100, ResponseBody::None));
        let rest = &raw[n..];
        let m = head.parse(rest, Method::Post, MAX).unwrap().unwrap();
        assert_eq!((head.status, head.body), (201, ResponseBody::Length(2)));
        assert_eq!(&rest[m..], b"ok");
    }

    #[test]
    fn partial_and_size_limit() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(
                parse_for(&raw[..cut], Method::Get),
                Ok(None),
                "cut at {cut}"
            );
        }
        let mut head = ResponseHead::new();
        assert!(head.parse(raw, Method::Get, raw.len() - 1).is_err());
        assert!(head.parse(&raw[..20], Method::Get, 20).is_err());
        assert_eq!(head.parse(&raw[..20], Method::Get, 21), Ok(None));
        assert_eq!(head.parse(raw, Method::Get, raw.len()), Ok(Some(raw.len())));
    }

    #[test]
    fn connection_option_marks_field() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Internal: 1\r\nConnection: x-internal\r\nContent-Length: 0\r\n\r\n";
        let head = ok(raw);
        assert!(head.headers[0].hop_by_hop);
        assert!(head.keep_alive);
    }

    #[test]
    fn mutations_never_panic() {
        let base: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\
            Connection: x, close\r\nX: y\r\n\r\nabc";
        let alphabet = b"\r\n :,;\t\0\x7f\x80aZ019-_";
        let mut seed: u64 = 11;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let mut raw = base.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() % raw.len() as u64) as usize;
                raw[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            let mut head = ResponseHead::new();
            if let Ok(Some(n)) = head.parse(&raw, Method::Get, MAX) {
                assert!(head.reason.end as usize <= n);
                assert!(head.headers.iter().all(|f| f.value.end as usize <= n));
                for cut in 0..n {
                    assert_eq!(
                        ResponseHead::new().parse(&raw[..cut], Method::Get, MAX),
                        Ok(None)
                    );
                }
            }
        }
    }
}
