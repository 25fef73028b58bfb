//! One connection of the fixture origin, over plain TCP or TLS: reads request heads, streams
//! request bodies through the read buffer, and answers each request in order (pipelined
//! requests are answered one after the other, keep-alive per RFC 9112 §9.3).
//!
//! Owns three reused buffers from the thread's pool and nothing else; it never holds a whole
//! request body, and writes a response with one write unless its body is larger than
//! [`OUT_FLUSH_BYTES`] or is an echo still arriving.

use std::io::{self, Write};
use std::mem;
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::TlsAcceptor;

use super::thread::ThreadState;
use super::{demo, describe, Mode};
use crate::chunked::ChunkedDecoder;

/// Read buffer per connection (bytes); also the most request body held at once.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// Largest request head accepted (bytes); a larger one is answered 431.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most header fields in a request; more are answered 431.
pub const HEADERS_MAX: usize = 100;
/// Response bytes gathered before they are written while a large body streams out.
const OUT_FLUSH_BYTES: usize = 64 * 1024;
/// Capacity an output or scratch buffer keeps when it goes back to the pool (bytes).
const POOLED_OUT_BYTES: usize = 4096;
/// After a response that closes the connection, how long to drain what the client still
/// sends: closing with unread input resets the connection and can destroy the response.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes drained while lingering.
const LINGER_BYTES_MAX: usize = 1024 * 1024;
/// Bytes of the buffer used to drain while lingering.
const LINGER_BUF_BYTES: usize = 4096;

/// The body of Fixed responses and of `?bytes=N`, repeated as needed.
const FILLER: &[u8] = b"Hello, world!";
pub(super) const KEEP_ALIVE: &str = "Connection: keep-alive\r\n";
pub(super) const CLOSE: &str = "Connection: close\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const FAILURE_BODY: &[u8] = b"{\"error\":\"flaky origin failure\"}";

/// The reused buffers of a connection.
pub(super) struct Buffers {
    /// Bytes read from the client; `Conn::start` marks where the unconsumed part begins.
    read: Vec<u8>,
    /// The response being assembled.
    out: Vec<u8>,
    /// Per-request text built while the head is at hand: the JSON description, or the
    /// Content-Type to echo.
    scratch: Vec<u8>,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            read: Vec::with_capacity(READ_BUF_BYTES),
            out: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(1024),
        }
    }
}

impl Buffers {
    /// Empties the buffers for the next connection; buffers that grew go back to size.
    pub fn reset(&mut self) {
        for (buf, keep) in [
            (&mut self.read, READ_BUF_BYTES),
            (&mut self.out, POOLED_OUT_BYTES),
            (&mut self.scratch, POOLED_OUT_BYTES),
        ] {
            buf.clear();
            buf.shrink_to(keep);
        }
    }
}

/// How a request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No Content-Length, no Transfer-Encoding: no body.
    None,
    Length(u64),
    Chunked,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutFraming {
    Length(u64),
    Chunked,
    /// Close-delimited: no length, the connection closes after the body.
    Close,
    /// No body and no length, as 204 and 304 responses have.
    Empty,
}

/// What the head of a request says about its handling, independent of the mode.
struct Head {
    /// Bytes of the head in the read buffer.
    len: usize,
    http10: bool,
    /// A HEAD request: answer with the head only.
    head_method: bool,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// What to answer, decided while the head is at hand.
enum Plan {
    /// The prebuilt response.
    Fixed(Bytes),
    /// Echo the body; `content_type` says whether scratch holds one to copy.
    Echo {
        content_type: bool,
    },
    /// Describe the request; scratch holds the description up to `"body_bytes":`.
    Describe(describe::Query),
    /// Flaky failure answered 500.
    FailStatus,
    /// Flaky failure answered by closing the connection.
    FailClose,
    Demo(demo::Reply),
}

enum Parsed {
    Complete(Head, Plan),
    Partial,
    /// A request that cannot be served, with the status to answer before closing.
    Invalid(u16),
}

enum HeadRead {
    Request(Head, Plan),
    Invalid(u16),
    /// The client closed or reset the connection between requests.
    Closed,
}

/// How a connection goes on after a response.
enum After {
    KeepAlive,
    /// Close after what was written.
    Close,
    /// Close without a goodbye: nothing was answered.
    Abort,
}

/// The request body still to read.
enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
}

enum Piece {
    /// Body bytes, as a range of the read buffer valid until the next read.
    Data(Range<usize>),
    NeedInput,
    End,
}

struct Conn<S> {
    stream: S,
    state: Rc<ThreadState>,
    bufs: Buffers,
    /// Start of the unconsumed bytes in `bufs.read`.
    start: usize,
}

/// Completes the TLS handshake of an accepted connection, then serves it as [`serve`] does.
/// A failed handshake is counted and ends the connection.
pub(super) async fn serve_tls(
    stream: TcpStream,
    id: u64,
    state: Rc<ThreadState>,
    acceptor: TlsAcceptor,
) {
    let counts = &state.shared.tls_counts;
    match acceptor.accept(stream).await {
        Ok(tls) => {
            counts.handshakes.fetch_add(1, Ordering::Relaxed);
            serve(tls, id, state).await;
        }
        Err(_) => {
            counts.failures.fetch_add(1, Ordering::Relaxed);
            // The socket closed as the handshake failed, within this same poll: no stop
            // could run in between and shut down a reused descriptor.
            state.deregister(id);
        }
    }
}

/// Serves one accepted connection until it closes, then returns its buffers to the pool.
pub(super) async fn serve<S: AsyncReadRent + AsyncWriteRent>(
    stream: S,
    id: u64,
    state: Rc<ThreadState>,
) {
    let bufs = state.take_buffers();
    let mut conn = Conn {
        stream,
        state,
        bufs,
        start: 0,
    };
    // An error only ends this connection.
    let _ = conn.run().await;
    let Conn {
        stream,
        state,
        bufs,
        ..
    } = conn;
    // Deregister before the socket closes, so a stop never shuts down a reused descriptor.
    state.deregister(id);
    drop(stream);
    state.put_buffers(bufs);
}

impl<S: AsyncReadRent + AsyncWriteRent> Conn<S> {
    async fn run(&mut self) -> io::Result<()> {
        loop {
            let after = match self.read_head().await? {
                HeadRead::Request(head, plan) => self.answer(head, plan).await?,
                HeadRead::Invalid(status) => {
                    self.reply_error(status).await?;
                    After::Close
                }
                HeadRead::Closed => After::Abort,
            };
            match after {
                After::KeepAlive => {}
                After::Close => return self.linger_close().await,
                After::Abort => return Ok(()),
            }
        }
    }

    async fn read_head(&mut self) -> io::Result<HeadRead> {
        loop {
            if self.start < self.bufs.read.len() {
                match self.parse_head() {
                    Parsed::Complete(head, plan) => return Ok(HeadRead::Request(head, plan)),
                    Parsed::Invalid(status) => return Ok(HeadRead::Invalid(status)),
                    Parsed::Partial => {}
                }
            }
            self.compact();
            let read = &mut self.bufs.read;
            if read.len() == read.capacity() {
                if read.capacity() >= HEAD_BYTES_MAX {
                    return Ok(HeadRead::Invalid(431));
                }
                read.reserve_exact(HEAD_BYTES_MAX - read.len());
            }
            if !self.fill().await? {
                return Ok(HeadRead::Closed);
            }
        }
    }

    /// Parses the head at `start` and decides the answer while the head is borrowed.
    fn parse_head(&mut self) -> Parsed {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut request = httparse::Request::new(&mut headers);
        let len = match request.parse(&self.bufs.read[self.start..]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(431),
            Err(_) => return Parsed::Invalid(400),
        };
        let shared = &self.state.shared;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let method = request.method.unwrap_or_default();
        let target = request.path.unwrap_or_default();
        let http10 = request.version == Some(0);

        let mut fields = Fields::default();
        for header in request.headers.iter() {
            if let Err(status) = fields.add(header.name, header.value) {
                return Parsed::Invalid(status);
            }
        }
        let mut keep_alive = if http10 {
            fields.keep_alive && !fields.close
        } else {
            !fields.close
        };
        let framing = if fields.transfer_encoding {
            // RFC 9112 §6.3 ¶4: a request whose final coding is not chunked has no reliable
            // length and gets 400.
            if !fields.chunked_last {
                return Parsed::Invalid(400);
            }
            // RFC 9112 §6.1: Transfer-Encoding overrides Content-Length, and a message with
            // both (or an HTTP/1.0 one with Transfer-Encoding) may be a smuggling attempt;
            // serve it, then close the connection.
            if fields.content_length.is_some() || http10 {
                keep_alive = false;
            }
            Framing::Chunked
        } else {
            match fields.content_length {
                Some(length) => Framing::Length(length),
                None => Framing::None,
            }
        };
        let head = Head {
            len,
            http10,
            head_method: method == "HEAD",
            framing,
            keep_alive,
            expect_continue: fields.expect_continue,
        };

        let scratch = &mut self.bufs.scratch;
        scratch.clear();
        let describe_request = |scratch: &mut Vec<u8>| match describe::Query::parse(target) {
            Some(query) => {
                describe::write_prefix(
                    scratch,
                    &shared.name,
                    method,
                    target,
                    http10,
                    request.headers,
                );
                Some(Plan::Describe(query))
            }
            None => None,
        };
        let plan = match shared.mode {
            Mode::Fixed => match &self.state.fixed {
                Some(fixed) => {
                    let response = if !keep_alive {
                        &fixed.close
                    } else if http10 {
                        &fixed.keep_alive_http10
                    } else {
                        &fixed.keep_alive
                    };
                    let mut response = response.clone();
                    if head.head_method {
                        response.truncate(response.len() - fixed.body_bytes);
                    }
                    Some(Plan::Fixed(response))
                }
                None => None,
            },
            Mode::Echo => {
                if let Some(content_type) = fields.content_type {
                    scratch.extend_from_slice(content_type);
                }
                Some(Plan::Echo {
                    content_type: fields.content_type.is_some(),
                })
            }
            Mode::Json | Mode::Slow => describe_request(scratch),
            Mode::Flaky => {
                let draw = self.state.draw();
                if draw < shared.failure_rate / 2.0 {
                    Some(Plan::FailStatus)
                } else if draw < shared.failure_rate {
                    Some(Plan::FailClose)
                } else {
                    describe_request(scratch)
                }
            }
            Mode::Demo => Some(Plan::Demo(demo::route(method, target))),
        };
        match plan {
            Some(plan) => Parsed::Complete(head, plan),
            None => Parsed::Invalid(400),
        }
    }

    async fn answer(&mut self, head: Head, plan: Plan) -> io::Result<After> {
        self.start += head.len;
        let mut body = match head.framing {
            Framing::None => Body::Length(0),
            Framing::Length(length) => Body::Length(length),
            Framing::Chunked => Body::Chunked(ChunkedDecoder::new()),
        };
        match plan {
            Plan::FailClose => Ok(After::Abort),
            Plan::Echo { content_type } => self.echo(&head, body, content_type).await,
            plan => {
                self.continue_if_expected(&head, &body).await?;
                let body_bytes = self.drain(&mut body).await?;
                self.delay().await;
                self.respond(&head, plan, body_bytes).await
            }
        }
    }

    async fn respond(&mut self, head: &Head, plan: Plan, body_bytes: u64) -> io::Result<After> {
        let after = if head.keep_alive {
            After::KeepAlive
        } else {
            After::Close
        };
        let connection = connection_header(head.keep_alive, head.http10);
        let name = &self.state.shared.name;
        let out = &mut self.bufs.out;
        match plan {
            Plan::Fixed(response) => {
                let (result, _) = self.stream.write_all(response).await;
                result?;
                return Ok(after);
            }
            Plan::Describe(query) => return self.describe(head, query, body_bytes).await,
            Plan::FailStatus => {
                let length = OutFraming::Length(FAILURE_BODY.len() as u64);
                write_head(
                    out,
                    500,
                    name,
                    Some(b"application/json"),
                    length,
                    connection,
                );
                if !head.head_method {
                    out.extend_from_slice(FAILURE_BODY);
                }
            }
            Plan::Demo(reply) => {
                let length = OutFraming::Length(reply.body.len() as u64);
                write_head(
                    out,
                    reply.status,
                    name,
                    Some(b"application/json"),
                    length,
                    connection,
                );
                if reply.status == 405 {
                    // RFC 9110 §15.5.6: a 405 lists the allowed methods.
                    out.truncate(out.len() - 2);
                    out.extend_from_slice(b"Allow: GET, HEAD\r\n\r\n");
                }
                if !head.head_method {
                    out.extend_from_slice(reply.body.as_bytes());
                }
            }
            Plan::Echo { .. } | Plan::FailClose => {}
        }
        self.flush().await?;
        Ok(after)
    }

    /// Answers with the description in scratch, shaped by the query parameters.
    async fn describe(
        &mut self,
        head: &Head,
        query: describe::Query,
        body_bytes: u64,
    ) -> io::Result<After> {
        let scratch = &mut self.bufs.scratch;
        describe::write_suffix(scratch, body_bytes);
        let no_body = matches!(query.status, 204 | 304);
        let (content_type, length): (&[u8], u64) = match query.bytes {
            Some(bytes) => (b"text/plain", bytes),
            None => (b"application/json", scratch.len() as u64),
        };
        let framing = if no_body {
            OutFraming::Empty
        } else if query.close || (query.chunked && head.http10) {
            // HTTP/1.0 has no chunked coding: delimit by closing instead.
            OutFraming::Close
        } else if query.chunked {
            OutFraming::Chunked
        } else {
            OutFraming::Length(length)
        };
        let keep_alive = head.keep_alive && framing != OutFraming::Close;
        let connection = connection_header(keep_alive, head.http10);
        let content_type = (!no_body).then_some(content_type);
        write_head(
            &mut self.bufs.out,
            query.status,
            &self.state.shared.name,
            content_type,
            framing,
            connection,
        );
        if !no_body && !head.head_method {
            let chunked = framing == OutFraming::Chunked;
            match query.bytes {
                Some(mut left) => {
                    while left > 0 {
                        let take = left.min(OUT_FLUSH_BYTES as u64) as usize;
                        left -= take as u64;
                        let out = &mut self.bufs.out;
                        if chunked {
                            write_chunk_size(out, take);
                        }
                        write_filler(out, take);
                        if chunked {
                            out.extend_from_slice(b"\r\n");
                        }
                        if out.len() >= OUT_FLUSH_BYTES {
                            self.flush().await?;
                        }
                    }
                }
                None => push_body(&mut self.bufs.out, &self.bufs.scratch, chunked),
            }
            if chunked {
                self.bufs.out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        self.flush().await?;
        Ok(if keep_alive {
            After::KeepAlive
        } else {
            After::Close
        })
    }

    /// Streams the request body back as it arrives, with the request's framing.
    async fn echo(&mut self, head: &Head, mut body: Body, content_type: bool) -> io::Result<After> {
        self.continue_if_expected(head, &body).await?;
        self.delay().await;
        let framing = match head.framing {
            Framing::None => OutFraming::Length(0),
            Framing::Length(length) => OutFraming::Length(length),
            Framing::Chunked if head.http10 => OutFraming::Close,
            Framing::Chunked => OutFraming::Chunked,
        };
        let keep_alive = head.keep_alive && framing != OutFraming::Close;
        let content_type = content_type.then_some(&self.bufs.scratch[..]);
        write_head(
            &mut self.bufs.out,
            200,
            &self.state.shared.name,
            content_type,
            framing,
            connection_header(keep_alive, head.http10),
        );
        let chunked = framing == OutFraming::Chunked;
        let send = !head.head_method;
        loop {
            match self.body_piece(&mut body)? {
                Piece::Data(range) => {
                    if send {
                        push_body(&mut self.bufs.out, &self.bufs.read[range], chunked);
                    }
                    if self.bufs.out.len() >= OUT_FLUSH_BYTES {
                        self.flush().await?;
                    }
                }
                Piece::NeedInput => {
                    // Send what we have before waiting: the client may wait for it too.
                    self.flush().await?;
                    self.fill_body().await?;
                }
                Piece::End => break,
            }
        }
        if chunked && send {
            self.bufs.out.extend_from_slice(b"0\r\n\r\n");
        }
        self.flush().await?;
        Ok(if keep_alive {
            After::KeepAlive
        } else {
            After::Close
        })
    }

    /// Reads and drops the request body, returning its size.
    async fn drain(&mut self, body: &mut Body) -> io::Result<u64> {
        let mut total = 0;
        loop {
            match self.body_piece(body)? {
                Piece::Data(range) => total += range.len() as u64,
                Piece::NeedInput => self.fill_body().await?,
                Piece::End => return Ok(total),
            }
        }
    }

    /// The next run of body bytes already in the read buffer.
    fn body_piece(&mut self, body: &mut Body) -> io::Result<Piece> {
        let available = &self.bufs.read[self.start..];
        let range = match body {
            Body::Length(0) => return Ok(Piece::End),
            Body::Length(left) => {
                if available.is_empty() {
                    return Ok(Piece::NeedInput);
                }
                let take = (*left).min(available.len() as u64) as usize;
                *left -= take as u64;
                self.start..self.start + take
            }
            Body::Chunked(decoder) => {
                if decoder.is_done() {
                    return Ok(Piece::End);
                }
                if available.is_empty() {
                    return Ok(Piece::NeedInput);
                }
                let step = decoder.decode(available)?;
                let base = self.start;
                self.start += step.consumed;
                if step.data.is_empty() {
                    // The decoder stops early only for data or the end of the body.
                    return Ok(if decoder.is_done() {
                        Piece::End
                    } else {
                        Piece::NeedInput
                    });
                }
                base + step.data.start..base + step.data.end
            }
        };
        self.start = self.start.max(range.end);
        self.state
            .shared
            .body_bytes_received
            .fetch_add(range.len() as u64, Ordering::Relaxed);
        Ok(Piece::Data(range))
    }

    /// RFC 9110 §10.1.1: a client that sent `Expect: 100-continue` may wait for this before
    /// sending the body.
    async fn continue_if_expected(&mut self, head: &Head, body: &Body) -> io::Result<()> {
        let has_body = !matches!(body, Body::Length(0));
        if head.expect_continue && !head.http10 && has_body {
            self.bufs.out.extend_from_slice(CONTINUE);
            self.flush().await?;
        }
        Ok(())
    }

    async fn delay(&self) {
        let delay_ms = self.state.shared.delay_ms;
        if delay_ms > 0 {
            monoio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
    }

    async fn reply_error(&mut self, status: u16) -> io::Result<()> {
        let body = reason(status).as_bytes();
        write_head(
            &mut self.bufs.out,
            status,
            &self.state.shared.name,
            Some(b"text/plain"),
            OutFraming::Length(body.len() as u64 + 1),
            CLOSE,
        );
        self.bufs.out.extend_from_slice(body);
        self.bufs.out.push(b'\n');
        self.flush().await
    }

    /// Closes after a response: FIN first, then drain what the client still sends for a
    /// moment, so the close does not reset the connection under the response.
    async fn linger_close(&mut self) -> io::Result<()> {
        self.stream.shutdown().await?;
        let mut drained = 0;
        // The drain buffer is lost if the timeout cancels a read, hence one of its own.
        let mut buf = Vec::with_capacity(LINGER_BUF_BYTES);
        while drained < LINGER_BYTES_MAX {
            match monoio::time::timeout(LINGER, self.stream.read(buf)).await {
                Ok((Ok(read), returned)) if read > 0 => {
                    drained += read;
                    buf = returned;
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// Moves unconsumed bytes to the front when the buffer is full, or empties it when all
    /// of it was consumed.
    fn compact(&mut self) {
        let read = &mut self.bufs.read;
        if self.start == read.len() {
            read.clear();
            self.start = 0;
        } else if read.len() == read.capacity() && self.start > 0 {
            read.copy_within(self.start.., 0);
            read.truncate(read.len() - self.start);
            self.start = 0;
        }
    }

    /// Reads more into the free end of the read buffer; false at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        let read = mem::take(&mut self.bufs.read);
        let filled = read.len();
        debug_assert!(filled < read.capacity(), "fill needs free space");
        let (result, read) = self.stream.read(read.slice_mut(filled..)).await;
        self.bufs.read = read.into_inner();
        Ok(result? > 0)
    }

    /// Reads more of a body; the end of stream in a body is an error.
    async fn fill_body(&mut self) -> io::Result<()> {
        self.compact();
        if self.fill().await? {
            Ok(())
        } else {
            Err(io::ErrorKind::UnexpectedEof.into())
        }
    }

    /// Writes and empties the output buffer.
    async fn flush(&mut self) -> io::Result<()> {
        let out = mem::take(&mut self.bufs.out);
        let (result, mut out) = self.stream.write_all(out).await;
        out.clear();
        self.bufs.out = out;
        result.map(drop)
    }
}

/// The header fields of a request that steer its handling.
#[derive(Default)]
struct Fields<'a> {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer coding named is chunked.
    chunked_last: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    content_type: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Takes note of one field; Err carries the status to answer.
    fn add(&mut self, name: &str, value: &'a [u8]) -> Result<(), u16> {
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_decimal(trim(value)).ok_or(400u16)?;
            // RFC 9112 §6.3 ¶5: differing lengths make the framing unknowable.
            if self.content_length.is_some_and(|seen| seen != length) {
                return Err(400);
            }
            self.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
            if let Some(last) = tokens(value).last() {
                self.chunked_last = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue = trim(value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("content-type") {
            self.content_type = Some(value);
        }
        Ok(())
    }
}

/// The non-empty comma-separated elements of a field value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|token| !token.is_empty())
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// A decimal number of at most 19 digits (so it fits a u64), digits only.
pub(super) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

fn connection_header(keep_alive: bool, http10: bool) -> &'static str {
    match (keep_alive, http10) {
        (false, _) => CLOSE,
        (true, true) => KEEP_ALIVE,
        (true, false) => "",
    }
}

/// Writes a response head; `connection` is a complete header line or empty.
pub(super) fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    name: &str,
    content_type: Option<&[u8]>,
    framing: OutFraming,
    connection: &str,
) {
    // Writes into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nX-Origin: {name}\r\n",
        reason(status)
    );
    if let Some(content_type) = content_type {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        OutFraming::Length(length) => {
            let _ = write!(out, "Content-Length: {length}\r\n");
        }
        OutFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        OutFraming::Close | OutFraming::Empty => {}
    }
    out.extend_from_slice(connection.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `bytes` bytes of the repeated filler text.
pub(super) fn write_filler(out: &mut Vec<u8>, bytes: usize) {
    let start = out.len();
    out.extend_from_slice(&FILLER[..bytes.min(FILLER.len())]);
    // Doubling keeps the pattern: every copy starts at a multiple of its length.
    while out.len() - start < bytes {
        let have = out.len() - start;
        out.extend_from_within(start..start + have.min(bytes - have));
    }
}

fn write_chunk_size(out: &mut Vec<u8>, size: usize) {
    let _ = write!(out, "{size:x}\r\n");
}

/// Appends body bytes, as one chunk when `chunked`.
fn push_body(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        if data.is_empty() {
            // A zero-size chunk would end the body.
            return;
        }
        write_chunk_size(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_repeats_the_pattern_to_any_length() {
        for bytes in [0, 1, 13, 14, 26, 100, 70_000] {
            let mut out = b"head".to_vec();
            write_filler(&mut out, bytes);
            assert_eq!(out.len(), 4 + bytes);
            let body = &out[4..];
            for (i, &b) in body.iter().enumerate() {
                assert_eq!(b, FILLER[i % FILLER.len()]);
            }
        }
    }

    #[test]
    fn decimal_lengths_are_strict() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"1234"), Some(1234));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b"1 2"), None);
        assert_eq!(parse_decimal(b"99999999999999999999"), None);
    }

    #[test]
    fn fields_reject_conflicting_lengths_and_read_codings() {
        let mut fields = Fields::default();
        fields.add("Content-Length", b"5").unwrap();
        assert_eq!(fields.add("content-length", b"6"), Err(400));

        let mut fields = Fields::default();
        fields.add("Transfer-Encoding", b"gzip, chunked").unwrap();
        assert!(fields.transfer_encoding && fields.chunked_last);
        fields.add("Transfer-Encoding", b"gzip").unwrap();
        assert!(!fields.chunked_last);

        let mut fields = Fields::default();
        fields.add("Connection", b"Keep-Alive, Upgrade").unwrap();
        assert!(fields.keep_alive && !fields.close);
    }
}
