//! A rustls session over a `coregate-rt` `TcpStream`: the gateway's own adapter between
//! rustls's synchronous state machine and owned-buffer (rent-style) I/O.
//!
//! Owns two ciphertext buffers: `incoming` (read from the socket, not yet handed to rustls)
//! and `outgoing` (records rustls produced, being written). Neither is allocated while the
//! connection is idle: [`TlsStream::release_buffers`] drops them between requests, so an idle
//! TLS connection costs the rustls session and the socket, not two 16 KiB buffers (as an
//! adapter with fixed buffers would).
//!
//! Reads never write: an alert or a post-handshake message rustls queues while reading goes
//! out with the next write. That is what makes the two halves of a split stream safe to drive
//! concurrently (see the `Split` impl). The handshake, which runs before any split, does flush
//! alerts, so a client that fails it learns why.
//!
//! A read ends cleanly (Ok(0)) only at the peer's `close_notify`; a TCP close without one is
//! an `UnexpectedEof` error, so a close-delimited body cut short is never taken as whole.
//! Plaintext is copied into the caller's buffer without ever viewing its uninitialised
//! capacity as `&mut [u8]` (see `read_plain`).

use std::io::{self, BufRead as _, Write as _};

use coregate_rt::TcpStream;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::BufResult;
use rustls::Connection;

/// Ciphertext read per socket read: one full TLS record (16 KiB of plaintext plus the record
/// header and the largest AEAD overhead rustls produces).
const INCOMING_BYTES: usize = 16 * 1024 + 5 + 256;

/// One TLS connection, server side (a client of the gateway) or client side (to an upstream).
pub struct TlsStream {
    tcp: TcpStream,
    session: Connection,
    /// Ciphertext read from the socket; `incoming[consumed..]` is not yet given to rustls.
    incoming: Vec<u8>,
    consumed: usize,
    /// Scratch for records on their way out; empty between writes.
    outgoing: Vec<u8>,
}

// SAFETY: monoio's owned halves (`Splitable`) hand both halves a `&mut` to the one stream,
// on one thread.
// The read half only ever awaits a socket read into `incoming` and the write half only a
// socket write of `outgoing`; `session` is touched by each only between awaits (never held
// across one), and a read never writes to the socket (module doc). So the two directions never
// interleave bytes on the socket and never observe the session mid-update.
unsafe impl Split for TlsStream {}

/// How a TLS handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The peer sent something rustls refused (bad version, no shared cipher suite, a
    /// certificate that does not verify, …); the alert was sent when possible.
    Protocol(rustls::Error),
    /// The socket failed or closed mid-handshake.
    Io(io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Protocol(e) => write!(f, "TLS handshake refused: {e}"),
            HandshakeError::Io(e) => write!(f, "TLS handshake I/O: {e}"),
        }
    }
}

impl TlsStream {
    /// Runs the handshake of `session` over `tcp` to completion. No timeout of its own: the
    /// caller bounds it.
    pub async fn handshake(tcp: TcpStream, session: Connection) -> Result<Self, HandshakeError> {
        let mut stream = TlsStream {
            tcp,
            session,
            incoming: Vec::new(),
            consumed: 0,
            outgoing: Vec::new(),
        };
        loop {
            stream.flush_records().await.map_err(HandshakeError::Io)?;
            if !stream.session.is_handshaking() {
                break;
            }
            match stream.fill().await {
                Ok(0) => {
                    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "closed mid-handshake");
                    return Err(HandshakeError::Io(eof));
                }
                Ok(_) => {}
                Err(Fill::Protocol(e)) => {
                    // The alert rustls queued tells the peer what went wrong.
                    let _ = stream.flush_records().await;
                    return Err(HandshakeError::Protocol(e));
                }
                Err(Fill::Io(e)) => return Err(HandshakeError::Io(e)),
            }
        }
        Ok(stream)
    }

    /// The session, for what was negotiated (SNI name, resumption, version).
    pub fn session(&self) -> &Connection {
        &self.session
    }

    /// The socket under the session.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The socket under the session, to wait on while idle. Whatever is read from it must be
    /// handed back with [`TlsStream::put_incoming`].
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Whether ciphertext already read is still waiting for rustls, or plaintext for the
    /// reader: then a read completes without touching the socket.
    pub fn has_buffered(&mut self) -> bool {
        if self.consumed < self.incoming.len() {
            return true;
        }
        matches!(self.session.process_new_packets(), Ok(state) if state.plaintext_bytes_to_read() > 0)
    }

    /// Drops the ciphertext buffers when they hold nothing pending, so an idle connection
    /// keeps no buffer. The next read or write allocates again.
    pub fn release_buffers(&mut self) {
        if self.consumed == self.incoming.len() {
            self.incoming = Vec::new();
            self.consumed = 0;
        }
        self.outgoing = Vec::new();
    }

    /// The ciphertext buffer, empty, for a read done outside the stream (the wait between
    /// requests reads the socket itself); give it back with [`TlsStream::put_incoming`].
    /// Call only when nothing is pending ([`TlsStream::has_buffered`] is false).
    pub fn take_incoming(&mut self) -> Vec<u8> {
        debug_assert_eq!(self.consumed, self.incoming.len(), "ciphertext pending");
        self.consumed = 0;
        let mut buf = std::mem::take(&mut self.incoming);
        buf.clear();
        if buf.capacity() == 0 {
            buf.reserve(INCOMING_BYTES);
        }
        buf
    }

    /// Puts back the buffer of [`TlsStream::take_incoming`], holding what that read got:
    /// ciphertext ahead of any further socket read.
    pub fn put_incoming(&mut self, buf: Vec<u8>) {
        self.incoming = buf;
        self.consumed = 0;
    }

    /// Writes every record rustls has queued.
    async fn flush_records(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            self.outgoing.clear();
            self.session.write_tls(&mut self.outgoing)?;
            let out = std::mem::take(&mut self.outgoing);
            let (res, out) = self.tcp.write_all(out).await;
            self.outgoing = out;
            res?;
        }
        Ok(())
    }

    /// Gives rustls more ciphertext: what is left in `incoming`, else one socket read.
    /// Ok(0) is the end of the TCP stream (also told to rustls, which then decides whether
    /// the close was clean).
    async fn fill(&mut self) -> Result<usize, Fill> {
        if self.consumed == self.incoming.len() {
            self.consumed = 0;
            let mut buf = std::mem::take(&mut self.incoming);
            buf.clear();
            if buf.capacity() < INCOMING_BYTES {
                buf.reserve(INCOMING_BYTES);
            }
            let (res, buf) = self.tcp.read(buf).await;
            self.incoming = buf;
            if res.map_err(Fill::Io)? == 0 {
                // An empty read tells rustls the transport closed.
                let _ = self.session.read_tls(&mut io::empty());
                return Ok(0);
            }
        }
        let before = self.consumed;
        while self.consumed < self.incoming.len() {
            let mut rest = &self.incoming[self.consumed..];
            match self.session.read_tls(&mut rest) {
                Ok(n) => self.consumed += n,
                // rustls holds as much undelivered plaintext as it will take: the reader
                // must drain it first; the rest stays in `incoming`.
                Err(_) => break,
            }
            if let Err(e) = self.session.process_new_packets() {
                return Err(Fill::Protocol(e));
            }
        }
        Ok((self.consumed - before).max(1))
    }

    /// Copies plaintext to `dst`, which is valid for `len` bytes that may be uninitialised
    /// (the spare capacity of a read buffer). Ok(0) only at a clean close: the peer's
    /// `close_notify`. A TCP close without it is an `UnexpectedEof` error, because the peer
    /// (or anyone on the path able to send a FIN) may have cut the data short: a body whose
    /// end is the end of the stream (RFC 9112 §6.3, item 8) is then truncated, not complete
    /// (RFC 8446 §6.1).
    ///
    /// `dst` is never made into a `&mut [u8]`: one over uninitialised bytes is undefined
    /// behaviour, and rustls's `Read::read` wants one. Its `BufRead::fill_buf` lends its own
    /// plaintext instead, which is copied with a raw copy, so the caller's buffer needs no
    /// zero-filling (not once, not per read).
    async fn read_plain(&mut self, dst: *mut u8, len: usize) -> io::Result<usize> {
        if len == 0 {
            return Ok(0);
        }
        loop {
            let mut reader = self.session.reader();
            let mut copied = 0;
            let end = loop {
                match reader.fill_buf() {
                    Ok([]) => break Ok(()),
                    Ok(chunk) => {
                        let n = chunk.len().min(len - copied);
                        // SAFETY: `dst` is valid for writes of `len` bytes (the caller's
                        // contract) and `copied + n <= len`; `chunk` is rustls's own buffer,
                        // so the two cannot overlap.
                        unsafe {
                            std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst.add(copied), n)
                        };
                        reader.consume(n);
                        copied += n;
                        if copied == len {
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            if copied > 0 {
                // An end or an error after data shows up on the next read.
                return Ok(copied);
            }
            match end {
                Ok(()) => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.fill().await {
                Ok(_) => {}
                Err(Fill::Io(e)) => return Err(e),
                Err(Fill::Protocol(e)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
    }

    /// Encrypts all of `src` and writes the records.
    async fn write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < src.len() {
            // rustls takes what fits its outgoing limit; flush and go on.
            written += self.session.writer().write(&src[written..])?;
            self.flush_records().await?;
        }
        Ok(written)
    }
}

/// How giving rustls more ciphertext failed.
enum Fill {
    Io(io::Error),
    Protocol(rustls::Error),
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // `write_ptr` is valid for `bytes_total` bytes, initialised or not, while `buf` is
        // owned here (IoBufMut's contract); `read_plain` writes through it without making
        // a reference to the uninitialised part.
        let res = self.read_plain(buf.write_ptr(), buf.bytes_total()).await;
        if let Ok(n) = res {
            // SAFETY: `n` bytes were just written at `write_ptr`.
            unsafe { buf.set_init(n) };
        }
        (res, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer views the first iovec of `buf`, which outlives this call.
        let res = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = res {
            // SAFETY: `n` bytes were written into the first iovec.
            unsafe { buf.set_init(n) };
        }
        (res, buf)
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` is valid for `bytes_init` bytes while `buf` is owned here.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let res = self.write_plain(src).await;
        (res, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer views the first iovec of `buf`, which outlives this call.
        let res = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (res, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.session.writer().flush()?;
        self.flush_records().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.send_close_notify();
        self.flush_records().await?;
        self.tcp.shutdown().await
    }
}
