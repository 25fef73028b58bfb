//! Field-level rules shared by request and response heads: header name classification, list
//! splitting (RFC 9110 §5.6.1), Content-Length (RFC 9112 §6.3), Transfer-Encoding
//! (RFC 9112 §6.1), Connection options (RFC 9110 §7.6.1) and the CRLF-only line ending check
//! (RFC 9112 §2.2).
//!
//! Everything here works on slices of the read buffer and never allocates.

use super::request::{HeaderField, HeaderKind, Span};

/// Most Connection options naming fields (all but `close`, `keep-alive` and `upgrade`) in
/// one head. Each costs a scan of the field list, so a head naming more is rejected (400 for
/// requests, 502 for responses) rather than let one message cost `options × fields`
/// comparisons.
pub const CONNECTION_OPTIONS_MAX: usize = 16;

/// Classifies a header name (case-insensitive, RFC 9110 §5.1).
pub(crate) fn classify(name: &[u8]) -> HeaderKind {
    match classify_name(name) {
        (kind, NameMatch::Exact) => kind,
        _ => HeaderKind::Other,
    }
}

/// How a received name compares with a known lower-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameMatch {
    /// Different names.
    No,
    /// The same name, ignoring ASCII case.
    Exact,
    /// The same name only if `_` is read as `-` (`Content_Length`, `X_Forwarded_For`).
    /// CGI-style servers (WSGI, PHP, Rack) map both spellings to the same variable, so
    /// forwarding such a field would let a client smuggle framing or spoof forwarding data
    /// past the gateway's checks.
    Underscore,
}

/// Classifies a header name and says how it matched. Dispatches on length first, so most
/// names cost one length switch and at most two short compares that usually stop at the
/// first byte; a single pass finds both exact and underscore matches.
pub(crate) fn classify_name(name: &[u8]) -> (HeaderKind, NameMatch) {
    let known: &[(&[u8], HeaderKind)] = match name.len() {
        2 => &[(b"te", HeaderKind::Te)],
        4 => &[(b"host", HeaderKind::Host)],
        6 => &[(b"expect", HeaderKind::Expect)],
        7 => &[
            (b"trailer", HeaderKind::Trailer),
            (b"upgrade", HeaderKind::Upgrade),
        ],
        9 => &[
            (b"forwarded", HeaderKind::Forwarded),
            (b"x-real-ip", HeaderKind::XRealIp),
        ],
        13 => &[(b"authorization", HeaderKind::Authorization)],
        10 => &[
            (b"connection", HeaderKind::Connection),
            (b"keep-alive", HeaderKind::KeepAlive),
        ],
        14 => &[(b"content-length", HeaderKind::ContentLength)],
        15 => &[(b"x-forwarded-for", HeaderKind::XForwardedFor)],
        16 => &[(b"x-forwarded-host", HeaderKind::XForwardedHost)],
        17 => &[
            (b"transfer-encoding", HeaderKind::TransferEncoding),
            (b"x-forwarded-proto", HeaderKind::XForwardedProto),
        ],
        _ => &[],
    };
    for &(lower, kind) in known {
        let how = compare_name(name, lower);
        if how != NameMatch::No {
            return (kind, how);
        }
    }
    if name.len() > 6 {
        let how = compare_name(&name[..6], b"proxy-");
        if how != NameMatch::No {
            return (HeaderKind::ProxyAny, how);
        }
    }
    if name.len() > 12 {
        let how = compare_name(&name[..12], b"x-forwarded-");
        if how != NameMatch::No {
            return (HeaderKind::XForwardedOther, how);
        }
    }
    (HeaderKind::Other, NameMatch::No)
}

/// Compares `name` with `lower` (same length, lower case).
fn compare_name(name: &[u8], lower: &[u8]) -> NameMatch {
    debug_assert_eq!(name.len(), lower.len());
    let mut how = NameMatch::Exact;
    for (&a, &b) in name.iter().zip(lower) {
        if a.to_ascii_lowercase() != b {
            if a == b'_' && b == b'-' {
                how = NameMatch::Underscore;
            } else {
                return NameMatch::No;
            }
        }
    }
    how
}

/// One byte of a header name as a CGI-style server files it: ASCII letters in lower case,
/// digits as they are, and every other byte as `-`. CGI (RFC 3875 §4.1.18) turns `-` into `_`,
/// and WSGI, Rack and PHP follow it, so `X_User_Id` and `X-User-Id` reach such an upstream as
/// the same `HTTP_X_USER_ID`; Apache's `mod_cgi` does the same with other punctuation.
#[inline]
pub(crate) fn fold_name_byte(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// `name` folded byte by byte with [`fold_name_byte`]: the form a drop list stores, so that
/// [`same_folded_name`] can compare a received name with it.
pub(crate) fn fold_name(name: &str) -> Box<str> {
    name.bytes()
        .map(|b| char::from(fold_name_byte(b)))
        .collect::<String>()
        .into_boxed_str()
}

/// Whether the received `name` is `folded` (a [`fold_name`] result) once folded itself: the
/// same field to a CGI-style upstream. Costs a length compare for most pairs.
#[inline]
pub(crate) fn same_folded_name(name: &[u8], folded: &[u8]) -> bool {
    name.len() == folded.len()
        && name
            .iter()
            .zip(folded)
            .all(|(&a, &b)| fold_name_byte(a) == b)
}

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The non-empty elements of a comma-separated list value, trimmed (RFC 9110 §5.6.1: a
/// recipient ignores empty elements).
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// The Content-Length of a head, merged over all of its fields.
#[derive(Default)]
pub(crate) struct ContentLength {
    pub value: Option<u64>,
}

impl ContentLength {
    /// Adds one field value. RFC 9112 §6.3 rule 5: a list of identical decimal values
    /// ("5, 5") or repeated identical fields may be taken as that value; anything else
    /// (non-digits, sign, empty element, overflow, two different values) is an error.
    pub fn add(&mut self, value: &[u8]) -> Result<(), &'static str> {
        for element in value.split(|&b| b == b',') {
            let element = trim_ows(element);
            if element.is_empty() {
                return Err("invalid Content-Length");
            }
            let mut n: u64 = 0;
            for &b in element {
                if !b.is_ascii_digit() {
                    return Err("invalid Content-Length");
                }
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b - b'0')))
                    .ok_or("invalid Content-Length")?;
            }
            match self.value {
                Some(seen) if seen != n => return Err("conflicting Content-Length values"),
                _ => self.value = Some(n),
            }
        }
        Ok(())
    }
}

/// What the Transfer-Encoding fields of a head say, merged over all of them in order.
#[derive(Default)]
pub(crate) struct TransferCodings {
    /// At least one Transfer-Encoding field was present.
    pub present: bool,
    /// How many list elements were `chunked` (case-insensitive).
    pub chunked_count: u32,
    /// A coding other than `chunked` was listed (including `chunked` with parameters).
    pub other: bool,
    /// The last listed coding was `chunked`.
    pub chunked_last: bool,
}

impl TransferCodings {
    /// Adds one field value.
    pub fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in list_elements(value) {
            let chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked_count += u32::from(chunked);
            self.other |= !chunked;
            self.chunked_last = chunked;
        }
    }

    /// The only transfer coding the gateway supports: exactly one `chunked`, nothing else.
    pub fn is_exactly_chunked(&self) -> bool {
        self.chunked_count == 1 && !self.other
    }
}

/// The connection-wide options of a head's Connection fields (RFC 9112 §9.3, RFC 9110 §7.6.1).
#[derive(Default)]
pub(crate) struct ConnectionOptions {
    /// A `close` option was present.
    pub close: bool,
    /// A `keep-alive` option was present (meaningful for HTTP/1.0).
    pub keep_alive: bool,
    /// An `upgrade` option was present.
    pub upgrade: bool,
}

/// Reads every Connection field of `fields` and marks each field named as an option as
/// hop-by-hop. Only fields of kind [`HeaderKind::Other`] are marked: the named kinds are
/// either hop-by-hop already or re-emitted by the gateway itself (Host, framing,
/// X-Forwarded-*), so a client cannot use `Connection: host` or `Connection: content-length`
/// to make the forwarded head differ from what the gateway validated.
pub(crate) fn connection_options(
    buf: &[u8],
    fields: &mut [HeaderField],
) -> Result<ConnectionOptions, &'static str> {
    let mut options = ConnectionOptions::default();
    let mut named = 0;
    for i in 0..fields.len() {
        if fields[i].kind != HeaderKind::Connection {
            continue;
        }
        for token in list_elements(fields[i].value.get(buf)) {
            if token.eq_ignore_ascii_case(b"close") {
                options.close = true;
                continue;
            }
            if token.eq_ignore_ascii_case(b"keep-alive") {
                options.keep_alive = true;
                continue;
            }
            if token.eq_ignore_ascii_case(b"upgrade") {
                options.upgrade = true;
                continue;
            }
            named += 1;
            if named > CONNECTION_OPTIONS_MAX {
                return Err("too many Connection options");
            }
            for field in fields.iter_mut() {
                if field.kind == HeaderKind::Other
                    && field.name.get(buf).eq_ignore_ascii_case(token)
                {
                    field.hop_by_hop = true;
                }
            }
        }
    }
    Ok(options)
}

/// True when every line ending in `head` is CRLF: no LF without a CR before it and no CR
/// without an LF after it.
///
/// httparse accepts a bare LF as a line ending (RFC 9112 §2.2 lets a recipient do so). We do
/// not: a message read as one thing by a LF-tolerant parser and as another by a CRLF-strict
/// one is the raw material of request smuggling, and a gateway must never forward bytes whose
/// framing another parser could read differently. The loop has no early exit so it compiles
/// to a branch-free vector loop over the (small) head.
pub(crate) fn line_endings_are_crlf(head: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (head.first(), head.last()) else {
        return true;
    };
    let mut bad = u8::from(first == b'\n') | u8::from(last == b'\r');
    for (&a, &b) in head.iter().zip(&head[1..]) {
        bad |= u8::from((a == b'\r') != (b == b'\n'));
    }
    bad == 0
}

/// The span of `part`, a subslice of `buf` returned by httparse.
///
/// Callers guarantee `buf.len() <= u32::MAX` (heads are capped well below that).
pub(crate) fn span_of(buf: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    debug_assert!(start + part.len() <= buf.len(), "part must lie inside buf");
    Span {
        start: start as u32,
        end: (start + part.len()) as u32,
    }
}

/// Token characters (RFC 9110 §5.6.2), for names in chunk trailers.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Field value characters (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_is_case_insensitive() {
        assert_eq!(classify(b"HOST"), HeaderKind::Host);
        assert_eq!(classify(b"Content-Length"), HeaderKind::ContentLength);
        assert_eq!(classify(b"transfer-ENCODING"), HeaderKind::TransferEncoding);
        assert_eq!(classify(b"X-Forwarded-Proto"), HeaderKind::XForwardedProto);
        assert_eq!(classify(b"Proxy-Authorization"), HeaderKind::ProxyAny);
        assert_eq!(classify(b"Proxy-"), HeaderKind::Other);
        assert_eq!(classify(b"Accept"), HeaderKind::Other);
        assert_eq!(classify(b"TE"), HeaderKind::Te);
        assert_eq!(classify(b"Content_Length"), HeaderKind::Other);
        assert_eq!(classify(b"FORWARDED"), HeaderKind::Forwarded);
        assert_eq!(classify(b"X-Real-Ip"), HeaderKind::XRealIp);
        assert_eq!(classify(b"x-forwarded-port"), HeaderKind::XForwardedOther);
        assert_eq!(classify(b"X-FORWARDED-PREFIX"), HeaderKind::XForwardedOther);
        assert_eq!(classify(b"X-Forwarded-"), HeaderKind::Other);
        assert_eq!(classify(b"X-Forwardedx"), HeaderKind::Other);
    }

    #[test]
    fn underscore_lookalikes() {
        use NameMatch::*;
        assert_eq!(
            classify_name(b"Content_Length"),
            (HeaderKind::ContentLength, Underscore)
        );
        assert_eq!(
            classify_name(b"TRANSFER_ENCODING"),
            (HeaderKind::TransferEncoding, Underscore)
        );
        assert_eq!(
            classify_name(b"x_forwarded-for"),
            (HeaderKind::XForwardedFor, Underscore)
        );
        assert_eq!(
            classify_name(b"Proxy_Authorization"),
            (HeaderKind::ProxyAny, Underscore)
        );
        assert_eq!(
            classify_name(b"Keep_Alive"),
            (HeaderKind::KeepAlive, Underscore)
        );
        assert_eq!(
            classify_name(b"X_Real_IP"),
            (HeaderKind::XRealIp, Underscore)
        );
        assert_eq!(
            classify_name(b"X_Forwarded_Port"),
            (HeaderKind::XForwardedOther, Underscore)
        );
        assert_eq!(classify_name(b"X_Api_Key"), (HeaderKind::Other, No));
        assert_eq!(classify_name(b"Content_Lengthy"), (HeaderKind::Other, No));
        assert_eq!(
            classify_name(b"Content-Length"),
            (HeaderKind::ContentLength, Exact)
        );
    }

    #[test]
    fn folded_names_match_every_cgi_spelling() {
        let folded = fold_name("X-User_Id");
        assert_eq!(&*folded, "x-user-id");
        for name in ["X-User-Id", "x_user_id", "X_USER-ID", "x.user~id"] {
            assert!(
                same_folded_name(name.as_bytes(), folded.as_bytes()),
                "{name}"
            );
        }
        for name in ["X-User-Ids", "X-UserId", "X-User-Ix", ""] {
            assert!(
                !same_folded_name(name.as_bytes(), folded.as_bytes()),
                "{name}"
            );
        }
    }

    #[test]
    fn list_elements_skip_empty_and_trim() {
        let got: Vec<&[u8]> = list_elements(b" a ,, \tb\t,").collect();
        assert_eq!(got, vec![&b"a"[..], &b"b"[..]]);
    }

    #[test]
    fn crlf_check() {
        assert!(line_endings_are_crlf(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(line_endings_are_crlf(b""));
        assert!(!line_endings_are_crlf(b"\n"));
        assert!(!line_endings_are_crlf(b"a\r"));
        assert!(!line_endings_are_crlf(b"a\nb"));
        assert!(!line_endings_are_crlf(b"a\rb\r\n"));
        assert!(!line_endings_are_crlf(b"a\r\r\n"));
    }
}
