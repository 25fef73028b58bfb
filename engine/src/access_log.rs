//! Access-log lines: one JSON object per request, formatted by the worker that served it into
//! its own buffer and handed to the control side in batches ([`crate::Report::AccessLog`]),
//! which does the file writing. A worker never touches the file, never blocks on it, and
//! formats with no allocation beyond its reused buffer.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// A worker sends its batch once it holds this many bytes (and in any case every
/// [`crate::stats::REPORT_INTERVAL_MS`]).
pub const BATCH_BYTES_MAX: usize = 64 * 1024;

/// What one line says.
pub struct Entry<'a> {
    pub time: SystemTime,
    pub client: IpAddr,
    pub method: &'a [u8],
    /// The request target as received (path and query).
    pub path: &'a [u8],
    /// The matched route, if any.
    pub route: Option<&'a str>,
    pub status: u16,
    /// The endpoint that served it, if the request went upstream.
    pub upstream: Option<SocketAddr>,
    /// From the complete request head to the end of the response.
    pub latency_us: u64,
    /// Bytes of the response written to the client, head included.
    pub bytes: u64,
}

/// Appends `entry` as one JSON line.
pub fn format_line(out: &mut Vec<u8>, entry: &Entry<'_>) {
    use std::io::Write;
    out.extend_from_slice(b"{\"time\":\"");
    rfc3339_millis(out, entry.time);
    let _ = write!(out, "\",\"client\":\"{}\",\"method\":\"", entry.client);
    json_escape(out, entry.method);
    out.extend_from_slice(b"\",\"path\":\"");
    json_escape(out, entry.path);
    out.extend_from_slice(b"\",\"route\":");
    match entry.route {
        Some(name) => {
            out.push(b'"');
            json_escape(out, name.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(out, ",\"status\":{},\"upstream\":", entry.status);
    match entry.upstream {
        Some(addr) => {
            let _ = write!(out, "\"{addr}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    let _ = writeln!(
        out,
        ",\"latency_us\":{},\"bytes\":{}}}",
        entry.latency_us, entry.bytes
    );
}

/// Escapes bytes for a JSON string: quotes, backslashes and control bytes; bytes above 0x7f
/// (which the codec rejects in request targets anyway) as `\u00XX` so the line stays valid.
fn json_escape(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
}

/// `time` as RFC 3339 UTC with milliseconds, e.g. `2026-11-28T00:45:12.123Z` (access log,
/// and the admin endpoint's load times).
pub fn rfc3339(time: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    rfc3339_millis(&mut out, time);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `time` as [`rfc3339`] does.
fn rfc3339_millis(out: &mut Vec<u8>, time: SystemTime) {
    use std::io::Write;
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_827_723_456);
        assert_eq!(rfc3339(t), "2026-11-28T01:02:03.456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn dates_convert() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn a_line_is_one_json_object() {
        let mut out = Vec::new();
        let time = UNIX_EPOCH + Duration::from_millis(1_764_290_712_123);
        format_line(
            &mut out,
            &Entry {
                time,
                client: "192.0.2.7".parse().unwrap(),
                method: b"GET",
                path: b"/a\"b\\c?d=\x01",
                route: Some("api"),
                status: 200,
                upstream: Some("127.0.0.1:9000".parse().unwrap()),
                latency_us: 321,
                bytes: 45,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"time\":\"2025-11-28T00:45:12.123Z\",\"client\":\"192.0.2.7\",\"method\":\"GET\",\
             \"path\":\"/a\\\"b\\\\c?d=\\u0001\",\"route\":\"api\",\"status\":200,\
             \"upstream\":\"127.0.0.1:9000\",\"latency_us\":321,\"bytes\":45}\n"
        );
    }
}
