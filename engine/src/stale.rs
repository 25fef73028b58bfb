//! The per-worker cache of last good responses that a route's `fallback.stale` serves when
//! none of its upstream's endpoints may be used (all down, or their breakers open).
//!
//! A stale answer crosses a privacy boundary: it goes to a client other than the one whose
//! request fetched it. So the store follows what RFC 9111 lets a *shared* cache keep, and keys
//! entries the way such a cache would:
//!
//! - **Key** ([`StaleRequest`]): route name, method, host and the whole target, plus the
//!   verified identity on routes that key by it (`stale_per_identity`). The parts are
//!   length-prefixed and compared whole (no hash stands in for the key, so no collision can
//!   hand one key's answer to another).
//! - **Secondary key** (RFC 9111 §4.1): the request field values the response `Vary`s on are
//!   kept with the entry, and only a request with the same values gets it. `Cookie` is always
//!   treated as varied: a response to a request with cookies may depend on them without
//!   saying so, so it only goes back to a request with the very same `Cookie` fields.
//! - **Never stored** (RFC 9111 §3, §4.2.4, §5.2): a response with `Set-Cookie`, `Vary: *`, or
//!   a `Cache-Control` of `no-store`, `private`, `no-cache`, `must-revalidate`,
//!   `proxy-revalidate` or `s-maxage`; one to a request with `Cache-Control: no-store`. A
//!   request with `Authorization` never reaches the cache unless its route keys by identity
//!   (the caller decides who is eligible: see the proxy's `stale_request`).
//! - **Bounds**: at most [`RESPONSE_BYTES_MAX`] per answer, and `server.stale_bytes_max`
//!   over all entries (keys, heads, bodies, varied values and a fixed [`ENTRY_OVERHEAD_BYTES`]
//!   each), the oldest entries making room.
//!
//! Only complete `200` answers to GET are kept: the relayed head without its framing's
//! `Connection`, without the blank line and without the lines the gateway adds per request
//! (request id, rate-limit fields, expanded response edits: the answering request adds its
//! own), and the body. The newest storable answer for a key replaces the older one; a newer
//! 200 that may not be stored drops it. Owned by one worker (`&mut self`), never locked;
//! nothing here runs unless a route has `fallback.stale`.

use std::collections::{HashMap, VecDeque};

use crate::http::request::HeaderField;

/// Largest response (head and body) kept, bytes.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// Bytes an entry counts for besides its own bytes (map and queue slots, boxes), so that many
/// tiny entries also meet the byte bound.
pub const ENTRY_OVERHEAD_BYTES: usize = 128;
/// Most request fields a kept response may vary on (`Vary` names plus `Cookie`); a response
/// varying on more is not kept.
pub const VARY_NAMES_MAX: usize = 8;

/// What marks an answer from the cache (RFC 9111 §5.5 warn-code 110, deprecated but still
/// understood, and our own explicit header).
pub const STALE_FIELDS: &[u8] = b"X-Coregate-Stale: 1\r\nWarning: 110 - \"Response is Stale\"\r\n";

/// Response `Cache-Control` directives under which a shared cache may not keep a response
/// or may not serve it stale (RFC 9111 §5.2.2: `no-store`, `private`; §4.2.4: `no-cache`,
/// `must-revalidate`, `proxy-revalidate`, `s-maxage` forbid stale answers).
const RESPONSE_DIRECTIVES_REFUSED: [&[u8]; 6] = [
    b"no-store",
    b"private",
    b"no-cache",
    b"must-revalidate",
    b"proxy-revalidate",
    b"s-maxage",
];

/// The parts of a request's primary key, borrowed from its head.
pub struct KeyParts<'a> {
    pub route: &'a str,
    pub method: &'a [u8],
    pub host: &'a [u8],
    pub target: &'a [u8],
    /// The verified identity on a route that keys by it; `None` on one that does not.
    pub identity: Option<&'a [u8]>,
}

/// A request that may be answered from, or fill, the cache: its primary key and a copy of
/// its head, kept until the response says which fields it varies on.
pub struct StaleRequest {
    key: Box<[u8]>,
    /// The request head's bytes and its fields as spans into them.
    head: Box<[u8]>,
    fields: Box<[HeaderField]>,
}

impl StaleRequest {
    /// Copies what the cache needs of a request whose head (`fields`, spans into `head`)
    /// is still in the read buffer.
    pub fn new(parts: &KeyParts<'_>, head: &[u8], fields: &[HeaderField]) -> StaleRequest {
        let mut key = Vec::with_capacity(
            parts.route.len() + parts.method.len() + parts.host.len() + parts.target.len() + 32,
        );
        for part in [
            parts.route.as_bytes(),
            parts.method,
            parts.host,
            parts.target,
        ] {
            push_part(&mut key, part);
        }
        match parts.identity {
            None => key.push(0),
            Some(identity) => {
                key.push(1);
                push_part(&mut key, identity);
            }
        }
        StaleRequest {
            key: key.into(),
            head: head.into(),
            fields: fields.into(),
        }
    }

    /// The values of the request's fields named `lower_name`, in order.
    fn values<'a>(&'a self, lower_name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name.get(&self.head).eq_ignore_ascii_case(lower_name))
            .map(|f| f.value.get(&self.head))
    }

    /// Appends the secondary key for `names`: per name, whether the request has the field
    /// and each of its values, length-prefixed (so no two sets of values encode alike).
    fn push_varied(&self, names: &[Box<[u8]>], out: &mut Vec<u8>) {
        for name in names {
            let mut values = self.values(name).peekable();
            out.push(u8::from(values.peek().is_some()));
            for value in values {
                push_part(out, value);
            }
            out.push(0xff);
        }
    }

    /// Whether the request itself forbids storing its response (`Cache-Control: no-store`,
    /// RFC 9111 §5.2.1.5).
    fn forbids_store(&self) -> bool {
        self.values(b"cache-control")
            .any(|v| directives(v).any(|d| d.eq_ignore_ascii_case(b"no-store")))
    }
}

/// Appends `part` with its length in front.
fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_le_bytes());
    out.extend_from_slice(part);
}

/// The directive names of one `Cache-Control` field value, lower or mixed case as sent. A
/// comma inside a quoted argument may yield a stray piece; that errs towards refusing.
fn directives(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|d| {
        let name = d.split(|&b| b == b'=').next().unwrap_or_default();
        name.trim_ascii()
    })
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2).
fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The request field names (lower case) a response varies on — its `Vary` names and
/// `Cookie` — or `None` when a shared cache may not keep it. `fields` are the response's
/// (name, value) pairs.
pub fn varied_names<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<Vec<Box<[u8]>>> {
    let mut names: Vec<Box<[u8]>> = vec![b"cookie"[..].into()];
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"set-cookie") {
            return None;
        }
        if name.eq_ignore_ascii_case(b"cache-control")
            && directives(value).any(|d| {
                RESPONSE_DIRECTIVES_REFUSED
                    .iter()
                    .any(|r| d.eq_ignore_ascii_case(r))
            })
        {
            return None;
        }
        if name.eq_ignore_ascii_case(b"vary") {
            for varied in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if varied.is_empty() {
                    continue;
                }
                // `*`, or a name no request field could have: the response cannot be matched.
                if varied == b"*" || !is_token(varied) {
                    return None;
                }
                if !names.iter().any(|n| n.eq_ignore_ascii_case(varied)) {
                    if names.len() == VARY_NAMES_MAX {
                        return None;
                    }
                    names.push(varied.to_ascii_lowercase().into());
                }
            }
        }
    }
    Some(names)
}

struct Stored {
    /// Status line and fields, each ending in CRLF, without the blank line.
    head: Box<[u8]>,
    body: Box<[u8]>,
    /// Lower-case names of the request fields the response varies on.
    varied_names: Box<[Box<[u8]>]>,
    /// Their values in the request that fetched it ([`StaleRequest::push_varied`]).
    varied: Box<[u8]>,
    /// When it was stored, to tell its slot in [`StaleCache::order`] from older ones.
    serial: u64,
}

impl Stored {
    /// What the entry counts against the byte bound under a key of `key_bytes`: the key is
    /// held twice (map and queue).
    fn bytes(&self, key_bytes: usize) -> usize {
        2 * key_bytes
            + self.head.len()
            + self.body.len()
            + self.varied_names.iter().map(|n| n.len()).sum::<usize>()
            + self.varied.len()
            + ENTRY_OVERHEAD_BYTES
    }
}

/// A worker's last good responses.
#[derive(Default)]
pub struct StaleCache {
    entries: HashMap<Box<[u8]>, Stored>,
    /// Keys with the serial they were stored under, oldest first: the front makes room
    /// first. A slot whose entry was since replaced or dropped (its serial differs) lingers
    /// until it reaches the front or the queue is compacted.
    order: VecDeque<(u64, Box<[u8]>)>,
    /// What the entries count against the bound.
    bytes: usize,
    /// The next entry's serial.
    serial: u64,
}

impl StaleCache {
    /// Keeps `head` (a relayed head without the blank line and without per-request lines)
    /// and `body` as the last good answer to `req`, varying on `varied_names` (from
    /// [`varied_names`]), within `bytes_max` over all entries. Returns whether it was kept;
    /// when not, any older answer for the key is dropped, so a stale answer is always the
    /// last one the upstream allowed to be kept.
    pub fn store(
        &mut self,
        req: &StaleRequest,
        varied_names: Vec<Box<[u8]>>,
        head: &[u8],
        body: &[u8],
        bytes_max: usize,
    ) -> bool {
        if head.len() + body.len() > RESPONSE_BYTES_MAX || req.forbids_store() {
            self.forget(req);
            return false;
        }
        let mut varied = Vec::new();
        req.push_varied(&varied_names, &mut varied);
        let serial = self.serial;
        self.serial += 1;
        let stored = Stored {
            head: head.into(),
            body: body.into(),
            varied_names: varied_names.into(),
            varied: varied.into(),
            serial,
        };
        let size = stored.bytes(req.key.len());
        self.forget(req);
        if size > bytes_max {
            return false;
        }
        while self.bytes + size > bytes_max {
            let Some((serial, oldest)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&oldest)
                .is_some_and(|e| e.serial == serial)
            {
                self.remove(&oldest);
            }
        }
        self.bytes += size;
        self.entries.insert(req.key.clone(), stored);
        self.order.push_back((serial, req.key.clone()));
        // Slots of replaced or dropped entries linger; keep the queue within twice the map.
        if self.order.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(serial, k)| entries.get(k).is_some_and(|e| e.serial == *serial));
        }
        debug_assert!(self.bytes <= bytes_max);
        true
    }

    /// Drops the answer kept for `req`'s key, if any.
    pub fn forget(&mut self, req: &StaleRequest) {
        self.remove(&req.key);
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(gone) = self.entries.remove(key) {
            self.bytes -= gone.bytes(key.len());
        }
    }

    /// The answer kept for `req`, if its varied fields match: the stored head, then `extra`
    /// (this request's own added lines), marked stale, with `Connection: close` when `close`.
    pub fn answer(&self, req: &StaleRequest, extra: &[u8], close: bool) -> Option<Vec<u8>> {
        let stored = self.entries.get(&req.key)?;
        let mut varied = Vec::new();
        req.push_varied(&stored.varied_names, &mut varied);
        if *varied != *stored.varied {
            return None;
        }
        let mut out = Vec::with_capacity(stored.head.len() + extra.len() + stored.body.len() + 128);
        out.extend_from_slice(&stored.head);
        out.extend_from_slice(extra);
        out.extend_from_slice(STALE_FIELDS);
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&stored.body);
        Some(out)
    }

    /// Bytes the entries count against the bound.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Limits, RequestHead};

    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n";
    const BOUND: usize = 1 << 20;

    /// A parsed GET of `target` on route `r` with these field lines.
    fn request(target: &str, fields: &str, identity: Option<&str>) -> StaleRequest {
        let text = format!("GET {target} HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        let mut head = RequestHead::new();
        let limits = Limits {
            request_line_bytes_max: 1024,
            header_bytes_max: 4096,
            header_count_max: 32,
        };
        head.parse(text.as_bytes(), &limits)
            .expect("valid")
            .expect("complete");
        let parts = KeyParts {
            route: "r",
            method: b"GET",
            host: b"h",
            target: target.as_bytes(),
            identity: identity.map(str::as_bytes),
        };
        StaleRequest::new(&parts, text.as_bytes(), &head.headers)
    }

    fn names(fields: &[(&str, &str)]) -> Option<Vec<Box<[u8]>>> {
        varied_names(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn answers_are_marked_and_carry_the_answering_requests_lines() {
        let mut cache = StaleCache::default();
        let req = request("/x", "", None);
        assert!(cache.store(&req, names(&[]).unwrap(), HEAD, b"hi", BOUND));
        let keep = String::from_utf8(cache.answer(&req, b"X-Request-Id: 2\r\n", false).unwrap());
        assert_eq!(
            keep.unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: 2\r\nX-Coregate-Stale: 1\r\n\
             Warning: 110 - \"Response is Stale\"\r\n\r\nhi"
        );
        let close = String::from_utf8(cache.answer(&req, b"", true).unwrap()).unwrap();
        assert!(close.ends_with("Connection: close\r\n\r\nhi"), "{close}");
        assert!(cache.answer(&request("/y", "", None), b"", false).is_none());
    }

    #[test]
    fn responses_a_shared_cache_may_not_keep_are_refused() {
        for refused in [
            &[("Set-Cookie", "a=b")][..],
            &[("Cache-Control", "max-age=60, private")],
            &[("cache-control", "No-Store")],
            &[("Cache-Control", "no-cache")],
            &[("Cache-Control", "must-revalidate")],
            &[("Cache-Control", "s-maxage=5")],
            &[("Vary", "*")],
            &[("Vary", "accept, *")],
            &[("Vary", "a, b, c, d, e, f, g, h")],
        ] {
            assert!(names(refused).is_none(), "{refused:?}");
        }
        let kept = names(&[
            ("Cache-Control", "public, max-age=60"),
            ("Vary", "Accept-Language, accept-language"),
            ("Vary", "X-Tenant"),
        ])
        .unwrap();
        assert_eq!(
            kept,
            [&b"cookie"[..], b"accept-language", b"x-tenant"].map(Box::from)
        );
    }

    #[test]
    fn a_request_with_no_store_is_not_kept_and_drops_the_older_answer() {
        let mut cache = StaleCache::default();
        let req = request("/x", "", None);
        assert!(cache.store(&req, names(&[]).unwrap(), HEAD, b"hi", BOUND));
        let no_store = request("/x", "Cache-Control: no-store\r\n", None);
        assert!(!cache.store(&no_store, names(&[]).unwrap(), HEAD, b"hi", BOUND));
        assert!(cache.answer(&req, b"", false).is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn varied_fields_and_cookies_must_match() {
        let mut cache = StaleCache::default();
        let en = request("/x", "Accept-Language: en\r\nCookie: s=1\r\n", None);
        let vary = names(&[("Vary", "accept-language")]).unwrap();
        assert!(cache.store(&en, vary, HEAD, b"en", BOUND));
        assert!(cache.answer(&en, b"", false).is_some());
        for other in [
            "Accept-Language: fr\r\nCookie: s=1\r\n",
            "Accept-Language: en\r\nCookie: s=2\r\n",
            "Accept-Language: en\r\n",
            "Cookie: s=1\r\n",
            "Accept-Language: en\r\nCookie: s=1\r\nCookie: t=2\r\n",
        ] {
            assert!(
                cache
                    .answer(&request("/x", other, None), b"", false)
                    .is_none(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn keys_never_mix_identities_or_targets() {
        let mut cache = StaleCache::default();
        let alice = request("/x", "", Some("alice"));
        assert!(cache.store(&alice, names(&[]).unwrap(), HEAD, b"al", BOUND));
        assert!(cache.answer(&alice, b"", false).is_some());
        for other in [
            request("/x", "", Some("bob")),
            request("/x", "", None),
            request("/x", "", Some("")),
            request("/x?", "", Some("alice")),
        ] {
            assert!(cache.answer(&other, b"", false).is_none());
        }
    }

    #[test]
    fn bounded_in_bytes_oldest_first() {
        let mut cache = StaleCache::default();
        let body = vec![b'x'; 1000];
        let one = request("/0", "", None);
        assert!(cache.store(&one, names(&[]).unwrap(), HEAD, &body, BOUND));
        let size = cache.bytes();
        let bound = 3 * size;
        for i in 0..10 {
            let req = request(&format!("/{i}"), "", None);
            assert!(cache.store(&req, names(&[]).unwrap(), HEAD, &body, bound));
            assert!(cache.bytes() <= bound);
        }
        assert_eq!(cache.entries.len(), 3);
        assert!(cache.answer(&request("/6", "", None), b"", false).is_none());
        assert!(cache.answer(&request("/9", "", None), b"", false).is_some());
        // Replacing an entry does not count it twice.
        let nine = request("/9", "", None);
        assert!(cache.store(&nine, names(&[]).unwrap(), HEAD, &body, bound));
        assert_eq!(cache.bytes(), 3 * size);
        // Too large for one answer, or for the bound: not kept.
        let big = vec![0; RESPONSE_BYTES_MAX];
        assert!(!cache.store(&nine, names(&[]).unwrap(), HEAD, &big, BOUND));
        assert!(!cache.store(&nine, names(&[]).unwrap(), HEAD, &body, size - 1));
        assert!(cache.answer(&nine, b"", false).is_none());
        assert_eq!(cache.bytes(), 2 * size);
    }
}
