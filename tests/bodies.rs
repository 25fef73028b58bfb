//! 10 MiB bodies both ways, with Content-Length and chunked framing, checked byte for byte,
//! while the gateway's resident memory is sampled: bodies stream through fixed buffers, so
//! RSS must not grow by anything near the body size.

mod common;

use std::time::Duration;

use common::*;

const BODY_BYTES: usize = 10 * MIB;
/// Allowed RSS growth during one transfer, in KiB.
const RSS_GROWTH_MAX_KIB: u64 = 8 * 1024;

fn gateway_for(o: &Origin) -> Gateway {
    let config = format!(
        "{}{}{}",
        server_toml(1, "body_bytes_max = 16777216\nbody_read_timeout_ms = 30000"),
        upstream_toml(
            "o",
            &[o.addr()],
            "response_header_timeout_ms = 30000\nidle_read_timeout_ms = 30000"
        ),
        route_toml("all", "path_prefix = \"/\"", "o")
    );
    start_gateway(&config)
}

/// RSS of the gateway after one small exchange (so lazily built state exists).
fn warm_baseline(gw: &Gateway, warm: &str) -> u64 {
    let mut c = gw.connect();
    c.send(warm.as_bytes());
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "warm-up: {:?}", resp.body_text());
    std::thread::sleep(Duration::from_millis(50));
    get_rss_kib(gw.pid())
}

fn assert_rss_bounded(what: &str, baseline: u64, peak: u64, samples: usize) {
    eprintln!("{what}: RSS {baseline} KiB before, {peak} KiB peak, {samples} samples");
    assert!(samples >= 2, "{what}: RSS not sampled");
    assert!(
        peak.saturating_sub(baseline) < RSS_GROWTH_MAX_KIB,
        "{what}: gateway RSS grew from {baseline} KiB to {peak} KiB during a {} MiB transfer \
         (limit {RSS_GROWTH_MAX_KIB} KiB): the body was buffered",
        BODY_BYTES / MIB
    );
}

fn assert_same_body(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: body differs: got {} bytes (fnv {:x}), want {} bytes (fnv {:x}); first \
             difference at {first_diff:?}",
            got.len(),
            checksum(got),
            want.len(),
            checksum(want)
        );
    }
}

/// Uploads `head` + `body` (written on a thread in odd-sized pieces) and reads the response
/// concurrently, sampling the gateway's RSS throughout.
/// `origin` is the origin behind the gateway; its counters go into the failure message.
fn upload(gw: &Gateway, origin: &Origin, head: String, body: Vec<u8>) -> (Response, u64, usize) {
    let mut c = gw.connect();
    c.send(head.as_bytes());
    let sampler = RssSampler::start(gw.pid());
    let writer = write_in_background(c.stream.try_clone().unwrap(), body, 100_003);
    let resp = c.try_read_response(false);
    let (peak, samples) = sampler.stop();
    if resp.is_err() {
        // Unblock the writer if the exchange is stuck.
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    }
    let written = writer.join().unwrap();
    let resp = resp.unwrap_or_else(|e| {
        panic!(
            "upload of {} MiB: {e}\n  writer: {written:?}; the origin received {} body bytes so far.\n  \
             An origin that answers while the body still arrives (Echo) needs the gateway to \
             read the upstream response while it writes the request body; when it does not, \
             both sides block on full socket buffers.",
            BODY_BYTES / MIB,
            origin.body_bytes_received()
        )
    });
    written.unwrap_or_else(|e| panic!("writing the body failed: {e}"));
    (resp, peak, samples)
}

#[test]
fn upload_10mib_content_length_echoed() {
    let o = origin("echo", Mode::Echo);
    let gw = gateway_for(&o);
    let baseline = warm_baseline(
        &gw,
        "POST /warm HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nwarm",
    );
    let body = pattern(BODY_BYTES);
    let head = format!("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {BODY_BYTES}\r\n\r\n");
    let (resp, peak, samples) = upload(&gw, &o, head, body.clone());
    assert_eq!(resp.status, 200);
    assert!(
        !resp.chunked,
        "a Content-Length request is echoed with Content-Length"
    );
    assert_same_body("CL upload echo", &resp.body, &body);
    assert_eq!(o.body_bytes_received(), 4 + BODY_BYTES as u64);
    assert_rss_bounded("CL upload", baseline, peak, samples);
}

#[test]
fn upload_10mib_chunked_echoed() {
    let o = origin("echo", Mode::Echo);
    let gw = gateway_for(&o);
    let baseline = warm_baseline(
        &gw,
        "POST /warm HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwarm\r\n0\r\n\r\n",
    );
    let body = pattern(BODY_BYTES);
    // Chunk sizes that do not line up with any buffer size.
    let framed = chunked_encode(&body, &[1, 7000, 65_537, 300_000, 16_384, 123_457]);
    let head = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
    let (resp, peak, samples) = upload(&gw, &o, head, framed);
    assert_eq!(resp.status, 200);
    assert!(resp.chunked, "a chunked request is echoed chunked");
    assert_same_body("chunked upload echo", &resp.body, &body);
    assert_eq!(o.body_bytes_received(), 4 + BODY_BYTES as u64);
    assert_rss_bounded("chunked upload", baseline, peak, samples);
}

/// Uploads to a Json origin, which reads the whole body before it answers: the memory bound
/// and the byte count, without the full-duplex exchange an echo needs.
#[test]
fn upload_10mib_to_a_reading_origin() {
    let o = origin("json", Mode::Json);
    let gw = gateway_for(&o);
    let baseline = warm_baseline(&gw, "GET /warm HTTP/1.1\r\nHost: a\r\n\r\n");
    let body = pattern(BODY_BYTES);
    let head = format!("POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: {BODY_BYTES}\r\n\r\n");
    let (resp, peak, samples) = upload(&gw, &o, head, body.clone());
    assert_eq!(resp.status, 200, "{:?}", resp.body_text());
    assert_eq!(Seen::from_response(&resp).body_bytes, BODY_BYTES as u64);
    assert_rss_bounded("CL upload to Json", baseline, peak, samples);
    let framed = chunked_encode(&body, &[65_536, 3, 200_000]);
    let head = "POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
    let (resp, peak, samples) = upload(&gw, &o, head, framed);
    assert_eq!(resp.status, 200, "{:?}", resp.body_text());
    assert_eq!(Seen::from_response(&resp).body_bytes, BODY_BYTES as u64);
    assert_rss_bounded("chunked upload to Json", baseline, peak, samples);
    assert_eq!(o.body_bytes_received(), 2 * BODY_BYTES as u64);
}

#[test]
fn download_10mib_content_length() {
    let o = origin_with("fixed", Mode::Fixed, |c| c.body_bytes = BODY_BYTES);
    let gw = gateway_for(&o);
    // Every Fixed response is 10 MiB, so the baseline is taken before any request.
    let baseline = get_rss_kib(gw.pid());
    let mut c = gw.connect();
    let sampler = RssSampler::start(gw.pid());
    c.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
    let resp = c.read_response();
    let (peak, samples) = sampler.stop();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-origin"), Some("fixed"));
    assert!(!resp.chunked, "Content-Length response kept its framing");
    assert_eq!(resp.body.len(), BODY_BYTES, "body length");
    assert_rss_bounded("CL download", baseline, peak, samples);
    // The same body again on the same connections.
    c.send(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n");
    let again = c.read_response();
    assert_eq!(again.body.len(), BODY_BYTES);
    assert_same_body("second download", &again.body, &resp.body);
    assert_eq!(o.connections_accepted(), 1, "upstream connection reused");
}

#[test]
fn download_10mib_chunked() {
    let o = origin("json", Mode::Json);
    let gw = gateway_for(&o);
    let baseline = warm_baseline(
        &gw,
        "GET /warm?bytes=100&chunked=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let mut c = gw.connect();
    c.send(format!("GET /big?bytes={BODY_BYTES}&chunked=1 HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let sampler = RssSampler::start(gw.pid());
    let resp = c.read_response();
    let (peak, samples) = sampler.stop();
    assert_eq!(resp.status, 200);
    assert!(resp.chunked, "chunked response kept its framing");
    assert_eq!(resp.body.len(), BODY_BYTES, "body length");
    assert_rss_bounded("chunked download", baseline, peak, samples);
    // The connection is still in step: a next request works.
    c.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let next = c.read_response();
    assert_eq!(Seen::from_response(&next).target, "/next");
}
