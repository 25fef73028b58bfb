//! Upstream response head parser ([`ResponseHead::parse`]) on arbitrary bytes, for a GET and
//! for a HEAD request.
//!
//! Properties, for every input:
//! - never panics;
//! - an accepted head is unambiguous: CRLF-only, no NUL, a status in 100..=599 other than
//!   101, and framing that agrees with RFC 9112 §6.3 re-derived here from the raw fields
//!   (no body for HEAD, 1xx, 204, 304; chunked wins and forbids reuse; equal
//!   Content-Length values; else until close, never kept alive); spans within the head;
//! - prefix-stable: each prefix of an accepted head is incomplete, and the bytes after the
//!   head do not change it;
//! - round trip: the head as relayed ([`encode_response_head`]) parses back to the same
//!   status, framing and relayed fields; when [`relays_verbatim`] says the head may go out
//!   as received, the relayed encoding has exactly its fields.
#![cfg_attr(fuzzing, no_main)]

use coregate_engine::http::{
    encode_response_head, relays_verbatim, FieldEdits, HeaderKind, Method, ResponseBody,
    ResponseHead, HEADER_COUNT_LIMIT,
};
use coregate_fuzz::{assert_no_nul_and_crlf_only, cut_points, list_elements, Rng};

/// Above what fuzz inputs reach (4 KiB), so heads are judged on their syntax.
const HEADER_BYTES_MAX: usize = 16 * 1024;

pub fn check(data: &[u8]) {
    for method in [Method::Get, Method::Head] {
        check_for(data, method);
    }
}

fn check_for(data: &[u8], method: Method) {
    let mut head = ResponseHead::new();
    let Ok(Some(head_len)) = head.parse(data, method, HEADER_BYTES_MAX) else {
        return;
    };
    assert_eq!(head_len, head.head_len);
    assert!(head_len <= data.len());
    let raw = &data[..head_len];
    unambiguous(raw, &head, method);

    let mut again = ResponseHead::new();
    assert_eq!(
        again.parse(raw, method, HEADER_BYTES_MAX),
        Ok(Some(head_len))
    );
    assert_eq!(summary(raw, &again), summary(data, &head));
    let mut rng = Rng::from_input(data);
    for cut in cut_points(head_len, &mut rng) {
        assert_eq!(
            again.parse(&raw[..cut], method, HEADER_BYTES_MAX),
            Ok(None),
            "prefix of {cut} bytes of an accepted head"
        );
    }

    round_trip(raw, &head, method);
}

#[derive(Debug, PartialEq, Eq)]
struct Summary<'a> {
    status: u16,
    version_minor: u8,
    reason: &'a [u8],
    body: ResponseBody,
    keep_alive: bool,
    fields: Vec<(&'a [u8], &'a [u8], bool)>,
}

fn summary<'a>(buf: &'a [u8], head: &ResponseHead) -> Summary<'a> {
    Summary {
        status: head.status,
        version_minor: head.version_minor,
        reason: head.reason.get(buf),
        body: head.body,
        keep_alive: head.keep_alive,
        fields: head
            .headers
            .iter()
            .map(|f| (f.name.get(buf), f.value.get(buf), f.hop_by_hop))
            .collect(),
    }
}

fn unambiguous(raw: &[u8], head: &ResponseHead, method: Method) {
    assert_no_nul_and_crlf_only(raw);
    assert!(raw.starts_with(b"HTTP/1."), "bytes before the status line");
    assert!(raw.ends_with(b"\r\n\r\n"));
    assert!((100..=599).contains(&head.status) && head.status != 101);
    for f in &head.headers {
        for s in [f.name, f.value] {
            assert!(s.start <= s.end && s.end as usize <= raw.len(), "{s:?}");
        }
    }
    let reason = head.reason;
    assert!(reason.start <= reason.end && reason.end as usize <= raw.len());

    let lengths = list_elements(raw, &head.headers, "content-length");
    let mut codings = list_elements(raw, &head.headers, "transfer-encoding");
    codings.retain(|c| !c.is_empty());
    for value in &lengths {
        assert!(!value.is_empty() && value.iter().all(u8::is_ascii_digit));
    }
    let length = lengths.first().map(|v| {
        let n = std::str::from_utf8(v).unwrap().parse::<u64>().unwrap();
        for other in &lengths {
            assert_eq!(std::str::from_utf8(other).unwrap().parse::<u64>(), Ok(n));
        }
        n
    });
    let chunked = !codings.is_empty();
    if chunked {
        assert_eq!(head.version_minor, 1, "Transfer-Encoding in HTTP/1.0");
        assert!(
            codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"),
            "codings {codings:?}"
        );
    }
    let no_body = method == Method::Head
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304;
    let want = if no_body {
        ResponseBody::None
    } else if chunked {
        ResponseBody::Chunked
    } else if let Some(n) = length {
        ResponseBody::Length(n)
    } else {
        ResponseBody::UntilClose
    };
    assert_eq!(head.body, want);
    if head.keep_alive {
        assert!(
            head.body != ResponseBody::UntilClose,
            "kept alive until close"
        );
        assert!(
            !(chunked && length.is_some()),
            "kept alive with both framings"
        );
    }
}

fn round_trip(raw: &[u8], head: &ResponseHead, method: Method) {
    let edits = FieldEdits::default();
    // What the proxy does for an HTTP/1.1 client: pass chunked through, re-frame a body that
    // ends with the upstream's connection as chunked (so a cut is visible), close only when
    // the upstream asked to.
    let close = !head.keep_alive;
    let mut out = Vec::new();
    encode_response_head(raw, head, true, close, &edits, &mut out);
    // A head at the field-count limit may go out with one or two fields more (framing,
    // `Connection: close`) than the gateway itself would accept: the limit is per hop, like
    // every proxy's. Found by this target; such heads are not re-parsed.
    let fields_out = out.windows(2).filter(|w| w == b"\r\n").count() - 2;
    if fields_out > HEADER_COUNT_LIMIT {
        return;
    }
    let mut back = ResponseHead::new();
    assert_eq!(
        back.parse(&out, method, usize::MAX),
        Ok(Some(out.len())),
        "relayed head does not parse: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(back.status, head.status);
    assert_eq!(back.version_minor, 1);
    let reason = head.reason.get(raw);
    if !reason.is_empty() {
        assert_eq!(back.reason.get(&out), reason);
    }
    match head.body {
        // A kept Content-Length (HEAD, 304) still means no body.
        ResponseBody::None | ResponseBody::Length(_) | ResponseBody::Chunked => {
            assert_eq!(back.body, head.body);
        }
        ResponseBody::UntilClose => assert_eq!(back.body, ResponseBody::Chunked),
    }
    assert_eq!(back.keep_alive, !close);

    let framing = |kind: HeaderKind| {
        matches!(
            kind,
            HeaderKind::ContentLength | HeaderKind::TransferEncoding | HeaderKind::Connection
        )
    };
    let relayed = |buf: &[u8], h: &ResponseHead| -> Vec<(Vec<u8>, Vec<u8>)> {
        h.headers
            .iter()
            .filter(|f| !f.hop_by_hop && !framing(f.kind))
            .map(|f| (f.name.get(buf).to_vec(), f.value.get(buf).to_vec()))
            .collect()
    };
    assert_eq!(
        relayed(&out, &back),
        relayed(raw, head),
        "relayed fields differ"
    );

    if relays_verbatim(raw, head, close, &edits) {
        assert!(!close && head.version_minor == 1);
        // The same fields; only Content-Length moves to the end and takes its usual case.
        let fields = |buf: &[u8], h: &ResponseHead| {
            let mut all: Vec<(Vec<u8>, Vec<u8>)> = h
                .headers
                .iter()
                .map(|f| {
                    (
                        f.name.get(buf).to_ascii_lowercase(),
                        f.value.get(buf).to_vec(),
                    )
                })
                .collect();
            all.sort();
            all
        };
        assert_eq!(fields(&out, &back), fields(raw, head));
    }
}

coregate_fuzz::fuzz_target!(check);
