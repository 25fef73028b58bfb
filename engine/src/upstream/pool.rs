//! Per-worker keep-alive pools of upstream connections, one stack per endpoint address.
//!
//! Owned by one worker (`&mut self`, no locks). Taken most-recently-used first so the warm
//! connections stay busy and the cold ones age out at the bottom of the stack, where the
//! sweep finds them. Pools are keyed by address, not by snapshot, so a reload keeps them.
//! An idle pooled connection holds no buffer: only its socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use rustc_hash::FxHashMap;

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
    /// The most recently returned idle connection to `addr` that has not expired.
    pub fn take(&mut self, addr: SocketAddr, identity: u128, now: Instant) -> Option<Stream> {
        let idle = self.by_addr.get_mut(&(addr, identity))?;
        while let Some(conn) = idle.pop_back() {
            if conn.expires_at > now {
                return Some(conn.stream);
            }
            // Expired: everything below it is older still.
            idle.clear();
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
