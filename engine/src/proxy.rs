//! The proxy loop: one client connection, request after request, over plain TCP or TLS
//! (the handshake first, bounded by the listener's `handshake_timeout_ms`).
//!
//! A connection lives in a serving task while it is busy; quiet for about 100 ms, it parks in
//! a task of its own that holds only its socket and identity (see [`park`]), and is served
//! again in a fresh task when the client speaks. Plain listeners may answer everything with a
//! redirect to HTTPS instead.
//!
//! For each request: read and parse the head into the connection's buffer, route it, pick an
//! endpoint, take a pooled keep-alive connection (or connect), write the rewritten head, stream
//! the body (Content-Length or chunked, validated as it passes, never buffered whole), read the
//! response head, and stream the response back with its framing. Pipelined requests wait in
//! the buffer and are answered in order, one at a time.
//!
//! Owns the mapping of failures to answers: malformed input → the codec's 4xx and close, never
//! forwarded; connect refused or reset → 502; connect or response-head timeout → 504; a client
//! that goes away mid-body → both sides closed, the upstream connection not reused; a body
//! silent past `body_read_timeout_ms` or not complete within `body_timeout_ms` → 408 (while no
//! response byte has gone out) and the same. A new connection must send its first byte within
//! `header_read_timeout_ms`; only between requests does `client_idle_timeout_ms` apply.
//! Never blocks, never holds a lock, and copies a body only from the socket into the one
//! buffer it is written out of. Each read and write has its deadline on the worker's coarse
//! timer ([`crate::timer`]); the exchange runs inline in the connection's task, not boxed, so
//! a request allocates no future of its own.

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use coregate_config::{AuthRef, Balancer, HashKey, RateKey};
use coregate_rt::net::is_cancelled;
use coregate_rt::time::timeout;
use coregate_rt::{spawn, TcpStream};
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};

use crate::stream::Stream;
use crate::tls::{AcceptError, ClientTls};

use crate::aggregate;
use crate::http::chunked;
use crate::http::{
    encode_request_head, encode_response_head, error_response, relays_verbatim, BodyFraming,
    ChunkedDecoder, ClientAddr, FieldEdits, Forward, Method, RequestHead, ResponseBody,
    ResponseHead,
};
use crate::json_filter;
use crate::policy::auth::{authenticate, Denial};
use crate::router::{HeaderLookup, RouteRequest, RouteResult};
use crate::snapshot::Snapshot;
use crate::stale::{varied_names, KeyParts, StaleRequest};
use crate::timer::Timer;
use crate::transform::{expand, identity_value, Vars, REQUEST_ID};
use crate::upstream::balancer::hash_key;
use crate::worker::{View, Worker, BUFFER_BYTES};

/// How long a keep-alive connection waits for its next request with a buffer attached before
/// it parks without one (see [`await_request`] and [`park`]); measured by the worker's coarse
/// timer, so 100–150 ms.
const IDLE_PARK_MS: u64 = 100;
/// Buffer a keep-alive connection waits for its next request with.
const IDLE_READ_BYTES: usize = 2 * 1024;
/// A read into less free space than this grows the buffer first.
const READ_SPARE_BYTES_MIN: usize = 1024;
/// Longest client-sent X-Request-Id passed on; a longer one is replaced by a generated id.
const REQUEST_ID_BYTES_MAX: usize = 128;
/// Read size when streaming bodies.
const BODY_CHUNK_BYTES: usize = 64 * 1024;
/// Largest upstream response head accepted; larger is answered 502.
const RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;
/// What the gateway sends before reading a body the client is holding back
/// (RFC 9110 §10.1.1).
const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What became of one request: filled in as the exchange goes, read for the access log.
/// Cells, because the two directions of a [`duplex`] exchange both report into it.
#[derive(Default)]
pub(crate) struct Outcome {
    /// The status answered; 0 while no response has been started.
    pub status: Cell<u16>,
    pub route: Cell<Option<usize>>,
    /// Snapshot version `route` indexes into.
    pub version: Cell<u64>,
    pub upstream: Cell<Option<SocketAddr>>,
    /// Bytes written to the client.
    pub bytes: Cell<u64>,
    /// When the request head was complete.
    pub started: Cell<Option<Instant>>,
    /// The request was HEAD: error answers carry no body.
    pub head_only: Cell<bool>,
}

/// Per-connection state that outlives one request.
pub(crate) struct Conn {
    /// Bytes read from the client not yet consumed: the current head, then any pipelined
    /// requests behind it.
    buf: Vec<u8>,
    head: RequestHead,
    /// Scratch for the rewritten path.
    path: Vec<u8>,
    pub id: ConnId,
    /// Who the current request is from: the peer, or the client a trusted proxy names
    /// (`server.trusted_proxies`). `${client_ip}`, rate-limit keys, hashing and the access
    /// log use it.
    pub client: ClientAddr,
    /// Lines added to the forwarded head: identity headers from the authentication step
    /// first, then the request id and the route's added headers.
    identity: Vec<u8>,
    /// The current request's id (received or generated).
    request_id: Vec<u8>,
    /// Method and target of the current request, kept for the access log (only filled
    /// while the access log is on).
    pub log_method: Vec<u8>,
    pub log_target: Vec<u8>,
    /// The last response head's fields, kept so the next response parses without
    /// allocating (taken by an exchange, given back when it completes).
    resp: ResponseHead,
}

impl Conn {
    /// Points the access log at the request in `buf` while its head is incomplete or
    /// refused: its method and target once the request line parsed, else `-` for both. A
    /// refused head (400, 408, 414, 431) is logged as what was received, never as the
    /// previous request on the connection (issue 14, defect 11). Off the usual path: a head
    /// that arrives whole and parses never comes here.
    fn log_received_line(&mut self) {
        self.log_method.clear();
        self.log_target.clear();
        // No header slots: only the request line is wanted, and httparse keeps the parts of
        // it that parsed whatever the headers do.
        let mut line = httparse::Request::new(&mut []);
        let _ = line.parse(&self.buf);
        match (line.method, line.path, line.version) {
            (Some(method), Some(target), Some(_)) => {
                self.log_method.extend_from_slice(method.as_bytes());
                self.log_target.extend_from_slice(target.as_bytes());
            }
            _ => {
                self.log_method.push(b'-');
                self.log_target.push(b'-');
            }
        }
    }
}

enum Next {
    KeepAlive,
    Close,
    /// The request body is still streaming: finish in [`duplex`].
    Duplex(Box<DuplexJob>),
}

/// Who a connection is, apart from what it is doing: all it carries while parked.
pub(crate) struct ConnId {
    pub peer: SocketAddr,
    /// Index of the listener that accepted it, in the snapshot's `config.listeners`
    /// (listeners cannot change without a restart, so the index holds across reloads).
    listener: usize,
    /// `"https"` on a connection that terminated TLS, else `"http"`: X-Forwarded-Proto.
    proto: &'static str,
    /// The listener redirects plain HTTP to HTTPS (`[listener.redirect_https]`), as of the
    /// snapshot the connection started with; the settings are read per request.
    redirect: bool,
    /// This connection's slot in the worker's drain signal (and coarse timer).
    drain_slot: usize,
    /// No request has begun on it yet: it must speak within `header_read_timeout_ms`.
    fresh: bool,
}

impl ConnId {
    /// How long the connection may stay quiet before its next request, in milliseconds: a
    /// new connection's first byte must come within `header_read_timeout_ms`, so one that
    /// never speaks is not kept for the keep-alive timeout (issue 14, defect 7); between
    /// requests, `client_idle_timeout_ms`.
    fn quiet_ms(&self, server: &coregate_config::ServerConfig) -> u64 {
        if self.fresh {
            server.header_read_timeout_ms
        } else {
            server.client_idle_timeout_ms
        }
    }
}

/// Serves one accepted client connection: first the TLS handshake when `listener` terminates
/// TLS, then request after request (see [`run`]). The connection counts in
/// `worker.connections` until it closes, whichever task closes it.
pub(crate) async fn serve(worker: Rc<Worker>, tcp: TcpStream, peer: SocketAddr, listener: usize) {
    let view = worker.view();
    let client = match &view.snapshot.tls[listener] {
        None => Stream::Plain(tcp),
        // Boxed: a handshake's state is large, and inline it would size this task for as
        // long as the connection lives here.
        Some(tls) => match Box::pin(tls.accept(tcp)).await {
            Ok(stream) => {
                let resumed =
                    stream.session().handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                worker.count_tls(|tls| {
                    tls.handshakes += 1;
                    tls.resumed += u64::from(resumed);
                });
                Stream::Tls(Box::new(stream))
            }
            Err(e) => {
                worker.count_tls(|tls| match e {
                    AcceptError::Timeout => tls.timeouts += 1,
                    AcceptError::Handshake(_) => tls.failures += 1,
                });
                worker.connection_closed();
                return;
            }
        },
    };
    let id = ConnId {
        peer,
        listener,
        proto: if client.is_tls() { "https" } else { "http" },
        redirect: view.snapshot.config.listeners[listener]
            .redirect_https
            .is_some(),
        drain_slot: worker.drain.register(),
        fresh: true,
    };
    drop(view);
    serve_from(worker, client, id).await;
}

/// Serves requests on a connection (a new one, or one back from its park) until it closes
/// or parks; a parked connection goes on in a task of its own ([`park`]), so this one ends.
async fn serve_from(worker: Rc<Worker>, client: Stream, id: ConnId) {
    match run(&worker, client, id).await {
        Some((client, id)) => {
            spawn(park(worker, client, id));
        }
        None => worker.connection_closed(),
    }
}

/// A connection idle past its first [`IDLE_PARK_MS`]: the smallest task that waits for its
/// next request (readiness only: no buffer, no `Conn`), its idle timeout (the coarse timer
/// of its drain slot) or the drain. On readiness the connection is served again in a fresh
/// task, so an idle connection never holds an exchange-sized task. Measured: see perf.md.
async fn park(worker: Rc<Worker>, client: Stream, id: ConnId) {
    let idle_ms = id.quiet_ms(&worker.view().snapshot.config.server);
    let left = Duration::from_millis(idle_ms.saturating_sub(IDLE_PARK_MS));
    let deadline = Instant::now() + left;
    let ready = monoio::select! {
        ready = client.tcp().readable() => ready.is_ok(),
        _ = worker.drain.wait_until(id.drain_slot, deadline) => false,
    };
    if ready && !worker.draining() {
        spawn(serve_from(worker, client, id));
    } else {
        worker.drain.release(id.drain_slot);
        // Boxed, as everything this task does besides waiting: its size is an idle
        // connection's cost.
        Box::pin(close(client)).await;
        worker.connection_closed();
    }
}

/// How long a closing TLS connection may take to send its close_notify.
const CLOSE_NOTIFY_WAIT_MS: u64 = 1_000;

/// Closes a client connection the gateway ends between requests: a TLS one says so first
/// (close_notify, RFC 8446 §6.1), so the client can tell the end from a truncation.
async fn close(client: Stream) {
    if let Stream::Tls(mut tls) = client {
        let wait = Duration::from_millis(CLOSE_NOTIFY_WAIT_MS);
        let _ = timeout(wait, tls.shutdown()).await;
    }
}

/// Request after request until the connection closes (`None`) or goes quiet long enough to
/// park (`Some`: what [`park`] needs).
async fn run(worker: &Rc<Worker>, mut client: Stream, id: ConnId) -> Option<(Stream, ConnId)> {
    let mut conn = Conn {
        buf: Vec::new(),
        head: RequestHead::new(),
        path: Vec::new(),
        client: ClientAddr::peer(id.peer.ip()),
        id,
        identity: Vec::new(),
        request_id: Vec::new(),
        log_method: Vec::new(),
        log_target: Vec::new(),
        resp: ResponseHead::new(),
    };
    let parked = loop {
        if conn.buf.is_empty() {
            match await_request(worker, &mut client, &mut conn).await {
                Waited::Request => conn.id.fresh = false,
                Waited::Park => break true,
                Waited::Close => break false,
            }
        }
        worker.note_activity();
        let outcome = Outcome::default();
        // Not boxed: an idle connection parks in a task of its own (see [`park`]), so this
        // task's size is paid only while requests run, and a box would be allocated and
        // copied into on every request.
        let keep = match exchange(worker, &mut client, &mut conn, &outcome).await {
            Next::KeepAlive => true,
            Next::Close => false,
            Next::Duplex(job) => {
                match Box::pin(duplex(worker, client, &mut conn, job, &outcome)).await {
                    Some(kept) => {
                        client = kept;
                        true
                    }
                    None => {
                        worker.log_access(&conn, &outcome);
                        worker.give_buffer(std::mem::take(&mut conn.buf));
                        worker.drain.release(conn.id.drain_slot);
                        return None;
                    }
                }
            }
        };
        worker.log_access(&conn, &outcome);
        if !keep {
            break false;
        }
    };
    worker.give_buffer(std::mem::take(&mut conn.buf));
    if parked {
        Some((client, conn.id))
    } else {
        worker.drain.release(conn.id.drain_slot);
        Box::pin(close(client)).await;
        None
    }
}

/// How reading a request head ended without a head.
enum HeadEnd {
    /// The client closed, went idle past the keep-alive timeout, or failed: nothing to answer.
    Gone,
    /// Answer this status and close.
    Reject(u16, &'static str),
}

async fn exchange(
    worker: &Rc<Worker>,
    client: &mut Stream,
    conn: &mut Conn,
    outcome: &Outcome,
) -> Next {
    let view = worker.view();
    let snap: &Snapshot = &view.snapshot;
    // A head that fails to parse is logged under the peer's address.
    conn.client = ClientAddr::peer(conn.id.peer.ip());
    let head_len = match read_head(worker, client, conn, snap).await {
        Ok(n) => n,
        Err(HeadEnd::Gone) => return Next::Close,
        Err(HeadEnd::Reject(status, reason)) => {
            reply_error(worker, client, outcome, status, reason, true, &[]).await;
            return Next::Close;
        }
    };

    let started = Instant::now();
    outcome.started.set(Some(started));
    let trusted = &snap.config.trusted_proxies;
    if !trusted.is_empty() {
        conn.client = ClientAddr::resolve(trusted, conn.id.peer.ip(), &conn.head, &conn.buf);
    }
    outcome.head_only.set(conn.head.method == Method::Head);
    if worker.logging() {
        conn.log_method.clear();
        conn.log_method
            .extend_from_slice(conn.head.method_span.get(&conn.buf));
        conn.log_target.clear();
        conn.log_target
            .extend_from_slice(conn.head.target.get(&conn.buf));
    }
    // Everything from here on (redirect exemptions, routing, auth, transforms, the forwarded
    // target) sees the normal form of the path, so the gateway and the upstream name the
    // same resource; the access log keeps the target as received.
    let normalized = crate::http::normalize_head(&mut conn.head, &mut conn.buf, snap.path_options);
    if let Err(e) = normalized {
        reply_error(worker, client, outcome, e.status(), e.reason(), true, &[]).await;
        return Next::Close;
    }
    if conn.id.redirect {
        if let Some(redirect) = &snap.config.listeners[conn.id.listener].redirect_https {
            let path = conn.head.path.get(&conn.buf);
            let exempt = redirect
                .except_prefixes
                .iter()
                .any(|prefix| path.starts_with(prefix.as_bytes()));
            if !exempt {
                return redirect_to_https(worker, client, outcome, conn, redirect).await;
            }
        }
    }
    let routed = {
        let buf = &conn.buf;
        let head = &conn.head;
        snap.router.lookup(&RouteRequest {
            host: head.host.map(|s| s.get(buf)),
            method: head.method_span.get(buf),
            path: head.path.get(buf),
            headers: &HeadLookup { head, buf },
        })
    };
    let m = match routed {
        RouteResult::Matched(m) => m,
        RouteResult::NotFound => {
            return refuse(worker, client, outcome, conn, 404, "no route matches", &[]).await;
        }
        RouteResult::MethodNotAllowed { allow } => {
            let extra = [("Allow", allow.as_str())];
            return refuse(
                worker,
                client,
                outcome,
                conn,
                405,
                "method not allowed",
                &extra,
            )
            .await;
        }
    };
    let route = &snap.config.routes[m.route];
    outcome.route.set(Some(m.route));
    outcome.version.set(snap.version);
    if let BodyFraming::Length(n) = conn.head.body {
        if n > route.body_bytes_max {
            reply_error(
                worker,
                client,
                outcome,
                413,
                "request body too large",
                true,
                &[],
            )
            .await;
            return Next::Close;
        }
    }

    // Authentication, before anything goes upstream. A rate limit whose key is known without
    // it (the client IP, a header the gateway never sets) is taken first, so a flood of
    // forged tokens is refused (429) before each costs a signature check.
    conn.identity.clear();
    let mut query_without_key = None;
    let limit_first = route
        .rate_limit
        .is_some_and(|rl| snap.policies.rate_before_auth[rl]);
    if !limit_first {
        match authenticate_route(&view, route, conn) {
            Ok(rest) => query_without_key = rest,
            Err(denial) => return deny(worker, client, outcome, conn, denial).await,
        }
    }

    let mut response_headers = Vec::new();
    if let Some(rl) = route.rate_limit {
        let (rule, zone) = snap.policies.rate_rules[rl];
        let ip = match conn.client.ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let limit = &snap.config.rate_limits[rl];
        let key_bytes = rate_key_bytes(snap, route, &limit.key, conn).unwrap_or(&ip);
        let key = worker.shared.rate_keys.key(zone, key_bytes);
        let decision = worker.rate_take(rule, key, snap.policies.rate_keys_max);
        let reset = decision.reset_after_s(worker.shared.now_ms()).to_string();
        let (limit, remaining) = (decision.limit.to_string(), decision.remaining.to_string());
        if !decision.allowed {
            let retry = decision.retry_after_s.to_string();
            let extra = [
                ("Retry-After", retry.as_str()),
                ("RateLimit-Limit", limit.as_str()),
                ("RateLimit-Remaining", remaining.as_str()),
                ("RateLimit-Reset", reset.as_str()),
            ];
            return refuse(
                worker,
                client,
                outcome,
                conn,
                429,
                "rate limit exceeded",
                &extra,
            )
            .await;
        }
        response_headers = format!(
            "RateLimit-Limit: {limit}\r\nRateLimit-Remaining: {remaining}\r\nRateLimit-Reset: {reset}\r\n"
        )
        .into_bytes();
    }

    if limit_first {
        match authenticate_route(&view, route, conn) {
            Ok(rest) => query_without_key = rest,
            Err(denial) => return deny(worker, client, outcome, conn, denial).await,
        }
    }

    // Request id and header edits, after authentication (so claims are known) and after the
    // rate limit (which keys on the first identity line).
    let transform = &snap.policies.transforms[m.route];
    if transform.request_id {
        conn.request_id.clear();
        match conn.head.header(&conn.buf, "x-request-id") {
            Some(id) if !id.is_empty() && id.len() <= REQUEST_ID_BYTES_MAX => {
                conn.request_id.extend_from_slice(id);
            }
            _ => worker.request_ids.generate(&mut conn.request_id),
        }
        // Every client copy is dropped (any spelling): the upstream gets exactly this one.
        let _ = write!(conn.identity, "{REQUEST_ID}: ");
        conn.identity.extend_from_slice(&conn.request_id);
        conn.identity.extend_from_slice(b"\r\n");
        let _ = write!(response_headers, "{REQUEST_ID}: ");
        response_headers.extend_from_slice(&conn.request_id);
        response_headers.extend_from_slice(b"\r\n");
    }
    if !transform.request.lines.is_empty() || !transform.response.lines.is_empty() {
        let mut added = Vec::new();
        let vars = Vars {
            client_ip: conn.client.ip,
            route: &route.name,
            request_id: &conn.request_id,
            path: conn.head.path.get(&conn.buf),
            params: &m.params,
            identity: &conn.identity,
            claim_headers: &transform.claim_headers,
        };
        expand(&transform.request.lines, &vars, &mut added);
        expand(&transform.response.lines, &vars, &mut response_headers);
        conn.identity.extend_from_slice(&added);
    }

    if !route.aggregate.is_empty() {
        return aggregated(worker, client, outcome, conn, &view, &m, response_headers).await;
    }

    let up_index = route.upstream;
    let up_tls = view.snapshot.upstream_tls[up_index].as_deref();
    let upstream = &snap.config.upstreams[up_index];
    let hash = balance_hash(&upstream.balancer, &conn.head, &conn.buf, conn.client.ip);
    let stale = stale_request(snap, m.route, conn);
    let Some(endpoint) = worker.pick_endpoint(&view, up_index, hash, &[]) else {
        let fallback = Fallback {
            config: &route.fallback,
            stale: stale.as_ref(),
            extra: &response_headers,
        };
        return fall_back(worker, client, outcome, conn, fallback).await;
    };
    let mut in_flight = InFlight::start(worker, &view, up_index, endpoint);
    let addr = upstream.endpoints[endpoint].address;
    outcome.upstream.set(Some(addr));

    let mut out = worker.take_buffer();
    {
        let buf = &conn.buf;
        let head = &conn.head;
        conn.path.clear();
        let query = match &query_without_key {
            Some(rest) => Some(&rest[..]).filter(|q| !q.is_empty()),
            None => head.query.map(|q| q.get(buf)),
        };
        snap.router
            .rewrite_path(&m, head.path.get(buf), query, &mut conn.path);
        encode_request_head(
            buf,
            head,
            &Forward {
                path_and_query: &conn.path,
                client: conn.client,
                proto: conn.id.proto,
                default_host: &snap.default_hosts[up_index],
                edits: transform.request.field_edits(&conn.identity),
            },
            &mut out,
        );
    }
    let req = RequestFacts {
        method: conn.head.method,
        http10: conn.head.version_minor == 0,
        keep_alive: conn.head.keep_alive,
        expect_continue: conn.head.expect_continue,
        body_bytes_max: route.body_bytes_max,
        response_headers,
        stale,
        view: view.clone(),
        route: m.route,
    };

    // The small between-requests buffer filled up, so the client has sent more than it held:
    // read it in before anything goes upstream, so a small body is checked whole (a chunked
    // body over the limit is then refused before a byte of it is forwarded). Not with
    // `Expect: 100-continue`: that client waits for us before sending its body.
    let framing = conn.head.body;
    if framing != BodyFraming::None && !req.expect_continue && conn.buf.len() == conn.buf.capacity()
    {
        let wait = Duration::from_millis(snap.config.server.body_read_timeout_ms);
        if !matches!(
            read_more(client, &mut conn.buf, &worker.timer, wait).await,
            Ok(1..)
        ) {
            worker.give_buffer(out);
            return Next::Close;
        }
    }
    // Move the part of the body already read behind the head into `out`, so a small request
    // leaves in one write. What stays in `conn.buf` afterwards is the rest of the stream.
    let body = match start_body(conn, head_len, framing, &req, &mut out) {
        Ok(b) => b,
        Err(status) => {
            worker.give_buffer(out);
            reply_error(
                worker,
                client,
                outcome,
                status,
                body_error_reason(status),
                true,
                &[],
            )
            .await;
            return Next::Close;
        }
    };

    let timeouts = Timeouts {
        connect: Duration::from_millis(upstream.connect_timeout_ms),
        response_head: Duration::from_millis(upstream.response_header_timeout_ms),
        upstream_idle: Duration::from_millis(upstream.idle_read_timeout_ms),
        client: Duration::from_millis(snap.config.server.body_read_timeout_ms),
        body_deadline: started + Duration::from_millis(snap.config.server.body_timeout_ms),
    };
    let mut pool = PoolReturn {
        addr,
        tls_identity: up_tls.map_or(0, ClientTls::identity),
        idle_max: upstream.pool_idle_max,
        idle_timeout: Duration::from_millis(upstream.pool_idle_timeout_ms),
    };
    // A request that is entirely in `out` can be sent again on a fresh connection when a
    // pooled one turns out to be closed; only for idempotent methods (RFC 9110 §9.2.2).
    let replayable = body.is_done() && req.method.is_idempotent();
    // Retries on another endpoint (route `[retry]`): idempotent requests that are entirely
    // in `out`, within the attempts, the worker's budget and the route's deadline.
    let mut retry = Retrying::new(worker, &view, route, m.route, replayable, started);
    // A pooled buffer ([`BUFFER_BYTES`]): a response head and up to about 32 KiB of body
    // arrive in one read and leave in one write.
    let mut upbuf = worker.take_buffer();
    let mut resp = std::mem::take(&mut conn.resp);
    let mut attempts = 0;
    let (mut up, resp_len) = loop {
        attempts += 1;
        let connect_wait = retry.bound(timeouts.connect);
        let (mut up, reused) =
            match upstream_connection(worker, pool.addr, up_tls, connect_wait, started).await {
                Ok(c) => c,
                Err(failure) => {
                    in_flight.fail();
                    if let Some(next) =
                        retry.next_endpoint(worker, &view, up_index, hash, in_flight.endpoint)
                    {
                        pool.switch(worker, &view, up_index, next, &mut in_flight, outcome);
                        attempts = 0;
                        continue;
                    }
                    worker.give_buffer(out);
                    worker.give_buffer(upbuf);
                    let keep = body.is_done() && req.keep_alive;
                    return fail_upstream(worker, client, outcome, failure, keep).await;
                }
            };
        let may_retry = reused && replayable && attempts == 1;
        let (res, back) = write_all(&mut up, out, &worker.timer, timeouts.upstream_idle).await;
        out = back;
        if res.is_err() {
            if may_retry {
                continue;
            }
            worker.give_buffer(out);
            worker.give_buffer(upbuf);
            in_flight.fail();
            return fail_upstream(worker, client, outcome, Failure::Reset, false).await;
        }
        if !body.is_done() {
            // The rest of the body streams while the response is read: an upstream may
            // answer (or echo) before it has the whole body, and must not be left blocked.
            worker.give_buffer(out);
            return Next::Duplex(Box::new(DuplexJob {
                up,
                body,
                req,
                timeouts,
                pool,
                upbuf,
                in_flight,
                sample: Sample {
                    version: snap.version,
                    route: m.route,
                    started,
                },
            }));
        }
        upbuf.clear();
        match read_response_head(
            client,
            &mut up,
            &mut upbuf,
            &mut resp,
            &req,
            &worker.timer,
            retry.bound(timeouts.response_head),
        )
        .await
        {
            Ok(_) if retry.wants_retry_on(resp.status) => {
                // Retried on another endpoint: this answer is dropped with its connection.
                let next = retry.next_endpoint(worker, &view, up_index, hash, in_flight.endpoint);
                let Some(next) = next else {
                    let n = resp.head_len;
                    break (up, n);
                };
                in_flight.fail();
                pool.switch(worker, &view, up_index, next, &mut in_flight, outcome);
                attempts = 0;
                continue;
            }
            Ok(n) => break (up, n),
            Err(Failure::Closed) if may_retry => continue,
            Err(failure) => {
                in_flight.fail();
                worker.give_buffer(out);
                worker.give_buffer(upbuf);
                let keep = req.keep_alive && !req.http10;
                return fail_upstream(worker, client, outcome, failure, keep).await;
            }
        }
    };
    worker.give_buffer(out);
    if is_failure_status(upstream, resp.status) {
        in_flight.fail();
    }
    let upstream_us = started.elapsed().as_micros() as u64;
    let relayed = relay(
        worker, client, &mut up, &mut upbuf, &resp, resp_len, &req, &timeouts, outcome,
    )
    .await;
    worker.give_buffer(upbuf);
    drop(in_flight);
    match relayed {
        Relayed::Complete {
            upstream_reusable,
            close_client,
        } => {
            let finished = Instant::now();
            let total_us = (finished - started).as_micros() as u64;
            worker.record(snap.version, m.route, resp.status, total_us, upstream_us);
            if upstream_reusable && resp.keep_alive {
                pool.put(worker, up, finished);
            }
            conn.resp = resp;
            if close_client {
                Next::Close
            } else {
                Next::KeepAlive
            }
        }
        Relayed::Broken => Next::Close,
    }
}

/// A request whose body is still arriving when its head has gone upstream: finished by
/// [`duplex`], which needs the client connection by value to split it.
struct DuplexJob {
    up: Stream,
    body: Body,
    req: RequestFacts,
    timeouts: Timeouts,
    pool: PoolReturn,
    upbuf: Vec<u8>,
    in_flight: InFlight,
    sample: Sample,
}

/// What a finished exchange records in the worker's stats.
struct Sample {
    version: u64,
    route: usize,
    started: Instant,
}

/// Streams the rest of a request body to the upstream while relaying its response to the
/// client, each direction on its own half of the sockets. Returns the client connection when
/// it stays open.
async fn duplex(
    worker: &Rc<Worker>,
    mut client: Stream,
    conn: &mut Conn,
    job: Box<DuplexJob>,
    outcome: &Outcome,
) -> Option<Stream> {
    let DuplexJob {
        up,
        mut body,
        req,
        timeouts,
        pool,
        mut upbuf,
        in_flight,
        sample,
    } = *job;
    if req.expect_continue && !req.http10 {
        let (res, _) = write_all(
            &mut client,
            CONTINUE_100.to_vec(),
            &worker.timer,
            timeouts.client,
        )
        .await;
        res.ok()?;
    }
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut up_rx, mut up_tx) = up.into_split();
    let mut resp = ResponseHead::new();
    let mut sent: Option<Result<(), BodyFailure>> = None;
    let received = {
        let send = std::pin::pin!(stream_request_body(
            &mut client_rx,
            &mut up_tx,
            conn,
            &mut body,
            &req,
            &worker.timer,
            &timeouts,
        ));
        let receive = std::pin::pin!(receive(
            worker,
            &mut client_tx,
            &mut up_rx,
            &mut upbuf,
            &mut resp,
            &req,
            &timeouts,
            outcome,
        ));
        let (mut send, mut receive) = (send, receive);
        std::future::poll_fn(|cx| {
            if sent.is_none() {
                if let Poll::Ready(result) = send.as_mut().poll(cx) {
                    let failed = result.is_err();
                    sent = Some(result);
                    if failed {
                        return Poll::Ready(None);
                    }
                }
            }
            receive.as_mut().poll(cx).map(Some)
        })
        .await
    };
    worker.give_buffer(upbuf);
    let mut client = client_rx.reunite(client_tx).ok()?;
    match (sent, received) {
        // The client stopped sending or sent something we refuse; the response, if any was
        // under way, is abandoned with the upstream connection.
        (Some(Err(failure)), _) => {
            if outcome.status.get() == 0 {
                let (status, reason) = match failure {
                    BodyFailure::Client => return None,
                    BodyFailure::Timeout => (408, "request body not received in time"),
                    BodyFailure::TooLarge => (413, "request body too large"),
                    BodyFailure::Malformed => (400, "malformed chunked body"),
                    BodyFailure::Upstream => {
                        in_flight.fail();
                        (502, "upstream connection failed")
                    }
                };
                reply_error(worker, &mut client, outcome, status, reason, true, &[]).await;
            }
            None
        }
        (_, Some(Err(failure))) => {
            in_flight.fail();
            if outcome.status.get() == 0 {
                fail_upstream(worker, &mut client, outcome, failure, false).await;
            }
            None
        }
        (
            sent,
            Some(Ok(Relayed::Complete {
                upstream_reusable,
                close_client,
            })),
        ) => {
            // An upstream that answered before taking the whole body leaves the rest of it
            // unread on the client connection: both close.
            let body_sent = matches!(sent, Some(Ok(())));
            if is_failure_status(
                &in_flight.view.snapshot.config.upstreams[in_flight.upstream],
                resp.status,
            ) {
                in_flight.fail();
            }
            let finished = Instant::now();
            let total_us = (finished - sample.started).as_micros() as u64;
            worker.record(
                sample.version,
                sample.route,
                resp.status,
                total_us,
                total_us,
            );
            if body_sent && upstream_reusable && resp.keep_alive {
                if let Ok(up) = up_rx.reunite(up_tx) {
                    pool.put(worker, up, finished);
                }
            }
            (body_sent && !close_client).then_some(client)
        }
        (_, Some(Ok(Relayed::Broken)) | None) => None,
    }
}

/// Reads the response head and relays the response: the part of an exchange after the
/// request has gone (or, in [`duplex`], while its body is still going).
#[allow(clippy::too_many_arguments)]
async fn receive<C: AsyncWriteRent, U: AsyncReadRent>(
    worker: &Worker,
    client: &mut C,
    up: &mut U,
    upbuf: &mut Vec<u8>,
    resp: &mut ResponseHead,
    req: &RequestFacts,
    timeouts: &Timeouts,
    outcome: &Outcome,
) -> Result<Relayed, Failure> {
    upbuf.clear();
    let resp_len = read_response_head(
        client,
        up,
        upbuf,
        resp,
        req,
        &worker.timer,
        timeouts.response_head,
    )
    .await?;
    Ok(relay(
        worker, client, up, upbuf, resp, resp_len, req, timeouts, outcome,
    )
    .await)
}

/// Encodes the response head for the client and streams head and body to it. HTTP/1.0
/// clients get no chunked framing and a closed connection. Sets the outcome's status before
/// any byte may reach the client (after that, an error can only close the connection), and
/// its byte count at the end.
#[allow(clippy::too_many_arguments)]
async fn relay<C: AsyncWriteRent, U: AsyncReadRent>(
    worker: &Worker,
    client: &mut C,
    up: &mut U,
    upbuf: &mut Vec<u8>,
    resp: &ResponseHead,
    resp_len: usize,
    req: &RequestFacts,
    timeouts: &Timeouts,
    outcome: &Outcome,
) -> Relayed {
    let chunked_to_client = !req.http10;
    // A close-delimited body goes chunked to an HTTP/1.1 client (`relay_response`), so
    // only an HTTP/1.0 one needs the close to see its end.
    let close_client = !req.keep_alive
        || req.http10
        || (matches!(resp.body, ResponseBody::UntilClose) && !chunked_to_client)
        || worker.draining();
    let edits = req.view.snapshot.policies.transforms[req.route]
        .response
        .field_edits(&req.response_headers);
    let route = &req.view.snapshot.config.routes[req.route];
    if let (Some(filter), true) = (&route.json_filter, (200..300).contains(&resp.status)) {
        match resp.body {
            ResponseBody::Length(n)
                if n <= filter.body_bytes_max as u64 && is_json(upbuf, resp) =>
            {
                let filtered = FilteredResponse {
                    filter,
                    length: n as usize,
                    close_client,
                    chunked_to_client,
                };
                return relay_filtered(
                    worker, client, up, upbuf, resp, resp_len, &edits, filtered, timeouts, outcome,
                )
                .await;
            }
            ResponseBody::None => {}
            _ => worker.json_filter_skipped(),
        }
    }
    let head_out = if relays_verbatim(upbuf, resp, close_client, &edits) {
        HeadOut::Verbatim
    } else {
        let mut encoded = worker.take_buffer();
        encode_response_head(
            upbuf,
            resp,
            chunked_to_client,
            close_client,
            &edits,
            &mut encoded,
        );
        HeadOut::Encoded(encoded)
    };
    outcome.status.set(resp.status);
    // A small complete 200 is kept for the route's stale fallback, where caching rules allow.
    if let Some(stale) = req.stale.as_ref().filter(|_| resp.status == 200) {
        keep_stale(worker, req, stale, upbuf, resp, resp_len);
    }
    let reusable = relay_response(
        worker,
        client,
        up,
        upbuf,
        resp_len,
        resp.body,
        head_out,
        chunked_to_client,
        timeouts,
    )
    .await;
    match reusable {
        Some((upstream_reusable, bytes)) => {
            outcome.bytes.set(bytes);
            Relayed::Complete {
                upstream_reusable,
                close_client,
            }
        }
        None => Relayed::Broken,
    }
}

/// Keeps a 200 whose whole body is in `upbuf` as the stale answer to `stale`, where a shared
/// cache may keep it (see [`crate::stale`]); otherwise drops the older answer. The head is
/// kept as the route relays it, minus the lines added per request (the answering request
/// adds its own).
fn keep_stale(
    worker: &Worker,
    req: &RequestFacts,
    stale: &StaleRequest,
    upbuf: &[u8],
    resp: &ResponseHead,
    resp_len: usize,
) {
    let mut cache = worker.stale.borrow_mut();
    let available = (upbuf.len() - resp_len) as u64;
    let n = match resp.body {
        ResponseBody::Length(n) if n <= available => n as usize,
        _ => {
            cache.forget(stale);
            return;
        }
    };
    let fields = resp
        .headers
        .iter()
        .map(|f| (f.name.get(upbuf), f.value.get(upbuf)));
    let Some(varied) = varied_names(fields) else {
        cache.forget(stale);
        return;
    };
    let snap = &req.view.snapshot;
    let edits = snap.policies.transforms[req.route]
        .response
        .field_edits(b"");
    let mut head = worker.take_buffer();
    encode_response_head(upbuf, resp, false, false, &edits, &mut head);
    head.truncate(head.len() - 2);
    let body = &upbuf[resp_len..resp_len + n];
    cache.store(
        stale,
        varied,
        &head,
        body,
        snap.config.server.stale_bytes_max,
    );
    worker.give_buffer(head);
}

/// What [`relay_filtered`] needs besides the streams.
struct FilteredResponse<'a> {
    filter: &'a coregate_config::JsonFilter,
    /// The upstream body's Content-Length (within the filter's bound).
    length: usize,
    close_client: bool,
    chunked_to_client: bool,
}

/// Whether the upstream says its body is JSON (`application/json`, `…+json`).
fn is_json(upbuf: &[u8], resp: &ResponseHead) -> bool {
    resp.headers.iter().any(|field| {
        field.name.get(upbuf).eq_ignore_ascii_case(b"content-type")
            && field
                .value
                .get(upbuf)
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"json"))
    })
}

/// Reads a JSON body whole, filters it and relays it with its new length. A body that does
/// not parse goes out unchanged (and is counted).
#[allow(clippy::too_many_arguments)]
async fn relay_filtered<C: AsyncWriteRent, U: AsyncReadRent>(
    worker: &Worker,
    client: &mut C,
    up: &mut U,
    upbuf: &mut Vec<u8>,
    resp: &ResponseHead,
    resp_len: usize,
    edits: &FieldEdits<'_>,
    filtered: FilteredResponse<'_>,
    timeouts: &Timeouts,
    outcome: &Outcome,
) -> Relayed {
    let end = resp_len + filtered.length;
    while upbuf.len() < end {
        if upbuf.capacity() < end {
            upbuf.reserve(end - upbuf.len());
        }
        match read_more(up, upbuf, &worker.timer, timeouts.upstream_idle).await {
            Ok(0) | Err(_) => return Relayed::Broken,
            Ok(_) => {}
        }
    }
    let extra = upbuf.len() > end;
    let body = match json_filter::apply(filtered.filter, &upbuf[resp_len..end]) {
        Some(body) => body,
        None => {
            worker.json_filter_skipped();
            upbuf[resp_len..end].to_vec()
        }
    };
    let mut head = resp.clone();
    head.body = ResponseBody::Length(body.len() as u64);
    let mut out = worker.take_buffer();
    encode_response_head(
        upbuf,
        &head,
        filtered.chunked_to_client,
        filtered.close_client,
        edits,
        &mut out,
    );
    out.extend_from_slice(&body);
    outcome.status.set(resp.status);
    outcome.bytes.set(out.len() as u64);
    let (res, back) = write_all(client, out, &worker.timer, timeouts.client).await;
    worker.give_buffer(back);
    if res.is_err() {
        return Relayed::Broken;
    }
    Relayed::Complete {
        upstream_reusable: !extra,
        close_client: filtered.close_client,
    }
}

/// Where a finished upstream connection goes back to.
pub(crate) struct PoolReturn {
    addr: SocketAddr,
    /// The upstream's TLS identity, 0 when plain (see [`ClientTls::identity`]).
    tls_identity: u128,
    idle_max: usize,
    idle_timeout: Duration,
}

impl PoolReturn {
    /// Moves the exchange on to endpoint `next` of upstream `up_index` (a retry): counts it in
    /// flight there, and points this return and the access log at its address.
    fn switch(
        &mut self,
        worker: &Rc<Worker>,
        view: &Rc<View>,
        up_index: usize,
        next: usize,
        in_flight: &mut InFlight,
        outcome: &Outcome,
    ) {
        *in_flight = InFlight::start(worker, view, up_index, next);
        self.addr = view.snapshot.config.upstreams[up_index].endpoints[next].address;
        outcome.upstream.set(Some(self.addr));
    }

    /// Pools `up`; `now` is when its response ended (the caller read the clock for it).
    fn put(&self, worker: &Worker, up: Stream, now: Instant) {
        let expires_at = now + self.idle_timeout;
        worker
            .pools
            .borrow_mut()
            .put(self.addr, self.tls_identity, up, self.idle_max, expires_at);
    }
}

/// What the rest of the exchange needs to know about the request once its head bytes may
/// have been consumed.
struct RequestFacts {
    method: Method,
    http10: bool,
    keep_alive: bool,
    expect_continue: bool,
    body_bytes_max: u64,
    /// `Name: value\r\n` lines added to the response (the RateLimit-* fields).
    response_headers: Vec<u8>,
    /// Where a good answer to this request goes in the worker's stale cache (see
    /// [`stale_request`]).
    stale: Option<StaleRequest>,
    /// The snapshot and route the request is served with (for the response edits).
    view: Rc<View>,
    route: usize,
}

/// Runs the route's authentication, writing the identity lines into `conn.identity`; `Ok`
/// carries the query without an API key taken from it.
fn authenticate_route(
    view: &View,
    route: &coregate_config::Route,
    conn: &mut Conn,
) -> Result<Option<Vec<u8>>, Denial> {
    let Some(auth) = route.auth else {
        return Ok(None);
    };
    let snap = &view.snapshot;
    let identity = authenticate(
        &snap.policies,
        &snap.config,
        &view.token_caches,
        auth,
        &conn.head,
        &conn.buf,
        unix_now(),
        &mut conn.identity,
    )?;
    Ok(identity.query_without_key)
}

/// Answers a refused authentication: 401 with its challenge, or 400.
async fn deny(
    worker: &Worker,
    client: &mut Stream,
    outcome: &Outcome,
    conn: &mut Conn,
    denial: Denial,
) -> Next {
    let challenge = denial.challenge();
    let with_challenge;
    let extra: &[(&str, &str)] = match &challenge {
        Some(challenge) => {
            with_challenge = [("WWW-Authenticate", challenge.as_str())];
            &with_challenge
        }
        None => &[],
    };
    refuse(
        worker,
        client,
        outcome,
        conn,
        denial.status(),
        denial.reason(),
        extra,
    )
    .await
}

/// Answers a refusal decided before any byte went upstream. Keeps the connection when the
/// request had no body and the client wants keep-alive.
async fn refuse(
    worker: &Worker,
    client: &mut Stream,
    outcome: &Outcome,
    conn: &mut Conn,
    status: u16,
    reason: &'static str,
    extra: &[(&str, &str)],
) -> Next {
    let keep = matches!(conn.head.body, BodyFraming::None) && conn.head.keep_alive;
    conn.buf.drain(..conn.head.head_len);
    if reply_error(worker, client, outcome, status, reason, !keep, extra).await && keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// Answers a plain-HTTP request with a redirect to the same host and target over HTTPS
/// (`[listener.redirect_https]`); the request goes nowhere else. The host is the request's
/// `Host` without its port (the parser has checked it holds no CR, LF or space), else the
/// listener's IP.
async fn redirect_to_https(
    worker: &Worker,
    client: &mut Stream,
    outcome: &Outcome,
    conn: &mut Conn,
    redirect: &coregate_config::RedirectHttps,
) -> Next {
    worker.count_tls(|tls| tls.redirects += 1);
    let mut location = Vec::with_capacity(128);
    location.extend_from_slice(b"Location: https://");
    match conn.head.host.map(|h| h.get(&conn.buf)) {
        Some(host) => location.extend_from_slice(strip_port(host)),
        None => {
            let ip = worker.view().snapshot.config.listeners[conn.id.listener]
                .address
                .ip();
            match ip {
                IpAddr::V4(v4) => write!(location, "{v4}"),
                IpAddr::V6(v6) => write!(location, "[{v6}]"),
            }
            .expect("writing to a Vec does not fail");
        }
    }
    if redirect.port != 443 {
        let _ = write!(location, ":{}", redirect.port);
    }
    let target = conn.head.target.get(&conn.buf);
    if target.starts_with(b"/") {
        location.extend_from_slice(target);
    } else {
        // An absolute-form target (`GET http://host/path?q`) redirects to its path and query.
        location.extend_from_slice(conn.head.path.get(&conn.buf));
        if let Some(query) = conn.head.query {
            location.push(b'?');
            location.extend_from_slice(query.get(&conn.buf));
        }
    }
    location.extend_from_slice(b"\r\n");
    let keep = conn.head.body == BodyFraming::None && conn.head.keep_alive && !worker.draining();
    conn.buf.drain(..conn.head.head_len);
    let answer = Answer {
        status: redirect.status,
        content_type: "text/plain",
        extra: &location,
        body: b"",
    };
    send_answer(client, &worker.timer, outcome, &answer, keep).await
}

/// `host` without a trailing `:port` (an IPv6 literal keeps its brackets).
fn strip_port(host: &[u8]) -> &[u8] {
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if !host[colon..].contains(&b']') => &host[..colon],
        _ => host,
    }
}

/// Answers an aggregate route: the parts' requests are built from this request (its
/// end-to-end headers, the identity lines, each part's path), run concurrently, and the
/// merged JSON is the answer.
async fn aggregated(
    worker: &Rc<Worker>,
    client: &mut Stream,
    outcome: &Outcome,
    conn: &mut Conn,
    view: &Rc<View>,
    m: &crate::router::Match,
    response_headers: Vec<u8>,
) -> Next {
    // The parts are reads (asked with GET, below); a route without `methods` matches any
    // method, so anything but GET and HEAD is refused rather than answered with reads.
    if !matches!(conn.head.method, Method::Get | Method::Head) {
        let reason = "aggregate routes answer GET and HEAD only";
        let allow = [("Allow", "GET, HEAD")];
        return refuse(worker, client, outcome, conn, 405, reason, &allow).await;
    }
    if conn.head.body != BodyFraming::None {
        let reason = "aggregate routes take no request body";
        return refuse(worker, client, outcome, conn, 400, reason, &[]).await;
    }
    let snap = &view.snapshot;
    let route = &snap.config.routes[m.route];
    let transform = &snap.policies.transforms[m.route];
    let mut path = Vec::new();
    let heads = route
        .aggregate
        .iter()
        .map(|part| {
            aggregate::part_path(part, conn.head.path.get(&conn.buf), &m.params, &mut path);
            let mut head = Vec::with_capacity(512);
            let forward = Forward {
                path_and_query: &path,
                client: conn.client,
                proto: conn.id.proto,
                default_host: &snap.default_hosts[part.upstream],
                edits: transform.request.field_edits(&conn.identity),
            };
            encode_request_head(&conn.buf, &conn.head, &forward, &mut head);
            // Every part is asked with GET, also for a client's HEAD: the answer to HEAD is
            // the GET answer's head, Content-Length of the merged body included (RFC 9110
            // §9.3.2), so the bodies are needed; and a part asked with HEAD announces a body
            // it never sends, which the part's reader would wait for until its timeout.
            head.splice(..conn.head.method_span.get(&conn.buf).len(), *b"GET");
            head
        })
        .collect();
    let keep = conn.head.keep_alive && conn.head.version_minor == 1 && !worker.draining();
    conn.buf.drain(..conn.head.head_len);
    let merged = aggregate::fan_out(worker, view, &route.aggregate, heads).await;
    let mut extra = Vec::with_capacity(response_headers.len() + 32);
    let _ = write!(extra, "X-Coregate-Complete: {}\r\n", merged.complete);
    extra.extend_from_slice(&response_headers);
    if let Some(started) = outcome.started.get() {
        let total_us = started.elapsed().as_micros() as u64;
        worker.record(snap.version, m.route, merged.status, total_us, total_us);
    }
    let answer = Answer {
        status: merged.status,
        content_type: "application/json",
        extra: &extra,
        body: &merged.body,
    };
    send_answer(client, &worker.timer, outcome, &answer, keep).await
}

/// A complete answer the gateway composes itself (not an error: those go through
/// [`reply_error`]).
struct Answer<'a> {
    status: u16,
    content_type: &'a str,
    /// `Name: value\r\n` lines.
    extra: &'a [u8],
    body: &'a [u8],
}

/// Writes `answer` (head only for a HEAD request). The connection stays when `keep` and
/// the write went through.
async fn send_answer(
    client: &mut Stream,
    timer: &Timer,
    outcome: &Outcome,
    answer: &Answer<'_>,
    keep: bool,
) -> Next {
    let mut out = Vec::with_capacity(answer.body.len() + answer.extra.len() + 128);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        answer.status,
        crate::http::reason_phrase(answer.status),
        answer.content_type,
        answer.body.len()
    );
    out.extend_from_slice(answer.extra);
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !outcome.head_only.get() {
        out.extend_from_slice(answer.body);
    }
    outcome.status.set(answer.status);
    outcome.bytes.set(out.len() as u64);
    send_keeping(client, out, timer, keep).await
}

/// Writes a finished answer; the connection stays when `keep` and the write went through.
async fn send_keeping(client: &mut Stream, out: Vec<u8>, timer: &Timer, keep: bool) -> Next {
    let (res, _) = write_all(client, out, timer, Duration::from_secs(5)).await;
    if res.is_ok() && keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// What [`fall_back`] answers with.
struct Fallback<'a> {
    config: &'a coregate_config::Fallback,
    /// The request as the stale cache knows it, when it may be answered from there.
    stale: Option<&'a StaleRequest>,
    /// This request's own lines for a stale answer's head (rate-limit fields, request id,
    /// response edits).
    extra: &'a [u8],
}

/// Answers a request whose upstream has no usable endpoint, at once: the route's last good
/// answer to the same GET when `fallback.stale` has one for it, else its static response,
/// else 503 JSON. Counted as `no_endpoint`.
async fn fall_back(
    worker: &Worker,
    client: &mut Stream,
    outcome: &Outcome,
    conn: &mut Conn,
    fallback: Fallback<'_>,
) -> Next {
    let keep = matches!(conn.head.body, BodyFraming::None) && conn.head.keep_alive;
    let stale = fallback
        .stale
        .and_then(|req| worker.stale.borrow().answer(req, fallback.extra, !keep));
    match (stale, &fallback.config.static_response) {
        (Some(out), _) => {
            worker.reject(503);
            outcome.status.set(200);
            outcome.bytes.set(out.len() as u64);
            conn.buf.drain(..conn.head.head_len);
            send_keeping(client, out, &worker.timer, keep).await
        }
        (None, Some(fixed)) => {
            worker.reject(503);
            conn.buf.drain(..conn.head.head_len);
            let answer = Answer {
                status: fixed.status,
                content_type: &fixed.content_type,
                extra: b"",
                body: fixed.body.as_bytes(),
            };
            send_answer(client, &worker.timer, outcome, &answer, keep).await
        }
        (None, None) => {
            refuse(
                worker,
                client,
                outcome,
                conn,
                503,
                "no endpoint available",
                &[],
            )
            .await
        }
    }
}

/// Writes a JSON error response and counts it. A HEAD request gets the head alone
/// (RFC 9110 §9.3.2), with the Content-Length the body would have had. Returns whether it
/// was written.
async fn reply_error<C: AsyncWriteRent>(
    worker: &Worker,
    client: &mut C,
    outcome: &Outcome,
    status: u16,
    reason: &str,
    close: bool,
    extra: &[(&str, &str)],
) -> bool {
    worker.reject(status);
    outcome.status.set(status);
    let mut out = Vec::with_capacity(256);
    error_response(status, reason, close, extra, &mut out);
    if outcome.head_only.get() {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            out.truncate(end + 4);
        }
    }
    outcome.bytes.set(out.len() as u64);
    let (res, _) = write_all(client, out, &worker.timer, Duration::from_secs(5)).await;
    res.is_ok()
}

fn body_error_reason(status: u16) -> &'static str {
    match status {
        413 => "request body too large",
        _ => "malformed chunked body",
    }
}

/// Reads until a complete request head is in `conn.buf` (which may already hold one).
async fn read_head(
    worker: &Worker,
    client: &mut Stream,
    conn: &mut Conn,
    snap: &Snapshot,
) -> Result<usize, HeadEnd> {
    let server = &snap.config.server;
    // Only a head that is not all here yet reads the clock (the usual one arrived whole).
    let mut deadline = None;
    loop {
        if !conn.buf.is_empty() {
            match conn.head.parse(&conn.buf, &snap.limits) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(e) => {
                    if worker.logging() {
                        conn.log_received_line();
                    }
                    return Err(HeadEnd::Reject(e.status, e.reason));
                }
            }
        }
        if conn.buf.capacity() == 0 {
            conn.buf = worker.take_buffer();
        }
        let now = Instant::now();
        let deadline = *deadline
            .get_or_insert_with(|| now + Duration::from_millis(server.header_read_timeout_ms));
        let wait = deadline.saturating_duration_since(now);
        if worker.logging() {
            // A read that times out loses the buffer: note the line while it is here.
            conn.log_received_line();
        }
        match read_more(client, &mut conn.buf, &worker.timer, wait).await {
            Ok(0) | Err(ReadFailure::Io) => return Err(HeadEnd::Gone),
            Ok(_) => {}
            Err(ReadFailure::Timeout) => {
                return Err(HeadEnd::Reject(408, "request head not received in time"));
            }
        }
    }
}

/// How a wait between requests ended.
enum Waited {
    /// The next request's first bytes are here (in `conn.buf`, or in the TLS session).
    Request,
    /// Nothing for [`IDLE_PARK_MS`]: the connection parks (see [`park`]); its buffers are
    /// back in the pool.
    Park,
    /// The client closed or failed, or the worker is draining.
    Close,
}

/// Waits, between requests, for the first bytes of the next one, for [`IDLE_PARK_MS`] at
/// most: a read into a small buffer (on a TLS connection, of ciphertext then handed to the
/// session, whose own buffers are dropped first), so a busy keep-alive client costs one read
/// per request. After that the read is cancelled (its result, which may have raced in, kept)
/// and the connection parks.
async fn await_request(worker: &Worker, client: &mut Stream, conn: &mut Conn) -> Waited {
    if worker.draining() {
        return Waited::Close;
    }
    let idle_ms = conn.id.quiet_ms(&worker.view().snapshot.config.server);
    let park_after = Duration::from_millis(IDLE_PARK_MS.min(idle_ms));
    // Most request heads fit the small buffer, and a connection that goes quiet holds 2 KiB
    // for a moment, not a pooled 32 KiB one. A buffer grown for a body goes back first.
    if conn.buf.capacity() > IDLE_READ_BYTES * 2 {
        worker.give_buffer(std::mem::take(&mut conn.buf));
    }
    let slot = conn.id.drain_slot;
    let woke = match client {
        Stream::Plain(tcp) => {
            if conn.buf.capacity() == 0 {
                conn.buf = Vec::with_capacity(IDLE_READ_BYTES);
            }
            let owned = std::mem::take(&mut conn.buf);
            let (woke, buf) = idle_read(worker, tcp, owned, park_after, slot).await;
            conn.buf = buf;
            woke
        }
        Stream::Tls(tls) => {
            // A pipelined request may already sit decrypted (or encrypted) in the session.
            if tls.has_buffered() {
                return Waited::Request;
            }
            // The ciphertext is read straight into the session's buffer: a busy connection
            // keeps its buffers from request to request; they go only when it parks.
            let incoming = tls.take_incoming();
            let (woke, incoming) =
                idle_read(worker, tls.tcp_mut(), incoming, park_after, slot).await;
            tls.put_incoming(incoming);
            woke
        }
    };
    match woke {
        Woke::Bytes => Waited::Request,
        Woke::Quiet if idle_ms > IDLE_PARK_MS && !worker.draining() => {
            // Parking: the connection's buffers go back; the next request takes pooled ones.
            worker.give_buffer(std::mem::take(&mut conn.buf));
            if let Stream::Tls(tls) = client {
                tls.release_buffers();
            }
            Waited::Park
        }
        Woke::Quiet | Woke::Closed => Waited::Close,
    }
}

/// How a read between requests ended.
#[derive(Debug, PartialEq, Eq)]
enum Woke {
    /// Bytes arrived in the buffer.
    Bytes,
    /// Nothing arrived within the wait (or the drain fired); the read was cancelled.
    Quiet,
    /// Closed or failed.
    Closed,
}

/// Reads into `buf` for `wait` at most (a deadline on the worker's coarse clock, which the
/// housekeeping tick checks) or until the drain fires; a read still pending then is
/// cancelled. Returns the buffer.
async fn idle_read(
    worker: &Worker,
    tcp: &mut TcpStream,
    buf: Vec<u8>,
    wait: Duration,
    slot: usize,
) -> (Woke, Vec<u8>) {
    let (res, buf) = {
        let mut read = std::pin::pin!(tcp.recv(buf));
        let early = monoio::select! {
            done = &mut read => Some(done),
            _ = worker.drain.wait_until(slot, worker.timer.coarse_deadline(wait)) => None,
        };
        match early {
            Some(done) => done,
            None => {
                read.cancel();
                read.await
            }
        }
    };
    let woke = match res {
        Ok(0) => Woke::Closed,
        Ok(_) => Woke::Bytes,
        Err(e) if e.kind() == io::ErrorKind::Interrupted || is_cancelled(&e) => Woke::Quiet,
        Err(_) => Woke::Closed,
    };
    (woke, buf)
}

/// The bytes a rate limit counts by, when the request has them (else the caller uses the
/// client IP): the authenticated consumer (the first identity header the authentication
/// step wrote), a JWT claim passed on as an identity header, or a request header.
fn rate_key_bytes<'a>(
    snap: &'a Snapshot,
    route: &coregate_config::Route,
    key: &RateKey,
    conn: &'a Conn,
) -> Option<&'a [u8]> {
    match key {
        RateKey::ClientIp => None,
        RateKey::Consumer => identity_value(&conn.identity, None),
        RateKey::Claim(claim) => {
            let Some(AuthRef::Jwt(i)) = route.auth else {
                return None;
            };
            let header = snap.policies.jwt[i]
                .claim_headers()
                .find(|(c, _)| c == claim)
                .map(|(_, h)| h)?;
            identity_value(&conn.identity, Some(header))
        }
        // A header the gateway sets from the identity counts by the value it set, never by a
        // client's copy (which is dropped before forwarding).
        RateKey::Header(name) if snap.policies.is_identity_header(name) => {
            identity_value(&conn.identity, Some(name))
        }
        RateKey::Header(name) => conn.head.header(&conn.buf, name),
    }
}

/// The request as the stale cache knows it, for a GET on route `index` with `fallback.stale`
/// that may use the cache, keyed by the route's fingerprint (looked up, computed with the
/// snapshot: what the route means, so no other route gets its answers, across reloads too),
/// method, host and target: on a route with `auth` only with `stale_per_identity` and keyed
/// by the verified identity too (the JWT `sub` or the API key's consumer, as the
/// authentication step wrote it); on a route without, never for a request with
/// `Authorization` (RFC 9111 §3.5: a shared cache keeps no answer to one).
fn stale_request(snap: &Snapshot, index: usize, conn: &Conn) -> Option<StaleRequest> {
    let fingerprint = snap.route_fingerprints[index].as_ref()?;
    if conn.head.method != Method::Get {
        return None;
    }
    let route = &snap.config.routes[index];
    let (buf, head) = (&conn.buf, &conn.head);
    let identity = match route.auth {
        None if head.header(buf, "authorization").is_some() => return None,
        None => None,
        Some(_) if !route.fallback.stale_per_identity => return None,
        Some(AuthRef::Jwt(i)) => {
            let (_, header) = snap.policies.jwt[i]
                .claim_headers()
                .find(|(claim, _)| *claim == "sub")?;
            Some(identity_value(&conn.identity, Some(header))?)
        }
        Some(AuthRef::ApiKey(i)) => {
            let header = &snap.config.api_keys[i].consumer_header;
            Some(identity_value(&conn.identity, Some(header))?)
        }
    };
    if identity.is_some_and(<[u8]>::is_empty) {
        return None;
    }
    let parts = KeyParts {
        route: fingerprint,
        method: head.method_span.get(buf),
        host: head.host.map(|h| h.get(buf)).unwrap_or_default(),
        target: head.target.get(buf),
        identity,
    };
    Some(StaleRequest::new(
        &parts,
        &buf[..head.head_len],
        &head.headers,
    ))
}

/// One request's retry state: which endpoints were tried, how many attempts are left, and
/// the route's deadline.
struct Retrying<'a> {
    policy: Option<&'a coregate_config::Retry>,
    route: usize,
    left: u32,
    tried: Vec<usize>,
    deadline: Option<Instant>,
}

impl<'a> Retrying<'a> {
    fn new(
        worker: &Worker,
        view: &View,
        route: &'a coregate_config::Route,
        route_index: usize,
        replayable: bool,
        started: Instant,
    ) -> Retrying<'a> {
        let policy = route.retry.as_ref().filter(|_| replayable);
        if policy.is_some() {
            worker.count_request_for_retries(view, route_index);
        }
        Retrying {
            policy,
            route: route_index,
            left: policy.map_or(0, |p| p.attempts),
            tried: Vec::new(),
            deadline: route
                .timeout_ms
                .map(|ms| started + Duration::from_millis(ms)),
        }
    }

    /// `wait`, cut to what is left of the route's deadline.
    fn bound(&self, wait: Duration) -> Duration {
        match self.deadline {
            Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
            None => wait,
        }
    }

    /// Whether an answer with this status should be retried (if an attempt is left).
    fn wants_retry_on(&self, status: u16) -> bool {
        self.left > 0 && self.policy.is_some_and(|p| p.on_statuses.contains(&status))
    }

    /// Another endpoint to retry on, spending an attempt and the worker's budget, or None.
    fn next_endpoint(
        &mut self,
        worker: &Worker,
        view: &View,
        upstream: usize,
        hash: u64,
        failed: usize,
    ) -> Option<usize> {
        let policy = self.policy?;
        if self.left == 0 || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        if !worker.retry_budget_left(view, self.route, policy.budget_percent) {
            return None;
        }
        self.tried.push(failed);
        let next = worker.pick_endpoint(view, upstream, hash, &self.tried)?;
        worker.spend_retry(view, self.route);
        self.left -= 1;
        Some(next)
    }
}

/// Whether an upstream status counts as a failure for the upstream's breaker.
fn is_failure_status(upstream: &coregate_config::Upstream, status: u16) -> bool {
    upstream
        .breaker
        .as_ref()
        .is_some_and(|b| b.failure_statuses.contains(&status))
}

/// Seconds since the Unix epoch, for token expiry.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) enum ReadFailure {
    Timeout,
    /// Reset or another socket error.
    Io,
}

/// Appends what the socket has to `buf`. Ok(0) is end of stream. On timeout the buffer is
/// lost with the cancelled read and `buf` is left empty: the caller closes.
pub(crate) async fn read_more<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    timer: &Timer,
    wait: Duration,
) -> Result<usize, ReadFailure> {
    if buf.capacity() - buf.len() < READ_SPARE_BYTES_MIN {
        buf.reserve(buf.capacity().max(BUFFER_BYTES));
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    match timer
        .timeout(wait, stream.read(owned.slice_mut(len..)))
        .await
    {
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res.map_err(|_| ReadFailure::Io)
        }
        Err(_) => Err(ReadFailure::Timeout),
    }
}

/// Writes all of `buf`; gives the buffer back (empty when the write timed out).
pub(crate) async fn write_all<S: AsyncWriteRent>(
    stream: &mut S,
    buf: Vec<u8>,
    timer: &Timer,
    wait: Duration,
) -> (io::Result<()>, Vec<u8>) {
    match timer.timeout(wait, stream.write_all(buf)).await {
        Ok((res, buf)) => (res.map(|_| ()), buf),
        Err(_) => (Err(io::ErrorKind::TimedOut.into()), Vec::new()),
    }
}

/// Writes `buf[range]`; gives the buffer back (empty when the write timed out).
async fn write_range<S: AsyncWriteRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    range: Range<usize>,
    timer: &Timer,
    wait: Duration,
) -> io::Result<()> {
    let owned = std::mem::take(buf);
    match timer
        .timeout(wait, stream.write_all(owned.slice(range)))
        .await
    {
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res.map(|_| ())
        }
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Adapter so the router can read request headers straight from the buffer.
struct HeadLookup<'a> {
    head: &'a RequestHead,
    buf: &'a [u8],
}

impl HeaderLookup for HeadLookup<'_> {
    fn header(&self, lower_name: &str) -> Option<&[u8]> {
        self.head.header(self.buf, lower_name)
    }
}

fn balance_hash(balancer: &Balancer, head: &RequestHead, buf: &[u8], ip: IpAddr) -> u64 {
    let ip_hash = || match ip {
        IpAddr::V4(v4) => hash_key(&v4.octets()),
        IpAddr::V6(v6) => hash_key(&v6.octets()),
    };
    match balancer {
        Balancer::ConsistentHash(HashKey::ClientIp) => ip_hash(),
        Balancer::ConsistentHash(HashKey::Header(name)) => {
            head.header(buf, name).map(hash_key).unwrap_or_else(ip_hash)
        }
        Balancer::RoundRobin | Balancer::LeastOutstanding => 0,
    }
}

/// Counts a request against its endpoint for the least-outstanding balancer while it lives.
/// When dropped it also tells the endpoint's breaker how the request went: a failure if
/// [`InFlight::fail`] was called, else a success (a client that left early is not the
/// endpoint's fault).
pub(crate) struct InFlight {
    worker: Rc<Worker>,
    view: Rc<View>,
    upstream: usize,
    endpoint: usize,
    failed: Cell<bool>,
}

impl InFlight {
    pub(crate) fn start(
        worker: &Rc<Worker>,
        view: &Rc<View>,
        upstream: usize,
        endpoint: usize,
    ) -> InFlight {
        view.balancers[upstream]
            .borrow_mut()
            .on_request_start(endpoint);
        InFlight {
            worker: worker.clone(),
            view: view.clone(),
            upstream,
            endpoint,
            failed: Cell::new(false),
        }
    }

    /// The endpoint failed this request (connect error, reset, timeout, bad response or a
    /// failure status).
    pub(crate) fn fail(&self) {
        self.failed.set(true);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.view.balancers[self.upstream]
            .borrow_mut()
            .on_request_end(self.endpoint);
        let ok = !self.failed.get();
        self.worker
            .breaker_outcome(&self.view, self.upstream, self.endpoint, ok);
    }
}

/// Where the request body stands.
enum Body {
    Done,
    /// This many Content-Length bytes still to come from the client.
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl Body {
    fn is_done(&self) -> bool {
        matches!(self, Body::Done)
    }
}

/// Consumes the head and whatever body bytes are already buffered, appending those to `out`.
/// Err is a status to answer (413, 400).
fn start_body(
    conn: &mut Conn,
    head_len: usize,
    framing: BodyFraming,
    req: &RequestFacts,
    out: &mut Vec<u8>,
) -> Result<Body, u16> {
    match framing {
        BodyFraming::None => {
            conn.buf.drain(..head_len);
            Ok(Body::Done)
        }
        BodyFraming::Length(n) => {
            let available = (conn.buf.len() - head_len) as u64;
            let take = available.min(n) as usize;
            out.extend_from_slice(&conn.buf[head_len..head_len + take]);
            conn.buf.drain(..head_len + take);
            let rest = n - take as u64;
            Ok(if rest == 0 {
                Body::Done
            } else {
                Body::Length(rest)
            })
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            let end = chunked_span(&mut decoder, &conn.buf[head_len..], req.body_bytes_max)?;
            out.extend_from_slice(&conn.buf[head_len..head_len + end.consumed]);
            conn.buf.drain(..head_len + end.consumed);
            Ok(if end.done {
                Body::Done
            } else {
                Body::Chunked(decoder)
            })
        }
    }
}

struct ChunkedSpan {
    consumed: usize,
    done: bool,
}

/// Runs the decoder over `input`, checking the payload limit. Returns how much of `input` is
/// valid chunked framing to pass on, and whether the body ended there.
fn chunked_span(
    decoder: &mut ChunkedDecoder,
    input: &[u8],
    limit: u64,
) -> Result<ChunkedSpan, u16> {
    let mut consumed = 0;
    while consumed < input.len() {
        let step = decoder.advance(&input[consumed..]).map_err(|_| 400u16)?;
        consumed += step.consumed;
        if decoder.payload_bytes() > limit {
            return Err(413);
        }
        if step.done {
            return Ok(ChunkedSpan {
                consumed,
                done: true,
            });
        }
        if step.consumed == 0 {
            break;
        }
    }
    Ok(ChunkedSpan {
        consumed,
        done: false,
    })
}

enum BodyFailure {
    /// The client went away: nothing to answer.
    Client,
    /// The client was silent past `body_read_timeout_ms`, or the body was not complete by
    /// `body_timeout_ms`: 408.
    Timeout,
    TooLarge,
    Malformed,
    Upstream,
}

/// Streams the rest of the request body from the client to the upstream through
/// `conn.buf`, leaving any bytes that follow the body (a pipelined request) in it.
async fn stream_request_body<C: AsyncReadRent, U: AsyncWriteRent>(
    client: &mut C,
    up: &mut U,
    conn: &mut Conn,
    body: &mut Body,
    req: &RequestFacts,
    timer: &Timer,
    timeouts: &Timeouts,
) -> Result<(), BodyFailure> {
    loop {
        // `conn.buf` holds no unconsumed body bytes here: read more.
        debug_assert!(conn.buf.is_empty());
        if conn.buf.capacity() < BODY_CHUNK_BYTES {
            conn.buf.reserve(BODY_CHUNK_BYTES);
        }
        let left = timeouts
            .body_deadline
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BodyFailure::Timeout);
        }
        match read_more(client, &mut conn.buf, timer, timeouts.client.min(left)).await {
            Ok(0) | Err(ReadFailure::Io) => return Err(BodyFailure::Client),
            Err(ReadFailure::Timeout) => return Err(BodyFailure::Timeout),
            Ok(_) => {}
        }
        let (pass, done) = match body {
            Body::Done => return Ok(()),
            Body::Length(rest) => {
                let take = (*rest).min(conn.buf.len() as u64) as usize;
                *rest -= take as u64;
                (take, *rest == 0)
            }
            Body::Chunked(decoder) => {
                let span = chunked_span(decoder, &conn.buf, req.body_bytes_max).map_err(|s| {
                    if s == 413 {
                        BodyFailure::TooLarge
                    } else {
                        BodyFailure::Malformed
                    }
                })?;
                (span.consumed, span.done)
            }
        };
        write_range(up, &mut conn.buf, 0..pass, timer, timeouts.upstream_idle)
            .await
            .map_err(|_| BodyFailure::Upstream)?;
        conn.buf.drain(..pass);
        if done {
            *body = Body::Done;
            return Ok(());
        }
    }
}

/// Why an upstream exchange failed before a response head arrived.
pub(crate) enum Failure {
    Refused,
    ConnectTimeout,
    /// Reset or closed with an error while sending or receiving.
    Reset,
    /// Closed cleanly before any response byte.
    Closed,
    HeadTimeout,
    /// The response head was malformed or too large.
    BadResponse,
}

/// A pooled connection to `addr`, or a new one (with its TLS handshake when the upstream
/// has `tls`; `connect_timeout` bounds both). The bool says whether it was reused. `now`
/// (a clock reading the caller already has) decides which pooled connections expired.
pub(crate) async fn upstream_connection(
    worker: &Worker,
    addr: SocketAddr,
    tls: Option<&ClientTls>,
    connect_timeout: Duration,
    now: Instant,
) -> Result<(Stream, bool), Failure> {
    if let Some(stream) =
        worker
            .pools
            .borrow_mut()
            .take(addr, tls.map_or(0, ClientTls::identity), now)
    {
        return Ok((stream, true));
    }
    let connect = async {
        let tcp = TcpStream::connect_addr(addr)
            .await
            .map_err(|_| Failure::Refused)?;
        let _ = tcp.set_nodelay(true);
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => match tls.connect(tcp, addr.ip()).await {
                Ok(stream) => Ok(Stream::Tls(Box::new(stream))),
                Err(_) => {
                    worker.count_tls(|tls| tls.upstream_failures += 1);
                    Err(Failure::Refused)
                }
            },
        }
    };
    match worker.timer.timeout(connect_timeout, connect).await {
        Ok(result) => result.map(|stream| (stream, false)),
        Err(_) => Err(Failure::ConnectTimeout),
    }
}

/// Answers a failed upstream exchange: 504 for timeouts, 502 otherwise. `keep`: the request
/// was read completely and the client wants keep-alive.
async fn fail_upstream<C: AsyncWriteRent>(
    worker: &Worker,
    client: &mut C,
    outcome: &Outcome,
    failure: Failure,
    keep: bool,
) -> Next {
    let (status, reason) = match failure {
        Failure::Refused => (502, "upstream connection refused"),
        Failure::ConnectTimeout => (504, "upstream connect timed out"),
        Failure::Reset => (502, "upstream connection failed"),
        Failure::Closed => (502, "upstream closed the connection"),
        Failure::HeadTimeout => (504, "upstream response timed out"),
        Failure::BadResponse => (502, "upstream sent an invalid response"),
    };
    if reply_error(worker, client, outcome, status, reason, !keep, &[]).await && keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// Reads the upstream's response head into `upbuf`, relaying informational (1xx) responses
/// other than 100 to HTTP/1.1 clients. Returns the head length.
async fn read_response_head<C: AsyncWriteRent, U: AsyncReadRent>(
    client: &mut C,
    up: &mut U,
    upbuf: &mut Vec<u8>,
    resp: &mut ResponseHead,
    req: &RequestFacts,
    timer: &Timer,
    wait: Duration,
) -> Result<usize, Failure> {
    // The coarse clock: a head is bounded to the tick, and the usual one costs no clock read.
    let deadline = timer.coarse_deadline(wait);
    loop {
        if !upbuf.is_empty() {
            match resp.parse(upbuf, req.method, RESPONSE_HEAD_BYTES_MAX) {
                Ok(Some(n)) if (100..200).contains(&resp.status) => {
                    if resp.status == 101 {
                        return Err(Failure::BadResponse);
                    }
                    if resp.status != 100 && !req.http10 {
                        let mut head = Vec::with_capacity(n);
                        let edits = FieldEdits::default();
                        encode_response_head(upbuf, resp, false, false, &edits, &mut head);
                        let (res, _) = write_all(client, head, timer, wait).await;
                        if res.is_err() {
                            return Err(Failure::Reset);
                        }
                    }
                    upbuf.drain(..n);
                    continue;
                }
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(_) => return Err(Failure::BadResponse),
            }
        }
        let got_none = upbuf.is_empty();
        // An empty buffer (the first read, or after an interim 1xx) waits the whole time; a
        // head arriving in pieces, what is left of it.
        let wait = if got_none {
            wait
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match read_more(up, upbuf, timer, wait).await {
            Ok(0) if got_none => return Err(Failure::Closed),
            Ok(0) => return Err(Failure::BadResponse),
            Ok(_) => {}
            Err(ReadFailure::Timeout) => return Err(Failure::HeadTimeout),
            Err(ReadFailure::Io) if got_none => return Err(Failure::Closed),
            Err(ReadFailure::Io) => return Err(Failure::Reset),
        }
    }
}

enum Relayed {
    /// The whole response reached the client. `upstream_reusable`: the upstream connection
    /// ended exactly at the response's end. `close_client`: the client connection ends here.
    Complete {
        upstream_reusable: bool,
        close_client: bool,
    },
    /// Either side failed mid-body: close both.
    Broken,
}

/// Streams the response to the client: `head_out` (the encoded head) first, then the body
/// that follows the upstream head in `upbuf`, then the rest from the socket. Some((reusable,
/// bytes written)) when the whole response went out; None when either side failed.
#[allow(clippy::too_many_arguments)]
async fn relay_response<C: AsyncWriteRent, U: AsyncReadRent>(
    worker: &Worker,
    client: &mut C,
    up: &mut U,
    upbuf: &mut Vec<u8>,
    resp_len: usize,
    framing: ResponseBody,
    head_out: HeadOut,
    chunked_to_client: bool,
    timeouts: &Timeouts,
) -> Option<(bool, u64)> {
    let head_bytes = head_out.bytes(upbuf, resp_len).len() as u64;
    let body = match framing {
        ResponseBody::None => Some(0),
        ResponseBody::Length(n) => Some(n),
        ResponseBody::Chunked | ResponseBody::UntilClose => None,
    };
    if let Some(n) = body {
        let available = upbuf.len() - resp_len;
        let take = (available as u64).min(n) as usize;
        let mut extra = available > take;
        // Head and the body bytes already read leave in one write. The encoded head goes
        // where the upstream's head was (ours is rarely longer), so the body is not copied.
        let start = match head_out {
            HeadOut::Verbatim => Some(0),
            HeadOut::Encoded(encoded) => {
                let start = resp_len.checked_sub(encoded.len());
                if let Some(start) = start {
                    upbuf[start..resp_len].copy_from_slice(&encoded);
                    worker.give_buffer(encoded);
                } else {
                    let mut encoded = encoded;
                    encoded.extend_from_slice(&upbuf[resp_len..resp_len + take]);
                    let (res, back) =
                        write_all(client, encoded, &worker.timer, timeouts.client).await;
                    res.ok()?;
                    worker.give_buffer(back);
                }
                start
            }
        };
        if let Some(start) = start {
            write_range(
                client,
                upbuf,
                start..resp_len + take,
                &worker.timer,
                timeouts.client,
            )
            .await
            .ok()?;
        }
        upbuf.clear();
        let mut rest = n - take as u64;
        while rest > 0 {
            if read_more(up, upbuf, &worker.timer, timeouts.upstream_idle)
                .await
                .ok()?
                == 0
            {
                return None;
            }
            let take = (upbuf.len() as u64).min(rest) as usize;
            extra = upbuf.len() > take;
            write_range(client, upbuf, 0..take, &worker.timer, timeouts.client)
                .await
                .ok()?;
            rest -= take as u64;
            upbuf.clear();
        }
        return Some((!extra, head_bytes + n));
    }
    // Only a head framed by a length goes verbatim, so this copy does not happen; it keeps
    // the paths below whole for any head.
    let mut head_out = match head_out {
        HeadOut::Encoded(encoded) => encoded,
        HeadOut::Verbatim => upbuf[..resp_len].to_vec(),
    };
    upbuf.drain(..resp_len);
    match framing {
        ResponseBody::Chunked => {
            relay_chunked(
                client,
                up,
                upbuf,
                head_out,
                chunked_to_client,
                &worker.timer,
                timeouts,
            )
            .await
        }
        // UntilClose (the bodies with a known end were handled above). Only a clean close
        // ends it: a reset, a stall or a TLS close without close_notify (which the TLS
        // stream reports as an error) cut it short. To an HTTP/1.1 client it goes re-framed
        // as chunked, the last chunk sent only after a clean close, so a cut body is seen
        // as cut (RFC 9112 §6.3, item 8 and §7.1); an HTTP/1.0 client has only the close.
        _ => {
            if chunked_to_client {
                chunked::push_chunk(&mut head_out, upbuf);
            } else {
                head_out.extend_from_slice(upbuf);
            }
            upbuf.clear();
            let mut bytes = head_out.len() as u64;
            write_all(client, head_out, &worker.timer, timeouts.client)
                .await
                .0
                .ok()?;
            // Room before the data for its chunk-size line, so the data is not copied.
            let room = if chunked_to_client {
                chunked::CHUNK_SIZE_LINE_BYTES_MAX
            } else {
                0
            };
            loop {
                upbuf.clear();
                upbuf.resize(room, 0);
                let Ok(n) = read_more(up, upbuf, &worker.timer, timeouts.upstream_idle).await
                else {
                    worker.upstream_truncated();
                    return None;
                };
                let out = if n == 0 {
                    if !chunked_to_client {
                        return Some((false, bytes));
                    }
                    upbuf.clear();
                    upbuf.extend_from_slice(chunked::LAST_CHUNK);
                    0..upbuf.len()
                } else if chunked_to_client {
                    let start = chunked::chunk_size_line(&mut upbuf[..room], n);
                    upbuf.extend_from_slice(b"\r\n");
                    start..upbuf.len()
                } else {
                    0..n
                };
                bytes += out.len() as u64;
                write_range(client, upbuf, out, &worker.timer, timeouts.client)
                    .await
                    .ok()?;
                if n == 0 {
                    return Some((false, bytes));
                }
            }
        }
    }
}

/// The response head as it leaves for the client.
enum HeadOut {
    /// Encoded by [`encode_response_head`], in a pooled buffer.
    Encoded(Vec<u8>),
    /// The upstream's own head, the first `resp_len` bytes of the upstream buffer, as it came
    /// ([`relays_verbatim`]).
    Verbatim,
}

impl HeadOut {
    /// The head's bytes: the encoded ones, or the upstream's at the start of `upbuf`.
    fn bytes<'a>(&'a self, upbuf: &'a [u8], resp_len: usize) -> &'a [u8] {
        match self {
            HeadOut::Encoded(encoded) => encoded,
            HeadOut::Verbatim => &upbuf[..resp_len],
        }
    }
}

/// Streams a chunked response body: passed through as it came to HTTP/1.1 clients, decoded
/// to plain bytes (the connection then closes to mark the end) for HTTP/1.0 ones.
async fn relay_chunked<C: AsyncWriteRent, U: AsyncReadRent>(
    client: &mut C,
    up: &mut U,
    upbuf: &mut Vec<u8>,
    mut pending: Vec<u8>,
    pass_through: bool,
    timer: &Timer,
    timeouts: &Timeouts,
) -> Option<(bool, u64)> {
    let mut decoder = ChunkedDecoder::new();
    let mut bytes = 0u64;
    loop {
        // Move what `upbuf` holds of the body into `pending`, in the client's framing.
        let mut consumed = 0;
        let mut done = false;
        while consumed < upbuf.len() && !done {
            let step = decoder.advance(&upbuf[consumed..]).ok()?;
            if pass_through {
                pending.extend_from_slice(&upbuf[consumed..consumed + step.consumed]);
            } else {
                let data = step.data.start + consumed..step.data.end + consumed;
                pending.extend_from_slice(&upbuf[data]);
            }
            consumed += step.consumed;
            done = step.done;
        }
        let extra = upbuf.len() > consumed;
        upbuf.clear();
        if !pending.is_empty() {
            bytes += pending.len() as u64;
            let (res, back) = write_all(client, pending, timer, timeouts.client).await;
            res.ok()?;
            pending = back;
            pending.clear();
        }
        if done {
            return Some((!extra, bytes));
        }
        if read_more(up, upbuf, timer, timeouts.upstream_idle)
            .await
            .ok()?
            == 0
        {
            return None;
        }
    }
}

/// The time limits of one exchange.
struct Timeouts {
    connect: Duration,
    response_head: Duration,
    /// Longest silence from the upstream mid-body, and longest wait to write to it.
    upstream_idle: Duration,
    /// Longest wait for the client, reading a body or writing a response.
    client: Duration,
    /// When the whole request body must be in (`body_timeout_ms` from the end of the head):
    /// a client that dribbles a byte inside every `client` wait is cut off here.
    body_deadline: Instant,
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn a_redirect_keeps_the_host_without_its_port() {
        for (host, bare) in [
            (&b"api.test:8080"[..], &b"api.test"[..]),
            (b"api.test", b"api.test"),
            (b"[::1]:8080", b"[::1]"),
            (b"[::1]", b"[::1]"),
            (b"127.0.0.1:80", b"127.0.0.1"),
        ] {
            assert_eq!(strip_port(host), bare, "{}", String::from_utf8_lossy(host));
        }
    }
}
