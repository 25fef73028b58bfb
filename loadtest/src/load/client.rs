//! One load-generator connection, over plain TCP or TLS: writes a prebuilt request and reads
//! the response, with Content-Length, chunked or close-delimited framing (RFC 9112 §6.3),
//! skipping interim 1xx responses.
//!
//! Owns one reused read buffer; the request is a shared `Bytes` written with one write, and
//! response bodies are counted and dropped, never kept. Nothing is allocated per request on a
//! kept-alive connection; a new connection costs its buffers (and, with TLS, its session).

use std::io;
use std::mem;
use std::net::SocketAddr;

use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::ClientTlsStream;

use super::stats::ErrorKind;
use crate::chunked::ChunkedDecoder;

/// Read buffer per connection (bytes).
const READ_BUF_BYTES: usize = 16 * 1024;
/// Largest response head accepted (bytes); a larger one is a parse error.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most header fields in a response.
const HEADERS_MAX: usize = 64;

/// What the generator keeps of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The connection may carry the next request.
    pub keep_alive: bool,
}

/// How a response body is delimited.
enum Framing {
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// The byte stream under a connection.
enum Stream {
    Plain(TcpStream),
    /// Boxed: the TLS session and its buffers are far larger than a socket.
    Tls(Box<ClientTlsStream<TcpStream>>),
}

/// Opens a TCP connection for requests: Nagle off, since requests are single writes.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_addr(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub struct Connection {
    stream: Stream,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// Bytes read since the last [`Connection::take_bytes_read`].
    bytes_read: u64,
}

impl Connection {
    /// A connection over plain TCP.
    pub fn plain(stream: TcpStream) -> Connection {
        Connection::new(Stream::Plain(stream))
    }

    /// A connection over TLS, its handshake done.
    pub fn tls(stream: ClientTlsStream<TcpStream>) -> Connection {
        Connection::new(Stream::Tls(Box::new(stream)))
    }

    fn new(stream: Stream) -> Connection {
        Connection {
            stream,
            buf: Vec::with_capacity(READ_BUF_BYTES),
            start: 0,
            bytes_read: 0,
        }
    }

    /// Bytes read from the server since the last call.
    pub fn take_bytes_read(&mut self) -> u64 {
        mem::take(&mut self.bytes_read)
    }

    /// Sends one request and reads its response. `head_request`: the request was HEAD, so
    /// the response has no body whatever its head says.
    pub async fn exchange(
        &mut self,
        request: Bytes,
        head_request: bool,
    ) -> Result<Response, ErrorKind> {
        let (written, _) = match &mut self.stream {
            Stream::Plain(stream) => stream.write_all(request).await,
            Stream::Tls(stream) => stream.write_all(request).await,
        };
        written.map_err(|_| ErrorKind::Write)?;
        loop {
            let head = self.read_head().await?;
            // RFC 9110 §15.2: interim responses precede the final one.
            if (100..200).contains(&head.status) {
                continue;
            }
            let no_body = head_request || head.status == 204 || head.status == 304;
            let framing = if no_body {
                Framing::Length(0)
            } else if head.chunked {
                Framing::Chunked
            } else if let Some(length) = head.content_length {
                Framing::Length(length)
            } else {
                Framing::Close
            };
            let keep_alive = head.keep_alive && !matches!(framing, Framing::Close);
            self.read_body(framing).await?;
            return Ok(Response {
                status: head.status,
                keep_alive,
            });
        }
    }

    async fn read_head(&mut self) -> Result<Head, ErrorKind> {
        loop {
            if self.start < self.buf.len() {
                if let Some(head) = self.parse_head()? {
                    return Ok(head);
                }
            }
            self.compact();
            if self.buf.len() == self.buf.capacity() {
                if self.buf.capacity() >= HEAD_BYTES_MAX {
                    return Err(ErrorKind::Parse);
                }
                self.buf.reserve_exact(HEAD_BYTES_MAX - self.buf.len());
            }
            if !self.fill().await? {
                return Err(ErrorKind::Read);
            }
        }
    }

    fn parse_head(&mut self) -> Result<Option<Head>, ErrorKind> {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&self.buf[self.start..]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ErrorKind::Parse),
        };
        let http10 = response.version == Some(0);
        let mut head = Head {
            status: response.code.unwrap_or_default(),
            content_length: None,
            chunked: false,
            keep_alive: !http10,
        };
        for header in response.headers.iter() {
            let value = header.value.trim_ascii();
            if header.name.eq_ignore_ascii_case("content-length") {
                let length = parse_length(value).ok_or(ErrorKind::Parse)?;
                if head.content_length.is_some_and(|seen| seen != length) {
                    return Err(ErrorKind::Parse);
                }
                head.content_length = Some(length);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
                head.chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            } else if header.name.eq_ignore_ascii_case("connection") {
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        head.keep_alive = true;
                    }
                }
            }
        }
        self.start += len;
        Ok(Some(head))
    }

    /// Reads and drops a body.
    async fn read_body(&mut self, framing: Framing) -> Result<(), ErrorKind> {
        match framing {
            Framing::Length(mut left) => loop {
                let available = (self.buf.len() - self.start) as u64;
                let take = left.min(available);
                // `take` is at most the buffered length, so it fits a usize.
                self.start += take as usize;
                left -= take;
                if left == 0 {
                    return Ok(());
                }
                self.compact();
                if !self.fill().await? {
                    return Err(ErrorKind::Read);
                }
            },
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let step = decoder
                        .decode(&self.buf[self.start..])
                        .map_err(|_| ErrorKind::Parse)?;
                    self.start += step.consumed;
                    if decoder.is_done() {
                        return Ok(());
                    }
                    if self.start == self.buf.len() {
                        self.compact();
                        if !self.fill().await? {
                            return Err(ErrorKind::Read);
                        }
                    }
                }
            }
            Framing::Close => {
                self.start = self.buf.len();
                loop {
                    self.compact();
                    if !self.fill().await? {
                        return Ok(());
                    }
                    self.start = self.buf.len();
                }
            }
        }
    }

    /// Moves unconsumed bytes to the front when the buffer is full, or empties it when all
    /// of it was consumed.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.buf.len() == self.buf.capacity() && self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
    }

    /// Reads more into the free end of the buffer; false at end of stream.
    async fn fill(&mut self) -> Result<bool, ErrorKind> {
        let buf = mem::take(&mut self.buf);
        let filled = buf.len();
        debug_assert!(filled < buf.capacity(), "fill needs free space");
        let (result, buf) = match &mut self.stream {
            Stream::Plain(stream) => stream.read(buf.slice_mut(filled..)).await,
            Stream::Tls(stream) => stream.read(buf.slice_mut(filled..)).await,
        };
        self.buf = buf.into_inner();
        let read = result.map_err(|_| ErrorKind::Read)?;
        self.bytes_read += read as u64;
        Ok(read > 0)
    }
}

/// The fields of a response head that decide its framing.
struct Head {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
}

/// A Content-Length value: decimal digits only, fitting a u64.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_digits_that_fit() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_length(b"18446744073709551616"), None);
        assert_eq!(parse_length(b"-1"), None);
        assert_eq!(parse_length(b""), None);
    }
}
