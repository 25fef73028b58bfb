//! The validated configuration: what the engine compiles into its snapshot.
//!
//! Everything here has passed validation: addresses are parsed, names resolved to indexes,
//! host names lower-cased, methods upper-cased, path patterns split into segments. Nothing
//! here can be wrong in a way the data plane would discover under traffic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

pub use crate::schema::ServerConfig;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the text came from and its fingerprint.
    pub source: Source,
    /// Process-wide settings (already range-checked).
    pub server: ServerConfig,
    /// Public listeners, in declared order. Never empty.
    pub listeners: Vec<Listener>,
    /// Upstream groups, sorted by name. Routes refer to them by index.
    pub upstreams: Vec<Upstream>,
    /// Routes in declared order. Never empty.
    pub routes: Vec<Route>,
    /// The admin listener, `None` when `[admin] enabled = false`.
    pub admin: Option<Admin>,
    /// The access log, `None` when off (no `[access_log]` table).
    pub access_log: Option<AccessLog>,
    /// `[auth.jwt.NAME]` verifiers, sorted by name. Routes refer to them by index.
    pub jwt: Vec<JwtAuth>,
    /// `[auth.api_keys.NAME]` key sets, sorted by name. Routes refer to them by index.
    pub api_keys: Vec<ApiKeyAuth>,
    /// `[rate_limits.NAME]` rules, sorted by name. Routes refer to them by index.
    pub rate_limits: Vec<RateLimit>,
    /// Lower-case names of every header the gateway sets from an identity (all
    /// `claims_to_headers` targets and `consumer_header`s), sorted and deduplicated. Any
    /// client-sent copy is removed on every route, authenticated or not.
    pub identity_headers: Vec<String>,
    /// `server.trusted_proxies`, parsed: peers whose X-Forwarded-For is believed. Empty by
    /// default. Addresses are IPv4 or IPv6 as written; the engine compares IPv4-mapped IPv6
    /// peers as IPv4.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// A validated `[auth.jwt.NAME]`: how a route's bearer tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuth {
    pub name: String,
    /// JOSE names the route accepts, exactly as RFC 7518 spells them (HS256/384/512,
    /// RS256/384/512, PS256/384/512, ES256/384, EdDSA), each once, in the file's order; never
    /// `none`; all HS* with [`JwtKeys::Secret`], none HS* otherwise.
    pub algorithms: Vec<String>,
    pub keys: JwtKeys,
    /// Required `iss`, if set (never empty).
    pub issuer: Option<String>,
    /// `aud` must contain one of these, if any are set. Non-empty, each once.
    pub audiences: Vec<String>,
    /// Claims that must be present. Non-empty names, each once, at most
    /// [`crate::defaults::JWT_CLAIMS_MAX`].
    pub required_claims: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf`, `iat`, seconds. Default 60, at most 3600.
    pub leeway_seconds: u64,
    /// Whether a token without `exp` is refused. Default true.
    pub require_exp: bool,
    pub token_source: TokenSource,
    /// `(claim, header name)` pairs, sorted by claim: the claim's value goes upstream in that
    /// header. Default `[("sub", "X-User-Id")]`. Header names as written (case kept for the
    /// wire); valid tokens, each once (case-insensitively), never a hop-by-hop, framing,
    /// forwarding or credential header. At most [`crate::defaults::JWT_CLAIMS_MAX`].
    pub claims_to_headers: Vec<(String, String)>,
    /// Verified tokens cached per worker (and up to 1 024 recently refused ones); 0 disables
    /// the cache. Default 10 000, at most 1 000 000.
    pub cache_entries: usize,
}

/// Key material of a JWT verifier, read from its files when the config is loaded (by the
/// control side, never by a worker). Paths are as resolved: a relative path in the file is
/// joined to the config file's directory. `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKeys {
    /// HMAC secret bytes (from `secret`, or `secret_file` without a trailing line break); at
    /// least 32 bytes, and at least as long as the longest hash among the HS* algorithms.
    Secret(Vec<u8>),
    /// A PEM public key (`public_key_file`): its path and text, which holds a
    /// `-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC KEY-----` block and no private
    /// key.
    PublicKeyPem { path: PathBuf, pem: String },
    /// A JWKS document (`jwks_file`): its path and text, a JSON object whose `keys` array
    /// holds at least one key object with a `kty` and no private part; keys chosen by `kid`.
    Jwks { path: PathBuf, json: String },
}

impl std::fmt::Debug for JwtKeys {
    // A derived Debug would print the HMAC secret into any log of the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKeys::Secret(secret) => write!(f, "Secret(<{} bytes redacted>)", secret.len()),
            JwtKeys::PublicKeyPem { path, .. } => f
                .debug_struct("PublicKeyPem")
                .field("path", path)
                .finish_non_exhaustive(),
            JwtKeys::Jwks { path, .. } => f
                .debug_struct("Jwks")
                .field("path", path)
                .finish_non_exhaustive(),
        }
    }
}

/// Where a request carries its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer TOKEN` (the default).
    Bearer,
    /// The whole value of this header (lower-case name; never `authorization`, which is
    /// [`TokenSource::Bearer`]).
    Header(String),
    /// This cookie (name as written: cookie names are case-sensitive, RFC 6265 §5.3).
    Cookie(String),
}

/// A validated `[auth.api_keys.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyAuth {
    pub name: String,
    /// `(consumer, lower-case hex SHA-256 of the key)`, in the file's order; never empty.
    /// Consumers are non-empty visible text (they go upstream as a header value); each hash
    /// is 64 hex digits and appears once.
    pub keys: Vec<(String, String)>,
    pub source: KeySource,
    /// Header that carries the consumer name upstream, as written. Default `X-Consumer`.
    /// Same rules as a `claims_to_headers` header.
    pub consumer_header: String,
}

/// Where a request carries its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// This header (lower-case name). Default `x-api-key`.
    Header(String),
    /// This query parameter (name as written: letters, digits, `-`, `.`, `_`, `~`); removed
    /// from the target before forwarding.
    Query(String),
}

/// A validated `[rate_limits.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub name: String,
    /// Requests admitted per second per key, across all workers (and nodes sharing it).
    /// Finite, more than 0, at most [`crate::defaults::RATE_PER_SECOND_MAX`].
    pub rate_per_second: f64,
    /// Requests that may arrive at once on top of the rate. At least 1. Default
    /// `rate_per_second` rounded up.
    pub burst: u32,
    pub key: RateKey,
    /// Most keys tracked at once (per worker and globally); least recently seen beyond it are
    /// dropped. Default 100 000, 1..=10 000 000.
    pub keys_max: usize,
}

/// What a rate limit counts separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    ClientIp,
    /// The authenticated consumer (API-key consumer or JWT `sub`); the client IP when the
    /// route has no authentication.
    Consumer,
    /// A JWT claim's value (claim name as written); the client IP when absent.
    Claim(String),
    /// A request header's value (lower-case name); the client IP when absent.
    Header(String),
}

/// Which authentication a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRef {
    /// Index into [`Config::jwt`].
    Jwt(usize),
    /// Index into [`Config::api_keys`].
    ApiKey(usize),
}

/// A validated `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Never one of the public listeners' addresses.
    pub address: SocketAddr,
    /// Whether the file wrote the address: then failing to bind it stops the start. The
    /// default address only warns, since another gateway on the machine may hold it.
    pub required: bool,
}

/// A validated `[access_log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// The file lines are appended to.
    pub path: PathBuf,
}

/// A validated `[upstreams.NAME.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    /// Starts with `/`.
    pub path: String,
    /// At least 1.
    pub interval_ms: u64,
    /// 1..=`interval_ms`.
    pub timeout_ms: u64,
    /// At least 1.
    pub healthy_threshold: u32,
    /// At least 1.
    pub unhealthy_threshold: u32,
    /// 100..=599.
    pub expected_status: u16,
}

/// Where a configuration was read from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file, or `None` for an embedded config (the demo).
    pub path: Option<PathBuf>,
    /// What error messages call the source: the path, or e.g. `<demo>`.
    pub display_name: String,
    /// FNV-1a 64 of the file's bytes, shown by `/config` and used to skip no-op reloads.
    pub hash: u64,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

/// A validated `[[listener]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// `[listener.tls]`: the listener terminates TLS. `None` for plain HTTP.
    pub tls: Option<ListenerTls>,
    /// `[listener.redirect_https]`: a plain listener answers every request (but those under
    /// an exempt prefix) with a redirect to HTTPS. Only on listeners without `tls`.
    pub redirect_https: Option<RedirectHttps>,
}

/// A validated `[listener.tls]`. Certificate and key files are read with the config (by the
/// control side, never by a worker), so a changed file is a changed config; whether a key
/// matches its certificate and the chain parses is judged when the snapshot is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Never empty. Chosen by the client's SNI name; see [`ListenerTls::default_certificate`].
    pub certificates: Vec<Certificate>,
    /// Index into `certificates` of the one served when the client sends no SNI name or one
    /// that no certificate names: the one marked `default = true`, else the first.
    pub default_certificate: usize,
    /// Protocol versions offered; never empty, each once, in ascending order (whatever the
    /// order written). Default both.
    pub versions: Vec<TlsVersion>,
    /// Stateless session resumption (tickets). Default true.
    pub session_tickets: bool,
    /// Time allowed for the whole handshake, in milliseconds; a client that is slower is
    /// closed and counted. Default [`crate::defaults::TLS_HANDSHAKE_TIMEOUT_MS`].
    pub handshake_timeout_ms: u64,
}

/// One `[[listener.tls.certificate]]`: a chain and its private key, read from PEM files.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    /// As resolved (a relative path joins the config file's directory).
    pub cert_path: PathBuf,
    /// The chain file's contents: PEM `CERTIFICATE` blocks, leaf first. At least one. Other
    /// blocks may be present and are to be skipped (a combined file also holds the key).
    pub cert_pem: Vec<u8>,
    pub key_path: PathBuf,
    /// The key file's contents: exactly one unencrypted PEM private key (`PRIVATE KEY`
    /// PKCS#8, `RSA PRIVATE KEY` PKCS#1 or `EC PRIVATE KEY` SEC1). Other blocks may be present
    /// and are to be skipped (`EC PARAMETERS` from `openssl ecparam -genkey`, or the chain of
    /// a combined file).
    pub key_pem: Vec<u8>,
    /// SNI names this certificate answers for, lower case: exact (`api.example.com`) or one
    /// leading wildcard label (`*.example.com`, always followed by at least two labels).
    /// Valid DNS names, never an IP address; no name is listed by two certificates of one
    /// listener. Empty means "the DNS names the certificate itself lists", read when the
    /// snapshot is compiled (validation cannot check those for overlaps).
    pub names: Vec<String>,
}

impl std::fmt::Debug for Certificate {
    // A derived Debug would print the private key into any log of the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// A TLS protocol version a listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// A validated `[listener.redirect_https]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectHttps {
    /// Port in the `Location`; 443 is left out of it.
    pub port: u16,
    /// 301, 302, 307 or 308. Default 308 (keeps the method and body).
    pub status: u16,
    /// Path prefixes served normally instead (e.g. `/.well-known/acme-challenge/`), matched
    /// byte for byte against the start of the request path. Each starts with `/`, has no
    /// whitespace, `?` or `#`, and is listed once; at most
    /// [`crate::defaults::REDIRECT_EXCEPT_PREFIXES_MAX`].
    pub except_prefixes: Vec<String>,
}

/// A validated `[upstreams.NAME.tls]`: connections to the upstream's endpoints use TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI name sent and the name the certificate is verified against: a lower-case DNS name
    /// (no wildcard), or an IP address in its canonical text form (`fd00::2`), for which no
    /// SNI is sent (RFC 6066 §3) and the certificate must name that address. `None`: no SNI
    /// is sent and the certificate must name the endpoint's IP address.
    pub server_name: Option<String>,
    /// Trust anchors: a PEM file of CA certificates (path as resolved, and its contents: at
    /// least one `CERTIFICATE` block and no private key), or `None` for the system's roots.
    pub ca: Option<(PathBuf, Vec<u8>)>,
}

/// A validated `[upstreams.NAME]`.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// Never empty.
    pub endpoints: Vec<Endpoint>,
    pub balancer: Balancer,
    pub connect_timeout_ms: u64,
    pub response_header_timeout_ms: u64,
    pub idle_read_timeout_ms: u64,
    pub pool_idle_max: usize,
    pub pool_idle_timeout_ms: u64,
    /// Active health checks, if configured.
    pub health_check: Option<HealthCheck>,
    /// Circuit breaker settings for each endpoint (kept per worker), if configured.
    pub breaker: Option<BreakerSettings>,
    /// TLS to the endpoints, if configured.
    pub tls: Option<UpstreamTls>,
}

/// A validated `[upstreams.NAME.breaker]`: when a worker stops sending to an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Failures in a row that open it; 0 disables this trigger. Default 5, at most 10 000.
    pub consecutive_failures: u32,
    /// Failure ratio over `window_ms` that opens it, in (0, 1]; 0 disables (never NaN, never
    /// negative). Default 0.5. Not 0 when `consecutive_failures` is 0: at least one trigger
    /// is on.
    pub failure_ratio: f64,
    /// Rolling window of the ratio trigger, ms, 10..=3 600 000. Default 10000.
    pub window_ms: u64,
    /// Outcomes in the window before the ratio counts, 1..=1 000 000. Default 20.
    pub minimum_requests: u32,
    /// First cool-down while open, ms, 1..=3 600 000. Default 1000.
    pub cooldown_ms: u64,
    /// Growth of the cool-down on repeated trips, 1.0..=100.0. Default 2.0.
    pub cooldown_multiplier: f64,
    /// Longest cool-down, ms, from `cooldown_ms` to 86 400 000. Default 60000.
    pub cooldown_max_ms: u64,
    /// Probe requests let through when half-open, 1..=1000. Default 3.
    pub half_open_probes: u32,
    /// Upstream statuses that count as failures (besides connect errors, resets and
    /// timeouts), each 500..=599 and listed once, in the file's order; may be empty.
    /// Default [502, 503, 504].
    pub failure_statuses: Vec<u16>,
}

/// What a route answers when no endpoint of its upstream may be used (all down or their
/// breakers open): at once, never by waiting on a dead service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// Serve the last good response to the same GET (route, method, host, target) from the
    /// worker's bounded cache, marked `X-Coregate-Stale: 1` and `Warning: 110`. Default false.
    pub stale: bool,
    /// Keep stale answers of an authenticated route, keyed by the verified identity (the
    /// route has `auth`, and a JWT verifier maps `sub`). Default false: none kept.
    pub stale_per_identity: bool,
    /// Otherwise this response; otherwise (None) 503 JSON.
    pub static_response: Option<StaticResponse>,
}

/// A configured fixed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticResponse {
    /// 200..=599.
    pub status: u16,
    /// A `type/subtype` media type, one valid header value: visible ASCII, spaces and tabs
    /// only inside, never CR or LF. Default `application/json`.
    pub content_type: String,
    /// Sent as written; at most [`crate::defaults::FALLBACK_BODY_BYTES_MAX`] bytes, and empty
    /// when `status` is 204, 205 or 304. Default empty.
    pub body: String,
}

/// One endpoint of an upstream group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: SocketAddr,
    /// 1..=[`crate::defaults::ENDPOINT_WEIGHT_MAX`].
    pub weight: u32,
}

/// A balancer with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balancer {
    RoundRobin,
    LeastOutstanding,
    ConsistentHash(HashKey),
}

/// What a consistent-hash balancer hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// A request header, by lower-case name. A request without it hashes the client IP.
    Header(String),
}

/// A validated `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique among routes.
    pub name: String,
    pub host: HostMatch,
    /// Upper-case method tokens; empty means any method.
    pub methods: Vec<String>,
    pub path: PathPattern,
    /// `(lower-case name, exact value)` pairs that must all be present.
    pub headers: Vec<(String, String)>,
    /// Lower-case names that must be present.
    pub headers_present: Vec<String>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub rewrite: Rewrite,
    pub body_bytes_max: u64,
    /// `auth = "NAME"`: a JWT verifier or API-key set the request must pass.
    pub auth: Option<AuthRef>,
    /// `rate_limit = "NAME"`: index into [`Config::rate_limits`].
    pub rate_limit: Option<usize>,
    /// `[route.fallback]`: the answer when the upstream has no usable endpoint. Default:
    /// no stale answers, 503 JSON.
    pub fallback: Fallback,
    /// `[route.request_headers]`: edits to the forwarded request. Default: none.
    pub request_headers: HeaderEdits,
    /// `[route.response_headers]`: edits to the relayed response. Default: none.
    pub response_headers: HeaderEdits,
    /// `request_id = true|false`: pass `X-Request-Id` upstream (the client's, or a generated
    /// one when it sent none) and return it in the response. Default true.
    pub request_id: bool,
    /// `[route.retry]`: retries of idempotent requests on another endpoint. Default: none.
    pub retry: Option<Retry>,
    /// `timeout_ms`: the longest a request may take from its complete head to the upstream's
    /// response head, retries included; later gets 504. Default: no route bound (each
    /// upstream timeout still applies).
    pub timeout_ms: Option<u64>,
    /// `[[route.aggregate]]`: the route answers by calling several upstreams concurrently and
    /// merging their JSON under the parts' keys, instead of forwarding to `upstream` (which
    /// is then the first part's upstream, unused for forwarding). Default: none.
    pub aggregate: Vec<AggregatePart>,
    /// `[route.json_filter]`: fields removed from (or kept in) the route's JSON responses.
    /// Default: none.
    pub json_filter: Option<JsonFilter>,
}

/// A validated `[route.json_filter]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFilter {
    pub mode: JsonFilterMode,
    /// Dotted paths split into their segments: `user.address.street` is
    /// `["user", "address", "street"]`. A path crossing an array applies to each element.
    pub paths: Vec<Vec<String>>,
    /// Largest response body filtered, bytes; larger passes unchanged (and is counted).
    /// Default 1 MiB.
    pub body_bytes_max: usize,
}

/// Whether the listed fields are the ones kept or the ones removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFilterMode {
    Keep,
    Remove,
}

/// One call of an aggregate route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatePart {
    /// The key of its answer in the merged object. Unique in the route; not `errors`.
    pub key: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// The path (and query) sent, a template over the route pattern's parameters
    /// (`Variable::Param` only), e.g. `/orders?user={id}`.
    pub path: Vec<TemplatePart>,
    /// A required part that fails makes the whole answer 502; an optional one becomes
    /// `null` and is listed in `errors`. Default true.
    pub required: bool,
    /// Time for this call, connect to last body byte, ms. Default 2000.
    pub timeout_ms: u64,
}

/// A validated `[route.retry]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Further attempts after the first, each on an endpoint not tried yet. 1..=10.
    /// Default 1.
    pub attempts: u32,
    /// Upstream statuses that are retried (besides connect failures), each 500..=599 and
    /// listed once, in the file's order; may be empty. Default [502, 503, 504].
    pub on_statuses: Vec<u16>,
    /// Retries may add at most this share of the route's requests as extra load, percent,
    /// 1..=100, counted per worker. Default 20.
    pub budget_percent: u32,
}

/// How a route matches the Host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lower-case host without port.
    Exact(String),
    /// Lower-case suffix including the leading dot: `*.example.com` is `.example.com`.
    Suffix(String),
}

/// A path pattern split into segments: `/users/{id}` is `[Literal("users"), Param("id")]`;
/// `/` is `[]`; a trailing slash gives a last empty literal (`/users/` is
/// `[Literal("users"), Literal("")]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    pub kind: PathKind,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// The whole path must match the segments.
    Exact,
    /// The path must start with the segments (whole segments). Prefix patterns have
    /// literal segments only, and no trailing empty segment (`/api/` is stored as `/api`).
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// A `{name}` segment: matches one non-empty segment.
    Param(String),
}

/// What happens to the path before forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    None,
    /// Remove the matched prefix; an empty rest becomes `/`.
    StripPrefix,
    /// Replace the matched prefix with this (starts with `/`, no trailing `/` unless it is
    /// just `/`).
    ReplacePrefix(String),
    /// With an exact `path` pattern: build the upstream path from this template, whose
    /// `{name}` parts are the pattern's parameters (`/v1/users/{id}` → `/users/{id}`). The
    /// query is kept.
    Template(Vec<TemplatePart>),
}

/// A piece of a path or header-value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Var(Variable),
}

/// What a template can say, written `{name}` in a path template (parameters only) and
/// `${name}` in a header value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// `${client_ip}`: the client's address.
    ClientIp,
    /// `${route}`: the route's name.
    Route,
    /// `${request_id}`: the request id (received or generated).
    RequestId,
    /// `{name}` / `${param.name}`: a path parameter of the route's pattern, by its index in
    /// the pattern's parameters (validation resolves names).
    Param(usize),
    /// `${claim.name}`: a JWT claim the route's verifier passes as an identity header, by the
    /// index of that claim in `claims_to_headers` (validation checks the route has such a
    /// JWT policy).
    Claim(usize),
}

/// `[route.request_headers]` / `[route.response_headers]`: edits applied to the forwarded
/// request or the relayed response, in this order: remove, rename, set, add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Lower-case names removed.
    pub remove: Vec<String>,
    /// `(lower-case from, to as written)`: the field keeps its value under the new name.
    pub rename: Vec<(String, String)>,
    /// `(name as written, value)`: replaces every field of that name (case-insensitive).
    pub set: Vec<(String, Vec<TemplatePart>)>,
    /// `(name as written, value)`: added after the received fields.
    pub add: Vec<(String, Vec<TemplatePart>)>,
}
