//! The Json, Slow and Flaky modes' answer: a JSON description of the request as the origin
//! saw it, and the query parameters that shape the answer.
//!
//! The description is written straight into the connection's scratch buffer while the head is
//! at hand: no `String` per header, no serde round trip. Header values that are not UTF-8
//! (obs-text) are read as Latin-1 so the output is always valid JSON.

use std::io::Write;

use super::conn::parse_decimal;

/// Query parameters of a Json request (RFC 3986 §3.4 query, `key=value` joined by `&`;
/// unknown keys are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Query {
    /// `status=NNN`, 200..=599; default 200.
    pub status: u16,
    /// `bytes=N`: answer N bytes of filler text instead of the description.
    pub bytes: Option<u64>,
    /// `chunked=1`: chunked framing.
    pub chunked: bool,
    /// `close=1`: close-delimited body, then close the connection.
    pub close: bool,
}

impl Query {
    /// None when a known parameter has a bad value.
    pub fn parse(target: &str) -> Option<Query> {
        let mut query = Query {
            status: 200,
            bytes: None,
            chunked: false,
            close: false,
        };
        let Some((_, params)) = target.split_once('?') else {
            return Some(query);
        };
        for param in params.split('&') {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key {
                "status" => {
                    let status = parse_decimal(value.as_bytes())?;
                    if !(200..=599).contains(&status) {
                        return None;
                    }
                    query.status = status as u16;
                }
                "bytes" => query.bytes = Some(parse_decimal(value.as_bytes())?),
                "chunked" => query.chunked = parse_flag(value)?,
                "close" => query.close = parse_flag(value)?,
                _ => {}
            }
        }
        Some(query)
    }
}

fn parse_flag(value: &str) -> Option<bool> {
    match value {
        "1" | "true" | "" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Writes the description up to and including `"body_bytes":`, which is known only once the
/// body has been read; [`write_suffix`] finishes it.
pub(super) fn write_prefix(
    out: &mut Vec<u8>,
    origin: &str,
    method: &str,
    target: &str,
    http10: bool,
    headers: &[httparse::Header<'_>],
) {
    out.extend_from_slice(b"{\"origin\":");
    write_string(out, origin.as_bytes());
    out.extend_from_slice(b",\"method\":");
    write_string(out, method.as_bytes());
    out.extend_from_slice(b",\"target\":");
    write_string(out, target.as_bytes());
    out.extend_from_slice(if http10 {
        b",\"version\":\"HTTP/1.0\",\"headers\":["
    } else {
        b",\"version\":\"HTTP/1.1\",\"headers\":["
    });
    for (i, header) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        write_string(out, header.name.as_bytes());
        out.push(b',');
        write_string(out, header.value);
        out.push(b']');
    }
    out.extend_from_slice(b"],\"body_bytes\":");
}

pub(super) fn write_suffix(out: &mut Vec<u8>, body_bytes: u64) {
    // Writes into a Vec cannot fail.
    let _ = write!(out, "{body_bytes}}}");
}

/// Writes a JSON string (RFC 8259 §7); bytes that are not UTF-8 are read as Latin-1.
fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    match std::str::from_utf8(bytes) {
        Ok(text) => text.chars().for_each(|c| write_char(out, c)),
        Err(_) => bytes.iter().for_each(|&b| write_char(out, char::from(b))),
    }
    out.push(b'"');
}

fn write_char(out: &mut Vec<u8>, c: char) {
    match c {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\t' => out.extend_from_slice(b"\\t"),
        c if u32::from(c) < 0x20 => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
        c => {
            let mut utf8 = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_shape_the_answer() {
        let query = Query::parse("/x?a=1&status=404&bytes=10&chunked=1&close").unwrap();
        assert_eq!(
            query,
            Query {
                status: 404,
                bytes: Some(10),
                chunked: true,
                close: true
            }
        );
        assert_eq!(Query::parse("/plain").unwrap().status, 200);
        assert!(Query::parse("/x?status=99").is_none());
        assert!(Query::parse("/x?status=600").is_none());
        assert!(Query::parse("/x?bytes=-1").is_none());
        assert!(Query::parse("/x?chunked=yes").is_none());
    }

    #[test]
    fn description_is_valid_json_for_any_header_bytes() {
        let headers = [
            httparse::Header {
                name: "Host",
                value: b"example.com",
            },
            httparse::Header {
                name: "X-Odd",
                value: b"quote\" back\\ tab\t latin\xe9",
            },
        ];
        let mut out = Vec::new();
        write_prefix(&mut out, "users", "POST", "/a?b=c", false, &headers);
        write_suffix(&mut out, 42);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["origin"], "users");
        assert_eq!(value["method"], "POST");
        assert_eq!(value["target"], "/a?b=c");
        assert_eq!(value["version"], "HTTP/1.1");
        assert_eq!(value["headers"][0][1], "example.com");
        assert_eq!(value["headers"][1][1], "quote\" back\\ tab\t latin\u{e9}");
        assert_eq!(value["body_bytes"], 42);
    }
}
