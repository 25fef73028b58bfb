//! Harness for the integration tests: starts the real `coregate` binary on an ephemeral port
//! with a config written to a temporary file, talks to it over raw sockets, and parses what
//! comes back strictly enough that a framing mistake by the gateway fails the test.
//!
//! Every test starts its own gateway and fixture origins on ephemeral ports, so tests run in
//! parallel. Timeouts are generous (seconds): the suite runs on small, busy CI machines, and
//! nothing here asserts on speed.

// Each test file compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use coregate_loadtest::origin::{Mode, Origin, OriginConfig};

pub mod tls;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_coregate");
/// How long the gateway may take to print its `listening on` line.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// Longest wait for one read from the gateway before a test gives up.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`send_raw`] waits for the gateway to close a connection. Short enough that a
/// gateway which wrongly keeps connections open fails a list of cases in reasonable time.
pub const CLOSE_WAIT: Duration = Duration::from_secs(8);
/// 1 MiB.
pub const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Ports and files

/// Whether `curl` can be run. CI installs it; on a machine without it the tests that drive
/// the gateway with curl say they were skipped (the same paths are covered over raw sockets).
pub fn curl_available() -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: curl is not installed here (CI installs it)");
    }
    found
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, drop the socket), and never
/// one this test process was given before. The kernel may hand a just-released port out again;
/// two tests running at once could then start gateways on one port, and the gateways bind it
/// with SO_REUSEPORT, so after both pass their start-up check they would silently split each
/// other's connections.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// `127.0.0.1:PORT` with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A file in the temp directory, removed on drop.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    /// Writes `contents` to a fresh file whose name contains `tag`.
    pub fn new(tag: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "coregate-test-{}-{}-{}-{tag}.toml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).expect("write temp config");
        TempFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture origins

/// Starts a fixture origin with one thread on an ephemeral port.
pub fn origin(name: &str, mode: Mode) -> Origin {
    let mut cfg = OriginConfig::new(name, mode);
    cfg.threads = 1;
    Origin::start(cfg).unwrap_or_else(|e| panic!("start origin {name}: {e}"))
}

/// Starts a fixture origin after letting `tweak` adjust its config.
pub fn origin_with(name: &str, mode: Mode, tweak: impl FnOnce(&mut OriginConfig)) -> Origin {
    let mut cfg = OriginConfig::new(name, mode);
    cfg.threads = 1;
    tweak(&mut cfg);
    Origin::start(cfg).unwrap_or_else(|e| panic!("start origin {name}: {e}"))
}

/// `[upstreams.NAME]` with the given endpoints (weight 1 each) and extra `key = value` lines.
pub fn upstream_toml(name: &str, endpoints: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = endpoints
        .iter()
        .map(|a| format!("{{ address = \"{a}\", weight = 1 }}"))
        .collect();
    format!(
        "[upstreams.{name}]\nendpoints = [{}]\nconnect_timeout_ms = 2000\n{extra}\n",
        list.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// The gateway process

/// A running `coregate` child process, killed on drop.
pub struct Gateway {
    child: Child,
    /// The first listener's address.
    pub addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    _config: Option<TempFile>,
}

/// Replaces `{listen}` in `config` with a free address and runs `coregate run -c FILE`.
/// Retries with another port when the chosen one was taken in the meantime.
pub fn start_gateway(config: &str) -> Gateway {
    let mut last_error = String::new();
    for _ in 0..3 {
        let addr = free_addr();
        let text = config.replace("{listen}", &addr.to_string());
        let file = TempFile::new("gw", &text);
        let mut cmd = Command::new(BIN);
        cmd.arg("run").arg("-c").arg(file.path());
        match spawn_until_listening(cmd, addr) {
            Ok(mut gw) => {
                gw._config = Some(file);
                return gw;
            }
            Err(e) => last_error = format!("{e}\nconfig:\n{text}"),
        }
        if !last_error.contains("in use") {
            break;
        }
    }
    panic!("gateway did not start: {last_error}");
}

/// Runs `coregate demo --listen ADDR --https ADDR` on free addresses.
pub fn start_demo() -> Gateway {
    let mut last_error = String::new();
    for _ in 0..3 {
        let (addr, https) = (free_addr(), free_addr());
        let mut cmd = Command::new(BIN);
        cmd.arg("demo").arg("--listen").arg(addr.to_string());
        cmd.arg("--https").arg(https.to_string());
        match spawn_until_listening(cmd, addr) {
            Ok(gw) => return gw,
            Err(e) => last_error = e,
        }
        if !last_error.contains("in use") {
            break;
        }
    }
    panic!("demo did not start: {last_error}");
}

/// Spawns `cmd` with piped stdout/stderr and waits for `listening on http://ADDR` (or
/// `https://ADDR`, for a listener that terminates TLS).
pub fn spawn_until_listening(mut cmd: Command, addr: SocketAddr) -> Result<Gateway, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn {BIN}: {e}"))?;
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel::<String>();
    {
        let pipe = child.stdout.take().expect("stdout piped");
        let lines = stdout.clone();
        std::thread::spawn(move || {
            // Keep draining after start-up so the child never blocks on a full pipe.
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
    }
    {
        let mut pipe = child.stderr.take().expect("stderr piped");
        let text = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => text
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        });
    }
    let mut gw = Gateway {
        child,
        addr,
        stdout,
        stderr,
        _config: None,
    };
    let wanted = format!("listening on http://{addr}");
    let wanted_tls = format!("listening on https://{addr}");
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no `{wanted}` line within {START_DEADLINE:?}\nstdout: {:?}\nstderr: {}",
                gw.stdout_lines(),
                gw.stderr()
            ));
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) if line.starts_with(&wanted) || line.starts_with(&wanted_tls) => {
                return Ok(gw)
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: the process ended. Give stderr's reader a moment.
                let status = gw.child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "exited ({status:?}) before listening\nstdout: {:?}\nstderr: {}",
                    gw.stdout_lines(),
                    gw.stderr()
                ));
            }
        }
    }
}

impl Gateway {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Lines printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A new client connection to the gateway.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// `GET path` with `Host: test` on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
    }

    /// Sends `head_and_body` on a fresh connection and reads one response.
    pub fn request(&self, raw: &str) -> Response {
        let mut c = self.connect();
        c.send(raw.as_bytes());
        c.read_response()
    }

    /// Panics with the gateway's stderr when it is no longer running.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!("the gateway exited; stderr:\n{}", self.stderr());
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion with `args`.
pub fn run_cli(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run coregate");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Raw sockets

/// Connects, writes `bytes` (write errors ignored: the gateway may close early) and reads until
/// the gateway closes the connection, a read fails, or [`CLOSE_WAIT`] passes; returns what was
/// read.
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    send_raw_closed(addr, bytes).0
}

/// Like [`send_raw`], also telling whether the gateway closed the connection (rather than
/// the read timing out).
pub fn send_raw_closed(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = connect(addr);
    let _ = stream.write_all(bytes);
    read_until_close(&mut stream, CLOSE_WAIT)
}

/// Reads until EOF, a reset (what was read before is kept) or `wait` passes in total.
pub fn read_until_close(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => return (out, false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (out, true),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Takes one complete response off the front of `buf` (what a connection has read so far;
/// `eof`: and then the stream ended), if there is one. An error for a malformed response or a
/// stream that ended mid-response.
pub fn take_response(buf: &mut Vec<u8>, head: bool, eof: bool) -> Result<Option<Response>, String> {
    match parse_response(buf, head, eof) {
        Ok(Some((resp, used))) => {
            buf.drain(..used);
            Ok(Some(resp))
        }
        Ok(None) if eof => Err(format!(
            "connection closed before a complete response; got {:?}",
            show(buf)
        )),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("bad response: {e}; bytes {:?}", show(buf))),
    }
}

/// One client connection that reads responses one at a time.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: connect(addr),
            buf: Vec::new(),
            eof: false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to the gateway: {e}"));
    }

    /// Reads one response to a request that was not HEAD.
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    /// Reads one response; `head`: the request was HEAD (no body follows).
    pub fn read_response_to(&mut self, head: bool) -> Response {
        self.try_read_response(head)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads one response, or says why there is none (after `READ_TIMEOUT` without progress).
    pub fn try_read_response(&mut self, head: bool) -> Result<Response, String> {
        let mut deadline = Instant::now() + READ_TIMEOUT;
        loop {
            if let Some(resp) = take_response(&mut self.buf, head, self.eof)? {
                return Ok(resp);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no complete response (nothing more for {READ_TIMEOUT:?}); got {:?}",
                    show(&self.buf)
                ));
            }
            let before = self.buf.len();
            self.fill(deadline)?;
            if self.buf.len() > before {
                deadline = Instant::now() + READ_TIMEOUT;
            }
        }
    }

    /// Reads more bytes into the buffer (sets `eof` at end of stream).
    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let len = self.buf.len();
        self.buf.resize(len + 256 * 1024, 0);
        let result = self.stream.read(&mut self.buf[len..]);
        self.buf.truncate(len + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.eof = true,
            Err(e) => return Err(format!("read from the gateway: {e}")),
        }
        Ok(())
    }

    /// Whether the gateway closes the connection within `wait` (with nothing more sent to us).
    /// Unread response bytes count as "not closed".
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let deadline = Instant::now() + wait;
        while !self.eof && Instant::now() < deadline {
            if self.fill(deadline).is_err() {
                return true;
            }
            if !self.buf.is_empty() {
                return false;
            }
        }
        self.eof
    }

    /// Bytes received but not yet consumed by a parsed response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// Printable form of raw bytes for failure messages (truncated).
pub fn show(bytes: &[u8]) -> String {
    let cut = bytes.len().min(600);
    let mut s = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    if bytes.len() > cut {
        s.push_str(&format!("…(+{} bytes)", bytes.len() - cut));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Response parsing

/// One parsed HTTP/1.x response.
#[derive(Debug, Clone)]
pub struct Response {
    /// e.g. `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the body came with chunked framing.
    pub chunked: bool,
    /// Whether the body was delimited by the connection closing.
    pub until_close: bool,
}

impl Response {
    /// The first field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                show(&self.body)
            )
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether a `Connection` field lists `close`.
    pub fn says_close(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("connection")
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        })
    }
}

/// Parses the first response in `buf`. `head`: the request was HEAD. `eof`: the connection
/// has closed, so a body without length ends at the end of `buf`.
/// Ok(None): incomplete. Err: the bytes are not a valid response.
pub fn parse_response(
    buf: &[u8],
    head: bool,
    eof: bool,
) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 256 * 1024 {
            return Err("response head larger than 256 KiB".into());
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..head_end]).map_err(|_| "head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| (s.len() == 3).then_some(s))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        if name.is_empty() || name.contains(' ') || name.contains('\t') || line.contains('\n') {
            return Err(format!("bad header line {line:?}"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut resp = Response {
        version,
        status,
        headers,
        body: Vec::new(),
        chunked: false,
        until_close: false,
    };
    let start = head_end + 4;
    let no_body = head || (100..200).contains(&status) || status == 204 || status == 304;
    if no_body {
        return Ok(Some((resp, start)));
    }
    let te = resp
        .header("transfer-encoding")
        .map(str::to_ascii_lowercase);
    let cl = resp.header("content-length").map(str::to_owned);
    if let Some(te) = te {
        if cl.is_some() {
            return Err("response has both Transfer-Encoding and Content-Length".into());
        }
        if te.trim() != "chunked" {
            return Err(format!("unexpected Transfer-Encoding {te:?}"));
        }
        resp.chunked = true;
        return match decode_chunked(&buf[start..])? {
            Some((body, used)) => {
                resp.body = body;
                Ok(Some((resp, start + used)))
            }
            None => Ok(None),
        };
    }
    if let Some(cl) = cl {
        let n: usize = cl
            .parse()
            .map_err(|_| format!("bad Content-Length {cl:?}"))?;
        if buf.len() - start < n {
            return Ok(None);
        }
        resp.body = buf[start..start + n].to_vec();
        return Ok(Some((resp, start + n)));
    }
    if !eof {
        return Ok(None);
    }
    resp.until_close = true;
    resp.body = buf[start..].to_vec();
    Ok(Some((resp, buf.len())))
}

/// Decodes a chunked body strictly. Ok(None): incomplete. The framing is walked first
/// without copying, so calling this again as bytes arrive costs per chunk, not per byte.
pub fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut pos = 0;
    let mut spans = Vec::new();
    let end = 'chunks: loop {
        let Some(line_end) = find(&buf[pos..buf.len().min(pos + 1024)], b"\r\n") else {
            if buf.len() - pos >= 1024 {
                return Err("chunk size line longer than 1 KiB".into());
            }
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + line_end]).map_err(|_| "chunk line")?;
        let size_text = line.split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        pos += line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(end) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    break 'chunks pos;
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        spans.push(pos..pos + size);
        pos += size;
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += 2;
    };
    let mut body = Vec::with_capacity(spans.iter().map(|s| s.len()).sum());
    for span in spans {
        body.extend_from_slice(&buf[span]);
    }
    Ok(Some((body, end)))
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses every complete response in `bytes` (read until close), the last possibly
/// close-delimited.
pub fn parse_all(bytes: &[u8], heads: &[bool]) -> Result<Vec<Response>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let head = heads.get(out.len()).copied().unwrap_or(false);
        match parse_response(&bytes[pos..], head, true)? {
            Some((r, used)) => {
                out.push(r);
                pos += used;
            }
            None => return Err(format!("trailing bytes {:?}", show(&bytes[pos..]))),
        }
    }
    Ok(out)
}

/// Parses the first response in bytes read until close; panics with the bytes if there is
/// none.
pub fn first_response(bytes: &[u8]) -> Response {
    match parse_response(bytes, false, true) {
        Ok(Some((r, _))) => r,
        Ok(None) => panic!("no complete response in {:?}", show(bytes)),
        Err(e) => panic!("bad response ({e}): {:?}", show(bytes)),
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture origin's Json mode

/// What a Json-mode origin reported about the request it received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub origin: String,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_bytes: u64,
}

impl Seen {
    /// Parses a Json-mode response body.
    pub fn from_response(resp: &Response) -> Seen {
        let v = resp.json();
        let text = |key: &str| {
            v[key]
                .as_str()
                .unwrap_or_else(|| panic!("Json origin body lacks {key:?}: {v}"))
                .to_owned()
        };
        let headers = v["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("Json origin body lacks headers: {v}"))
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap_or_default().to_owned(),
                    pair[1].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Seen {
            origin: text("origin"),
            method: text("method"),
            target: text("target"),
            headers,
            body_bytes: v["body_bytes"].as_u64().unwrap_or(0),
        }
    }

    /// Every value of the header `name` (case-insensitive), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

/// Counts responses by their `X-Origin` field.
pub fn count_origins(responses: &[Response]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in responses {
        let name = r.header("x-origin").unwrap_or("<none>").to_owned();
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Bodies and memory

/// The byte at offset `i` of the test pattern: not periodic at any power of two, so a
/// dropped, duplicated or reordered block is noticed.
pub fn pattern_byte(i: usize) -> u8 {
    ((i % 251) as u8) ^ (((i / 251) % 253) as u8)
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(pattern_byte).collect()
}

/// FNV-1a 64 of `bytes`, to compare large bodies in messages.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Resident set size of `pid` in KiB (VmRSS in /proc/PID/status).
pub fn get_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Samples a process's RSS every few milliseconds on a thread until stopped.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u64, usize)>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            let mut samples = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(get_rss_kib(pid));
                samples += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (max.max(get_rss_kib(pid)), samples + 1)
        });
        RssSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the largest RSS seen in KiB and the number of samples.
    pub fn stop(mut self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Writes `data` to `stream` on a thread (so the caller can read the response concurrently),
/// in pieces of `piece` bytes; the thread returns the write result.
pub fn write_in_background(
    mut stream: TcpStream,
    data: Vec<u8>,
    piece: usize,
) -> JoinHandle<io::Result<()>> {
    std::thread::spawn(move || {
        for part in data.chunks(piece.max(1)) {
            stream.write_all(part)?;
        }
        stream.flush()
    })
}

/// Encodes `data` as chunked framing with chunk sizes cycling through `sizes`.
pub fn chunked_encode(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 100 + 64);
    let mut pos = 0;
    let mut k = 0;
    while pos < data.len() {
        let n = sizes[k % sizes.len()].min(data.len() - pos);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&data[pos..pos + n]);
        out.extend_from_slice(b"\r\n");
        pos += n;
        k += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Config text

/// `[server]` with `workers` and `extra` lines, then one `[[listener]]` on `{listen}`.
pub fn server_toml(workers: usize, extra: &str) -> String {
    format!("[server]\nworkers = {workers}\n{extra}\n\n[[listener]]\naddress = \"{{listen}}\"\n\n")
}

/// One `[[route]]` called `name` with the given `key = value` lines, to `upstream`.
pub fn route_toml(name: &str, fields: &str, upstream: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\n{fields}\nupstream = \"{upstream}\"\n\n")
}

/// A request `METHOD target HTTP/1.1` with `Host: host` (none when empty) and `headers`;
/// methods other than GET and HEAD get `Content-Length: 0`.
pub fn request_text(method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut s = format!("{method} {target} HTTP/1.1\r\n");
    if !host.is_empty() {
        s.push_str(&format!("Host: {host}\r\n"));
    }
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    if method != "GET" && method != "HEAD" {
        s.push_str("Content-Length: 0\r\n");
    }
    s.push_str("\r\n");
    s
}

// ---------------------------------------------------------------------------------------------
// Control side: admin listener, config rewrites, signals, exit

/// Replaces `{listen}` and `{admin}` in `config` with free addresses and runs
/// `coregate run -c FILE`; returns the gateway and its admin address.
pub fn start_gateway_with_admin(config: &str) -> (Gateway, SocketAddr) {
    let mut last_error = String::new();
    for _ in 0..3 {
        let (addr, admin) = (free_addr(), free_addr());
        let text = config
            .replace("{listen}", &addr.to_string())
            .replace("{admin}", &admin.to_string());
        let file = TempFile::new("gw", &text);
        let mut cmd = Command::new(BIN);
        cmd.arg("run").arg("-c").arg(file.path());
        match spawn_until_listening(cmd, addr) {
            Ok(mut gw) => {
                gw._config = Some(file);
                return (gw, admin);
            }
            Err(e) => last_error = format!("{e}\nconfig:\n{text}"),
        }
        if !last_error.contains("in use") {
            break;
        }
    }
    panic!("gateway did not start: {last_error}");
}

/// `[admin]` on `{admin}`, for [`start_gateway_with_admin`].
pub const ADMIN_TOML: &str = "\n[admin]\naddress = \"{admin}\"\n";

impl Gateway {
    /// The config file the gateway runs on (when started from a file by this harness).
    pub fn config_path(&self) -> Option<&Path> {
        self._config.as_ref().map(TempFile::path)
    }

    /// Replaces the config file atomically (write a sibling, rename over), so the gateway
    /// never reads it half-written. `{listen}` is replaced with the gateway's address.
    pub fn rewrite_config(&self, text: &str) {
        let path = self
            .config_path()
            .expect("gateway started from a config file");
        let text = text.replace("{listen}", &self.addr.to_string());
        let tmp = path.with_extension("toml.next");
        std::fs::write(&tmp, text).expect("write the next config");
        std::fs::rename(&tmp, path).expect("rename the next config into place");
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the gateway process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a child's pid and a valid signal number has no memory effects.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits up to `wait` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `wait` until stderr contains `needle`.
    pub fn stderr_contains_within(&self, needle: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `GET path` on the admin listener at `admin`.
pub fn admin_get(admin: SocketAddr, path: &str) -> Response {
    let mut c = Client::connect(admin);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    c.read_response()
}

/// The value of the Prometheus sample `series` (name with labels, exactly as printed) in
/// the admin listener's `/metrics`, or `None` when absent.
pub fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let text = admin_get(admin, "/metrics").body_text();
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Polls `f` every 20 ms until it returns true or `wait` passes; returns the last result.
pub fn eventually(wait: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens and keys for the authentication tests

/// Seconds since the Unix epoch, for `exp` claims.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A compact JWS over `header` and `claims` (each base64url-encoded as given) signed with
/// HS256 under `secret`.
pub fn hs256_sign(secret: &str, header: &[u8], claims: &[u8]) -> String {
    use coregate_engine::policy::jwt::base64url_encode as b64url;
    let signing_input = format!("{}.{}", b64url(header), b64url(claims));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(tag.as_ref()))
}

/// The lower-case hex SHA-256 of an API key, as a config's `sha256 = "..."` holds it.
pub fn sha256_hex(key: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An ES256 key pair and the JWKS file that publishes its public half under `kid`.
pub fn es256_key(kid: &str) -> (ring::signature::EcdsaKeyPair, TempFile) {
    use coregate_engine::policy::jwt::base64url_encode as b64url;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwks = format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"{kid}","use":"sig","x":"{}","y":"{}"}}]}}"#,
        b64url(&point[1..33]),
        b64url(&point[33..65])
    );
    (pair, TempFile::new("jwks", &jwks))
}

/// The part of a test config up to its first policy: one worker, one listener, and
/// upstream `o` with the single endpoint `origin`.
pub fn one_upstream_config(origin: impl std::fmt::Display) -> String {
    format!(
        r#"[server]
workers = 1

[[listener]]
address = "{{listen}}"

[upstreams.o]
endpoints = [{{ address = "{origin}" }}]
"#
    )
}

/// API-key policies `partners` (key `acme-key` for consumer `acme`, who is named upstream in
/// `X-Consumer`) and `by_query` (key `globex-key` for `globex`, from query parameter
/// `api_key`), as config text.
pub fn api_key_policies() -> String {
    format!(
        r#"[auth.api_keys.partners]
keys = [{{ consumer = "acme", sha256 = "{acme}" }}]
consumer_header = "X-Consumer"

[auth.api_keys.by_query]
keys = [{{ consumer = "globex", sha256 = "{globex}" }}]
from = "query:api_key"
"#,
        acme = sha256_hex("acme-key"),
        globex = sha256_hex("globex-key"),
    )
}

/// Routes `/key` and `/query` behind the policies of [`api_key_policies`], to upstream `o`.
pub const API_KEY_ROUTES: &str = r#"[[route]]
name = "key"
path_prefix = "/key"
upstream = "o"
auth = "partners"

[[route]]
name = "query"
path_prefix = "/query"
upstream = "o"
auth = "by_query"
"#;
