//! TCP sockets over the driver: accept, connect, receive, send and readiness, each one
//! operation (`Recv`/`Send`, with MSG_NOSIGNAL, as monoio's; `Readv`/`Writev` for vectors),
//! or under epoll the same syscall, non-blocking, after readiness.
//!
//! [`TcpStream`] implements monoio's rent-style `AsyncReadRent`/`AsyncWriteRent` (the buffer
//! is moved into the operation and handed back with its result), and `Split`, so code written
//! against those traits runs on this runtime as on monoio. Closing is the socket's drop, a
//! plain `close(2)`: an operation still in flight holds the kernel's own reference to it.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use io_uring::{opcode, types};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::BufResult;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::driver::{Driver, Op};
use crate::epoll::Interest;

/// A listening socket.
pub struct TcpListener {
    fd: OwnedFd,
}

impl TcpListener {
    /// Takes a bound, listening socket (made non-blocking, which io_uring ignores and epoll
    /// needs).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            fd: listener.into(),
        })
    }

    /// A listener bound to `addr` (a plain bind: for SO_REUSEPORT, bind the socket yourself
    /// and use [`TcpListener::from_std`]).
    pub fn bind(addr: impl std::net::ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::from_std(std::net::TcpListener::bind(addr)?)
    }

    /// The next connection and its peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let peer: Box<(libc::sockaddr_storage, libc::socklen_t)> = Box::new((
            // SAFETY: all-zero is a valid sockaddr_storage.
            unsafe { std::mem::zeroed() },
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        ));
        let (result, peer) = Op::start(
            self.fd.as_raw_fd(),
            Interest::Read,
            peer,
            |peer| {
                opcode::Accept::new(
                    types::Fd(self.fd.as_raw_fd()),
                    std::ptr::addr_of_mut!(peer.0).cast(),
                    &mut peer.1,
                )
                .flags(libc::SOCK_CLOEXEC)
                .build()
            },
            |fd, peer| {
                // SAFETY: the address storage and its length are the operation's own.
                cvt(unsafe {
                    libc::accept4(
                        fd,
                        std::ptr::addr_of_mut!(peer.0).cast(),
                        &mut peer.1,
                        libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    )
                } as isize)
            },
        )
        .await;
        // SAFETY: the kernel returned a new descriptor, now owned here.
        let stream = TcpStream {
            fd: unsafe { OwnedFd::from_raw_fd(result? as i32) },
        };
        Ok((stream, socket_addr(&peer.0)?))
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(SockRef::from(&self.fd).local_addr()?)
    }
}

/// The socket address the kernel wrote into `storage`.
fn socket_addr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        family => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("accepted a socket of address family {family}"),
        )),
    }
}

/// A listening socket on `addr` that other sockets may bind beside (SO_REUSEADDR and
/// SO_REUSEPORT), as each thread-per-core server thread has its own: blocking, for
/// [`TcpListener::from_std`] or another runtime's listener.
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A syscall's return as a count, or the error it set.
fn cvt(n: isize) -> io::Result<u32> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as u32)
    }
}

fn sock_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
}

/// A connected TCP socket.
pub struct TcpStream {
    fd: OwnedFd,
}

// SAFETY: the halves' operations are independent submissions on the one descriptor.
unsafe impl Split for TcpStream {}

impl TcpStream {
    /// Connects to `addr`.
    pub async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        // Owned before the first await, so the socket is forgotten by epoll when dropped.
        let stream = TcpStream { fd: socket.into() };
        let fd = stream.fd.as_raw_fd();
        let addr = Box::new(SockAddr::from(addr));
        let sqe = |addr: &mut Box<SockAddr>| {
            opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len()).build()
        };
        let (result, _) = Op::start(fd, Interest::Write, addr, sqe, |fd, addr| {
            // Repeated once the socket is writable: it then tells how the attempt ended.
            // SAFETY: the address is the operation's own.
            match cvt(unsafe { libc::connect(fd, addr.as_ptr().cast(), addr.len()) } as isize) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EALREADY)) => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(e) if e.raw_os_error() == Some(libc::EISCONN) => Ok(0),
                other => other,
            }
        })
        .await;
        result?;
        Ok(stream)
    }

    /// Sets TCP_NODELAY.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_tcp_nodelay(nodelay)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(SockRef::from(&self.fd).peer_addr()?)
    }

    /// Resolves once the socket has something to read (or has ended or failed): a poll
    /// operation, which pins no buffer while it waits.
    pub async fn readable(&self) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let sqe = |_: &mut ()| opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build();
        let (result, ()) = Op::start(fd, Interest::Read, (), sqe, |fd, _| {
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, no wait.
            match cvt(unsafe { libc::poll(&mut poll, 1, 0) } as isize)? {
                0 => Err(io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            }
        })
        .await;
        result.map(drop)
    }

    /// Receives into `buf` from its start; the [`Recv`] can be cancelled while it waits.
    pub fn recv<T: IoBufMut>(&self, buf: T) -> Recv<T> {
        let fd = self.fd.as_raw_fd();
        Recv(Op::start(
            fd,
            Interest::Read,
            buf,
            |buf| {
                opcode::Recv::new(types::Fd(fd), buf.write_ptr(), buf.bytes_total() as u32).build()
            },
            // SAFETY: the buffer is the operation's own, `bytes_total` long.
            |fd, buf| cvt(unsafe { libc::recv(fd, buf.write_ptr().cast(), buf.bytes_total(), 0) }),
        ))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        Driver::forget(self.fd.as_raw_fd());
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        Driver::forget(self.fd.as_raw_fd());
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// A receive in flight: resolves to the count and the buffer, whose length it sets.
pub struct Recv<T: IoBufMut>(Op<T>);

impl<T: IoBufMut> Recv<T> {
    /// Asks the kernel to cancel the receive: it resolves with `ECANCELED`, or with the bytes
    /// that arrived first, and the buffer either way.
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

impl<T: IoBufMut> Future for Recv<T> {
    type Output = BufResult<usize, T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (result, mut buf) = ready!(Pin::new(&mut self.0).poll(cx));
        if let Ok(n) = result {
            // SAFETY: the kernel wrote `n` bytes from the buffer's start.
            unsafe { buf.set_init(n as usize) };
        }
        Poll::Ready((result.map(|n| n as usize), buf))
    }
}

/// Whether an error is the `ECANCELED` of a cancelled operation.
pub fn is_cancelled(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECANCELED)
}

impl AsyncReadRent for TcpStream {
    fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        self.recv(buf)
    }

    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        let fd = self.fd.as_raw_fd();
        let op = Op::start(
            fd,
            Interest::Read,
            buf,
            |buf| {
                opcode::Readv::new(
                    types::Fd(fd),
                    buf.write_iovec_ptr(),
                    buf.write_iovec_len() as u32,
                )
                .build()
            },
            // SAFETY: the vectors are the operation's own.
            |fd, buf| {
                cvt(unsafe { libc::readv(fd, buf.write_iovec_ptr(), buf.write_iovec_len() as i32) })
            },
        );
        async move {
            let (result, mut buf) = op.await;
            if let Ok(n) = result {
                // SAFETY: the kernel wrote `n` bytes across the vectors, in order.
                unsafe { buf.set_init(n as usize) };
            }
            (result.map(|n| n as usize), buf)
        }
    }
}

impl AsyncWriteRent for TcpStream {
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        let fd = self.fd.as_raw_fd();
        counted(Op::start(
            fd,
            Interest::Write,
            buf,
            |buf| {
                opcode::Send::new(types::Fd(fd), buf.read_ptr(), buf.bytes_init() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            },
            // SAFETY: the buffer is the operation's own, `bytes_init` long.
            |fd, buf| {
                cvt(unsafe {
                    libc::send(
                        fd,
                        buf.read_ptr().cast(),
                        buf.bytes_init(),
                        libc::MSG_NOSIGNAL,
                    )
                })
            },
        ))
    }

    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        let fd = self.fd.as_raw_fd();
        counted(Op::start(
            fd,
            Interest::Write,
            buf,
            |buf| {
                opcode::Writev::new(
                    types::Fd(fd),
                    buf.read_iovec_ptr(),
                    buf.read_iovec_len() as u32,
                )
                .build()
            },
            // SAFETY: the vectors are the operation's own.
            |fd, buf| {
                cvt(unsafe { libc::writev(fd, buf.read_iovec_ptr(), buf.read_iovec_len() as i32) })
            },
        ))
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Shuts down the sending side (a FIN); the socket stays open for reading.
    async fn shutdown(&mut self) -> io::Result<()> {
        SockRef::from(&self.fd).shutdown(std::net::Shutdown::Write)
    }
}

/// An operation's result as a byte count, with its buffer.
async fn counted<T: 'static>(op: Op<T>) -> BufResult<usize, T> {
    let (result, buf) = op.await;
    (result.map(|n| n as usize), buf)
}
