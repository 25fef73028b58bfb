//! A 10 MiB body echoed by the fixture origin, chunked and with Content-Length, in a process of
//! its own so the resident-memory peak it checks is this test's alone: the origin must stream,
//! not hold the body.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use coregate_loadtest::chunked::ChunkedDecoder;
use coregate_loadtest::origin::{Mode, Origin, OriginConfig};

const BODY_BYTES: usize = 10 * 1024 * 1024;
const PIECE_BYTES: usize = 64 * 1024;
/// Growth of the peak resident set allowed while 10 MiB passes through: a fraction of it.
const PEAK_GROWTH_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Byte `i` of the body: a pattern that catches reordered or lost pieces.
fn body_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// A field of /proc/self/status in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Sends the body from a thread of its own (the echo streams back while it is sent) and
/// checks the echoed bytes as they arrive; returns once the whole echo is read.
fn echo(origin: &Origin, chunked: bool) {
    let mut stream = TcpStream::connect(origin.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {BODY_BYTES}")
        };
        let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n");
        writer.write_all(head.as_bytes()).unwrap();
        let mut piece = vec![0; PIECE_BYTES];
        for start in (0..BODY_BYTES).step_by(PIECE_BYTES) {
            for (offset, b) in piece.iter_mut().enumerate() {
                *b = body_byte(start + offset);
            }
            if chunked {
                writer
                    .write_all(format!("{PIECE_BYTES:x}\r\n").as_bytes())
                    .unwrap();
            }
            writer.write_all(&piece).unwrap();
            if chunked {
                writer.write_all(b"\r\n").unwrap();
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").unwrap();
        }
    });

    // Read the head, then the body as it streams, without keeping it.
    let mut buf = Vec::new();
    let mut piece = vec![0; PIECE_BYTES];
    let head_len = loop {
        let n = stream.read(&mut piece).unwrap();
        assert!(n > 0, "closed before the head");
        buf.extend_from_slice(&piece[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8(buf[..head_len].to_vec()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if chunked {
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    } else {
        assert!(
            head.contains(&format!("Content-Length: {BODY_BYTES}")),
            "{head}"
        );
    }
    buf.drain(..head_len);

    let mut decoder = ChunkedDecoder::new();
    let mut received = 0;
    loop {
        let mut input = &buf[..];
        while !input.is_empty() && !decoder.is_done() {
            let data = if chunked {
                let step = decoder.decode(input).unwrap();
                let data = &input[step.data.clone()];
                input = &input[step.consumed..];
                data
            } else {
                let data = input;
                input = &[];
                data
            };
            for &b in data {
                assert_eq!(b, body_byte(received), "byte {received}");
                received += 1;
            }
        }
        buf.clear();
        let finished = if chunked {
            decoder.is_done()
        } else {
            received == BODY_BYTES
        };
        if finished {
            break;
        }
        let n = stream.read(&mut piece).unwrap();
        assert!(n > 0, "closed after {received} bytes");
        buf.extend_from_slice(&piece[..n]);
    }
    assert_eq!(received, BODY_BYTES);
    sender.join().unwrap();
}

#[test]
fn ten_mib_echo_streams_with_bounded_memory() {
    let origin = Origin::start(OriginConfig::new("echo", Mode::Echo)).unwrap();
    // Warm up allocations that happen once (thread stacks, runtime rings, buffer pools).
    echo(&origin, true);
    // Writing 5 to clear_refs resets the peak (VmHWM) to the current resident set.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = proc_status_bytes("VmRSS:");
    echo(&origin, true);
    echo(&origin, false);
    let peak = proc_status_bytes("VmHWM:");
    assert!(
        peak.saturating_sub(before) < PEAK_GROWTH_MAX_BYTES,
        "resident peak grew by {} bytes while echoing",
        peak.saturating_sub(before)
    );
    assert_eq!(origin.body_bytes_received(), 3 * BODY_BYTES as u64);
}
