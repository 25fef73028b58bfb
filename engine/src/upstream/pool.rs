//! Per-worker keep-alive pools of upstream connections, one stack per endpoint address.
//!
//! Owned by one worker (`&mut self`, no locks). Taken most-recently-used first so the warm
//! connections stay busy and the cold ones age out at the bottom of the stack, where the
//! sweep finds them. Pools are keyed by address, not by snapshot, so a reload keeps them.
//! An idle pooled connection holds no buffer: only its socket.
//!
//! A connection is handed out only while it is quiet: nothing to read and not closed, checked
//! with one non-blocking `recv(MSG_PEEK | MSG_DONTWAIT)` when it is taken (a syscall, about a
//! microsecond, on every reuse; it works the same on any runtime). Bytes an upstream sends on
//! an idle connection answer no request of ours: a late body after a HEAD, 204 or 304, a
//! second response, or its end of stream. Served to the next request they would answer it
//! with another client's response (issue 14, defect 3), so such a connection is closed and
//! the next one tried. A TLS connection counts as not quiet also when its session holds
//! unread ciphertext or plaintext; a post-handshake message that arrives after the response
//! (a late TLS 1.3 NewSessionTicket or KeyUpdate) therefore costs the connection too. Tickets
//! sent with the handshake's last flight are read with the first response and cost nothing.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::Instant;

use rustc_hash::FxHashMap;
use socket2::SockRef;

use crate::stream::Stream;

struct Idle {
    stream: Stream,
    expires_at: Instant,
}

/// The idle connections of one worker.
#[derive(Default)]
pub struct Pools {
    /// Keyed by address and TLS identity (0 for plain; else [`ClientTls::identity`]): a
    /// connection verified for one upstream's CA and server name is never handed to another
    /// that verifies differently, nor a plain one to an upstream switched to TLS.
    ///
    /// Hashed with Fx, not SipHash: the keys are the configuration's own endpoints, not
    /// anything a client chooses, and this is hashed twice per proxied request.
    ///
    /// [`ClientTls::identity`]: crate::tls::ClientTls::identity
    by_addr: FxHashMap<(SocketAddr, u128), VecDeque<Idle>>,
}

impl Pools {
    /// The most recently returned idle connection to `addr` that has not expired and is
    /// quiet ([`is_quiet`]); the ones found not quiet on the way are closed.
    pub fn take(&mut self, addr: SocketAddr, identity: u128, now: Instant) -> Option<Stream> {
        let idle = self.by_addr.get_mut(&(addr, identity))?;
        while let Some(mut conn) = idle.pop_back() {
            if conn.expires_at <= now {
                // Expired: everything below it is older still.
                idle.clear();
                break;
            }
            if is_quiet(&mut conn.stream) {
                return Some(conn.stream);
            }
        }
        None
    }

    /// Returns a connection that finished a response cleanly. Beyond `idle_max` the oldest
    /// idle one is closed.
    pub fn put(
        &mut self,
        addr: SocketAddr,
        identity: u128,
        mut stream: Stream,
        idle_max: usize,
        expires_at: Instant,
    ) {
        if idle_max == 0 {
            return;
        }
        // An idle TLS connection keeps its session, not its buffers.
        if let Stream::Tls(tls) = &mut stream {
            tls.release_buffers();
        }
        debug_assert_eq!(identity == 0, !stream.is_tls());
        let idle = self.by_addr.entry((addr, identity)).or_default();
        if idle.len() >= idle_max {
            idle.pop_front();
        }
        idle.push_back(Idle { stream, expires_at });
        debug_assert!(idle.len() <= idle_max);
    }

    /// Closes expired connections; called about once a second by the worker.
    pub fn sweep(&mut self, now: Instant) {
        for idle in self.by_addr.values_mut() {
            while idle.front().is_some_and(|c| c.expires_at <= now) {
                idle.pop_front();
            }
        }
        self.by_addr.retain(|_, idle| !idle.is_empty());
    }

    /// Idle connections held, over all endpoints.
    pub fn idle_count(&self) -> usize {
        self.by_addr.values().map(VecDeque::len).sum()
    }
}

/// Whether an idle upstream connection has nothing to read and has not been closed by its
/// peer: only then may the next request be written on it. An error other than "would block"
/// (a reset) also counts as not quiet.
fn is_quiet(stream: &mut Stream) -> bool {
    if let Stream::Tls(tls) = stream {
        if tls.has_buffered() {
            return false;
        }
    }
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    let peeked =
        SockRef::from(stream.tcp()).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
