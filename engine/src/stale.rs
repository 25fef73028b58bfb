//! The per-worker cache of last good responses that a route's `fallback.stale` serves when
//! none of its upstream's endpoints may be used (all down, or their breakers open).
//!
//! Only small, complete `200` answers to GET requests go in: the relayed head (without its
//! blank line or `Connection: close`) and the body, keyed by a hash of host and target.
//! Bounded in entries and in bytes per entry; the oldest entry makes room. Owned by one
//! worker (`&mut self`), never locked.

use std::collections::{HashMap, VecDeque};

/// Entries kept per worker.
pub const ENTRIES_MAX: usize = 1024;
/// Largest response (head and body) kept, bytes.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// What marks an answer from the cache (RFC 9111 §5.5 warn-code 110, deprecated but still
/// understood, and our own explicit header).
pub const STALE_FIELDS: &[u8] = b"X-Coregate-Stale: 1\r\nWarning: 110 - \"Response is Stale\"\r\n";

struct Stored {
    /// Status line and fields, each ending in CRLF, without the blank line.
    head: Box<[u8]>,
    body: Box<[u8]>,
}

/// A worker's last good responses.
#[derive(Default)]
pub struct StaleCache {
    entries: HashMap<u64, Stored>,
    order: VecDeque<u64>,
}

impl StaleCache {
    /// Keeps `encoded_head` (a complete relayed head, blank line included) and `body` as the
    /// last good answer for `key`, if small enough.
    pub fn store(&mut self, key: u64, encoded_head: &[u8], body: &[u8]) {
        if encoded_head.len() + body.len() > RESPONSE_BYTES_MAX {
            return;
        }
        let Some(mut head) = encoded_head.strip_suffix(b"\r\n") else {
            return;
        };
        if let Some(without) = head.strip_suffix(b"Connection: close\r\n") {
            head = without;
        }
        let stored = Stored {
            head: head.into(),
            body: body.into(),
        };
        if self.entries.insert(key, stored).is_none() {
            self.order.push_back(key);
            if self.order.len() > ENTRIES_MAX {
                if let Some(oldest) = self.order.pop_front() {
                    self.entries.remove(&oldest);
                }
            }
        }
        debug_assert!(self.entries.len() <= ENTRIES_MAX);
    }

    /// The stored answer for `key`, marked stale, with `Connection: close` when `close`.
    pub fn answer(&self, key: u64, close: bool) -> Option<Vec<u8>> {
        let stored = self.entries.get(&key)?;
        let mut out = Vec::with_capacity(stored.head.len() + stored.body.len() + 128);
        out.extend_from_slice(&stored.head);
        out.extend_from_slice(STALE_FIELDS);
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&stored.body);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n";

    #[test]
    fn answers_are_marked_and_reframed() {
        let mut cache = StaleCache::default();
        cache.store(7, HEAD, b"hi");
        let keep = String::from_utf8(cache.answer(7, false).unwrap()).unwrap();
        assert_eq!(
            keep,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Coregate-Stale: 1\r\n\
             Warning: 110 - \"Response is Stale\"\r\n\r\nhi"
        );
        let close = String::from_utf8(cache.answer(7, true).unwrap()).unwrap();
        assert!(close.ends_with("Connection: close\r\n\r\nhi"), "{close}");
        assert!(cache.answer(8, false).is_none());
    }

    #[test]
    fn bounded_in_entries_and_size() {
        let mut cache = StaleCache::default();
        for key in 0..(ENTRIES_MAX as u64 + 10) {
            cache.store(key, HEAD, b"hi");
        }
        assert_eq!(cache.entries.len(), ENTRIES_MAX);
        assert!(cache.answer(0, false).is_none(), "the oldest made room");
        assert!(cache.answer(ENTRIES_MAX as u64 + 9, false).is_some());
        cache.store(u64::MAX, HEAD, &vec![0; RESPONSE_BYTES_MAX]);
        assert!(cache.answer(u64::MAX, false).is_none());
    }
}
