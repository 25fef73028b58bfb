//! Per-worker statistics: counters and latency histograms a worker owns and updates without
//! atomics or locks, and the reports it sends to the control side.
//!
//! A worker records into its own gathered stats (plain integers and hdrhistograms in a
//! `RefCell`); about every [`REPORT_INTERVAL_MS`] it moves what it gathered since the last
//! report into a [`StatsReport`] and sends it over a channel. Reports carry deltas: the
//! control side adds them up. Histograms keep 2 significant digits (1 % resolution) from 1 µs
//! to 60 s, about 20 KiB each.

use hdrhistogram::Histogram;

/// How often a worker sends what it gathered.
pub const REPORT_INTERVAL_MS: u64 = 250;
/// Highest latency a histogram records, µs; longer is recorded as this.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant digits of the latency histograms.
const LATENCY_SIGFIG: u8 = 2;

/// Why the gateway answered a request itself instead of relaying an upstream's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// 400: malformed or ambiguous request.
    BadRequest,
    /// 408: the head did not arrive in time.
    HeadTimeout,
    /// 413: body over the limit.
    BodyTooLarge,
    /// 414: request line over the limit.
    UriTooLong,
    /// 431: head over the size or field-count limit.
    HeadersTooLarge,
    /// 417/501: an expectation or transfer coding the gateway does not support.
    Unsupported,
    /// 404: no route matched.
    NoRoute,
    /// 405: a route matched all but the method.
    MethodNotAllowed,
    /// 502: the upstream refused, reset or sent garbage.
    UpstreamFailed,
    /// 503: no endpoint of the upstream is usable.
    NoEndpoint,
    /// 504: connect or response head timed out.
    UpstreamTimeout,
    /// 401: missing or invalid credentials.
    Unauthorized,
    /// 429: over the route's rate limit.
    RateLimited,
}

impl Rejection {
    /// Every kind, in index order.
    pub const ALL: [Rejection; 13] = [
        Rejection::BadRequest,
        Rejection::HeadTimeout,
        Rejection::BodyTooLarge,
        Rejection::UriTooLong,
        Rejection::HeadersTooLarge,
        Rejection::Unsupported,
        Rejection::NoRoute,
        Rejection::MethodNotAllowed,
        Rejection::UpstreamFailed,
        Rejection::NoEndpoint,
        Rejection::UpstreamTimeout,
        Rejection::Unauthorized,
        Rejection::RateLimited,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::BadRequest => "bad_request",
            Rejection::HeadTimeout => "head_timeout",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::UriTooLong => "uri_too_long",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::Unsupported => "unsupported",
            Rejection::NoRoute => "no_route",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::UpstreamFailed => "upstream_failed",
            Rejection::NoEndpoint => "no_endpoint",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::Unauthorized => "unauthorized",
            Rejection::RateLimited => "rate_limited",
        }
    }

    /// The kind for a status the gateway answered itself.
    pub fn from_status(status: u16) -> Rejection {
        match status {
            408 => Rejection::HeadTimeout,
            413 => Rejection::BodyTooLarge,
            414 => Rejection::UriTooLong,
            431 => Rejection::HeadersTooLarge,
            417 | 501 => Rejection::Unsupported,
            404 => Rejection::NoRoute,
            405 => Rejection::MethodNotAllowed,
            502 => Rejection::UpstreamFailed,
            503 => Rejection::NoEndpoint,
            504 => Rejection::UpstreamTimeout,
            401 => Rejection::Unauthorized,
            429 => Rejection::RateLimited,
            _ => Rejection::BadRequest,
        }
    }
}

/// A latency histogram in µs.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; this cannot fail.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// What one route saw.
#[derive(Clone, Debug)]
pub struct RouteStats {
    /// The route's name in the snapshot the worker served.
    pub name: Box<str>,
    /// Responses relayed, by status class: index 0 is 1xx … index 4 is 5xx.
    pub responses: [u64; 5],
    /// Time from the complete request head to the end of the response, µs.
    pub latency_us: Histogram<u64>,
}

impl RouteStats {
    pub fn new(name: &str) -> RouteStats {
        RouteStats {
            name: name.into(),
            responses: [0; 5],
            latency_us: latency_histogram(),
        }
    }
}

/// What a worker gathered since its previous report.
#[derive(Clone, Debug)]
pub struct StatsReport {
    pub worker: usize,
    /// Version of the snapshot whose routes `routes` follows.
    pub snapshot_version: u64,
    /// Per route, in the snapshot's route order.
    pub routes: Vec<RouteStats>,
    /// Requests the gateway answered itself, by [`Rejection`] index.
    pub rejections: [u64; Rejection::COUNT],
    /// Time from sending the request upstream to its complete response head, µs.
    pub upstream_latency_us: Histogram<u64>,
    /// Client connections accepted.
    pub connections_accepted: u64,
    /// Client connections open at the time of the report (a gauge, not a delta).
    pub connections_open: u64,
    /// This worker's circuit breakers at the time of the report (a gauge), for endpoints of
    /// upstreams that have one.
    pub breakers: Vec<BreakerReport>,
    /// Responses of routes with a JSON filter that passed unfiltered (too large, not
    /// length-framed, or not JSON).
    pub json_filter_skipped: u64,
    /// Close-delimited upstream bodies that ended in an error (a reset, a stall, a TLS close
    /// without close_notify) rather than a clean close: relayed cut short, never as whole.
    pub upstream_truncated: u64,
    /// Verified-token cache lookups of JWT routes that found the token (no signature
    /// check), and those that did not.
    pub jwt_cache_hits: u64,
    pub jwt_cache_misses: u64,
    pub tls: TlsCounters,
}

/// TLS handshakes of one worker since its previous report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsCounters {
    /// Client handshakes completed, full or resumed.
    pub handshakes: u64,
    /// Of `handshakes`, those that resumed a session (ticket or session id).
    pub resumed: u64,
    /// Client handshakes refused by rustls or broken off by the client.
    pub failures: u64,
    /// Client handshakes not done within the listener's `handshake_timeout_ms`.
    pub timeouts: u64,
    /// Plain HTTP requests answered with a redirect to HTTPS.
    pub redirects: u64,
    /// Handshakes to TLS upstreams that failed (counted also as refused connections).
    pub upstream_failures: u64,
}

impl TlsCounters {
    pub fn add(&mut self, other: &TlsCounters) {
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.failures += other.failures;
        self.timeouts += other.timeouts;
        self.redirects += other.redirects;
        self.upstream_failures += other.upstream_failures;
    }
}

/// One worker's breaker for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerReport {
    pub upstream: Box<str>,
    pub endpoint: std::net::SocketAddr,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// Times it opened.
    pub trips: u64,
    /// Times a probe closed it again.
    pub recoveries: u64,
}
