//! Named defaults for every config field, and the bounds validation holds them to. The
//! schema's serde defaults call the functions here; documentation and `coregate check` quote
//! the constants, and the engine sizes fixed arrays from the ceilings.

/// Longest request line in bytes (414 beyond). nginx uses 8 KiB for a large header buffer.
pub const REQUEST_LINE_BYTES_MAX: usize = 8 * 1024;
/// Largest request head in bytes (431 beyond).
pub const HEADER_BYTES_MAX: usize = 32 * 1024;
/// Most header fields in a request (431 beyond).
pub const HEADER_COUNT_MAX: usize = 100;
/// Repeated slashes in request paths are merged (`//a` is `/a`).
pub const MERGE_SLASHES: bool = true;
/// `%2F` and `%5C` in request paths are refused (400).
pub const ALLOW_ENCODED_SLASHES: bool = false;
/// Largest request body in bytes (413 beyond): 16 MiB.
pub const BODY_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Time to receive a complete request head, ms (408 beyond).
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Idle keep-alive client connections are closed after this, ms.
pub const CLIENT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Longest wait for the next piece of a request body, ms.
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Time to receive a whole request body, from its head, ms (408 beyond).
pub const BODY_TIMEOUT_MS: u64 = 60_000;
/// Most open client connections per worker.
pub const CONNECTIONS_MAX_PER_WORKER: usize = 65_536;
/// Time in-flight requests get to finish after SIGTERM, ms.
pub const DRAIN_TIMEOUT_MS: u64 = 30_000;
/// Bytes of stale fallback answers a worker keeps (heads, bodies and keys): 8 MiB.
pub const STALE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Smallest `stale_bytes_max` accepted.
pub const STALE_BYTES_MAX_FLOOR: usize = 1024;
/// Largest `stale_bytes_max` accepted: 1 GiB per worker.
pub const STALE_BYTES_MAX_CEILING: usize = 1024 * 1024 * 1024;
/// Time to connect to an upstream endpoint, ms (504 beyond).
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Time from the end of the request to the upstream's complete response head, ms.
pub const RESPONSE_HEADER_TIMEOUT_MS: u64 = 30_000;
/// Longest silence while reading an upstream response body, ms.
pub const IDLE_READ_TIMEOUT_MS: u64 = 60_000;
/// Idle keep-alive upstream connections kept per endpoint per worker.
pub const POOL_IDLE_MAX: usize = 64;
/// Idle upstream connections are closed after this, ms.
pub const POOL_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Weight of an endpoint that names none.
pub const ENDPOINT_WEIGHT: u32 = 1;
/// Largest endpoint weight accepted.
pub const ENDPOINT_WEIGHT_MAX: u32 = 1_000;

/// Whether the admin listener runs when `[admin]` says nothing.
pub const ADMIN_ENABLED: bool = true;
/// Address of the admin listener: loopback only, so metrics and config are not public.
pub const ADMIN_ADDRESS: &str = "127.0.0.1:9901";
/// Path a health check probes.
pub const HEALTH_CHECK_PATH: &str = "/healthz";
/// Time between health probes of one endpoint, ms.
pub const HEALTH_CHECK_INTERVAL_MS: u64 = 2_000;
/// Time a health probe may take, ms.
pub const HEALTH_CHECK_TIMEOUT_MS: u64 = 1_000;
/// Successes in a row that bring an endpoint back.
pub const HEALTHY_THRESHOLD: u32 = 2;
/// Failures in a row that take an endpoint out.
pub const UNHEALTHY_THRESHOLD: u32 = 3;
/// Status a healthy endpoint answers.
pub const HEALTH_CHECK_EXPECTED_STATUS: u16 = 200;

/// How often the control thread merges the workers' rate-limit buckets into the global ones
/// and hands out new shares, ms. Shorter is more accurate across workers and costs more
/// control-thread time.
pub const RATE_LIMIT_SYNC_INTERVAL_MS: u64 = 100;
/// `server.trusted_proxies`: no peer's forwarding headers are believed unless the operator
/// names it.
pub const TRUSTED_PROXIES: &[&str] = &[];
/// Most `server.trusted_proxies` entries: a peer and every X-Forwarded-For hop from a trusted
/// peer is checked against each of them.
pub const TRUSTED_PROXIES_MAX: usize = 256;
/// Shortest `rate_limit_sync_interval_ms` accepted.
pub const RATE_LIMIT_SYNC_INTERVAL_MS_FLOOR: u64 = 10;
/// Longest `rate_limit_sync_interval_ms` accepted: beyond it the split between workers goes
/// stale for too long.
pub const RATE_LIMIT_SYNC_INTERVAL_MS_CEILING: u64 = 10_000;

/// Clock skew allowed on a JWT's `exp`, `nbf` and `iat`, seconds.
pub const JWT_LEEWAY_SECONDS: u64 = 60;
/// Largest `leeway_seconds` accepted: an hour of skew is a broken clock, not skew.
pub const JWT_LEEWAY_SECONDS_MAX: u64 = 3_600;
/// Whether a JWT without `exp` is refused (RFC 7519 §4.1.4 makes `exp` optional; a token
/// that never expires is a credential that can never be revoked by waiting).
pub const JWT_REQUIRE_EXP: bool = true;
/// Where a JWT is read from: `Authorization: Bearer TOKEN` (RFC 6750 §2.1).
pub const JWT_TOKEN: &str = "bearer";
/// The claim passed upstream when `claims_to_headers` is not written, and its header.
pub const JWT_CLAIMS_TO_HEADERS: &[(&str, &str)] = &[("sub", "X-User-Id")];
/// Verified tokens cached per worker, so a repeated token costs a lookup, not a signature.
pub const JWT_CACHE_ENTRIES: usize = 10_000;
/// Largest `cache_entries` accepted.
pub const JWT_CACHE_ENTRIES_MAX: usize = 1_000_000;
/// Shortest HMAC secret, bytes: RFC 7518 §3.2 asks for a key at least as long as the hash,
/// so HS384 needs 48 and HS512 64.
pub const JWT_HMAC_SECRET_BYTES_MIN: usize = 32;
/// Most `required_claims`, and most `claims_to_headers` entries, of one verifier (the engine
/// keeps them in fixed arrays).
pub const JWT_CLAIMS_MAX: usize = 16;
/// Largest key file (`secret_file`, `public_key_file`, `jwks_file`) read, bytes: 1 MiB.
pub const KEY_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Where an API key is read from.
pub const API_KEY_FROM: &str = "header:x-api-key";
/// Header that carries an API key's consumer upstream.
pub const API_KEY_CONSUMER_HEADER: &str = "X-Consumer";

/// What a rate limit counts separately.
pub const RATE_LIMIT_KEY: &str = "client_ip";
/// Most keys a rate limit tracks at once (per worker and globally).
pub const RATE_LIMIT_KEYS_MAX: usize = 100_000;
/// Largest `keys_max` accepted.
pub const RATE_LIMIT_KEYS_MAX_CEILING: usize = 10_000_000;
/// Largest `rate_per_second` accepted: a million requests a second per key is no limit.
pub const RATE_PER_SECOND_MAX: f64 = 1_000_000.0;

/// Failures in a row that open an endpoint's breaker.
pub const BREAKER_CONSECUTIVE_FAILURES: u32 = 5;
/// Largest `consecutive_failures` accepted.
pub const BREAKER_CONSECUTIVE_FAILURES_MAX: u32 = 10_000;
/// Share of failed outcomes in the window that opens an endpoint's breaker.
pub const BREAKER_FAILURE_RATIO: f64 = 0.5;
/// Rolling window of the failure ratio, ms.
pub const BREAKER_WINDOW_MS: u64 = 10_000;
/// Shortest `window_ms` accepted: the engine keeps the window as 10 buckets of a tenth of it,
/// each at least 1 ms.
pub const BREAKER_WINDOW_MS_FLOOR: u64 = 10;
/// Longest `window_ms` accepted: an hour.
pub const BREAKER_WINDOW_MS_CEILING: u64 = 3_600_000;
/// Outcomes the window must hold before the failure ratio counts, so one failure out of one
/// request does not open the breaker.
pub const BREAKER_MINIMUM_REQUESTS: u32 = 20;
/// Largest `minimum_requests` accepted.
pub const BREAKER_MINIMUM_REQUESTS_MAX: u32 = 1_000_000;
/// First cool-down of an open breaker before it lets probes through, ms.
pub const BREAKER_COOLDOWN_MS: u64 = 1_000;
/// Longest `cooldown_ms` accepted: an hour.
pub const BREAKER_COOLDOWN_MS_MAX: u64 = 3_600_000;
/// Growth of the cool-down each time the breaker opens again soon after recovering, or a
/// half-open probe fails.
pub const BREAKER_COOLDOWN_MULTIPLIER: f64 = 2.0;
/// Largest `cooldown_multiplier` accepted.
pub const BREAKER_COOLDOWN_MULTIPLIER_MAX: f64 = 100.0;
/// Longest cool-down however often the breaker trips, ms.
pub const BREAKER_COOLDOWN_MAX_MS: u64 = 60_000;
/// Largest `cooldown_max_ms` accepted: a day.
pub const BREAKER_COOLDOWN_MAX_MS_CEILING: u64 = 86_400_000;
/// Probe requests a half-open breaker lets through; when all have succeeded it closes, and
/// any failure opens it again.
pub const BREAKER_HALF_OPEN_PROBES: u32 = 3;
/// Largest `half_open_probes` accepted.
pub const BREAKER_HALF_OPEN_PROBES_MAX: u32 = 1_000;
/// Upstream statuses that count as failures besides connect errors, resets and timeouts:
/// the gateway-ish 5xx that say the service is not answering (RFC 9110 §15.6.3-§15.6.5),
/// not a 500 that one bad request can cause.
pub const BREAKER_FAILURE_STATUSES: &[u16] = &[502, 503, 504];

/// Content type of a route's static fallback response.
pub const FALLBACK_CONTENT_TYPE: &str = "application/json";
/// Largest static fallback body, bytes: 64 KiB. Each worker keeps it in memory per route.
pub const FALLBACK_BODY_BYTES_MAX: usize = 64 * 1024;

/// Whether a route passes `X-Request-Id` upstream (the client's, or one it generates when the
/// client sent none) and returns it in the response, so one id follows a request through logs.
/// Off unless asked for, as in nginx and HAProxy: the plain path pays for no feature it does
/// not use (about 5 % of a small request's CPU, perf.md).
pub const REQUEST_ID: bool = false;
/// The header that carries the request id (with `request_id = true`, the gateway's own: header
/// edits never touch it).
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
/// Most edits (`remove`, `rename`, `set` and `add` entries together) in one
/// `[route.request_headers]` or `[route.response_headers]` table: each is work on every request
/// of the route, and the engine applies them from a fixed-size list.
pub const HEADER_EDITS_MAX: usize = 64;
/// Longest header value template as written, bytes: a value is one header line, and a long one
/// eats into the upstream's (or client's) header limit on every request.
pub const HEADER_VALUE_TEMPLATE_BYTES_MAX: usize = 4_096;

/// Further attempts a `[route.retry]` makes after the first: one retry on another endpoint
/// covers a single bad endpoint without multiplying load on a struggling service.
pub const RETRY_ATTEMPTS: u32 = 1;
/// Largest `attempts` accepted.
pub const RETRY_ATTEMPTS_MAX: u32 = 10;
/// Upstream statuses retried besides connect failures: the same gateway-ish 5xx a breaker
/// counts (RFC 9110 §15.6.3-§15.6.5), not a 500 that the request itself may have caused.
pub const RETRY_ON_STATUSES: &[u16] = &[502, 503, 504];
/// Most extra load retries may add, as a percentage of the route's requests (per worker), so
/// retries cannot turn an outage into a retry storm.
pub const RETRY_BUDGET_PERCENT: u32 = 20;
/// Largest `budget_percent` accepted: every request retried once.
pub const RETRY_BUDGET_PERCENT_MAX: u32 = 100;
/// Longest route `timeout_ms` accepted: an hour.
pub const ROUTE_TIMEOUT_MS_MAX: u64 = 3_600_000;

/// Whether an aggregate part is required: a failed required part makes the whole answer 502,
/// so a part is only optional when the operator says the page works without it.
pub const AGGREGATE_REQUIRED: bool = true;
/// Time one aggregate call may take, connect to last body byte, ms.
pub const AGGREGATE_TIMEOUT_MS: u64 = 2_000;
/// Longest aggregate part `timeout_ms` accepted: a minute. The client waits for the slowest
/// part, so a longer call belongs behind a plain route.
pub const AGGREGATE_TIMEOUT_MS_MAX: u64 = 60_000;
/// Most parts of one aggregate route: each is a concurrent upstream call per request, and the
/// engine keeps a route's calls in a fixed-size array.
pub const AGGREGATE_PARTS_MAX: usize = 16;
/// The methods an aggregate route answers: it only reads (RFC 9110 §9.2.1), and its calls
/// carry no request body.
pub const AGGREGATE_METHODS: &[&str] = &["GET", "HEAD"];
/// The key of the merged object that lists failed optional parts, so no part may use it.
pub const AGGREGATE_ERRORS_KEY: &str = "errors";

/// Largest response body a `[route.json_filter]` filters, bytes: 1 MiB. The engine holds the
/// whole body to rewrite it, so this bounds the memory one response can take; a larger body
/// passes unchanged and is counted.
pub const JSON_FILTER_BODY_BYTES_MAX: usize = 1024 * 1024;
/// Largest `body_bytes_max` of a JSON filter accepted: 16 MiB, the default request body limit.
pub const JSON_FILTER_BODY_BYTES_MAX_CEILING: usize = 16 * 1024 * 1024;
/// Most paths in one JSON filter's `keep` or `remove`: each is matched against every key of
/// the body, and the engine keeps a route's paths in a fixed-size list.
pub const JSON_FILTER_PATHS_MAX: usize = 64;

/// Smallest `request_line_bytes_max` accepted: room for a method, a short target and the
/// version.
pub const REQUEST_LINE_BYTES_MAX_FLOOR: usize = 64;
/// Largest `request_line_bytes_max` accepted: 64 KiB.
pub const REQUEST_LINE_BYTES_MAX_CEILING: usize = 64 * 1024;
/// Largest `header_bytes_max` accepted: 1 MiB. (Its floor is `request_line_bytes_max`.)
pub const HEADER_BYTES_MAX_CEILING: usize = 1024 * 1024;
/// Largest `header_count_max` accepted: the engine parses a head into a fixed array of this
/// many headers.
pub const HEADER_COUNT_MAX_CEILING: usize = 256;
/// Most worker threads accepted.
pub const WORKERS_MAX: usize = 1_024;

pub(crate) fn request_line_bytes_max() -> usize {
    REQUEST_LINE_BYTES_MAX
}
pub(crate) fn header_bytes_max() -> usize {
    HEADER_BYTES_MAX
}
pub(crate) fn header_count_max() -> usize {
    HEADER_COUNT_MAX
}
pub(crate) fn merge_slashes() -> bool {
    MERGE_SLASHES
}
pub(crate) fn allow_encoded_slashes() -> bool {
    ALLOW_ENCODED_SLASHES
}
pub(crate) fn body_bytes_max() -> u64 {
    BODY_BYTES_MAX
}
pub(crate) fn header_read_timeout_ms() -> u64 {
    HEADER_READ_TIMEOUT_MS
}
pub(crate) fn client_idle_timeout_ms() -> u64 {
    CLIENT_IDLE_TIMEOUT_MS
}
pub(crate) fn body_read_timeout_ms() -> u64 {
    BODY_READ_TIMEOUT_MS
}
pub(crate) fn body_timeout_ms() -> u64 {
    BODY_TIMEOUT_MS
}
pub(crate) fn connections_max_per_worker() -> usize {
    CONNECTIONS_MAX_PER_WORKER
}
pub(crate) fn drain_timeout_ms() -> u64 {
    DRAIN_TIMEOUT_MS
}
pub(crate) fn stale_bytes_max() -> usize {
    STALE_BYTES_MAX
}
pub(crate) fn connect_timeout_ms() -> u64 {
    CONNECT_TIMEOUT_MS
}
pub(crate) fn response_header_timeout_ms() -> u64 {
    RESPONSE_HEADER_TIMEOUT_MS
}
pub(crate) fn idle_read_timeout_ms() -> u64 {
    IDLE_READ_TIMEOUT_MS
}
pub(crate) fn pool_idle_max() -> usize {
    POOL_IDLE_MAX
}
pub(crate) fn pool_idle_timeout_ms() -> u64 {
    POOL_IDLE_TIMEOUT_MS
}
pub(crate) fn endpoint_weight() -> u32 {
    ENDPOINT_WEIGHT
}
pub(crate) fn admin_enabled() -> bool {
    ADMIN_ENABLED
}
pub(crate) fn admin_address() -> String {
    ADMIN_ADDRESS.to_owned()
}
pub(crate) fn health_check_path() -> String {
    HEALTH_CHECK_PATH.to_owned()
}
pub(crate) fn health_check_interval_ms() -> u64 {
    HEALTH_CHECK_INTERVAL_MS
}
pub(crate) fn health_check_timeout_ms() -> u64 {
    HEALTH_CHECK_TIMEOUT_MS
}
pub(crate) fn healthy_threshold() -> u32 {
    HEALTHY_THRESHOLD
}
pub(crate) fn unhealthy_threshold() -> u32 {
    UNHEALTHY_THRESHOLD
}
pub(crate) fn health_check_expected_status() -> u16 {
    HEALTH_CHECK_EXPECTED_STATUS
}
pub(crate) fn trusted_proxies() -> Vec<String> {
    TRUSTED_PROXIES.iter().map(|&net| net.to_owned()).collect()
}
pub(crate) fn rate_limit_sync_interval_ms() -> u64 {
    RATE_LIMIT_SYNC_INTERVAL_MS
}
pub(crate) fn jwt_leeway_seconds() -> u64 {
    JWT_LEEWAY_SECONDS
}
pub(crate) fn jwt_require_exp() -> bool {
    JWT_REQUIRE_EXP
}
pub(crate) fn jwt_token() -> String {
    JWT_TOKEN.to_owned()
}
pub(crate) fn jwt_claims_to_headers() -> std::collections::BTreeMap<String, String> {
    JWT_CLAIMS_TO_HEADERS
        .iter()
        .map(|&(claim, header)| (claim.to_owned(), header.to_owned()))
        .collect()
}
pub(crate) fn jwt_cache_entries() -> usize {
    JWT_CACHE_ENTRIES
}
pub(crate) fn api_key_from() -> String {
    API_KEY_FROM.to_owned()
}
pub(crate) fn api_key_consumer_header() -> String {
    API_KEY_CONSUMER_HEADER.to_owned()
}
pub(crate) fn rate_limit_key() -> String {
    RATE_LIMIT_KEY.to_owned()
}
pub(crate) fn rate_limit_keys_max() -> usize {
    RATE_LIMIT_KEYS_MAX
}
pub(crate) fn request_id() -> bool {
    REQUEST_ID
}
pub(crate) fn breaker_consecutive_failures() -> u32 {
    BREAKER_CONSECUTIVE_FAILURES
}
pub(crate) fn breaker_failure_ratio() -> f64 {
    BREAKER_FAILURE_RATIO
}
pub(crate) fn breaker_window_ms() -> u64 {
    BREAKER_WINDOW_MS
}
pub(crate) fn breaker_minimum_requests() -> u32 {
    BREAKER_MINIMUM_REQUESTS
}
pub(crate) fn breaker_cooldown_ms() -> u64 {
    BREAKER_COOLDOWN_MS
}
pub(crate) fn breaker_cooldown_multiplier() -> f64 {
    BREAKER_COOLDOWN_MULTIPLIER
}
pub(crate) fn breaker_cooldown_max_ms() -> u64 {
    BREAKER_COOLDOWN_MAX_MS
}
pub(crate) fn breaker_half_open_probes() -> u32 {
    BREAKER_HALF_OPEN_PROBES
}
pub(crate) fn breaker_failure_statuses() -> Vec<u16> {
    BREAKER_FAILURE_STATUSES.to_vec()
}
pub(crate) fn retry_attempts() -> u32 {
    RETRY_ATTEMPTS
}
pub(crate) fn retry_on_statuses() -> Vec<u16> {
    RETRY_ON_STATUSES.to_vec()
}
pub(crate) fn retry_budget_percent() -> u32 {
    RETRY_BUDGET_PERCENT
}
pub(crate) fn aggregate_required() -> bool {
    AGGREGATE_REQUIRED
}
pub(crate) fn aggregate_timeout_ms() -> u64 {
    AGGREGATE_TIMEOUT_MS
}
pub(crate) fn json_filter_body_bytes_max() -> usize {
    JSON_FILTER_BODY_BYTES_MAX
}

pub(crate) fn tls_versions() -> Vec<String> {
    TLS_VERSIONS.iter().map(|v| (*v).to_owned()).collect()
}
pub(crate) fn tls_session_tickets() -> bool {
    TLS_SESSION_TICKETS
}
pub(crate) fn tls_handshake_timeout_ms() -> u64 {
    TLS_HANDSHAKE_TIMEOUT_MS
}
pub(crate) fn redirect_https_status() -> u16 {
    REDIRECT_HTTPS_STATUS
}

/// Time allowed for a client's whole TLS handshake, in milliseconds.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// The TLS versions a listener offers, as written in `versions`: 1.2 (RFC 5246) and 1.3
/// (RFC 8446). 1.0 and 1.1 are deprecated (RFC 8996) and never offered.
pub const TLS_VERSIONS: &[&str] = &["1.2", "1.3"];
/// Whether a TLS listener resumes sessions with stateless tickets (RFC 8446 §4.6.1): a
/// returning client skips the key exchange's certificate work.
pub const TLS_SESSION_TICKETS: bool = true;
/// Largest certificate chain, private key or CA file read, bytes: 1 MiB. A chain is a few
/// kilobytes; a system CA bundle about 200 KiB.
pub const TLS_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Status of an HTTP-to-HTTPS redirect: 308 (RFC 9110 §15.4.9) keeps the method and body, so
/// a POST stays a POST.
pub const REDIRECT_HTTPS_STATUS: u16 = 308;
/// The statuses a redirect may use (RFC 9110 §15.4): 301 and 302 let clients turn a POST
/// into a GET, 307 and 308 do not.
pub const REDIRECT_HTTPS_STATUSES: &[u16] = &[301, 302, 307, 308];
/// Most `except_prefixes` of one redirect: the plain listener compares each request's path
/// with every one of them.
pub const REDIRECT_EXCEPT_PREFIXES_MAX: usize = 16;
