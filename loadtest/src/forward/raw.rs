//! `loadtest forward --ring raw[+fixed][+multishot]`: the forwarder of [`super`] on an io_uring
//! driven directly (the io-uring crate, no runtime), to measure what the kernel-side ways below
//! the floor that issue #3 names save: registered files (`+fixed`: every socket in the ring's
//! file table, so no operation looks its file up) and multishot receives into a provided-buffer
//! ring (`+multishot`: one receive per socket stays armed for the connection's life, taking a
//! buffer from a ring of [`RING_BUFFERS`] per arrival, instead of a receive submitted, and its
//! poll armed, per read). Plain `raw` is the same loop with one receive per read into a buffer
//! per direction, as the monoio forwarder does, so that the flags' share is measured apart
//! from the runtime's.
//!
//! One thread per listed core, each with its own ring (the gateway's flags: COOP_TASKRUN,
//! SINGLE_ISSUER, DEFER_TASKRUN; the kernel must have them, there is no fallback), its own
//! SO_REUSEPORT listener, and an event loop: submit, wait for one completion, handle every
//! completion there is. A direction has at most one send in flight; with `+multishot` the
//! chunks that arrive meanwhile queue behind it, holding their buffers. The upstream connection
//! is made with a blocking connect(2) in the loop when a client is accepted (loopback, keep-alive
//! load: once per connection). When either direction ends, both sockets are shut down, and the
//! connection's slot (and file-table entries) is reused once its last operation has completed.
//! Nothing stops it from outside but the end of the process.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::SyncSender;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::BUF_BYTES;
use crate::runtime::{self, Driver};

/// Buffers of the provided-buffer ring (a power of two): 64 connections hold at most a few
/// each at once.
const RING_BUFFERS: u16 = 512;
/// The provided-buffer ring's group id.
const BUFFER_GROUP: u16 = 0;
/// Submission queue entries.
const RING_ENTRIES: u32 = 4096;
/// Connections one thread serves at once (two file-table entries each with `+fixed`).
const CONNECTIONS_MAX: usize = 8192;

/// Completion kinds, in the low bits of a user_data; the connection slot and side above them.
const KIND_RECV: u64 = 0;
const KIND_SEND: u64 = 1;
const KIND_ACCEPT: u64 = 2;

/// The kernel-side techniques a raw ring uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawRing {
    pub fixed_files: bool,
    pub multishot: bool,
}

/// Body of a raw forwarder thread: reports its address on `ready`, then forwards until the
/// process exits.
pub fn run(
    bind_addr: SocketAddr,
    upstream: SocketAddr,
    core: Option<usize>,
    raw: RawRing,
    ready: SyncSender<io::Result<(SocketAddr, Driver)>>,
) {
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let mut forwarder = match Forwarder::new(bind_addr, upstream, raw) {
        Ok(forwarder) => forwarder,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok((forwarder.addr, Driver::UringTuned))).is_ok() {
        if let Err(e) = forwarder.serve() {
            eprintln!("forward: ring failed: {e}");
            std::process::exit(1);
        }
    }
}

/// One direction of a connection: the socket it reads, and what it has read and not yet
/// written to the other side.
struct Side {
    fd: RawFd,
    /// Without `+multishot`: the buffer its one receive at a time reads into.
    buf: Vec<u8>,
    /// With `+multishot`: received chunks (buffer id, offset, length) not yet sent on; the
    /// first is in flight when `sending`.
    chunks: VecDeque<(u16, u32, u32)>,
    /// Without `+multishot`: what is left to send of `buf` (offset, length).
    unsent: (u32, u32),
    sending: bool,
    /// Its peer ended the stream; the connection closes once what it sent has gone on.
    ended: bool,
}

/// A client connection and its upstream connection (sides 0 and 1).
struct Pair {
    sides: [Side; 2],
    closing: bool,
    /// Operations submitted and not yet completed for good.
    in_flight: u32,
}

struct Forwarder {
    ring: IoUring,
    raw: RawRing,
    listener: socket2::Socket,
    addr: SocketAddr,
    upstream: SocketAddr,
    pairs: Vec<Option<Pair>>,
    free: Vec<usize>,
    /// The provided-buffer ring: its entries (page-aligned, shared with the kernel), its
    /// tail, and the buffers they point into.
    entries: *mut types::BufRingEntry,
    tail: u16,
    buffers: Vec<u8>,
    /// Directions whose multishot receive ended for want of a buffer, re-armed when one
    /// comes back.
    starved: Vec<(usize, usize)>,
}

fn user_data(slot: usize, side: usize, kind: u64) -> u64 {
    ((slot as u64) << 8) | ((side as u64) << 4) | kind
}

impl Forwarder {
    fn new(bind_addr: SocketAddr, upstream: SocketAddr, raw: RawRing) -> io::Result<Forwarder> {
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(RING_ENTRIES)?;
        let (listener, addr) = runtime::bind_reuseport(bind_addr, false)?;
        if raw.fixed_files {
            ring.submitter()
                .register_files_sparse(2 * CONNECTIONS_MAX as u32)?;
        }
        let mut forwarder = Forwarder {
            ring,
            raw,
            listener,
            addr,
            upstream,
            pairs: Vec::new(),
            free: Vec::new(),
            entries: std::ptr::null_mut(),
            tail: 0,
            buffers: Vec::new(),
            starved: Vec::new(),
        };
        if raw.multishot {
            forwarder.register_buffers()?;
        }
        Ok(forwarder)
    }

    fn register_buffers(&mut self) -> io::Result<()> {
        let bytes = usize::from(RING_BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, checked below; mmap returns page-aligned
        // memory, which the kernel requires of a buffer ring. It is never unmapped: the
        // thread runs until the process exits.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.entries = entries.cast();
        self.buffers = vec![0; usize::from(RING_BUFFERS) * BUF_BYTES];
        // SAFETY: the mapping holds RING_BUFFERS entries and lives as long as the ring.
        unsafe {
            self.ring.submitter().register_buf_ring(
                self.entries as u64,
                RING_BUFFERS,
                BUFFER_GROUP,
            )?;
        }
        for bid in 0..RING_BUFFERS {
            self.give_buffer(bid);
        }
        Ok(())
    }

    /// Puts buffer `bid` back in the provided-buffer ring, where the kernel can take it.
    fn give_buffer(&mut self, bid: u16) {
        // SAFETY: the index is masked into the mapping's RING_BUFFERS entries, and the entry
        // at the tail is not the kernel's until the tail moves past it below.
        unsafe {
            let entry = &mut *self
                .entries
                .add(usize::from(self.tail & (RING_BUFFERS - 1)));
            entry.set_addr(self.buffer(bid) as u64);
            entry.set_len(BUF_BYTES as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field of the first entry, aligned for a u16; the kernel reads it
        // with acquire ordering, so the entry written above is visible before the new tail.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn buffer(&self, bid: u16) -> *const u8 {
        self.buffers[usize::from(bid) * BUF_BYTES..].as_ptr()
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: every buffer an entry points into (a pair's Vec, the provided buffers)
        // stays allocated and untouched until its completion has been handled.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    fn fd(&self, slot: usize, side: usize) -> Fd {
        let pair = self.pairs[slot]
            .as_ref()
            .expect("an operation's connection");
        if self.raw.fixed_files {
            Fd::Fixed(types::Fixed((2 * slot + side) as u32))
        } else {
            Fd::Plain(types::Fd(pair.sides[side].fd))
        }
    }

    fn pair(&mut self, slot: usize) -> &mut Pair {
        self.pairs[slot]
            .as_mut()
            .expect("an operation's connection")
    }

    fn accept(&mut self) -> io::Result<()> {
        let listener = types::Fd(self.listener.as_raw_fd());
        let entry = opcode::Accept::new(listener, std::ptr::null_mut(), std::ptr::null_mut())
            .build()
            .user_data(KIND_ACCEPT);
        self.push(entry)
    }

    /// Arms the receive of `side` of the connection in `slot`.
    fn receive(&mut self, slot: usize, side: usize) -> io::Result<()> {
        let fd = self.fd(slot, side);
        let entry = if self.raw.multishot {
            fd.recv_multi()
        } else {
            let buf = self.pair(slot).sides[side].buf.as_mut_ptr();
            fd.recv(buf, BUF_BYTES as u32)
        };
        self.pair(slot).in_flight += 1;
        self.push(entry.user_data(user_data(slot, side, KIND_RECV)))
    }

    /// Sends `len` bytes at `ptr`, read from `side`, to the other side.
    fn send(&mut self, slot: usize, side: usize, ptr: *const u8, len: u32) -> io::Result<()> {
        let entry = self.fd(slot, 1 - side).send(ptr, len);
        let pair = self.pair(slot);
        pair.in_flight += 1;
        pair.sides[side].sending = true;
        self.push(entry.user_data(user_data(slot, side, KIND_SEND)))
    }

    fn serve(&mut self) -> io::Result<()> {
        self.accept()?;
        let mut completions = Vec::with_capacity(RING_ENTRIES as usize);
        loop {
            self.ring.submit_and_wait(1)?;
            completions.clear();
            completions.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(data, res, flags) in &completions {
                let (slot, side) = ((data >> 8) as usize, ((data >> 4) & 0xf) as usize);
                match data & 0xf {
                    KIND_ACCEPT => self.accepted(res)?,
                    KIND_RECV => self.received(slot, side, res, flags)?,
                    _ => self.sent(slot, side, res)?,
                }
            }
        }
    }

    fn accepted(&mut self, res: i32) -> io::Result<()> {
        self.accept()?;
        if res < 0 {
            return Ok(());
        }
        let client = res;
        let Some(server) = self.connect() else {
            // SAFETY: the accepted socket is ours and nothing else refers to it.
            unsafe { libc::close(client) };
            return Ok(());
        };
        // Each send carries a whole receive; Nagle would only hold it back.
        set_nodelay(client);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.pairs.len() < CONNECTIONS_MAX => {
                self.pairs.push(None);
                self.pairs.len() - 1
            }
            None => {
                // SAFETY: both sockets are ours and nothing else refers to them.
                unsafe {
                    libc::close(client);
                    libc::close(server);
                }
                return Ok(());
            }
        };
        if self.raw.fixed_files {
            self.ring
                .submitter()
                .register_files_update((2 * slot) as u32, &[client, server])?;
        }
        let side = |fd| Side {
            fd,
            buf: Vec::new(),
            chunks: VecDeque::new(),
            unsent: (0, 0),
            sending: false,
            ended: false,
        };
        let mut pair = Pair {
            sides: [side(client), side(server)],
            closing: false,
            in_flight: 0,
        };
        if !self.raw.multishot {
            for side in &mut pair.sides {
                side.buf = vec![0; BUF_BYTES];
            }
        }
        self.pairs[slot] = Some(pair);
        self.receive(slot, 0)?;
        self.receive(slot, 1)
    }

    fn connect(&self) -> Option<RawFd> {
        let stream = TcpStream::connect(self.upstream).ok()?;
        stream.set_nodelay(true).ok()?;
        Some(stream.into_raw_fd())
    }

    fn received(&mut self, slot: usize, side: usize, res: i32, flags: u32) -> io::Result<()> {
        let multishot_goes_on = self.raw.multishot && cqueue::more(flags);
        if !multishot_goes_on {
            self.pair(slot).in_flight -= 1;
        }
        let bid = cqueue::buffer_select(flags);
        if self.pair(slot).closing || res <= 0 {
            if let Some(bid) = bid {
                self.give_buffer(bid);
            }
            let pair = self.pair(slot);
            if !pair.closing {
                if res == -libc::ENOBUFS {
                    self.starved.push((slot, side));
                    return Ok(());
                }
                if res == 0 && pair.sides[side].sending {
                    // The end of the stream: what arrived before it goes on first.
                    pair.sides[side].ended = true;
                    return Ok(());
                }
            }
            return self.close(slot);
        }
        let len = res as u32;
        if let Some(bid) = bid {
            let pair = self.pair(slot);
            pair.sides[side].chunks.push_back((bid, 0, len));
            if !pair.sides[side].sending {
                let ptr = self.buffer(bid);
                self.send(slot, side, ptr, len)?;
            }
            if !multishot_goes_on {
                self.receive(slot, side)?;
            }
            Ok(())
        } else {
            let pair = self.pair(slot);
            pair.sides[side].unsent = (0, len);
            let ptr = pair.sides[side].buf.as_ptr();
            self.send(slot, side, ptr, len)
        }
    }

    fn sent(&mut self, slot: usize, side: usize, res: i32) -> io::Result<()> {
        let multishot = self.raw.multishot;
        let pair = self.pair(slot);
        pair.in_flight -= 1;
        pair.sides[side].sending = false;
        if pair.closing || res < 0 {
            return self.close(slot);
        }
        let done = res as u32;
        if !multishot {
            let (offset, len) = pair.sides[side].unsent;
            let (offset, len) = (offset + done, len - done);
            pair.sides[side].unsent = (offset, len);
            if len > 0 {
                let ptr = pair.sides[side].buf[offset as usize..].as_ptr();
                return self.send(slot, side, ptr, len);
            }
            return self.receive(slot, side);
        }
        let chunks = &mut pair.sides[side].chunks;
        let (bid, offset, len) = chunks.pop_front().expect("the chunk in flight");
        if len > done {
            chunks.push_front((bid, offset + done, len - done));
        } else {
            self.give_buffer(bid);
            for (slot, side) in std::mem::take(&mut self.starved) {
                if self.pairs[slot].as_ref().is_some_and(|p| !p.closing) {
                    self.receive(slot, side)?;
                }
            }
        }
        let direction = &self.pair(slot).sides[side];
        match (direction.chunks.front().copied(), direction.ended) {
            (Some((bid, offset, len)), _) => {
                let ptr = self.buffer(bid).wrapping_add(offset as usize);
                self.send(slot, side, ptr, len)
            }
            (None, true) => self.close(slot),
            (None, false) => Ok(()),
        }
    }

    /// Shuts both sockets down, so that their pending operations complete; once none is
    /// left, closes them and frees the slot.
    fn close(&mut self, slot: usize) -> io::Result<()> {
        let pair = self.pair(slot);
        if !pair.closing {
            pair.closing = true;
            for side in &pair.sides {
                // SAFETY: shutdown(2) on a socket this pair owns.
                unsafe { libc::shutdown(side.fd, libc::SHUT_RDWR) };
            }
        }
        if pair.in_flight > 0 {
            return Ok(());
        }
        let Some(pair) = self.pairs[slot].take() else {
            return Ok(());
        };
        let mut queued = Vec::new();
        for side in &pair.sides {
            queued.extend(side.chunks.iter().map(|&(bid, _, _)| bid));
            // SAFETY: no operation refers to the socket any more.
            unsafe { libc::close(side.fd) };
        }
        for bid in queued {
            self.give_buffer(bid);
        }
        if self.raw.fixed_files {
            self.ring
                .submitter()
                .register_files_update((2 * slot) as u32, &[-1, -1])?;
        }
        self.free.push(slot);
        Ok(())
    }
}

fn set_nodelay(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) with a pointer to an int and its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A socket as an operation names it: by descriptor, or by its index in the file table.
#[derive(Clone, Copy)]
enum Fd {
    Plain(types::Fd),
    Fixed(types::Fixed),
}

impl Fd {
    fn recv(self, buf: *mut u8, len: u32) -> squeue::Entry {
        match self {
            Fd::Plain(fd) => opcode::Recv::new(fd, buf, len).build(),
            Fd::Fixed(fd) => opcode::Recv::new(fd, buf, len).build(),
        }
    }

    fn recv_multi(self) -> squeue::Entry {
        match self {
            Fd::Plain(fd) => opcode::RecvMulti::new(fd, BUFFER_GROUP).build(),
            Fd::Fixed(fd) => opcode::RecvMulti::new(fd, BUFFER_GROUP).build(),
        }
    }

    fn send(self, buf: *const u8, len: u32) -> squeue::Entry {
        match self {
            Fd::Plain(fd) => opcode::Send::new(fd, buf, len).build(),
            Fd::Fixed(fd) => opcode::Send::new(fd, buf, len).build(),
        }
    }
}
