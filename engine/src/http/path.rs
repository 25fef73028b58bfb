//! Request path normalisation (RFC 3986 §6.2.2, §5.2.4), done once per request before
//! anything routes, authenticates or forwards, so the gateway and its upstream name the same
//! resource: a route guarded by authentication cannot be reached as `/open/../private`.
//!
//! Owns the one definition of a path's normal form, reached through [`normalize`] (into a
//! `Vec`, for fuzzing and tests), [`normalize_in_place`] (the engine's, over the read buffer)
//! and [`normalize_head`] (a parsed head's path and target spans). The normal form of a path
//! that starts with `/`:
//!
//! - Percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded: `%41` → `A`,
//!   `%2e` → `.` (§6.2.2.2); every other escape is kept with upper-case hex digits: `%2f` →
//!   `%2F` (§6.2.2.1). A `%` not followed by two hex digits is an error.
//! - `%2F` (`/`) and `%5C` (`\`) are errors unless [`PathOptions::allow_encoded_slashes`]:
//!   upstreams that decode them would see other segments than the router did. `%00` is
//!   always an error, and so is a literal `\`, which Windows-style servers read as `/`.
//! - A segment that is `.` or `..` followed by `;` (`..;x`) is an error: servlet containers
//!   strip such path parameters and then resolve the dot-segment the router never saw.
//! - After decoding, `.` segments are removed and `..` segments remove the segment before
//!   them (§5.2.4); `..` above the root stays at the root. A path that ended in a dot-segment
//!   keeps its trailing `/` (`/a/b/..` is `/a/`).
//! - With [`PathOptions::merge_slashes`], empty segments are dropped (`//a///b` is `/a/b`);
//!   a trailing `/` is kept.
//!
//! The normal form is a fixed point: normalising it again changes nothing. Its segments never
//! hold a `/`, `.` or `..`, so neither can a `{param}` captured from it.
//!
//! The query is never touched: this module sees the path only.
//!
//! Cost: the common path (no `%`, no `\`, no `//`, no segment `.`, `..` or `..x`) is one
//! branch-free scan with no write and no copy. Any other path is rewritten in place in one
//! more pass, which is possible because the normal form is never longer than the input.
//! Measured with `cargo bench --bench hot_path -- normalize_path` (criterion, 2-vCPU VM shared
//! with compiles, load average about 10, so upper bounds; each iteration includes copying the
//! path into a stack buffer): 18 ns for a normal 32-byte path (49 ns with an early-exit
//! `match` scan instead, measured just before under similar load), 140 ns for a 44-byte
//! path with `.`, `..`, `%7e` and `//`. Never allocates ([`normalize`] aside, which fills the
//! caller's `Vec`), never panics on any input.

use std::fmt;

use super::request::{RequestHead, Span};

/// How a path is normalised beyond what RFC 3986 requires; `[server]` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathOptions {
    /// Drop empty segments (`//`), as Envoy's `merge_slashes` does.
    pub merge_slashes: bool,
    /// Keep `%2F` and `%5C` (encoded) in a segment instead of refusing the request.
    pub allow_encoded_slashes: bool,
}

impl Default for PathOptions {
    /// The safe defaults: merge slashes, refuse encoded slashes.
    fn default() -> Self {
        PathOptions {
            merge_slashes: true,
            allow_encoded_slashes: false,
        }
    }
}

/// Why a path was refused; each maps to 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C` while encoded slashes are not allowed.
    EncodedSlash,
    /// `%00`.
    EncodedNul,
    /// A literal `\`.
    Backslash,
    /// A segment `.;…` or `..;…`: a dot-segment behind a path parameter.
    DotSegmentParams,
    /// The path does not start with `/` (nor is the asterisk-form `*`).
    NotAbsolute,
}

impl PathError {
    /// What was wrong, in a few words safe to show a client.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::BadEscape => "malformed percent-encoding in path",
            PathError::EncodedSlash => "encoded slash in path",
            PathError::EncodedNul => "encoded NUL in path",
            PathError::Backslash => "backslash in path",
            PathError::DotSegmentParams => "dot-segment with parameters in path",
            PathError::NotAbsolute => "path does not start with /",
        }
    }

    /// The status to answer: always 400.
    pub fn status(self) -> u16 {
        400
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathError {}

/// Writes the normal form of `raw` (a path starting with `/`, without query) into `out`,
/// replacing what `out` held. On error `out` holds unspecified bytes.
pub fn normalize(raw: &[u8], options: PathOptions, out: &mut Vec<u8>) -> Result<(), PathError> {
    out.clear();
    out.extend_from_slice(raw);
    let len = normalize_in_place(out, options)?;
    out.truncate(len);
    Ok(())
}

/// Normalises the path in `path` (starting with `/`, without query) in place and returns the
/// length of its normal form, which is `path[..len]`. The normal form is never longer than
/// the input. On error the bytes of `path` are unspecified.
pub fn normalize_in_place(path: &mut [u8], options: PathOptions) -> Result<usize, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal_fast(path, options.merge_slashes) {
        return Ok(path.len());
    }
    rewrite(path, options)
}

/// Normalises the path of a parsed head in `buf` (the buffer it was parsed from) and moves
/// the query left behind it, so `head.path`, `head.query` and `head.target` stay spans of
/// `buf` and the target stays contiguous (`path?query`, or `scheme://authority path?query`
/// in absolute-form). The asterisk-form `*` is left alone. Bytes of the request line after
/// the new end of the target are unspecified; nothing reads them. On error the head's path
/// bytes are unspecified and the request must be refused.
pub fn normalize_head(
    head: &mut RequestHead,
    buf: &mut [u8],
    options: PathOptions,
) -> Result<(), PathError> {
    let (start, end) = (head.path.start as usize, head.path.end as usize);
    if &buf[start..end] == b"*" {
        return Ok(());
    }
    let len = normalize_in_place(&mut buf[start..end], options)?;
    let removed = (end - start - len) as u32;
    if removed == 0 {
        return Ok(());
    }
    let target_end = head.target.end as usize;
    buf.copy_within(end..target_end, start + len);
    head.path.end -= removed;
    head.target.end -= removed;
    if let Some(query) = &mut head.query {
        *query = Span {
            start: query.start - removed,
            end: query.end - removed,
        };
    }
    Ok(())
}

/// True when `path` is already in normal form by a cheap test: no `%`, no `\`, no segment
/// that starts with `.` followed by the segment's end, `.` or `;` (conservative: `..x` goes
/// the slow way too), and no `//` when slashes merge.
#[inline]
fn is_normal_fast(path: &[u8], merge_slashes: bool) -> bool {
    // Branch-free over the whole path (paths are short, and almost all are normal): `|`, not
    // `||`, so the loop has no exit but its end.
    let (mut p2, mut p1) = (0u8, 0u8);
    let mut hit = false;
    for &b in path {
        hit |= (b == b'%')
            | (b == b'\\')
            | (merge_slashes & (p1 == b'/') & (b == b'/'))
            | ((p2 == b'/') & (p1 == b'.') & ((b == b'/') | (b == b'.') | (b == b';')));
        p2 = p1;
        p1 = b;
    }
    hit |= (p2 == b'/') & (p1 == b'.');
    !hit
}

/// The slow path: one pass with a write cursor `w` that never overtakes the read cursor `r`
/// (an escape reads three bytes and writes one or three; every other byte reads one and
/// writes at most one), so the rewrite happens in the same buffer.
///
/// Invariant between segments: `path[..w]` is `/` followed by the kept segments, each
/// followed by `/`.
fn rewrite(path: &mut [u8], options: PathOptions) -> Result<usize, PathError> {
    let len = path.len();
    let mut w = 1;
    let mut r = 1;
    loop {
        // One input segment: path[r..] up to the next `/` or the end, decoded to path[w..].
        let seg_start = w;
        while r < len && path[r] != b'/' {
            let b = path[r];
            match b {
                b'\\' => return Err(PathError::Backslash),
                b'%' => {
                    let (Some(hi), Some(lo)) = (
                        path.get(r + 1).and_then(|&h| hex(h)),
                        path.get(r + 2).and_then(|&l| hex(l)),
                    ) else {
                        return Err(PathError::BadEscape);
                    };
                    let decoded = hi << 4 | lo;
                    r += 3;
                    if is_unreserved(decoded) {
                        path[w] = decoded;
                        w += 1;
                        continue;
                    }
                    match decoded {
                        0 => return Err(PathError::EncodedNul),
                        b'/' | b'\\' if !options.allow_encoded_slashes => {
                            return Err(PathError::EncodedSlash)
                        }
                        _ => {}
                    }
                    path[w] = b'%';
                    path[w + 1] = HEX_UPPER[usize::from(hi)];
                    path[w + 2] = HEX_UPPER[usize::from(lo)];
                    w += 3;
                }
                _ => {
                    path[w] = b;
                    w += 1;
                    r += 1;
                }
            }
        }
        let last = r >= len;
        // Skip the `/` that ended the segment.
        r += 1;
        let segment = &path[seg_start..w];
        if segment.starts_with(b".;") || segment.starts_with(b"..;") {
            return Err(PathError::DotSegmentParams);
        }
        match segment {
            b"." => w = seg_start,
            b".." => {
                // Drop this segment and the kept one before it, if any: back to just after
                // the `/` that precedes it. path[seg_start - 1] is the `/` ending that one.
                w = match path[..seg_start - 1].iter().rposition(|&b| b == b'/') {
                    Some(slash) => slash + 1,
                    None => 1,
                };
            }
            b"" if options.merge_slashes || last => {}
            _ if last => {}
            _ => {
                path[w] = b'/';
                w += 1;
            }
        }
        if last {
            return Ok(w);
        }
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MERGE: PathOptions = PathOptions {
        merge_slashes: true,
        allow_encoded_slashes: false,
    };
    const KEEP: PathOptions = PathOptions {
        merge_slashes: false,
        allow_encoded_slashes: false,
    };
    const ALLOW: PathOptions = PathOptions {
        merge_slashes: true,
        allow_encoded_slashes: true,
    };

    fn norm(raw: &str, options: PathOptions) -> Result<String, PathError> {
        let mut out = Vec::new();
        normalize(raw.as_bytes(), options, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn dot_segments() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/open/../hs/secret", "/hs/secret"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../", "/a/"),
            ("/..", "/"),
            ("/.", "/"),
            ("/../../a", "/a"),
            ("/a/../../../b/", "/b/"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/.a/..b/...", "/.a/..b/..."),
            ("/a/.../b", "/a/.../b"),
            ("/%2e%2E/x", "/x"),
            ("/a/.%2e/b", "/b"),
            ("/a/%2e/b", "/a/b"),
        ] {
            assert_eq!(norm(raw, MERGE).as_deref(), Ok(want), "{raw}");
        }
        // RFC 3986 §5.4 normal examples, path parts (base /b/c/d;p).
        assert_eq!(norm("/b/c/./g", MERGE).as_deref(), Ok("/b/c/g"));
        assert_eq!(norm("/b/c/../../g", MERGE).as_deref(), Ok("/g"));
        assert_eq!(norm("/b/c/../../../g", MERGE).as_deref(), Ok("/g"));
    }

    #[test]
    fn escapes() {
        assert_eq!(norm("/%41%62%7e%2D%5f", MERGE).as_deref(), Ok("/Ab~-_"));
        assert_eq!(norm("/a%20b%3a", MERGE).as_deref(), Ok("/a%20b%3A"));
        assert_eq!(norm("/%c3%a9", MERGE).as_deref(), Ok("/%C3%A9"));
        for raw in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb"] {
            assert_eq!(norm(raw, MERGE), Err(PathError::EncodedSlash), "{raw}");
        }
        assert_eq!(norm("/a%2fb/%5c", ALLOW).as_deref(), Ok("/a%2Fb/%5C"));
        assert_eq!(norm("/a%00", ALLOW), Err(PathError::EncodedNul));
        for raw in ["/%", "/%4", "/%4g", "/%g4", "/a%%41", "/%%"] {
            assert_eq!(norm(raw, MERGE), Err(PathError::BadEscape), "{raw}");
        }
        assert_eq!(norm("/a\\b", ALLOW), Err(PathError::Backslash));
        for raw in ["/a/..;/b", "/a/..;x", "/.;", "/%2e%2E;x=1/b"] {
            assert_eq!(norm(raw, ALLOW), Err(PathError::DotSegmentParams), "{raw}");
        }
        assert_eq!(norm("/a;x/..", MERGE).as_deref(), Ok("/"));
        assert_eq!(
            norm("/a/...;/b;/.x;", MERGE).as_deref(),
            Ok("/a/...;/b;/.x;")
        );
        assert_eq!(norm("a", MERGE), Err(PathError::NotAbsolute));
        assert_eq!(norm("", MERGE), Err(PathError::NotAbsolute));
    }

    #[test]
    fn slashes() {
        assert_eq!(norm("//a///b//", MERGE).as_deref(), Ok("/a/b/"));
        assert_eq!(norm("//", MERGE).as_deref(), Ok("/"));
        assert_eq!(norm("/a//../b", MERGE).as_deref(), Ok("/b"));
        assert_eq!(norm("//a///b//", KEEP).as_deref(), Ok("//a///b//"));
        // Without merging an empty segment is a segment, and `..` removes it.
        assert_eq!(norm("/a//../b", KEEP).as_deref(), Ok("/a/b"));
        assert_eq!(norm("//..", KEEP).as_deref(), Ok("/"));
    }

    #[test]
    fn head_spans_follow_the_rewrite() {
        let limits = super::super::Limits {
            request_line_bytes_max: 1024,
            header_bytes_max: 4096,
            header_count_max: 16,
        };
        let mut buf = b"GET /a/../b%41?x=/../%2f HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        let mut head = RequestHead::new();
        head.parse(&buf, &limits).unwrap().unwrap();
        normalize_head(&mut head, &mut buf, MERGE).unwrap();
        assert_eq!(head.path.get(&buf), b"/bA");
        assert_eq!(head.query.unwrap().get(&buf), b"x=/../%2f");
        assert_eq!(head.target.get(&buf), b"/bA?x=/../%2f");
        assert_eq!(head.header(&buf, "host"), Some(&b"h"[..]));

        let mut buf = b"GET http://h:1/./a//b HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        head.parse(&buf, &limits).unwrap().unwrap();
        normalize_head(&mut head, &mut buf, MERGE).unwrap();
        assert_eq!(head.path.get(&buf), b"/a/b");
        assert_eq!(head.target.get(&buf), b"http://h:1/a/b");
        assert_eq!(head.host.unwrap().get(&buf), b"h:1");
        assert_eq!(head.query, None);

        let mut buf = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        head.parse(&buf, &limits).unwrap().unwrap();
        normalize_head(&mut head, &mut buf, MERGE).unwrap();
        assert_eq!(head.target.get(&buf), b"*");
    }

    /// A tiny deterministic generator, as in the codec's other tests: no dependency, and a
    /// failure replays exactly.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    const ALL_OPTIONS: [PathOptions; 4] = [
        MERGE,
        KEEP,
        ALLOW,
        PathOptions {
            merge_slashes: false,
            allow_encoded_slashes: true,
        },
    ];

    /// Normalised paths are a fixed point, never longer than their input, free of dot
    /// segments (and of `//` when merging); the cheap test never passes a path that the
    /// rewrite would change. Paths are built from the pieces that matter: separators, dots,
    /// escapes of interesting bytes (valid and not), letters.
    #[test]
    fn normal_form_is_a_fixed_point() {
        let pieces: [&[u8]; 20] = [
            b"/", b"/", b".", b"..", b"a", b"Z", b"%2e", b"%2E", b"%41", b"%7e", b"%2f", b"%5C",
            b"%20", b"%c3", b"%00", b"%", b"%g", b"\\", b"-", b";",
        ];
        let mut next = xorshift(14);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut raw = b"/".to_vec();
            for _ in 0..next() % 16 {
                raw.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            for options in ALL_OPTIONS {
                check(&raw, options, &mut accepted);
            }
        }
        assert!(accepted > 10_000, "only {accepted} paths accepted");
    }

    /// Arbitrary bytes: never a panic, and the same properties whenever a path is accepted.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut next = xorshift(5);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut raw: Vec<u8> = (0..next() % 24).map(|_| next() as u8).collect();
            if next() % 2 == 0 {
                raw.insert(0, b'/');
            }
            for options in ALL_OPTIONS {
                check(&raw, options, &mut accepted);
            }
        }
        assert!(accepted > 1_000, "only {accepted} paths accepted");
    }

    fn check(raw: &[u8], options: PathOptions, accepted: &mut usize) {
        if raw.first() == Some(&b'/') && is_normal_fast(raw, options.merge_slashes) {
            let mut copy = raw.to_vec();
            assert_eq!(rewrite(&mut copy, options), Ok(raw.len()), "{raw:?}");
            assert_eq!(copy, raw, "fast path passed a path the rewrite changes");
        }
        let mut once = Vec::new();
        if normalize(raw, options, &mut once).is_err() {
            return;
        }
        *accepted += 1;
        let shown = String::from_utf8_lossy(&once).into_owned();
        assert!(once.len() <= raw.len(), "{shown}");
        assert_eq!(once.first(), Some(&b'/'), "{shown}");
        let mut twice = Vec::new();
        assert_eq!(normalize(&once, options, &mut twice), Ok(()), "{shown}");
        assert_eq!(twice, once, "not a fixed point: {shown}");
        for segment in once.split(|&b| b == b'/').skip(1) {
            assert!(segment != b"." && segment != b"..", "{shown}");
        }
        if options.merge_slashes {
            assert!(!once.windows(2).any(|w| w == b"//"), "{shown}");
        }
    }
}
