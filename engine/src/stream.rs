//! The byte stream the proxy reads and writes on either side: plain TCP, or TLS over TCP.
//!
//! An enum rather than a type parameter, so the proxy loop, the upstream pools and the
//! aggregation are compiled once; the branch per I/O call costs nothing next to the call.

use std::io;

use coregate_rt::TcpStream;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::BufResult;

use crate::tls::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: the session is large, and most connections are plain.
    Tls(Box<TlsStream>),
}

// SAFETY: both variants are safe to split (TcpStream by coregate-rt, TlsStream by its own
// argument), and a stream never changes variant while split.
unsafe impl Split for Stream {}

impl Stream {
    /// The socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.tcp(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf).await,
            Stream::Tls(tls) => tls.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(tcp) => tcp.readv(buf).await,
            Stream::Tls(tls) => tls.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf).await,
            Stream::Tls(tls) => tls.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(tcp) => tcp.writev(buf).await,
            Stream::Tls(tls) => tls.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush().await,
            Stream::Tls(tls) => tls.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.shutdown().await,
            Stream::Tls(tls) => tls.shutdown().await,
        }
    }
}
