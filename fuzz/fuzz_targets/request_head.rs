//! Request head parser ([`RequestHead::parse`]) on arbitrary bytes.
//!
//! Properties, for every input:
//! - never panics, with generous limits and with small ones;
//! - limits are monotonic: a head accepted under small limits is accepted, identically,
//!   under generous ones;
//! - an accepted head is unambiguous: CRLF-only line endings, no NUL, its framing agrees with
//!   its Content-Length and Transfer-Encoding fields read independently here, at most one
//!   Host; every span lies within `buf[..head_len]`;
//! - prefix-stable: each prefix of an accepted head is merely incomplete (`Ok(None)`), and
//!   the bytes after the head do not change it;
//! - round trip: the head as forwarded ([`encode_request_head`]) parses back to the same
//!   method, target, host, framing and forwarded fields (names and values, in order).
#![cfg_attr(fuzzing, no_main)]

use std::net::{IpAddr, Ipv4Addr};

use coregate_engine::http::{
    encode_request_head, BodyFraming, ClientAddr, FieldEdits, Forward, HeaderKind, Limits,
    RequestHead,
};
use coregate_fuzz::{assert_no_nul_and_crlf_only, cut_points, list_elements, values, Rng};

/// Limits no fuzz input reaches (inputs are capped at 4 KiB), so every head is judged on
/// its syntax; `SMALL` exercises the limit paths.
const GENEROUS: Limits = Limits {
    request_line_bytes_max: 8 * 1024,
    header_bytes_max: 16 * 1024,
    header_count_max: 100,
};

const SMALL: Limits = Limits {
    request_line_bytes_max: 40,
    header_bytes_max: 120,
    header_count_max: 4,
};

/// For re-parsing what the gateway wrote: it adds a few fields and may lengthen the head.
const REPARSE: Limits = Limits {
    request_line_bytes_max: 64 * 1024,
    header_bytes_max: 64 * 1024,
    header_count_max: 256,
};

pub fn check(data: &[u8]) {
    let mut head = RequestHead::new();
    let generous = head.parse(data, &GENEROUS);

    let mut small = RequestHead::new();
    if let Ok(Some(n)) = small.parse(data, &SMALL) {
        assert_eq!(generous, Ok(Some(n)), "accepted under small limits only");
        assert_eq!(summary(data, &small), summary(data, &head));
    }

    let Ok(Some(head_len)) = generous else {
        return;
    };
    assert_eq!(head_len, head.head_len);
    assert!(head_len <= data.len());
    let raw = &data[..head_len];

    unambiguous(raw, &head);
    spans_in_bounds(&head, head_len);

    // The bytes after the head do not change it; its prefixes are incomplete.
    let mut again = RequestHead::new();
    assert_eq!(again.parse(raw, &GENEROUS), Ok(Some(head_len)));
    assert_eq!(summary(raw, &again), summary(data, &head));
    let mut rng = Rng::from_input(data);
    for cut in cut_points(head_len, &mut rng) {
        assert_eq!(
            again.parse(&raw[..cut], &GENEROUS),
            Ok(None),
            "prefix of {cut} bytes of an accepted head"
        );
    }

    round_trip(raw, &head);
}

/// What a head means, as owned values, to compare heads parsed from different buffers.
#[derive(Debug, PartialEq, Eq)]
struct Summary<'a> {
    method: &'a [u8],
    target: &'a [u8],
    path: &'a [u8],
    query: Option<&'a [u8]>,
    version_minor: u8,
    host: Option<&'a [u8]>,
    body: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    fields: Vec<(&'a [u8], &'a [u8], bool)>,
}

fn summary<'a>(buf: &'a [u8], head: &RequestHead) -> Summary<'a> {
    Summary {
        method: head.method_span.get(buf),
        target: head.target.get(buf),
        path: head.path.get(buf),
        query: head.query.map(|q| q.get(buf)),
        version_minor: head.version_minor,
        host: head.host.map(|h| h.get(buf)),
        body: head.body,
        keep_alive: head.keep_alive,
        expect_continue: head.expect_continue,
        upgrade: head.upgrade,
        fields: head
            .headers
            .iter()
            .map(|f| (f.name.get(buf), f.value.get(buf), f.hop_by_hop))
            .collect(),
    }
}

/// RFC 9112 framing and line rules, re-derived from the raw fields without the codec.
fn unambiguous(raw: &[u8], head: &RequestHead) {
    assert_no_nul_and_crlf_only(raw);
    assert!(
        raw.ends_with(b"\r\n\r\n"),
        "head does not end in an empty line"
    );
    let named = |name: &'static str| values(raw, &head.headers, name);
    let hosts = named("host").count();
    assert!(hosts <= 1, "{hosts} Host fields accepted");
    assert!(
        head.version_minor == 0 || hosts == 1,
        "HTTP/1.1 without Host"
    );
    let lengths = list_elements(raw, &head.headers, "content-length");
    let mut codings = list_elements(raw, &head.headers, "transfer-encoding");
    codings.retain(|c| !c.is_empty());
    match head.body {
        BodyFraming::None => {
            assert!(lengths.is_empty() && codings.is_empty());
        }
        BodyFraming::Length(n) => {
            assert!(
                codings.is_empty(),
                "Content-Length beside Transfer-Encoding"
            );
            assert!(!lengths.is_empty());
            for value in lengths {
                assert!(!value.is_empty() && value.iter().all(u8::is_ascii_digit));
                let parsed = std::str::from_utf8(value).unwrap().parse::<u64>();
                assert_eq!(parsed, Ok(n), "Content-Length values disagree");
            }
        }
        BodyFraming::Chunked => {
            assert!(lengths.is_empty(), "Content-Length beside chunked");
            assert_eq!(head.version_minor, 1, "chunked in HTTP/1.0");
            assert!(
                codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"),
                "codings {codings:?}"
            );
        }
    }
    let path = head.path.get(raw);
    assert!(path.first() == Some(&b'/') || path == b"*", "path {path:?}");
    assert!(
        head.target.get(raw).iter().all(|&b| b < 0x80 && b != b'#'),
        "non-ASCII or fragment in target"
    );
}

fn spans_in_bounds(head: &RequestHead, head_len: usize) {
    let mut spans = vec![head.method_span, head.target, head.path];
    spans.extend(head.query);
    spans.extend(head.host);
    for f in &head.headers {
        spans.extend([f.name, f.value]);
    }
    for s in spans {
        assert!(s.start <= s.end && s.end as usize <= head_len, "{s:?}");
    }
}

/// The head as forwarded parses back to the same request.
fn round_trip(raw: &[u8], head: &RequestHead) {
    let path = head.path.get(raw);
    let path_and_query = match head.query {
        Some(q) => [path, b"?", q.get(raw)].concat(),
        None => path.to_vec(),
    };
    let client_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let fwd = Forward {
        path_and_query: &path_and_query,
        client: ClientAddr::peer(client_ip),
        proto: "https",
        default_host: b"default.test",
        edits: FieldEdits::default(),
    };
    let mut out = Vec::new();
    encode_request_head(raw, head, &fwd, &mut out);
    let mut back = RequestHead::new();
    let parsed = back.parse(&out, &REPARSE);
    assert_eq!(
        parsed,
        Ok(Some(out.len())),
        "forwarded head does not parse: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(back.method_span.get(&out), head.method_span.get(raw));
    assert_eq!(back.method, head.method);
    assert_eq!(back.target.get(&out), &path_and_query[..]);
    assert_eq!(back.path.get(&out), path);
    assert_eq!(
        back.query.map(|q| q.get(&out)),
        head.query.map(|q| q.get(raw))
    );
    assert_eq!(back.version_minor, 1);
    let host = head.host.map_or(&b"default.test"[..], |h| h.get(raw));
    assert_eq!(back.host.map(|h| h.get(&out)), Some(host));
    assert_eq!(back.body, head.body);
    assert!(back.keep_alive && !back.expect_continue && !back.upgrade);

    // The received fields that are forwarded as sent, in order.
    let regenerated = |kind: HeaderKind| {
        matches!(
            kind,
            HeaderKind::Host
                | HeaderKind::ContentLength
                | HeaderKind::TransferEncoding
                | HeaderKind::XForwardedFor
                | HeaderKind::XForwardedProto
                | HeaderKind::XForwardedHost
                | HeaderKind::XForwardedOther
                | HeaderKind::Forwarded
                | HeaderKind::XRealIp
        )
    };
    let sent: Vec<(&[u8], &[u8])> = head
        .headers
        .iter()
        .filter(|f| !f.hop_by_hop && !regenerated(f.kind))
        .map(|f| (f.name.get(raw), f.value.get(raw)))
        .collect();
    let forwarded: Vec<(&[u8], &[u8])> = back
        .headers
        .iter()
        .filter(|f| !regenerated(f.kind))
        .map(|f| (f.name.get(&out), f.value.get(&out)))
        .collect();
    assert_eq!(forwarded, sent, "forwarded fields differ");
    assert!(back
        .headers
        .iter()
        .all(|f| !f.hop_by_hop || f.kind == HeaderKind::TransferEncoding));

    // From an untrusted peer, the forwarding fields are the gateway's alone: X-Forwarded-For
    // and X-Real-IP name the peer, and Proto and Host are the gateway's.
    let client = client_ip.to_string();
    let one = |kind: HeaderKind| {
        let mut values = back
            .headers
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.value.get(&out));
        let value = values.next();
        assert!(values.next().is_none(), "{kind:?} twice");
        value
    };
    assert_eq!(one(HeaderKind::XForwardedFor), Some(client.as_bytes()));
    assert_eq!(one(HeaderKind::XRealIp), Some(client.as_bytes()));
    assert_eq!(one(HeaderKind::Forwarded), None);
    assert_eq!(one(HeaderKind::XForwardedOther), None);
    assert_eq!(one(HeaderKind::XForwardedProto), Some(&b"https"[..]));
    assert_eq!(
        one(HeaderKind::XForwardedHost),
        head.host.map(|h| h.get(raw))
    );
}

coregate_fuzz::fuzz_target!(check);
