//! `loadtest forward` as a real process on loopback, in front of the fixture origin: keep-alive
//! requests and responses of every size (one read, the 16 KiB scenario's, several reads each
//! way) arrive byte for byte as the origin sent them directly, an origin that closes closes the
//! client's connection too, and a refused upstream closes it unanswered; on the monoio ring,
//! on coregate's own runtime and on each raw one (`--ring`).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use coregate_loadtest::origin::{Mode, Origin, OriginConfig};

const BINARY: &str = env!("CARGO_BIN_EXE_loadtest");
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A `loadtest forward` process, killed on drop if the test did not stop it.
struct Forwarder {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Forwarder {
    /// Starts one on `ring` (a `--ring` value) on an ephemeral loopback port, read back from
    /// the line it prints.
    fn start(upstream: SocketAddr, ring: &str) -> Forwarder {
        let mut child = Command::new(BINARY)
            .args([
                "forward",
                "--listen",
                "127.0.0.1:0",
                "--ring",
                ring,
                "--upstream",
            ])
            .arg(upstream.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("forward listening on 127.0.0.1:"),
            "{line}"
        );
        assert!(
            line.trim_end()
                .ends_with(&format!(", {ring} ring), to {upstream}")),
            "{line}"
        );
        let addr = line["forward listening on ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("no address in {line:?}"));
        Forwarder {
            child,
            stdout,
            addr,
        }
    }

    /// Sends SIGTERM and checks that the process says so and exits cleanly.
    fn stop(mut self) {
        // SAFETY: kill(2) with the pid of a child we spawned and have not yet waited for.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < IO_TIMEOUT, "forwarder ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status:?}");
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "forward stopped by signal 15");
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads one Content-Length-framed response, head and body, as the raw bytes received.
fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0; 8 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(&buf).unwrap() {
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .expect("a Content-Length response");
            if buf.len() >= head + length {
                assert_eq!(buf.len(), head + length, "nothing past the response");
                return buf;
            }
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed inside a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `request` and reads its response; the request is written from another thread, so
/// that a large request and a large response can cross.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let request = request.to_vec();
    let sender = std::thread::spawn(move || writer.write_all(&request).unwrap());
    let response = read_response(stream);
    sender.join().unwrap();
    response
}

/// Reads until the peer closes; a reset counts as the close.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read failed: {e}"),
    }
    buf
}

fn request(path: &str, body_bytes: usize) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: origin.test\r\nContent-Length: {body_bytes}\r\n\r\n"
    )
    .into_bytes();
    request.extend((0..body_bytes).map(|i| b'a' + (i % 26) as u8));
    request
}

#[test]
fn forwards_keep_alive_exchanges_byte_for_byte() {
    forwards_byte_for_byte("monoio");
}

#[test]
fn coregates_own_runtime_forwards_byte_for_byte() {
    forwards_byte_for_byte("rt");
}

#[test]
fn a_raw_ring_forwards_byte_for_byte() {
    forwards_byte_for_byte("raw");
}

#[test]
fn a_raw_ring_with_registered_files_forwards_byte_for_byte() {
    forwards_byte_for_byte("raw+fixed");
}

#[test]
fn a_raw_ring_with_multishot_receives_forwards_byte_for_byte() {
    forwards_byte_for_byte("raw+multishot");
}

#[test]
fn a_raw_ring_with_both_forwards_byte_for_byte() {
    forwards_byte_for_byte("raw+fixed+multishot");
}

fn forwards_byte_for_byte(ring: &str) {
    let origin = Origin::start(OriginConfig::new("origin", Mode::Json)).unwrap();
    let forwarder = Forwarder::start(origin.addr(), ring);
    let mut direct = connect(origin.addr());
    let mut forwarded = connect(forwarder.addr);
    // Response body sizes: a description, the 16 KiB scenario's (its head and body one read of
    // the forwarder), and one several reads long; request bodies likewise, both ways at once.
    for (path, body_bytes) in [
        ("/small", 0),
        ("/?bytes=16384", 0),
        ("/?bytes=300000", 0),
        ("/upload", 16 * 1024),
        ("/upload?bytes=200000", 300_000),
        ("/again", 0),
    ] {
        let request = request(path, body_bytes);
        let expected = exchange(&mut direct, &request);
        let received = exchange(&mut forwarded, &request);
        assert!(
            received == expected,
            "{ring}: {path}: {} bytes through the forwarder, {} direct; starts {:?}",
            received.len(),
            expected.len(),
            String::from_utf8_lossy(&received[..received.len().min(200)])
        );
    }
    // One upstream connection per client connection: the direct one and the forwarded one.
    assert_eq!(origin.connections_accepted(), 2);

    // An origin that closes after its response: the client's connection closes with it.
    forwarded
        .write_all(b"GET /?bytes=20000&close=1 HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        .unwrap();
    let received = read_to_close(&mut forwarded);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let body = &received[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(body.len(), 20_000);
    forwarder.stop();
}

#[test]
fn a_refused_upstream_closes_the_client_connection() {
    // A port that was free a moment ago, with nothing listening on it.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for ring in ["monoio", "rt", "raw+fixed+multishot"] {
        let forwarder = Forwarder::start(upstream, ring);
        let mut client = connect(forwarder.addr);
        // Sent before the close arrives or after: either way nothing comes back.
        let _ = client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(read_to_close(&mut client).is_empty(), "{ring}");
        forwarder.stop();
    }
}
