//! The per-worker cache of last good responses that a route's `fallback.stale` serves when
//! none of its upstream's endpoints may be used (all down, or their breakers open).
//!
//! A stale answer crosses a privacy boundary: it goes to a client other than the one whose
//! request fetched it. So the store follows what RFC 9111 lets a *shared* cache keep, and keys
//! entries the way such a cache would:
//!
//! - **Key** ([`StaleRequest`]): the route's [`RouteFingerprint`], method, host and the whole
//!   target, plus the verified identity on routes that key by it (`stale_per_identity`). The
//!   request's parts are length-prefixed and compared whole (no hash stands in for them, so
//!   no collision can hand one key's answer to another).
//! - **Route**: a route is known by what it means, not by its name or position: a SHA-256
//!   over its name and everything that decides which requests it matches, where they go and
//!   what the upstream and the client get ([`RouteFingerprint::of`]), computed once per
//!   snapshot (a SHA-256 collision between two routes of one config is not a practical
//!   concern, and the config is the operator's, not a client's). Entries outlive a reload: a
//!   route the reload left alone keeps answering from them, while a route that changed, or
//!   another one that took over a default `route-N` name, never sees them (they age out under
//!   the byte bound). A request in flight across a reload stores under the fingerprint of
//!   the route it started on.
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
use std::fmt::{self, Write as _};

use coregate_config::{AuthRef, Config, Route};
use ring::digest;

use crate::http::request::HeaderField;
use crate::policy::Policies;

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

/// What the cache knows a route by (see [`RouteFingerprint::of`]). Its `Debug` prints
/// nothing of it: it is derived from key material too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RouteFingerprint([u8; 32]);

impl fmt::Debug for RouteFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouteFingerprint(..)")
    }
}

/// A SHA-256 fed through `fmt::Write`, so `Debug` output goes in without a `String`.
struct Sha256(digest::Context);

impl fmt::Write for Sha256 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

impl RouteFingerprint {
    /// The fingerprint of `route` in `config` (with its compiled `policies`): a SHA-256 over
    /// its name, everything that decides which requests it matches (host, methods, path
    /// pattern and kind, header matchers), where they go (the upstream's name: its endpoints
    /// may change, it is still the same service) and how they are rewritten (path rewrite,
    /// request header edits), how answers are shaped (response header edits, JSON filter,
    /// aggregate parts) and who a request is (the auth policy: its name, and the JWT
    /// verifier's fingerprint over its keys and checks or the API keys with their consumers;
    /// `stale_per_identity`). Timeouts, retries, rate limits, body limits, request ids and
    /// the static fallback change none of that and are left out, so a reload that only tunes
    /// them keeps the route's stale answers.
    ///
    /// Values go in as their derived `Debug` output, which prints every field and quotes
    /// strings with escapes, so two different routes never write the same text; the text
    /// only ever meets fingerprints of the same process. Runs when a snapshot is compiled,
    /// never per request.
    pub fn of(config: &Config, policies: &Policies, route: &Route) -> RouteFingerprint {
        // Named field by field, without `..`: a field added to `Route` must be placed here.
        let Route {
            name,
            host,
            methods,
            path,
            headers,
            headers_present,
            upstream,
            rewrite,
            body_bytes_max: _,
            auth,
            rate_limit: _,
            fallback,
            request_headers,
            response_headers,
            request_id: _,
            retry: _,
            timeout_ms: _,
            aggregate,
            json_filter,
        } = route;
        let upstream = &config.upstreams[*upstream].name;
        // Upstreams by name: their indexes move when one is added.
        let parts: Vec<_> = aggregate
            .iter()
            .map(|p| {
                (
                    &config.upstreams[p.upstream].name,
                    &p.key,
                    &p.path,
                    p.required,
                )
            })
            .collect();
        let mut sha = Sha256(digest::Context::new(&digest::SHA256));
        // Writing into a digest cannot fail.
        let _ = write!(
            sha,
            "coregate stale route v1\n{name:?}\n{host:?}\n{methods:?}\n{path:?}\n{headers:?}\n\
             {headers_present:?}\n{upstream:?}\n{rewrite:?}\n{request_headers:?}\n\
             {response_headers:?}\n{json_filter:?}\n{parts:?}\n{:?}\n",
            fallback.stale_per_identity
        );
        match *auth {
            None => sha.0.update(b"no auth"),
            Some(AuthRef::Jwt(i)) => {
                let _ = write!(sha, "jwt {:?} ", config.jwt[i].name);
                sha.0.update(policies.jwt[i].fingerprint());
            }
            Some(AuthRef::ApiKey(i)) => {
                let _ = write!(sha, "api keys {:?}", config.api_keys[i]);
            }
        }
        let mut out = [0; 32];
        out.copy_from_slice(sha.0.finish().as_ref());
        RouteFingerprint(out)
    }
}

/// The parts of a request's primary key, borrowed from its head.
pub struct KeyParts<'a> {
    pub route: &'a RouteFingerprint,
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
            parts.route.0.len() + parts.method.len() + parts.host.len() + parts.target.len() + 24,
        );
        // Fixed length, so it needs no length in front.
        key.extend_from_slice(&parts.route.0);
        for part in [parts.method, parts.host, parts.target] {
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
    use crate::snapshot::Snapshot;

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
            route: &RouteFingerprint([7; 32]),
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

    /// The fingerprints of the routes `routes` over upstreams `a` and `b` (and `extra`
    /// upstreams), as a compiled snapshot holds them.
    fn fingerprints(extra: &str, routes: &str) -> Vec<Option<RouteFingerprint>> {
        let text = format!(
            "[[listener]]\naddress = \"127.0.0.1:1\"\n\n\
             [upstreams.a]\nendpoints = [{{ address = \"127.0.0.1:2\" }}]\n\n\
             [upstreams.b]\nendpoints = [{{ address = \"127.0.0.1:3\" }}]\n\n\
             [auth.api_keys.k]\nkeys = [{{ consumer = \"alice\", sha256 = \"{}\" }}]\n\n\
             {extra}{routes}",
            "ab".repeat(32)
        );
        let config = coregate_config::load_str(&text, "t.toml").expect("valid");
        Snapshot::compile(config, 1, None)
            .expect("compiles")
            .route_fingerprints
    }

    /// An unnamed route with a stale fallback and these lines.
    fn route(lines: &str) -> String {
        format!("[[route]]\n{lines}\n[route.fallback]\nstale = true\n\n")
    }

    const BASE: &str = "path_prefix = \"/x\"\nupstream = \"a\"\n";

    #[test]
    fn a_route_keeps_its_fingerprint_where_its_meaning_is_unchanged() {
        let alone = fingerprints("", &route(BASE))[0].expect("a stale route has one");
        // Moved behind another route, under the name it had by its old position.
        let first = route("name = \"first\"\npath = \"/y\"\nupstream = \"b\"");
        let moved = route(&format!("name = \"route-0\"\n{BASE}"));
        assert_eq!(fingerprints("", &(first + &moved))[1], Some(alone));
        // Tuned: deadline, body limit, request ids, another upstream sorted first.
        let tuned = format!("{BASE}timeout_ms = 100\nbody_bytes_max = 10\nrequest_id = true\n");
        let extra = "[upstreams.aa]\nendpoints = [{ address = \"127.0.0.1:4\" }]\n\n";
        assert_eq!(fingerprints(extra, &route(&tuned))[0], Some(alone));
        // Without a stale fallback there is none.
        let plain = format!("[[route]]\n{BASE}");
        assert_eq!(fingerprints("", &plain)[0], None);
    }

    #[test]
    fn a_route_changed_in_what_it_matches_forwards_or_who_it_serves_gets_another() {
        let alone = fingerprints("", &route(BASE))[0];
        let key = "[auth.api_keys.k2]\nkeys = [{ consumer = \"alice\", sha256 = \"".to_owned()
            + &"cd".repeat(32)
            + "\" }]\n\n";
        for (extra, lines) in [
            (
                "",
                "name = \"other\"\npath_prefix = \"/x\"\nupstream = \"a\"",
            ),
            ("", "path = \"/x\"\nupstream = \"a\""),
            ("", "path_prefix = \"/x/y\"\nupstream = \"a\""),
            ("", "path_prefix = \"/x\"\nupstream = \"b\""),
            ("", &format!("{BASE}host = \"example.com\"")),
            ("", &format!("{BASE}methods = [\"GET\"]")),
            ("", &format!("{BASE}headers = {{ \"x-v\" = \"2\" }}")),
            ("", &format!("{BASE}strip_prefix = true")),
            ("", &format!("{BASE}auth = \"k\"")),
            (&*key, &format!("{BASE}auth = \"k2\"")),
            (
                "",
                &format!("{BASE}[route.request_headers]\nset = {{ \"x-v\" = \"2\" }}"),
            ),
            (
                "",
                &format!("{BASE}[route.response_headers]\nremove = [\"x-secret\"]"),
            ),
        ] {
            let changed = fingerprints(extra, &route(lines))[0];
            assert!(changed.is_some() && changed != alone, "{lines}");
        }
    }
}
