//! Memory of idle keep-alive connections: open `count` connections to a server, send one
//! request on each and read its response, then let them sit, and compare the resident memory
//! (VmRSS of every process of the server) before and after. Blocking sockets, one request at
//! a time: this measures memory, not speed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::process::{process_tree, rss_bytes};

/// Time left for the server to settle (finish accepts, free request buffers) before each
/// reading. coregate parks a connection 100 ms after its last request and frees its buffer
/// then; its RSS was measured steady from 2 s on (0.5 s still counted about 40 % more).
const SETTLE: Duration = Duration::from_secs(2);
/// Per-socket timeout of the connect, the request and the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What one idle-memory measurement found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleMemory {
    /// Connections opened and kept (each served one request).
    pub connections: usize,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
}

impl IdleMemory {
    /// Resident memory added per idle connection.
    pub fn bytes_per_connection(&self) -> f64 {
        if self.connections == 0 {
            return 0.0;
        }
        (self.rss_after_bytes as f64 - self.rss_before_bytes as f64) / self.connections as f64
    }
}

/// Opens `count` keep-alive connections to `addr`, one GET each, and reads the resident
/// memory of the process tree of `pid` before and after; the connections close on return.
pub fn measure(pid: u32, addr: SocketAddr, count: usize) -> io::Result<IdleMemory> {
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // One exchange first, so that lazily built state (upstream connection, buffers of the
    // first request) is in the baseline rather than charged to the idle connections.
    let mut warm = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    exchange(&mut warm, request.as_bytes())?;
    drop(warm);
    std::thread::sleep(SETTLE);
    let before = rss_bytes(&process_tree(pid));
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        exchange(&mut stream, request.as_bytes())?;
        open.push(stream);
    }
    std::thread::sleep(SETTLE);
    let after = rss_bytes(&process_tree(pid));
    Ok(IdleMemory {
        connections: open.len(),
        rss_before_bytes: before,
        rss_after_bytes: after,
    })
}

/// Writes `request` and reads one Content-Length-framed response; the connection stays open.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    stream.write_all(request)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the response ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(total) = response_length(&buf)? {
            if buf.len() >= total {
                return Ok(());
            }
        }
    }
}

/// The full length of the response at the start of `buf` (head plus Content-Length body),
/// once its head is complete.
fn response_length(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    };
    if response.code != Some(200) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("status {:?}", response.code),
        ));
    }
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "response without Content-Length",
            )
        })?;
    Ok(Some(head + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_length_needs_the_whole_head() {
        assert_eq!(
            response_length(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(),
            None
        );
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(response_length(full).unwrap(), Some(full.len()));
        assert!(response_length(b"HTTP/1.1 502 Bad\r\nContent-Length: 0\r\n\r\n").is_err());
    }

    #[test]
    fn per_connection_memory() {
        let m = IdleMemory {
            connections: 4,
            rss_before_bytes: 1000,
            rss_after_bytes: 9000,
        };
        assert_eq!(m.bytes_per_connection(), 2000.0);
    }
}
