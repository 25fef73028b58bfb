//! A route's `path` or `path_prefix` in the normal form requests are routed by. The engine
//! normalises every request path (RFC 3986 §6.2.2, §5.2.4: dot-segments resolved, unreserved
//! escapes decoded, other escapes in upper-case hex) before the router sees it, so a pattern
//! that is not in that form can never match: it is refused here, with the form to write.
//! Runs on the control side only.

use super::fail;
use crate::locate::{Document, FieldPath, Target};
use crate::ConfigError;

/// Checks the literal segments of `path` (the route's `field` at `at`, already known to
/// start with `/`); `{param}` segments are the router's and pass.
pub(super) fn check_normal_form(
    doc: &Document<'_>,
    at: &FieldPath,
    field: &str,
    path: &str,
    allow_encoded_slashes: bool,
) -> Result<(), ConfigError> {
    for segment in path.split('/').skip(1) {
        if let Some((message, hint)) = segment_problem(segment, allow_encoded_slashes) {
            return fail(
                doc,
                at,
                Target::Value,
                format!("{field} {path:?}: {message}, so no request can match it"),
                &hint,
            );
        }
    }
    Ok(())
}

/// What keeps `segment` out of the normal form, and how to write it instead.
fn segment_problem(segment: &str, allow_encoded_slashes: bool) -> Option<(String, String)> {
    if segment == "." || segment == ".." {
        return Some((
            format!("the segment {segment:?} is resolved away in every request path"),
            "write the path the dot-segment resolves to".to_owned(),
        ));
    }
    if segment.starts_with(".;") || segment.starts_with("..;") {
        return Some((
            format!("a request path with the segment {segment:?} is refused (400)"),
            "servlet containers read it as a dot-segment; name the resource another way".to_owned(),
        ));
    }
    if segment.contains('\\') {
        return Some((
            "a request path with `\\` is refused (400)".to_owned(),
            "use `/` between segments".to_owned(),
        ));
    }
    if let Some(c) = segment.chars().find(|c| !c.is_ascii()) {
        let mut utf8 = [0; 4];
        let escaped: String = c
            .encode_utf8(&mut utf8)
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect();
        return Some((
            format!("{c:?} is not allowed in a request target"),
            format!("percent-encode it as UTF-8: {escaped}"),
        ));
    }
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'%') {
        let at = i + offset;
        let escape = segment.get(at..at + 3).unwrap_or(&segment[at..]);
        let Some(byte) = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        else {
            return Some((
                format!("{escape:?} is not a percent-encoded byte (a request with one is refused)"),
                "write a literal `%` as %25".to_owned(),
            ));
        };
        let upper = format!("%{byte:02X}");
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            return Some((
                format!(
                    "{escape} is decoded to {:?} in every request path",
                    byte as char
                ),
                format!("write {:?} instead of {escape}", byte as char),
            ));
        }
        match byte {
            0 => {
                return Some((
                    "a request path with %00 is refused (400)".to_owned(),
                    "remove it".to_owned(),
                ))
            }
            b'/' | b'\\' if !allow_encoded_slashes => {
                return Some((
                    format!("a request path with {upper} is refused (400)"),
                    "set allow_encoded_slashes = true in [server] to route encoded slashes"
                        .to_owned(),
                ))
            }
            _ => {}
        }
        if escape != upper {
            return Some((
                format!("{escape} is written {upper} in every request path"),
                format!("write {upper}"),
            ));
        }
        i = at + 3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::segment_problem;

    #[test]
    fn normal_segments_pass() {
        for segment in [
            "", "api", "a%20b", "%C3%A9", "{id}", "...", ".a", "a..b", "%25",
        ] {
            assert_eq!(segment_problem(segment, false), None, "{segment}");
        }
        assert_eq!(segment_problem("a%2Fb%5C", true), None);
    }

    #[test]
    fn segments_no_request_can_match_are_refused() {
        for segment in [
            ".",
            "..",
            "..;x",
            ".;",
            "a\\b",
            "caf\u{e9}",
            "%41",
            "%2e",
            "%7E",
            "%2f",
            "%2F",
            "%5C",
            "%00",
            "%3a",
            "%",
            "%4",
            "%zz",
            "a%",
        ] {
            assert!(segment_problem(segment, false).is_some(), "{segment}");
        }
        assert!(segment_problem("%2f", true).is_some(), "lower-case hex");
        assert!(segment_problem("%00", true).is_some());
    }
}
