//! Hash maps keyed by byte strings from the config (host names, path literals) and probed
//! with bytes from requests.
//!
//! The hasher is a fast unkeyed folded multiply, not SipHash: these maps are immutable once
//! built, so a client can only probe them, never insert, and cannot degrade them by choosing
//! colliding keys. It is an implementation detail, not a stable hash; consistent hashing
//! uses [`crate::upstream::balancer::hash_key`], whose values are a contract.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from config byte strings to `V`, probed with `&[u8]`.
pub(super) type BytesMap<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<BytesHasher>>;

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Folds each 64-bit word into the state with a 64×64→128-bit multiply whose halves are
/// xor-ed, so every input bit reaches both the low bits (bucket index) and the high bits
/// (hashbrown's control tag).
#[derive(Default, Clone, Copy)]
pub(super) struct BytesHasher(u64);

impl BytesHasher {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * u128::from(MULTIPLIER);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for BytesHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0; 8];
            le.copy_from_slice(word);
            self.mix(u64::from_le_bytes(le));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            // Assembled in a register: a variable-length copy into a stack array costs a
            // `memcpy` call and a store-forwarding stall, which doubled a lookup (measured).
            let word = tail
                .iter()
                .rev()
                .fold(0, |word, &byte| (word << 8) | u64::from(byte));
            self.mix(word);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // The length prefix `[u8]`'s `Hash` writes first: it tells apart keys whose zero
        // padding would otherwise collide ("a" and "a\0").
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_with_slices() {
        let mut map: BytesMap<u32> = BytesMap::default();
        map.insert(b"api.example.com"[..].into(), 1);
        map.insert(b"a"[..].into(), 2);
        map.insert(b"a\0"[..].into(), 3);
        assert_eq!(map.get(&b"api.example.com"[..]), Some(&1));
        assert_eq!(map.get(&b"a"[..]), Some(&2));
        assert_eq!(map.get(&b"a\0"[..]), Some(&3));
        assert_eq!(map.get(&b"api.example.co"[..]), None);
    }

    #[test]
    fn spreads_keys_differing_in_high_bytes() {
        // Keys that differ only in their seventh byte still land in different buckets of a
        // small table (the low bits differ).
        let buckets: std::collections::HashSet<u64> = (0..64u8)
            .map(|i| {
                let mut hasher = BytesHasher::default();
                hasher.write(&[b's', b'v', b'c', b'0', b'0', b'0', i, b'x']);
                hasher.finish() & 0xff
            })
            .collect();
        assert!(buckets.len() > 40, "{} distinct low bytes", buckets.len());
    }
}
