//! API-key authentication: a compiled set of keys (stored only as SHA-256 digests, each
//! with its consumer name), the lookup of a presented key, and the helpers that take the
//! key from a header value or a query parameter and strip it from the query before the
//! request is forwarded.
//!
//! Never: stores, logs or returns a key (only its digest is kept, and errors name the
//! consumer, never the key or its hash); compares digests in variable time (the final
//! equality folds over all 32 bytes); allocates on lookup; does I/O.
//!
//! Measured (`cargo bench --bench jwt`, 2-core dev VM shared with concurrent builds,
//! 2026-11-28): a lookup of a 32-byte key in a set of 1 000 takes 140–210 ns, hit or miss,
//! nearly all of it the SHA-256 of the presented key.

use std::collections::HashMap;

use ring::digest;

/// Longest presented key we hash, in bytes; a longer one is refused without hashing it.
pub const KEY_BYTES_MAX: usize = 1024;

const DIGEST_BYTES: usize = 32;

/// The API keys of one `[auth.api_keys.NAME]`, compiled once per snapshot; immutable and
/// shared by all workers.
#[derive(Debug)]
pub struct ApiKeys {
    /// Keyed by the first 8 bytes of the digest; the full digest is then compared in
    /// constant time. Which 64-bit bucket a guess lands in reveals nothing about any key
    /// (SHA-256 is preimage resistant), so the map's own variable-time probe is harmless.
    by_prefix: HashMap<u64, Vec<Entry>>,
    len: usize,
}

#[derive(Debug)]
struct Entry {
    digest: [u8; DIGEST_BYTES],
    consumer: Box<str>,
}

impl ApiKeys {
    /// Builds the set from `(consumer, sha256_hex)` pairs (hex in either case, exactly 64
    /// digits). Refuses malformed hex, an empty or unprintable consumer name (it travels
    /// upstream in a header) and the same digest given twice; errors name the consumer,
    /// never the hash.
    pub fn new(entries: &[(String, String)]) -> Result<ApiKeys, String> {
        let mut by_prefix: HashMap<u64, Vec<Entry>> = HashMap::with_capacity(entries.len());
        for (consumer, hex) in entries {
            if consumer.is_empty() || consumer.bytes().any(|b| b < 0x20 || b == 0x7f) {
                return Err(format!(
                    "consumer name {consumer:?} must be non-empty and printable"
                ));
            }
            let digest = parse_sha256_hex(hex).ok_or_else(|| {
                format!("key hash of consumer {consumer:?} is not 64 hex digits (a SHA-256)")
            })?;
            let bucket = by_prefix.entry(prefix(&digest)).or_default();
            if bucket.iter().any(|e| e.digest == digest) {
                return Err(format!(
                    "consumer {consumer:?} has the same key as another consumer"
                ));
            }
            bucket.push(Entry {
                digest,
                consumer: consumer.as_str().into(),
            });
        }
        Ok(ApiKeys {
            by_prefix,
            len: entries.len(),
        })
    }

    /// The consumer owning `presented_key`, or `None`. Hashes the key (SHA-256) and
    /// compares digests in constant time. Allocates nothing.
    pub fn lookup(&self, presented_key: &[u8]) -> Option<&str> {
        if presented_key.is_empty() || presented_key.len() > KEY_BYTES_MAX {
            return None;
        }
        let computed = digest::digest(&digest::SHA256, presented_key);
        let computed: &[u8; DIGEST_BYTES] = computed.as_ref().try_into().ok()?;
        let bucket = self.by_prefix.get(&prefix(computed))?;
        bucket
            .iter()
            .find(|entry| constant_time_eq(&entry.digest, computed))
            .map(|entry| &*entry.consumer)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn prefix(digest: &[u8; DIGEST_BYTES]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Equality that always looks at every byte (ring 0.17 deprecates its `constant_time`
/// module). `black_box` keeps the optimiser from turning the fold into an early exit.
fn constant_time_eq(a: &[u8; DIGEST_BYTES], b: &[u8; DIGEST_BYTES]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn parse_sha256_hex(hex: &str) -> Option<[u8; DIGEST_BYTES]> {
    let hex = hex.as_bytes();
    if hex.len() != 2 * DIGEST_BYTES {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; DIGEST_BYTES];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The key in a header value, optional whitespace trimmed (RFC 9110 §5.5); `None` when
/// empty.
pub fn header_key(value: &[u8]) -> Option<&[u8]> {
    let start = value.iter().position(|&b| b != b' ' && b != b'\t')?;
    let end = value.iter().rposition(|&b| b != b' ' && b != b'\t')?;
    Some(&value[start..=end])
}

/// The value of the first `name=value` pair named `name` in a query string (the part after
/// `?`, without it), split on `&` only. No percent-decoding is done, of the name or the
/// value: API keys are URL-safe by contract, and a key sent percent-encoded simply does
/// not match. `None` when absent or empty (`name=`, `name`).
pub fn query_param<'a>(query: &'a [u8], name: &str) -> Option<&'a [u8]> {
    query
        .split(|&b| b == b'&')
        .find_map(|pair| match split_pair(pair) {
            (n, value) if n == name.as_bytes() => Some(value),
            _ => None,
        })
        .filter(|value| !value.is_empty())
}

/// How many parameters of `query` are named `name`, with a value or without.
pub fn query_param_count(query: &[u8], name: &str) -> usize {
    query
        .split(|&b| b == b'&')
        .filter(|pair| split_pair(pair).0 == name.as_bytes())
        .count()
}

/// Appends `query` without any `name` parameter (every occurrence, with or without a
/// value) to `out`; the other parameters keep their order and bytes, empty pairs are
/// dropped. When nothing is appended the forwarded target should carry no `?` at all.
pub fn strip_query_param(query: &[u8], name: &str, out: &mut Vec<u8>) {
    let start = out.len();
    for pair in query.split(|&b| b == b'&') {
        if pair.is_empty() || split_pair(pair).0 == name.as_bytes() {
            continue;
        }
        if out.len() > start {
            out.push(b'&');
        }
        out.extend_from_slice(pair);
    }
}

/// (name, value) of `name=value`; a pair without `=` has an empty value.
fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(eq) => (&pair[..eq], &pair[eq + 1..]),
        None => (pair, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(key: &[u8]) -> String {
        digest::digest(&digest::SHA256, key)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn keys() -> ApiKeys {
        ApiKeys::new(&[
            ("mobile".to_string(), sha256_hex(b"k-mobile-123")),
            (
                "partner".to_string(),
                sha256_hex(b"k-partner-456").to_uppercase(),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn lookup_finds_the_consumer_by_key() {
        let keys = keys();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.lookup(b"k-mobile-123"), Some("mobile"));
        assert_eq!(keys.lookup(b"k-partner-456"), Some("partner"));
        assert_eq!(keys.lookup(b"k-mobile-124"), None);
        assert_eq!(keys.lookup(b"k-mobile-12"), None);
        assert_eq!(keys.lookup(b""), None);
        assert_eq!(keys.lookup(&[b'k'; KEY_BYTES_MAX + 1]), None);
        // The stored hash is not itself a key.
        assert_eq!(keys.lookup(sha256_hex(b"k-mobile-123").as_bytes()), None);
    }

    #[test]
    fn malformed_configuration_is_refused_without_echoing_hashes() {
        let hash = sha256_hex(b"secret");
        let bad = [
            hash[..63].to_string(),
            format!("{hash}0"),
            hash.replacen(|c: char| c.is_ascii_digit(), "g", 1),
            format!(" {}", &hash[1..]),
            String::new(),
        ];
        for hex in bad {
            let err = ApiKeys::new(&[("a".to_string(), hex)]).unwrap_err();
            assert!(err.contains("\"a\"") && !err.contains(&hash[..16]), "{err}");
        }
        assert!(ApiKeys::new(&[(String::new(), hash.clone())]).is_err());
        assert!(ApiKeys::new(&[("x\ny".to_string(), hash.clone())]).is_err());
        let dup = ApiKeys::new(&[
            ("a".to_string(), hash.clone()),
            ("b".to_string(), hash.to_uppercase()),
        ]);
        assert!(dup.unwrap_err().contains("\"b\""));
        assert!(ApiKeys::new(&[]).unwrap().is_empty());
    }

    #[test]
    fn digests_sharing_a_prefix_bucket_are_told_apart() {
        // Put a near-twin digest (same first 31 bytes) first in the bucket by hand: the
        // lookup must compare full digests.
        let mut keys = keys();
        let real = parse_sha256_hex(&sha256_hex(b"k-mobile-123")).unwrap();
        let mut twin = real;
        twin[31] ^= 1;
        keys.by_prefix.entry(prefix(&real)).or_default().insert(
            0,
            Entry {
                digest: twin,
                consumer: "impostor".into(),
            },
        );
        assert_eq!(keys.lookup(b"k-mobile-123"), Some("mobile"));
        assert!(constant_time_eq(&real, &real));
        assert!(!constant_time_eq(&real, &twin));
    }

    #[test]
    fn header_key_trims_whitespace() {
        assert_eq!(header_key(b"  abc \t"), Some(&b"abc"[..]));
        assert_eq!(header_key(b"abc"), Some(&b"abc"[..]));
        assert_eq!(header_key(b" \t "), None);
        assert_eq!(header_key(b""), None);
    }

    #[test]
    fn query_param_takes_the_first_exact_name() {
        let q = b"a=1&api_key=k-1&b=2&api_key=k-2&api_keyx=3";
        assert_eq!(query_param(q, "api_key"), Some(&b"k-1"[..]));
        assert_eq!(query_param(q, "b"), Some(&b"2"[..]));
        assert_eq!(query_param(q, "api"), None);
        assert_eq!(query_param(q, "API_KEY"), None);
        assert_eq!(query_param(b"api_key=&x=1", "api_key"), None);
        assert_eq!(query_param(b"api_key", "api_key"), None);
        assert_eq!(query_param(b"", "api_key"), None);
        // Values keep any '=' after the first, and nothing is percent-decoded.
        assert_eq!(query_param(b"k=a=b", "k"), Some(&b"a=b"[..]));
        assert_eq!(query_param(b"api%5Fkey=x&k=a%2Fb", "api_key"), None);
        assert_eq!(
            query_param(b"api%5Fkey=x&k=a%2Fb", "k"),
            Some(&b"a%2Fb"[..])
        );
    }

    #[test]
    fn query_param_count_counts_every_occurrence() {
        assert_eq!(
            query_param_count(b"api_key=1&a=1&api_key=2&api_key", "api_key"),
            3
        );
        assert_eq!(query_param_count(b"api_keyx=1&xapi_key=2", "api_key"), 0);
        assert_eq!(query_param_count(b"", "api_key"), 0);
    }

    #[test]
    fn strip_query_param_removes_every_occurrence() {
        let cases: [(&[u8], &[u8]); 8] = [
            (b"a=1&api_key=k&b=2", b"a=1&b=2"),
            (b"api_key=k", b""),
            (b"api_key=k&b=2", b"b=2"),
            (b"a=1&api_key=k", b"a=1"),
            (b"api_key=1&a=1&api_key=2&api_key", b"a=1"),
            (b"a=1&api_keyx=2&xapi_key=3", b"a=1&api_keyx=2&xapi_key=3"),
            (b"a=%41&&b", b"a=%41&b"),
            (b"", b""),
        ];
        for (query, expected) in cases {
            let mut out = Vec::new();
            strip_query_param(query, "api_key", &mut out);
            assert_eq!(out, expected, "{}", String::from_utf8_lossy(query));
        }
        // It appends: a caller may write the path and '?' first.
        let mut out = b"/v1/items?".to_vec();
        strip_query_param(b"api_key=k&page=2", "api_key", &mut out);
        assert_eq!(out, b"/v1/items?page=2");
    }
}
