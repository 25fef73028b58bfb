//! The TOML schema: what an operator writes in `gateway.toml`.
//!
//! Every struct rejects unknown keys, every field says its unit and default, and every default
//! lives in a named constant in [`crate::defaults`]. These types are only the *shape* of the
//! file; validation checks the values (ranges below, enforced with bounds from
//! [`crate::defaults`]) and builds [`crate::Config`], which is what the data plane compiles.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::defaults;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Process-wide settings: workers and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Public listeners. At least one is required.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Named upstream groups, referenced by routes.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes, in declared order (the order breaks ties between equally specific routes).
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// The admin listener: metrics, health, config and upstream state. On by default.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The access log: one JSON line per request. Off unless the table is present.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// Named authentication schemes (`[auth.jwt.NAME]`, `[auth.api_keys.NAME]`), required by
    /// the routes that name them. Default: none.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Named rate limits (`[rate_limits.NAME]`), applied by the routes that name them.
    /// Default: none.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitConfig>,
}

/// `[admin]`: the admin listener, separate from the public listeners. Serves `/metrics`,
/// `/healthz`, `/ready`, `/config` and `/upstreams`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Whether the admin listener runs. Default true.
    #[serde(default = "defaults::admin_enabled")]
    pub enabled: bool,
    /// `IP:port` of the admin listener; must differ from every public listener. Port 0 picks
    /// a free port (printed at start). Default [`defaults::ADMIN_ADDRESS`]. When the default
    /// address cannot be bound the gateway warns and runs without it; an address written here
    /// that cannot be bound stops the start. Needs a restart to change.
    #[serde(default = "defaults::admin_address")]
    pub address: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: defaults::admin_enabled(),
            address: defaults::admin_address(),
        }
    }
}

/// `[access_log]`: one JSON line per request (time, client, method, path, route, status,
/// upstream endpoint, latency_us, bytes), appended to a file. Present means on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// File the lines are appended to; created if missing. Its directory must exist. Required.
    pub path: String,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Number of worker threads, each pinned to one core. 0 means one per core this process
    /// may run on (its CPU affinity mask). At most [`defaults::WORKERS_MAX`]. Default 0.
    /// Needs a restart to change.
    #[serde(default)]
    pub workers: usize,
    /// Longest request line (method, target, version) in bytes; longer gets 414.
    /// [`defaults::REQUEST_LINE_BYTES_MAX_FLOOR`]..=[`defaults::REQUEST_LINE_BYTES_MAX_CEILING`].
    /// Default [`defaults::REQUEST_LINE_BYTES_MAX`].
    #[serde(default = "defaults::request_line_bytes_max")]
    pub request_line_bytes_max: usize,
    /// Largest request head (request line plus headers) in bytes; larger gets 431.
    /// From `request_line_bytes_max` to [`defaults::HEADER_BYTES_MAX_CEILING`].
    /// Default [`defaults::HEADER_BYTES_MAX`].
    #[serde(default = "defaults::header_bytes_max")]
    pub header_bytes_max: usize,
    /// Most header fields in one request; more gets 431.
    /// 1..=[`defaults::HEADER_COUNT_MAX_CEILING`]. Default [`defaults::HEADER_COUNT_MAX`].
    #[serde(default = "defaults::header_count_max")]
    pub header_count_max: usize,
    /// Merge repeated slashes in request paths (`//a///b` is routed and forwarded as `/a/b`)
    /// when normalising them, as Envoy's `merge_slashes`. Default
    /// [`defaults::MERGE_SLASHES`] (true).
    #[serde(default = "defaults::merge_slashes")]
    pub merge_slashes: bool,
    /// Accept `%2F` and `%5C` (encoded `/` and `\`) in request paths, kept encoded inside
    /// their segment; when false such a request gets 400, since an upstream that decodes
    /// them would see other segments than the router matched. Default
    /// [`defaults::ALLOW_ENCODED_SLASHES`] (false).
    #[serde(default = "defaults::allow_encoded_slashes")]
    pub allow_encoded_slashes: bool,
    /// Largest request body in bytes for routes that set no limit of their own; larger gets
    /// 413. Default [`defaults::BODY_BYTES_MAX`].
    #[serde(default = "defaults::body_bytes_max")]
    pub body_bytes_max: u64,
    /// Time allowed to receive a complete request head, from its first byte, in milliseconds;
    /// slower gets 408. At least 1. Default [`defaults::HEADER_READ_TIMEOUT_MS`].
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// How long an idle keep-alive client connection is kept, in milliseconds. At least 1.
    /// Default [`defaults::CLIENT_IDLE_TIMEOUT_MS`].
    #[serde(default = "defaults::client_idle_timeout_ms")]
    pub client_idle_timeout_ms: u64,
    /// Longest wait for the next piece of a request body from the client, in milliseconds.
    /// At least 1. Default [`defaults::BODY_READ_TIMEOUT_MS`].
    #[serde(default = "defaults::body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// Time allowed to receive a whole request body, from the end of its head, in
    /// milliseconds; slower gets 408 (or, once the response has begun, a closed connection)
    /// and its upstream connection is closed. Bounds what `body_read_timeout_ms` alone does
    /// not: a client that sends a byte just inside every per-read wait. A large body on a slow
    /// link needs more. At least 1. Default [`defaults::BODY_TIMEOUT_MS`].
    #[serde(default = "defaults::body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Most open client connections per worker; further accepts wait. At least 1. Default
    /// [`defaults::CONNECTIONS_MAX_PER_WORKER`].
    #[serde(default = "defaults::connections_max_per_worker")]
    pub connections_max_per_worker: usize,
    /// Bytes of stale fallback answers (`[route.fallback] stale`) each worker keeps, heads,
    /// bodies and keys counted; the oldest answers make room.
    /// [`defaults::STALE_BYTES_MAX_FLOOR`]..=[`defaults::STALE_BYTES_MAX_CEILING`]. Default
    /// [`defaults::STALE_BYTES_MAX`] (8 MiB).
    #[serde(default = "defaults::stale_bytes_max")]
    pub stale_bytes_max: usize,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish before the workers
    /// exit anyway, in milliseconds. Default [`defaults::DRAIN_TIMEOUT_MS`].
    #[serde(default = "defaults::drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// How often the control thread merges the workers' rate-limit buckets into one global
    /// bucket per key and hands out new per-worker shares, in milliseconds. Shorter keeps the
    /// limit closer to exact across workers and costs more control-thread time.
    /// From [`defaults::RATE_LIMIT_SYNC_INTERVAL_MS_FLOOR`] to
    /// [`defaults::RATE_LIMIT_SYNC_INTERVAL_MS_CEILING`]. Default
    /// [`defaults::RATE_LIMIT_SYNC_INTERVAL_MS`].
    #[serde(default = "defaults::rate_limit_sync_interval_ms")]
    pub rate_limit_sync_interval_ms: u64,
    /// Peers whose forwarding headers are believed, as CIDRs (`"10.0.0.0/8"`, `"::1/128"`)
    /// or bare addresses. From any other peer the gateway removes `Forwarded`, `X-Real-IP`
    /// and every `X-Forwarded-*` field and writes its own; from one of these it appends the
    /// peer to `X-Forwarded-For` and takes the client address from it (right to left, the
    /// first address not in this list). Default empty: no peer is trusted
    /// ([`defaults::TRUSTED_PROXIES`]).
    #[serde(default = "defaults::trusted_proxies")]
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: 0,
            request_line_bytes_max: defaults::REQUEST_LINE_BYTES_MAX,
            header_bytes_max: defaults::HEADER_BYTES_MAX,
            header_count_max: defaults::HEADER_COUNT_MAX,
            merge_slashes: defaults::MERGE_SLASHES,
            allow_encoded_slashes: defaults::ALLOW_ENCODED_SLASHES,
            body_bytes_max: defaults::BODY_BYTES_MAX,
            header_read_timeout_ms: defaults::HEADER_READ_TIMEOUT_MS,
            client_idle_timeout_ms: defaults::CLIENT_IDLE_TIMEOUT_MS,
            body_read_timeout_ms: defaults::BODY_READ_TIMEOUT_MS,
            body_timeout_ms: defaults::BODY_TIMEOUT_MS,
            connections_max_per_worker: defaults::CONNECTIONS_MAX_PER_WORKER,
            stale_bytes_max: defaults::STALE_BYTES_MAX,
            drain_timeout_ms: defaults::DRAIN_TIMEOUT_MS,
            rate_limit_sync_interval_ms: defaults::RATE_LIMIT_SYNC_INTERVAL_MS,
            trusted_proxies: defaults::trusted_proxies(),
        }
    }
}

/// `[[listener]]`: one public address. Every worker binds it with SO_REUSEPORT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in logs and metrics: non-empty, no whitespace, unique. Default: the address
    /// as written.
    #[serde(default)]
    pub name: Option<String>,
    /// `IP:port` to listen on, e.g. `"0.0.0.0:8080"` or `"[::1]:8080"`; host names are not
    /// resolved. Unique among listeners. Required.
    pub address: String,
    /// `[listener.tls]` (written after its `[[listener]]`): the listener speaks HTTPS. Default:
    /// none (plain HTTP).
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// `[listener.redirect_https]` (written after its `[[listener]]`): this plain listener
    /// answers with a redirect to HTTPS instead of routing. Not together with `tls`. Default:
    /// none.
    #[serde(default)]
    pub redirect_https: Option<RedirectHttpsConfig>,
}

/// `[listener.tls]`: TLS termination on a listener, with one or more certificates chosen by
/// the client's SNI name. Certificate and key files are read when the config is loaded (and
/// reloaded) by the control side, never by a worker; a relative path is resolved against the
/// config file's directory. Whether a key matches its certificate is checked when the engine
/// builds its snapshot, so `coregate check` only vouches for the files' PEM shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Protocol versions offered: `"1.2"` and/or `"1.3"`, each once, at least one. Default
    /// [`defaults::TLS_VERSIONS`] (both).
    #[serde(default = "defaults::tls_versions")]
    pub versions: Vec<String>,
    /// Stateless session resumption with tickets (RFC 8446 §4.6.1). Default
    /// [`defaults::TLS_SESSION_TICKETS`].
    #[serde(default = "defaults::tls_session_tickets")]
    pub session_tickets: bool,
    /// Time allowed for the whole handshake, in milliseconds; a slower client is closed. At
    /// least 1. Default [`defaults::TLS_HANDSHAKE_TIMEOUT_MS`].
    #[serde(default = "defaults::tls_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// `[[listener.tls.certificate]]` (written after its `[listener.tls]`, once per
    /// certificate): the chains served, chosen by SNI name. At least one.
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<CertificateConfig>,
}

/// `[[listener.tls.certificate]]`: a certificate chain and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the chain, leaf first: at least one `CERTIFICATE` block (other blocks
    /// are ignored, so a combined file works). At most [`defaults::TLS_FILE_BYTES_MAX`]
    /// bytes. Required.
    pub cert_file: String,
    /// PEM file with the private key: exactly one `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY`
    /// (PKCS#1) or `EC PRIVATE KEY` (SEC1) block, unencrypted (the gateway never asks for a
    /// passphrase). At most [`defaults::TLS_FILE_BYTES_MAX`] bytes. Required.
    pub key_file: String,
    /// SNI names this certificate is served for, matched case-insensitively: exact
    /// (`"api.example.com"`) or a whole leading wildcard label over at least two labels
    /// (`"*.example.com"`: one label more, not `example.com` itself). DNS names only, each
    /// once per listener. Default: empty, the DNS names the certificate itself lists.
    #[serde(default)]
    pub names: Vec<String>,
    /// Serve this certificate when the client sends no SNI name, or one no certificate
    /// answers for. At most one per listener. Default false (then the first certificate is
    /// the default).
    #[serde(default)]
    pub default: bool,
}

/// `[listener.redirect_https]`: every request on this plain listener is answered with a
/// redirect to the same host and target over HTTPS, except those whose path starts with one
/// of `except_prefixes`, which are routed as usual.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectHttpsConfig {
    /// Port in the `Location` (left out when 443), 1..=65535, not this listener's own port.
    /// Required.
    pub port: u16,
    /// Status of the redirect: 301, 302, 307 or 308 ([`defaults::REDIRECT_HTTPS_STATUSES`]).
    /// Default [`defaults::REDIRECT_HTTPS_STATUS`].
    #[serde(default = "defaults::redirect_https_status")]
    pub status: u16,
    /// Path prefixes served normally instead, matched byte for byte against the start of the
    /// request path (e.g. `"/.well-known/acme-challenge/"` for HTTP-01 certificate checks).
    /// Each starts with `/`, has no whitespace, `?` or `#`, and is listed once; at most
    /// [`defaults::REDIRECT_EXCEPT_PREFIXES_MAX`]. Default: none.
    #[serde(default)]
    pub except_prefixes: Vec<String>,
}

/// `[upstreams.NAME]`: a group of endpoints that serve the same thing. NAME uses letters,
/// digits, `_`, `.` and `-`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The endpoints. At least one is required.
    pub endpoints: Vec<EndpointConfig>,
    /// How an endpoint is chosen. Default `round_robin`.
    #[serde(default)]
    pub balancer: BalancerKind,
    /// For `consistent_hash`: what is hashed, `"client_ip"` or `"header:NAME"` (NAME a header
    /// name, matched case-insensitively). Required with `consistent_hash`, rejected otherwise.
    #[serde(default)]
    pub hash_key: Option<String>,
    /// Time allowed to open a TCP connection to an endpoint, in milliseconds; slower gets 504.
    /// At least 1. Default [`defaults::CONNECT_TIMEOUT_MS`].
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed from the end of the request to the complete response head, in
    /// milliseconds; slower gets 504. At least 1. Default
    /// [`defaults::RESPONSE_HEADER_TIMEOUT_MS`].
    #[serde(default = "defaults::response_header_timeout_ms")]
    pub response_header_timeout_ms: u64,
    /// Longest silence while reading a response body, in milliseconds; the connection is then
    /// closed. At least 1. Default [`defaults::IDLE_READ_TIMEOUT_MS`].
    #[serde(default = "defaults::idle_read_timeout_ms")]
    pub idle_read_timeout_ms: u64,
    /// Most idle keep-alive connections kept per endpoint per worker. 0 disables reuse.
    /// Default [`defaults::POOL_IDLE_MAX`].
    #[serde(default = "defaults::pool_idle_max")]
    pub pool_idle_max: usize,
    /// How long an idle pooled connection is kept, in milliseconds. At least 1.
    /// Default [`defaults::POOL_IDLE_TIMEOUT_MS`].
    #[serde(default = "defaults::pool_idle_timeout_ms")]
    pub pool_idle_timeout_ms: u64,
    /// Active health checks of every endpoint. Default: none (every endpoint is up).
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// A circuit breaker on every endpoint of the group. Default: none (endpoints are only
    /// taken out by health checks).
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
    /// `[upstreams.NAME.tls]`: connections to every endpoint of the group use TLS. Default:
    /// none (plain HTTP).
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
}

/// `[upstreams.NAME.tls]`: TLS to the upstream's endpoints, with the server's certificate
/// verified. Files are read like a listener's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// The name sent as SNI and verified against the endpoints' certificate: a DNS name (no
    /// wildcard) or an IP address (then no SNI is sent, RFC 6066 §3). Default: unset, no SNI,
    /// and the certificate must name the endpoint's IP address.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file of the CA certificates trusted for the endpoints: at least one `CERTIFICATE`
    /// block, no private key. At most [`defaults::TLS_FILE_BYTES_MAX`] bytes. Default: unset,
    /// the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// `[upstreams.NAME.health_check]`: the control side probes each endpoint with
/// `GET path` and takes it out of rotation after `unhealthy_threshold` failures in a row,
/// back in after `healthy_threshold` successes in a row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Request target probed with GET (path and optional query); starts with `/`. Default [`defaults::HEALTH_CHECK_PATH`].
    #[serde(default = "defaults::health_check_path")]
    pub path: String,
    /// Time between probes of one endpoint, in milliseconds. At least 1. Default
    /// [`defaults::HEALTH_CHECK_INTERVAL_MS`].
    #[serde(default = "defaults::health_check_interval_ms")]
    pub interval_ms: u64,
    /// Time a probe may take (connect to status line), in milliseconds; slower is a failure.
    /// 1..=`interval_ms`. Default [`defaults::HEALTH_CHECK_TIMEOUT_MS`].
    #[serde(default = "defaults::health_check_timeout_ms")]
    pub timeout_ms: u64,
    /// Successes in a row that bring a down endpoint back. At least 1. Default
    /// [`defaults::HEALTHY_THRESHOLD`].
    #[serde(default = "defaults::healthy_threshold")]
    pub healthy_threshold: u32,
    /// Failures in a row that take an endpoint out. At least 1. Default
    /// [`defaults::UNHEALTHY_THRESHOLD`].
    #[serde(default = "defaults::unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// The status a healthy endpoint answers, 100..=599. Default
    /// [`defaults::HEALTH_CHECK_EXPECTED_STATUS`].
    #[serde(default = "defaults::health_check_expected_status")]
    pub expected_status: u16,
}

/// `[upstreams.NAME.breaker]`: a circuit breaker on each endpoint of the group, kept by each
/// worker on its own. A worker stops sending to an endpoint when one of the two triggers
/// fires (failures in a row, or the failure ratio over a rolling window), waits a cool-down,
/// then lets `half_open_probes` requests through: all succeed and it closes, any failure
/// opens it again with a longer cool-down. A failure is a connect error, a reset, a timeout
/// or a status in `failure_statuses`. Presence of the table turns it on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker; 0 turns this trigger off.
    /// 0..=[`defaults::BREAKER_CONSECUTIVE_FAILURES_MAX`]. Default
    /// [`defaults::BREAKER_CONSECUTIVE_FAILURES`].
    #[serde(default = "defaults::breaker_consecutive_failures")]
    pub consecutive_failures: u32,
    /// Share of failed outcomes over `window_ms` that opens the breaker, in (0, 1]; 0 turns
    /// this trigger off (TOML integers 0 and 1 are accepted). Not both triggers may be off.
    /// Default [`defaults::BREAKER_FAILURE_RATIO`].
    #[serde(default = "defaults::breaker_failure_ratio")]
    pub failure_ratio: f64,
    /// Rolling window of the ratio trigger, in milliseconds.
    /// [`defaults::BREAKER_WINDOW_MS_FLOOR`]..=[`defaults::BREAKER_WINDOW_MS_CEILING`].
    /// Default [`defaults::BREAKER_WINDOW_MS`].
    #[serde(default = "defaults::breaker_window_ms")]
    pub window_ms: u64,
    /// Outcomes the window must hold before the ratio counts.
    /// 1..=[`defaults::BREAKER_MINIMUM_REQUESTS_MAX`]. Default
    /// [`defaults::BREAKER_MINIMUM_REQUESTS`].
    #[serde(default = "defaults::breaker_minimum_requests")]
    pub minimum_requests: u32,
    /// First cool-down while open, in milliseconds.
    /// 1..=[`defaults::BREAKER_COOLDOWN_MS_MAX`]. Default [`defaults::BREAKER_COOLDOWN_MS`].
    #[serde(default = "defaults::breaker_cooldown_ms")]
    pub cooldown_ms: u64,
    /// Growth of the cool-down when the breaker opens again soon after recovering or a probe
    /// fails. 1.0..=[`defaults::BREAKER_COOLDOWN_MULTIPLIER_MAX`] (1 keeps it constant).
    /// Default [`defaults::BREAKER_COOLDOWN_MULTIPLIER`].
    #[serde(default = "defaults::breaker_cooldown_multiplier")]
    pub cooldown_multiplier: f64,
    /// Longest cool-down, in milliseconds. From `cooldown_ms` to
    /// [`defaults::BREAKER_COOLDOWN_MAX_MS_CEILING`]. Default
    /// [`defaults::BREAKER_COOLDOWN_MAX_MS`].
    #[serde(default = "defaults::breaker_cooldown_max_ms")]
    pub cooldown_max_ms: u64,
    /// Probe requests let through when half-open.
    /// 1..=[`defaults::BREAKER_HALF_OPEN_PROBES_MAX`]. Default
    /// [`defaults::BREAKER_HALF_OPEN_PROBES`].
    #[serde(default = "defaults::breaker_half_open_probes")]
    pub half_open_probes: u32,
    /// Upstream statuses that count as failures, each 500..=599 and listed once; `[]` counts
    /// only connect errors, resets and timeouts. Default
    /// [`defaults::BREAKER_FAILURE_STATUSES`] (`[502, 503, 504]`).
    #[serde(default = "defaults::breaker_failure_statuses")]
    pub failure_statuses: Vec<u16>,
}

/// One endpoint of an upstream group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `IP:port` of the endpoint; host names are not resolved. Unique within the group.
    /// Required.
    pub address: String,
    /// Relative share of traffic, 1..=[`defaults::ENDPOINT_WEIGHT_MAX`]. Default
    /// [`defaults::ENDPOINT_WEIGHT`].
    #[serde(default = "defaults::endpoint_weight")]
    pub weight: u32,
}

/// How a request picks an endpoint of its upstream group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancerKind {
    /// Smooth weighted round robin (as nginx does it).
    #[default]
    RoundRobin,
    /// Two endpoints drawn at random (weighted), the one with fewer requests in flight on
    /// this worker wins.
    LeastOutstanding,
    /// A hash ring over `hash_key`; the same key goes to the same endpoint while it exists.
    ConsistentHash,
}

/// `[[route]]`: a matcher and what to do with matching requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in logs and metrics: non-empty, no whitespace, unique among routes.
    /// Default: `route-N` by position (from 0).
    #[serde(default)]
    pub name: Option<String>,
    /// Host to match: exact (`"api.example.com"`), wildcard (`"*.example.com"`, which matches
    /// any name ending in `.example.com` but not `example.com` itself). Matched without the
    /// port, case-insensitively; a port here is an error. An IPv6 host is written in brackets,
    /// `"[::1]"`. Default: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Methods to match, e.g. `["GET", "HEAD"]`; upper-cased, each listed once; on an
    /// aggregate route only GET and HEAD. Default: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path to match exactly. Segments written `{name}` match any one non-empty segment and
    /// capture it (names are identifiers, unique in the path; a brace elsewhere is an error).
    /// Starts with `/`; no `?`, `#`, whitespace or `//`. Exactly one of `path` and
    /// `path_prefix` is required.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix to match, by whole segments: `"/api"` matches `/api`, `/api/` and `/api/x`
    /// but not `/apix`. `"/"` matches every path. Literal segments only; a trailing `/` is
    /// ignored; same character rules as `path`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Header fields that must be present with exactly this value (name case-insensitive,
    /// value case-sensitive). Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Header fields that must be present, whatever their value. Default: none.
    #[serde(default)]
    pub headers_present: Vec<String>,
    /// Name of the upstream group that serves this route. Required, except on an aggregate
    /// route (one with `[[route.aggregate]]` parts), where it defaults to the first part's
    /// upstream and, if written, must still name an upstream.
    #[serde(default)]
    pub upstream: Option<String>,
    /// With `path_prefix`: remove the matched prefix before forwarding (`/api/users` →
    /// `/users`; an empty rest becomes `/`). Default false.
    #[serde(default)]
    pub strip_prefix: bool,
    /// With `path_prefix`: replace the matched prefix with this before forwarding
    /// (`"/v2"`: `/api/users` → `/v2/users`). Starts with `/`; a trailing `/` is ignored.
    /// Not together with `strip_prefix` or `rewrite_path`. Default: unset.
    #[serde(default)]
    pub replace_prefix: Option<String>,
    /// Largest request body in bytes; larger gets 413. Default: `server.body_bytes_max`.
    #[serde(default)]
    pub body_bytes_max: Option<u64>,
    /// Authentication the request must pass before it is forwarded: the NAME of an
    /// `[auth.jwt.NAME]` or `[auth.api_keys.NAME]` table. Default: none (no authentication).
    #[serde(default)]
    pub auth: Option<String>,
    /// Rate limit applied to the route: the NAME of a `[rate_limits.NAME]` table. Default:
    /// none (no limit).
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// `[route.fallback]` (written right after its `[[route]]`): what the route answers when
    /// no endpoint of its upstream may be used. Default: 503 with a JSON body.
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
    /// With `path` (an exact pattern): the path sent upstream, built from this template whose
    /// `{name}` parts are parameters of `path` (`path = "/v1/users/{id}"`, `rewrite_path =
    /// "/users/{id}"`; a part may sit inside a segment, `/files/{name}.txt`). The query is kept
    /// as received. Starts with `/`; visible ASCII without `?`, `#` or `//`; a brace that is
    /// not part of a `{name}` is an error. Not together with `strip_prefix` or
    /// `replace_prefix`. Default: unset (the path is forwarded as received).
    #[serde(default)]
    pub rewrite_path: Option<String>,
    /// Pass `X-Request-Id` upstream (the client's, or a generated one when it sent none) and
    /// return it in the response. `${request_id}` in a header template needs it. Default
    /// [`defaults::REQUEST_ID`] (false).
    #[serde(default = "defaults::request_id")]
    pub request_id: bool,
    /// The longest a request may take from its complete head to the upstream's response head,
    /// retries included, in milliseconds; later gets 504. 1..=[`defaults::ROUTE_TIMEOUT_MS_MAX`].
    /// Default: unset (only the upstream's own timeouts apply).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `[route.retry]` (written after its `[[route]]`): retries of idempotent requests on
    /// another endpoint of the upstream, which must have more than one. Default: none.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// `[route.request_headers]` (written after its `[[route]]`): edits to the request
    /// forwarded upstream. Default: none.
    #[serde(default)]
    pub request_headers: HeaderEditsConfig,
    /// `[route.response_headers]` (written after its `[[route]]`): edits to the response
    /// relayed to the client. Default: none.
    #[serde(default)]
    pub response_headers: HeaderEditsConfig,
    /// `[[route.aggregate]]` (written after its `[[route]]`, once per part): the route answers
    /// by calling every part's upstream concurrently and merging their JSON bodies into one
    /// object under the parts' keys, instead of forwarding the request. 1..=
    /// [`defaults::AGGREGATE_PARTS_MAX`] parts. Such a route answers GET and HEAD only (a
    /// `methods` list may name no other), and takes none of `strip_prefix`, `replace_prefix`,
    /// `rewrite_path`, `[route.retry]` and `[route.json_filter]`: it builds its own calls. Default: none (the route
    /// forwards to `upstream`).
    #[serde(default)]
    pub aggregate: Vec<AggregatePartConfig>,
    /// `[route.json_filter]` (written after its `[[route]]`): fields removed from, or the only
    /// fields kept in, the route's JSON responses. Not on an aggregate route. Default: none
    /// (responses pass as received).
    #[serde(default)]
    pub json_filter: Option<JsonFilterConfig>,
}

/// `[route.json_filter]`: the route's JSON responses lose the fields listed in `remove`, or
/// keep only those listed in `keep`; exactly one of the two is written. A path is dotted,
/// `"user.address.city"`: the field `city` of the object under `address` under `user`; a path
/// that crosses an array applies to each element. Segments are non-empty printable ASCII
/// without `.`, `"` or `\` (the engine compares them with the body's keys byte for byte,
/// without unescaping). No path is listed twice or lies inside another listed path (`user`
/// and `user.ssn`). 1..=[`defaults::JSON_FILTER_PATHS_MAX`] paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFilterConfig {
    /// Paths removed from the body; everything else is sent on. Not together with `keep`.
    #[serde(default)]
    pub remove: Option<Vec<String>>,
    /// The only paths sent on; everything else is removed. Not together with `remove`.
    #[serde(default)]
    pub keep: Option<Vec<String>>,
    /// Largest response body filtered, in bytes; a larger one passes unchanged (and is
    /// counted). 1..=[`defaults::JSON_FILTER_BODY_BYTES_MAX_CEILING`]. Default
    /// [`defaults::JSON_FILTER_BODY_BYTES_MAX`].
    #[serde(default = "defaults::json_filter_body_bytes_max")]
    pub body_bytes_max: usize,
}

/// `[[route.aggregate]]`: one upstream call of an aggregate route, and where its answer goes in
/// the merged object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatePartConfig {
    /// The key of this call's answer in the merged JSON object: letters, digits, `_`, `.` and
    /// `-`, unique in the route, never [`defaults::AGGREGATE_ERRORS_KEY`] (which lists the
    /// failed optional parts). Required.
    pub key: String,
    /// Name of the upstream group called. Required.
    pub upstream: String,
    /// The request target sent (a GET), a template over the parameters of the route's `path`:
    /// `"/users/{id}"`, `"/orders?user={id}&limit=5"`. Starts with `/`; may have a query;
    /// visible ASCII without `#`; a brace that is not part of a `{name}` is an error.
    /// Required.
    pub path: String,
    /// Whether the answer needs this part: a required part that fails makes the whole answer
    /// 502; an optional one becomes `null` and is named under `errors`. Default
    /// [`defaults::AGGREGATE_REQUIRED`].
    #[serde(default = "defaults::aggregate_required")]
    pub required: bool,
    /// Time this call may take, from connect to the last body byte, in milliseconds; slower is
    /// a failure of the part. 1..=[`defaults::AGGREGATE_TIMEOUT_MS_MAX`]. Default
    /// [`defaults::AGGREGATE_TIMEOUT_MS`].
    #[serde(default = "defaults::aggregate_timeout_ms")]
    pub timeout_ms: u64,
}

/// `[route.request_headers]` / `[route.response_headers]`: header edits, applied in this
/// order: `remove`, `rename`, `set`, `add`. Names are header names (tokens), matched
/// case-insensitively and listed once per key. Never `host`, `content-length`,
/// `transfer-encoding`, `connection`, `keep-alive`, `te`, `trailer`, `upgrade` or `expect`:
/// the gateway frames and routes messages itself; nor, with `request_id = true`,
/// [`defaults::REQUEST_ID_HEADER`]. At most [`defaults::HEADER_EDITS_MAX`] edits per table.
///
/// `set` and `add` values are templates: text with `${client_ip}`, `${route}` (the route's
/// name), `${request_id}`, `${param.NAME}` (a parameter of the route's `path`) and
/// `${claim.NAME}` (a claim the route's JWT verifier maps in `claims_to_headers`); `$$` is a
/// literal `$`. The text is visible ASCII, spaces and tabs, without whitespace at either end,
/// at most [`defaults::HEADER_VALUE_TEMPLATE_BYTES_MAX`] bytes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsConfig {
    /// Headers removed, e.g. `["X-Debug"]`. Default: none.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Headers renamed, `{ "X-Old" = "X-New" }`: the field keeps its value under the new name
    /// (written as given). No name is both renamed and renamed to, no two are renamed to the
    /// same name, and a removed header is not renamed. In `request_headers` never renamed to
    /// an identity header. Default: none.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Headers set, `{ "X-Env" = "prod" }`: replaces every field of that name, or adds one.
    /// In `request_headers` never an identity header (a `claims_to_headers` target or a
    /// `consumer_header`), which the gateway owns. Default: none.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers added after the received fields, `{ "X-Client" = "${client_ip}" }`; same rules
    /// as `set`. Default: none.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// `[route.retry]`: an idempotent request that fails to connect, or gets a status in
/// `on_statuses`, is sent again to an endpoint of the upstream not tried yet, up to `attempts`
/// more times, while retries stay within `budget_percent` of the route's requests. Presence of
/// the table turns it on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Further attempts after the first, each on an endpoint not tried yet.
    /// 1..=[`defaults::RETRY_ATTEMPTS_MAX`]. Default [`defaults::RETRY_ATTEMPTS`].
    #[serde(default = "defaults::retry_attempts")]
    pub attempts: u32,
    /// Upstream statuses that are retried, each 500..=599 and listed once; `[]` retries only
    /// connect failures. Default [`defaults::RETRY_ON_STATUSES`] (`[502, 503, 504]`).
    #[serde(default = "defaults::retry_on_statuses")]
    pub on_statuses: Vec<u16>,
    /// Retries may add at most this share of the route's requests as extra load, in percent,
    /// counted per worker. 1..=[`defaults::RETRY_BUDGET_PERCENT_MAX`]. Default
    /// [`defaults::RETRY_BUDGET_PERCENT`].
    #[serde(default = "defaults::retry_budget_percent")]
    pub budget_percent: u32,
}

/// `[route.fallback]`: the answer when every endpoint of the route's upstream is down or has
/// its breaker open, given at once instead of waiting on a dead service. A stale copy when
/// `stale` is on and one is cached, otherwise the `status` response, otherwise 503 JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// Answer a GET with the last good response to the same route, method, host and target
    /// from the worker's bounded cache, marked `X-Coregate-Stale: 1` and `Warning: 110`, where
    /// HTTP caching rules let a shared cache keep it (RFC 9111 §3). Default false.
    #[serde(default)]
    pub stale: bool,
    /// On a route with `auth`: keep stale answers for authenticated requests too, each keyed
    /// by the verified identity (the JWT `sub`, which the verifier's `claims_to_headers` must
    /// map, or the API key's consumer), so one only goes back to the identity it was made
    /// for. Without it an authenticated route keeps none. Only with `stale = true` and
    /// `auth`. Default false.
    #[serde(default)]
    pub stale_per_identity: bool,
    /// Status of a fixed response, 200..=599. Default: unset (503 with a JSON body).
    #[serde(default)]
    pub status: Option<u16>,
    /// `Content-Type` of the fixed response: a media type such as `"text/html;
    /// charset=utf-8"`, visible ASCII. Only with `status`. Default
    /// [`defaults::FALLBACK_CONTENT_TYPE`].
    #[serde(default)]
    pub content_type: Option<String>,
    /// Body of the fixed response, sent as written, at most
    /// [`defaults::FALLBACK_BODY_BYTES_MAX`] bytes; none with 204, 205 or 304. Only with
    /// `status`. Default empty.
    #[serde(default)]
    pub body: Option<String>,
}

/// `[auth]`: named authentication schemes. NAME uses letters, digits, `_`, `.` and `-`, and is
/// unique across `jwt` and `api_keys`, since a route names one with `auth = "NAME"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `[auth.jwt.NAME]`: JWT verifiers. Default: none.
    #[serde(default)]
    pub jwt: BTreeMap<String, JwtConfig>,
    /// `[auth.api_keys.NAME]`: API-key sets. Default: none.
    #[serde(default)]
    pub api_keys: BTreeMap<String, ApiKeysConfig>,
}

/// `[auth.jwt.NAME]`: a JWT verifier (RFC 7519 claims over an RFC 7515 JWS). Exactly one of
/// `secret`, `secret_file`, `public_key_file` and `jwks_file` gives the key. Relative file
/// paths are resolved against the config file's directory. Key files are read at load (and
/// reload) by the control side, never by a worker.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted JOSE `alg` names, case-sensitive as in RFC 7518 §3.1: `HS256`, `HS384`,
    /// `HS512` (with `secret`/`secret_file`) or `RS256`, `RS384`, `RS512`, `PS256`, `PS384`,
    /// `PS512`, `ES256`, `ES384`, `EdDSA` (with `public_key_file`/`jwks_file`), not both
    /// kinds. `none` is never accepted. Required, non-empty.
    pub algorithms: Vec<String>,
    /// HMAC secret for HS*: its UTF-8 bytes as written, at least
    /// [`defaults::JWT_HMAC_SECRET_BYTES_MIN`] bytes (48 with HS384, 64 with HS512). Default:
    /// unset.
    #[serde(default)]
    pub secret: Option<String>,
    /// File holding the HMAC secret for HS* (its bytes, without a trailing line break), with
    /// the same length rule as `secret`. At most [`defaults::KEY_FILE_BYTES_MAX`] bytes.
    /// Default: unset.
    #[serde(default)]
    pub secret_file: Option<String>,
    /// PEM file with the public key (`PUBLIC KEY` or `RSA PUBLIC KEY`, never a private key)
    /// for RS*, PS*, ES* or EdDSA; every listed algorithm must suit the key's type (RSA:
    /// RS*/PS*, P-256: ES256, P-384: ES384, Ed25519: EdDSA). At most
    /// [`defaults::KEY_FILE_BYTES_MAX`] bytes. Default: unset.
    #[serde(default)]
    pub public_key_file: Option<String>,
    /// JWKS file (RFC 7517 §5: a JSON object with a `keys` array of public keys, chosen by a
    /// token's `kid`) for RS*, PS*, ES* or EdDSA; at least one signature key must suit a
    /// listed algorithm, and none may be private. At most [`defaults::KEY_FILE_BYTES_MAX`]
    /// bytes. Default: unset.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Required `iss` (exact match). Default: not checked.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted audiences: the token's `aud` must contain one of them. Default: empty, `aud`
    /// not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims every token must carry. At most [`defaults::JWT_CLAIMS_MAX`]. Default: none.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    /// 0..=[`defaults::JWT_LEEWAY_SECONDS_MAX`]. Default [`defaults::JWT_LEEWAY_SECONDS`].
    #[serde(default = "defaults::jwt_leeway_seconds")]
    pub leeway_seconds: u64,
    /// Whether a token without `exp` is refused. Default [`defaults::JWT_REQUIRE_EXP`].
    #[serde(default = "defaults::jwt_require_exp")]
    pub require_exp: bool,
    /// Where the token is read: `"bearer"` (`Authorization: Bearer TOKEN`), `"header:NAME"`
    /// (the whole value of header NAME) or `"cookie:NAME"`. Default [`defaults::JWT_TOKEN`].
    #[serde(default = "defaults::jwt_token")]
    pub token: String,
    /// Claims passed upstream, `{ claim = "Header-Name" }`. Any client-sent copy of these
    /// headers is removed on every route. At most [`defaults::JWT_CLAIMS_MAX`]. Default
    /// [`defaults::JWT_CLAIMS_TO_HEADERS`] (`{ sub = "X-User-Id" }`); `{}` passes none.
    #[serde(default = "defaults::jwt_claims_to_headers")]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Verified tokens cached per worker (and up to 1 024 recently refused ones); 0 verifies
    /// every request. 0..=[`defaults::JWT_CACHE_ENTRIES_MAX`]. Default
    /// [`defaults::JWT_CACHE_ENTRIES`].
    #[serde(default = "defaults::jwt_cache_entries")]
    pub cache_entries: usize,
}

impl std::fmt::Debug for JwtConfig {
    // Never prints the secret, so a logged schema cannot leak it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithms", &self.algorithms)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("public_key_file", &self.public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("required_claims", &self.required_claims)
            .field("leeway_seconds", &self.leeway_seconds)
            .field("require_exp", &self.require_exp)
            .field("token", &self.token)
            .field("claims_to_headers", &self.claims_to_headers)
            .field("cache_entries", &self.cache_entries)
            .finish()
    }
}

/// `[auth.api_keys.NAME]`: a set of API keys, stored as SHA-256 hashes so the file holds no
/// usable key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// The accepted keys. Required, non-empty.
    pub keys: Vec<ApiKeyConfig>,
    /// Where the key is read: `"header:NAME"` or `"query:NAME"` (the parameter is removed
    /// before forwarding). Default [`defaults::API_KEY_FROM`].
    #[serde(default = "defaults::api_key_from")]
    pub from: String,
    /// Header that carries the consumer name upstream; any client-sent copy is removed on
    /// every route. Default [`defaults::API_KEY_CONSUMER_HEADER`].
    #[serde(default = "defaults::api_key_consumer_header")]
    pub consumer_header: String,
}

/// One API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who the key belongs to; sent upstream in `consumer_header` and usable as a rate-limit
    /// key. Non-empty, visible text. Required.
    pub consumer: String,
    /// SHA-256 of the key as 64 hex digits (`printf %s KEY | sha256sum`); any case, stored
    /// lower-case; unique in the set. Required.
    pub sha256: String,
}

/// `[rate_limits.NAME]`: a token bucket per key, shared by all workers. NAME uses letters,
/// digits, `_`, `.` and `-`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests admitted per second per key, across all workers; a whole or fractional
    /// number, more than 0 and at most [`defaults::RATE_PER_SECOND_MAX`]. Required.
    pub rate_per_second: f64,
    /// Requests that may arrive at once on top of the rate, at least 1. Default:
    /// `rate_per_second` rounded up.
    #[serde(default)]
    pub burst: Option<u32>,
    /// What is counted separately: `"client_ip"`, `"consumer"` (the API-key consumer or JWT
    /// `sub`), `"claim:NAME"` (a JWT claim) or `"header:NAME"`; requests without the consumer,
    /// claim or header count by client IP. Default [`defaults::RATE_LIMIT_KEY`].
    #[serde(default = "defaults::rate_limit_key")]
    pub key: String,
    /// Most keys tracked at once, per worker and globally; the least recently seen are
    /// dropped beyond it. 1..=[`defaults::RATE_LIMIT_KEYS_MAX_CEILING`]. Default
    /// [`defaults::RATE_LIMIT_KEYS_MAX`].
    #[serde(default = "defaults::rate_limit_keys_max")]
    pub keys_max: usize,
}
