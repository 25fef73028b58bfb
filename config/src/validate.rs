//! Validation: schema → [`crate::Config`], with every rejected value located at its key or
//! value in the text and given a hint.
//!
//! Owns the value rules (ranges, address syntax, names, host and path patterns, references
//! from routes to upstreams, authentication and rate limits) and the normalisation the model
//! promises (lower-case hosts and header names, upper-case methods, split paths, indexes).
//! The authentication rules, which also read key files, live in `validate/auth.rs` (what the
//! key files must hold in `validate/keys.rs`); the rate limit rules in
//! `validate/ratelimit.rs`; an upstream's circuit breaker in `validate/breaker.rs` and a
//! route's fallback response in `validate/fallback.rs`; its retries and overall timeout in
//! `validate/retry.rs`; its path rewrite and header edits, with their templates, in
//! `validate/transform.rs`; its aggregate parts in `validate/aggregate.rs`; its JSON response
//! filter in `validate/json_filter.rs`; a listener's TLS certificates or HTTPS redirect, and
//! an upstream's TLS, in `validate/tls.rs`. Files named by the config (keys, certificates) are
//! read here, once per load. Runs on the control side only; the first rule broken is reported.

mod aggregate;
mod auth;
mod breaker;
mod fallback;
mod json_filter;
mod keys;
mod path;
mod proxies;
mod ratelimit;
mod retry;
mod tls;
mod transform;

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::defaults::{
    CONNECTIONS_MAX_PER_WORKER, ENDPOINT_WEIGHT_MAX, HEADER_BYTES_MAX, HEADER_BYTES_MAX_CEILING,
    HEADER_COUNT_MAX, HEADER_COUNT_MAX_CEILING, RATE_LIMIT_SYNC_INTERVAL_MS,
    RATE_LIMIT_SYNC_INTERVAL_MS_CEILING, RATE_LIMIT_SYNC_INTERVAL_MS_FLOOR, REQUEST_LINE_BYTES_MAX,
    REQUEST_LINE_BYTES_MAX_CEILING, REQUEST_LINE_BYTES_MAX_FLOOR, STALE_BYTES_MAX,
    STALE_BYTES_MAX_CEILING, STALE_BYTES_MAX_FLOOR, WORKERS_MAX,
};
use crate::locate::{line_column, Document, FieldPath, Target};
use crate::schema::{
    BalancerKind, ConfigFile, HealthCheckConfig, RouteConfig, ServerConfig, UpstreamConfig,
};
use crate::{
    AccessLog, Admin, ApiKeyAuth, AuthRef, Balancer, Config, ConfigError, Endpoint, HashKey,
    HealthCheck, HostMatch, JwtAuth, Listener, PathKind, PathPattern, RateLimit, Route, Segment,
    Source, Upstream,
};

pub(crate) fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let display_name = path.display().to_string();
    let unplaced = |message: String, hint: Option<String>| ConfigError {
        file: display_name.clone(),
        line: 0,
        column: 0,
        field: String::new(),
        message,
        hint,
    };
    let bytes = std::fs::read(path).map_err(|error| {
        let hint = match error.kind() {
            std::io::ErrorKind::NotFound => {
                Some("check the path; `coregate check FILE` validates a file")
            }
            std::io::ErrorKind::PermissionDenied => {
                Some("the gateway's user needs read permission")
            }
            _ => None,
        };
        unplaced(
            format!("cannot read the config file: {error}"),
            hint.map(str::to_owned),
        )
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|error| {
        let (line, column) = line_column(&bytes, error.valid_up_to());
        ConfigError {
            line,
            column,
            ..unplaced(
                "the file is not valid UTF-8".to_owned(),
                Some("TOML files are UTF-8; save the file with that encoding".to_owned()),
            )
        }
    })?;
    load_str(text, &display_name, Some(path))
}

pub(crate) fn load_str(
    text: &str,
    display_name: &str,
    path: Option<&Path>,
) -> Result<Config, ConfigError> {
    let (doc, file) = crate::parse::parse(text, display_name)?;
    let source = Source {
        path: path.map(Path::to_path_buf),
        display_name: display_name.to_owned(),
        hash: fnv1a_64(text.as_bytes()),
        loaded_at: SystemTime::now(),
    };
    validate(&doc, file, source)
}

/// FNV-1a, 64 bit: cheap, stable across versions and platforms, and enough to tell two
/// config texts apart (it is not a defence against a hostile file).
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// What routes refer to by name, each sorted by name (the order of the model's vectors).
struct Targets {
    upstreams: Vec<Upstream>,
    jwt: Vec<JwtAuth>,
    api_keys: Vec<ApiKeyAuth>,
    rate_limits: Vec<RateLimit>,
    /// Lower-case, sorted: what request header edits never write.
    identity_headers: Vec<String>,
}

fn validate(doc: &Document<'_>, file: ConfigFile, source: Source) -> Result<Config, ConfigError> {
    // Key and certificate files are named relative to the config file; text without a file
    // (the demo, `load_str`) resolves them against the current directory.
    let base_dir = source
        .path
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new(""));
    check_server(doc, &file.server)?;
    let trusted_proxies = proxies::check_trusted_proxies(doc, &file.server.trusted_proxies)?;
    let listeners = check_listeners(doc, &file, base_dir)?;
    let upstreams = file
        .upstreams
        .iter()
        .map(|(name, upstream)| check_upstream(doc, name, upstream, base_dir))
        .collect::<Result<Vec<_>, _>>()?;
    let auth = auth::check_auth(doc, &file.auth, base_dir)?;
    let targets = Targets {
        upstreams,
        jwt: auth.jwt,
        api_keys: auth.api_keys,
        rate_limits: ratelimit::check_rate_limits(doc, &file.rate_limits)?,
        identity_headers: auth.identity_headers,
    };
    let routes = check_routes(doc, &file, &targets)?;
    let admin = check_admin(doc, &file, &listeners)?;
    let access_log = match &file.access_log {
        None => None,
        Some(log) => Some(check_access_log(doc, &log.path)?),
    };
    Ok(Config {
        source,
        server: file.server,
        listeners,
        upstreams: targets.upstreams,
        routes,
        admin,
        access_log,
        jwt: targets.jwt,
        api_keys: targets.api_keys,
        rate_limits: targets.rate_limits,
        identity_headers: targets.identity_headers,
        trusted_proxies,
    })
}

fn check_admin(
    doc: &Document<'_>,
    file: &ConfigFile,
    listeners: &[Listener],
) -> Result<Option<Admin>, ConfigError> {
    if !file.admin.enabled {
        return Ok(None);
    }
    let at = FieldPath::root().key("admin").key("address");
    let address = parse_socket_addr(doc, &at, &file.admin.address)?;
    if let Some(i) = listeners.iter().position(|l| l.address == address) {
        return fail(
            doc,
            &at,
            Target::Value,
            format!("admin address {address} is also listener[{i}]'s address"),
            "the admin endpoint never shares the public listener; pick another port, e.g. \
             127.0.0.1:9901",
        );
    }
    Ok(Some(Admin {
        address,
        required: doc.contains(&at),
    }))
}

fn check_access_log(doc: &Document<'_>, path: &str) -> Result<AccessLog, ConfigError> {
    if path.is_empty() || path.chars().any(char::is_control) {
        return fail(
            doc,
            &FieldPath::root().key("access_log").key("path"),
            Target::Value,
            format!("access_log path {path:?} is empty or has a control character"),
            "write a file path, e.g. \"/var/log/coregate/access.log\"; remove [access_log] \
             to turn the log off",
        );
    }
    Ok(AccessLog {
        path: PathBuf::from(path),
    })
}

fn check_health_check(
    doc: &Document<'_>,
    at: &FieldPath,
    check: &HealthCheckConfig,
) -> Result<HealthCheck, ConfigError> {
    if !check.path.starts_with('/') {
        return fail(
            doc,
            &at.key("path"),
            Target::Value,
            format!("health_check path {:?} does not start with `/`", check.path),
            &format!("write \"/{}\"", check.path),
        );
    }
    // A request target (RFC 9112 §3.2): a query is allowed, whitespace and a fragment not.
    if let Some(c) = check
        .path
        .chars()
        .find(|&c| c == '#' || c.is_whitespace() || c.is_control())
    {
        return fail(
            doc,
            &at.key("path"),
            Target::Value,
            format!("health_check path {:?} contains {c:?}", check.path),
            "write a request target such as \"/healthz\" or \"/status?full=1\"; encode a \
             space as %20",
        );
    }
    check_timeouts(
        doc,
        at,
        &[
            ("interval_ms", check.interval_ms),
            ("timeout_ms", check.timeout_ms),
        ],
    )?;
    if check.timeout_ms > check.interval_ms {
        return fail(
            doc,
            &at.key("timeout_ms"),
            Target::Value,
            format!(
                "timeout_ms = {} is longer than interval_ms = {}",
                check.timeout_ms, check.interval_ms
            ),
            "a probe must end before the next one starts; lower timeout_ms or raise \
             interval_ms",
        );
    }
    for (name, value) in [
        ("healthy_threshold", check.healthy_threshold),
        ("unhealthy_threshold", check.unhealthy_threshold),
    ] {
        if value == 0 {
            return fail(
                doc,
                &at.key(name),
                Target::Value,
                format!("{name} = 0 would never be reached"),
                "thresholds count probes in a row and are at least 1",
            );
        }
    }
    if !(100..=599).contains(&check.expected_status) {
        return fail(
            doc,
            &at.key("expected_status"),
            Target::Value,
            format!(
                "expected_status = {} is not an HTTP status",
                check.expected_status
            ),
            "use a status in 100..=599, usually 200",
        );
    }
    Ok(HealthCheck {
        path: check.path.clone(),
        interval_ms: check.interval_ms,
        timeout_ms: check.timeout_ms,
        healthy_threshold: check.healthy_threshold,
        unhealthy_threshold: check.unhealthy_threshold,
        expected_status: check.expected_status,
    })
}

/// A value error: what is wrong and how to fix it.
fn fail<T>(
    doc: &Document<'_>,
    path: &FieldPath,
    target: Target,
    message: String,
    hint: &str,
) -> Result<T, ConfigError> {
    Err(doc.error(path, target, message, Some(hint.to_owned())))
}

/// Reads a file the config names at `at` (`what` says which kind, e.g. "key file"), a
/// relative path joined to `base_dir`, at most `bytes_max` bytes. Returns the resolved path and
/// the contents. The error names the resolved path and the OS error, never the contents.
fn read_named_file(
    doc: &Document<'_>,
    at: &FieldPath,
    base_dir: &Path,
    written: &str,
    what: &str,
    bytes_max: u64,
) -> Result<(PathBuf, Vec<u8>), ConfigError> {
    if written.is_empty() {
        return fail(
            doc,
            at,
            Target::Value,
            "the path is empty".to_owned(),
            &format!("write the {what}'s path, absolute or relative to the config file"),
        );
    }
    let path = base_dir.join(written);
    let mut bytes = Vec::new();
    let read = std::fs::File::open(&path)
        .and_then(|file| file.take(bytes_max + 1).read_to_end(&mut bytes));
    if let Err(error) = read {
        let hint = match error.kind() {
            std::io::ErrorKind::NotFound if Path::new(written).is_relative() => {
                "a relative path is resolved against the config file's directory"
            }
            std::io::ErrorKind::PermissionDenied => "the gateway's user needs read permission",
            _ => "check the path",
        };
        return fail(
            doc,
            at,
            Target::Value,
            format!("cannot read {}: {error}", path.display()),
            hint,
        );
    }
    if bytes.len() as u64 > bytes_max {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{} is larger than {bytes_max} bytes", path.display()),
            &format!("a {what} is far smaller; check that the path names the right file"),
        );
    }
    Ok((path, bytes))
}

fn check_server(doc: &Document<'_>, server: &ServerConfig) -> Result<(), ConfigError> {
    let at = FieldPath::root().key("server");
    if server.workers > WORKERS_MAX {
        return fail(
            doc,
            &at.key("workers"),
            Target::Value,
            format!("workers = {} is more than {WORKERS_MAX}", server.workers),
            "0 starts one worker per core, which is usually what you want",
        );
    }
    let line = server.request_line_bytes_max;
    if !(REQUEST_LINE_BYTES_MAX_FLOOR..=REQUEST_LINE_BYTES_MAX_CEILING).contains(&line) {
        return fail(
            doc,
            &at.key("request_line_bytes_max"),
            Target::Value,
            format!(
                "request_line_bytes_max = {line} is outside \
                 {REQUEST_LINE_BYTES_MAX_FLOOR}..={REQUEST_LINE_BYTES_MAX_CEILING}"
            ),
            &format!("the default, {REQUEST_LINE_BYTES_MAX}, fits browsers and common clients"),
        );
    }
    let head = server.header_bytes_max;
    if head < line {
        // Point at whichever of the two the operator wrote; the other is a default.
        let header_field = at.key("header_bytes_max");
        let field = if doc.contains(&header_field) {
            header_field
        } else {
            at.key("request_line_bytes_max")
        };
        return fail(
            doc,
            &field,
            Target::Value,
            format!("header_bytes_max = {head} is less than request_line_bytes_max = {line}"),
            "the head includes the request line, so header_bytes_max must be at least \
             request_line_bytes_max",
        );
    }
    if head > HEADER_BYTES_MAX_CEILING {
        return fail(
            doc,
            &at.key("header_bytes_max"),
            Target::Value,
            format!("header_bytes_max = {head} is more than {HEADER_BYTES_MAX_CEILING} (1 MiB)"),
            &format!(
                "large heads are usually a mistake or an attack; the default is {HEADER_BYTES_MAX}"
            ),
        );
    }
    let count = server.header_count_max;
    if !(1..=HEADER_COUNT_MAX_CEILING).contains(&count) {
        return fail(
            doc,
            &at.key("header_count_max"),
            Target::Value,
            format!("header_count_max = {count} is outside 1..={HEADER_COUNT_MAX_CEILING}"),
            &format!(
                "the engine parses a head into a fixed array of {HEADER_COUNT_MAX_CEILING} \
                 headers; the default is {HEADER_COUNT_MAX}"
            ),
        );
    }
    check_timeouts(
        doc,
        &at,
        &[
            ("header_read_timeout_ms", server.header_read_timeout_ms),
            ("client_idle_timeout_ms", server.client_idle_timeout_ms),
            ("body_read_timeout_ms", server.body_read_timeout_ms),
            ("body_timeout_ms", server.body_timeout_ms),
        ],
    )?;
    if server.connections_max_per_worker == 0 {
        return fail(
            doc,
            &at.key("connections_max_per_worker"),
            Target::Value,
            "connections_max_per_worker = 0 would accept no connection".to_owned(),
            &format!("use at least 1; the default is {CONNECTIONS_MAX_PER_WORKER}"),
        );
    }
    let stale = server.stale_bytes_max;
    if !(STALE_BYTES_MAX_FLOOR..=STALE_BYTES_MAX_CEILING).contains(&stale) {
        return fail(
            doc,
            &at.key("stale_bytes_max"),
            Target::Value,
            format!(
                "stale_bytes_max = {stale} is outside \
                 {STALE_BYTES_MAX_FLOOR}..={STALE_BYTES_MAX_CEILING} (1 KiB..=1 GiB)"
            ),
            &format!(
                "every worker keeps up to this many bytes of stale answers; the default is \
                 {STALE_BYTES_MAX} (8 MiB)"
            ),
        );
    }
    let sync = server.rate_limit_sync_interval_ms;
    if !(RATE_LIMIT_SYNC_INTERVAL_MS_FLOOR..=RATE_LIMIT_SYNC_INTERVAL_MS_CEILING).contains(&sync) {
        return fail(
            doc,
            &at.key("rate_limit_sync_interval_ms"),
            Target::Value,
            format!(
                "rate_limit_sync_interval_ms = {sync} is outside \
                 {RATE_LIMIT_SYNC_INTERVAL_MS_FLOOR}..={RATE_LIMIT_SYNC_INTERVAL_MS_CEILING}"
            ),
            &format!(
                "shorter syncs cost control-thread time, longer ones let workers drift from the \
                 global limit; the default is {RATE_LIMIT_SYNC_INTERVAL_MS}"
            ),
        );
    }
    Ok(())
}

fn check_timeouts(
    doc: &Document<'_>,
    table: &FieldPath,
    timeouts: &[(&str, u64)],
) -> Result<(), ConfigError> {
    match timeouts.iter().find(|(_, ms)| *ms == 0) {
        Some((name, _)) => fail(
            doc,
            &table.key(name),
            Target::Value,
            format!("{name} = 0 would time out at once"),
            "timeouts are in milliseconds and at least 1; remove the key for the default",
        ),
        None => Ok(()),
    }
}

fn check_listeners(
    doc: &Document<'_>,
    file: &ConfigFile,
    base_dir: &Path,
) -> Result<Vec<Listener>, ConfigError> {
    let table = FieldPath::root().key("listener");
    if file.listeners.is_empty() {
        return fail(
            doc,
            &table,
            Target::Value,
            "no [[listener]] is defined".to_owned(),
            "add [[listener]] with address = \"0.0.0.0:8080\"",
        );
    }
    let mut by_address: HashMap<SocketAddr, usize> = HashMap::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut listeners = Vec::with_capacity(file.listeners.len());
    for (i, listener) in file.listeners.iter().enumerate() {
        let at = table.index(i);
        let address = parse_socket_addr(doc, &at.key("address"), &listener.address)?;
        if address.port() == 0 {
            // Every worker binds the listener with SO_REUSEPORT; port 0 would give each
            // worker a different ephemeral port.
            return fail(
                doc,
                &at.key("address"),
                Target::Value,
                format!("address {address} has port 0"),
                "name a fixed port, e.g. 0.0.0.0:8080: every worker binds the same port",
            );
        }
        if let Some(first) = by_address.insert(address, i) {
            return fail(
                doc,
                &at.key("address"),
                Target::Value,
                format!("address {address} is already used by listener[{first}]"),
                "each listener needs its own address",
            );
        }
        let name = match &listener.name {
            Some(name) => {
                check_label(doc, &at.key("name"), name)?;
                name.clone()
            }
            None => listener.address.clone(),
        };
        if let Some(&first) = by_name.get(&name) {
            return fail(
                doc,
                &at.key("name"),
                Target::Value,
                format!("listener name `{name}` is already used by listener[{first}]"),
                "listener names label logs and metrics, so they must be unique",
            );
        }
        by_name.insert(name.clone(), i);
        let tls = match &listener.tls {
            None => None,
            Some(tls) => Some(tls::check_listener_tls(doc, &at.key("tls"), tls, base_dir)?),
        };
        let redirect_https = match &listener.redirect_https {
            None => None,
            Some(_) if tls.is_some() => {
                return fail(
                    doc,
                    &at.key("redirect_https"),
                    Target::Value,
                    "a listener with [listener.tls] cannot also have [listener.redirect_https]"
                        .to_owned(),
                    "the redirect belongs on the plain HTTP listener: move \
                     [listener.redirect_https] under a [[listener]] without tls, and point \
                     its port at this one",
                );
            }
            Some(redirect) => Some(tls::check_redirect_https(
                doc,
                &at.key("redirect_https"),
                redirect,
            )?),
        };
        listeners.push(Listener {
            name,
            address,
            tls,
            redirect_https,
        });
    }
    Ok(listeners)
}

fn parse_socket_addr(
    doc: &Document<'_>,
    at: &FieldPath,
    text: &str,
) -> Result<SocketAddr, ConfigError> {
    text.parse().or_else(|_| {
        fail(
            doc,
            at,
            Target::Value,
            format!("`{text}` is not an IP:port address"),
            "use IP:port, e.g. 0.0.0.0:8080 or [::1]:8080; host names are not resolved",
        )
    })
}

/// A name used in logs and metrics: not empty, no whitespace or control characters.
fn check_label(doc: &Document<'_>, at: &FieldPath, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return fail(
            doc,
            at,
            Target::Value,
            "the name is empty".to_owned(),
            "remove the key for the default name, or write one",
        );
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail(
            doc,
            at,
            Target::Value,
            format!("name {name:?} contains whitespace or a control character"),
            "names label logs and metrics; use e.g. `-` instead of spaces",
        );
    }
    Ok(())
}

fn check_upstream(
    doc: &Document<'_>,
    name: &str,
    upstream: &UpstreamConfig,
    base_dir: &Path,
) -> Result<Upstream, ConfigError> {
    let at = FieldPath::root().key("upstreams").key(name);
    check_table_name(doc, &at, "upstream", "[upstreams.NAME]", name)?;
    let endpoints_at = at.key("endpoints");
    if upstream.endpoints.is_empty() {
        return fail(
            doc,
            &endpoints_at,
            Target::Value,
            format!("upstream `{name}` has no endpoints"),
            "add endpoints = [{ address = \"10.0.0.1:8080\" }]",
        );
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut endpoints = Vec::with_capacity(upstream.endpoints.len());
    for (j, endpoint) in upstream.endpoints.iter().enumerate() {
        let endpoint_at = endpoints_at.index(j);
        let address = parse_socket_addr(doc, &endpoint_at.key("address"), &endpoint.address)?;
        if let Some(first) = seen.insert(address, j) {
            return fail(
                doc,
                &endpoint_at.key("address"),
                Target::Value,
                format!("endpoint {address} is listed twice (also endpoints[{first}])"),
                "list each endpoint once; to send it more traffic raise its weight",
            );
        }
        if !(1..=ENDPOINT_WEIGHT_MAX).contains(&endpoint.weight) {
            return fail(
                doc,
                &endpoint_at.key("weight"),
                Target::Value,
                format!(
                    "weight = {} is outside 1..={ENDPOINT_WEIGHT_MAX}",
                    endpoint.weight
                ),
                "weights are relative shares; to take an endpoint out, remove it",
            );
        }
        endpoints.push(Endpoint {
            address,
            weight: endpoint.weight,
        });
    }
    let balancer = match (upstream.balancer, &upstream.hash_key) {
        (BalancerKind::ConsistentHash, Some(key)) => {
            Balancer::ConsistentHash(parse_hash_key(doc, &at.key("hash_key"), key)?)
        }
        (BalancerKind::ConsistentHash, None) => {
            return fail(
                doc,
                &at.key("balancer"),
                Target::Value,
                "balancer = \"consistent_hash\" needs a hash_key".to_owned(),
                "add hash_key = \"client_ip\" or hash_key = \"header:NAME\"",
            )
        }
        (_, Some(_)) => {
            return fail(
                doc,
                &at.key("hash_key"),
                Target::Key,
                "hash_key is only used by balancer = \"consistent_hash\"".to_owned(),
                "remove hash_key, or set balancer = \"consistent_hash\"",
            )
        }
        (BalancerKind::RoundRobin, None) => Balancer::RoundRobin,
        (BalancerKind::LeastOutstanding, None) => Balancer::LeastOutstanding,
    };
    check_timeouts(
        doc,
        &at,
        &[
            ("connect_timeout_ms", upstream.connect_timeout_ms),
            (
                "response_header_timeout_ms",
                upstream.response_header_timeout_ms,
            ),
            ("idle_read_timeout_ms", upstream.idle_read_timeout_ms),
            ("pool_idle_timeout_ms", upstream.pool_idle_timeout_ms),
        ],
    )?;
    let health_check = match &upstream.health_check {
        None => None,
        Some(check) => Some(check_health_check(doc, &at.key("health_check"), check)?),
    };
    let breaker = match &upstream.breaker {
        None => None,
        Some(config) => Some(breaker::check_breaker(doc, &at.key("breaker"), config)?),
    };
    let tls = match &upstream.tls {
        None => None,
        Some(config) => Some(tls::check_upstream_tls(
            doc,
            &at.key("tls"),
            config,
            base_dir,
        )?),
    };
    Ok(Upstream {
        name: name.to_owned(),
        endpoints,
        balancer,
        connect_timeout_ms: upstream.connect_timeout_ms,
        response_header_timeout_ms: upstream.response_header_timeout_ms,
        idle_read_timeout_ms: upstream.idle_read_timeout_ms,
        pool_idle_max: upstream.pool_idle_max,
        pool_idle_timeout_ms: upstream.pool_idle_timeout_ms,
        health_check,
        breaker,
        tls,
    })
}

/// The NAME of a named table (`[upstreams.NAME]`, `[auth.jwt.NAME]`, `[rate_limits.NAME]`):
/// letters, digits, `_`, `.` and `-`, so it reads the same in a route, a log and a metric.
/// `what` names the kind in messages, `table` shows how it is written.
fn check_table_name(
    doc: &Document<'_>,
    at: &FieldPath,
    what: &str,
    table: &str,
    name: &str,
) -> Result<(), ConfigError> {
    if name.is_empty() {
        return fail(
            doc,
            at,
            Target::Key,
            format!("the {what} name is empty"),
            &format!("write {table} with a NAME of letters, digits, `_`, `.` and `-`"),
        );
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return fail(
            doc,
            at,
            Target::Key,
            format!("{what} name {name:?} contains {c:?}"),
            &format!("{what} names use letters, digits, `_`, `.` and `-`"),
        );
    }
    Ok(())
}

fn parse_hash_key(doc: &Document<'_>, at: &FieldPath, key: &str) -> Result<HashKey, ConfigError> {
    if key == "client_ip" {
        return Ok(HashKey::ClientIp);
    }
    match key.strip_prefix("header:") {
        Some(name) if is_token(name) => Ok(HashKey::Header(name.to_ascii_lowercase())),
        _ => fail(
            doc,
            at,
            Target::Value,
            format!("hash_key {key:?} is neither \"client_ip\" nor \"header:NAME\""),
            "use \"client_ip\" or \"header:NAME\" with a header name, e.g. \"header:x-user-id\"",
        ),
    }
}

fn check_routes(
    doc: &Document<'_>,
    file: &ConfigFile,
    targets: &Targets,
) -> Result<Vec<Route>, ConfigError> {
    let table = FieldPath::root().key("route");
    if file.routes.is_empty() {
        return fail(
            doc,
            &table,
            Target::Value,
            "no [[route]] is defined".to_owned(),
            "add [[route]] with path_prefix = \"/\" and upstream = \"NAME\"",
        );
    }
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut routes = Vec::with_capacity(file.routes.len());
    for (i, config) in file.routes.iter().enumerate() {
        let at = table.index(i);
        let route = check_route(doc, &at, i, config, &file.server, targets)?;
        if let Some(&first) = by_name.get(&route.name) {
            let hint = if config.name.is_some() {
                "route names label logs and metrics, so they must be unique"
            } else {
                "a route without a name is called route-N by position; give this one a name"
            };
            return fail(
                doc,
                &at.key("name"),
                Target::Value,
                format!(
                    "route name `{}` is already used by route[{first}]",
                    route.name
                ),
                hint,
            );
        }
        by_name.insert(route.name.clone(), i);
        routes.push(route);
    }
    Ok(routes)
}

fn check_route(
    doc: &Document<'_>,
    at: &FieldPath,
    index: usize,
    route: &RouteConfig,
    server: &ServerConfig,
    targets: &Targets,
) -> Result<Route, ConfigError> {
    let upstreams = &targets.upstreams;
    let name = match &route.name {
        Some(name) => {
            check_label(doc, &at.key("name"), name)?;
            name.clone()
        }
        None => format!("route-{index}"),
    };
    let host = match &route.host {
        None => HostMatch::Any,
        Some(host) => parse_host(host)
            .or_else(|(message, hint)| fail(doc, &at.key("host"), Target::Value, message, &hint))?,
    };
    let methods = check_methods(doc, &at.key("methods"), &route.methods)?;
    let path = match (&route.path, &route.path_prefix) {
        (Some(path), None) => parse_path(doc, &at.key("path"), path, PathKind::Exact)?,
        (None, Some(prefix)) => parse_path(doc, &at.key("path_prefix"), prefix, PathKind::Prefix)?,
        (None, None) => {
            return fail(
                doc,
                at,
                Target::Value,
                "the route has neither path nor path_prefix".to_owned(),
                "add path = \"/exact/{param}\" or path_prefix = \"/api\"",
            )
        }
        (Some(_), Some(_)) => {
            return fail(
                doc,
                &at.key("path_prefix"),
                Target::Key,
                "the route has both path and path_prefix".to_owned(),
                "keep one: path matches the whole path, path_prefix its leading segments",
            )
        }
    };
    if let Some((field, text)) = (route.path.as_ref().map(|p| ("path", p)))
        .or_else(|| route.path_prefix.as_ref().map(|p| ("path_prefix", p)))
    {
        let allow = server.allow_encoded_slashes;
        path::check_normal_form(doc, &at.key(field), field, text, allow)?;
    }
    let headers = check_headers(doc, &at.key("headers"), route)?;
    let headers_present = check_headers_present(doc, &at.key("headers_present"), route)?;
    let aggregate = aggregate::check_aggregate(doc, at, route, &methods, &path, upstreams)?;
    let upstream = match (&route.upstream, aggregate.first()) {
        (Some(name), _) => resolve_upstream(doc, &at.key("upstream"), name, upstreams)?,
        // The model's promise: an aggregate route's upstream is its first part's.
        (None, Some(first)) => first.upstream,
        (None, None) => {
            // Worded and placed as the schema error it was before aggregate routes made the
            // key optional: at the route's table, naming the missing key.
            return Err(doc.error(
                &at.key("upstream"),
                Target::Value,
                "missing field `upstream`".to_owned(),
                Some(crate::parse::missing_field_hint("upstream")),
            ));
        }
    };
    let rewrite = transform::check_rewrite(doc, at, route, &path)?;
    let auth = match &route.auth {
        None => None,
        Some(name) => Some(resolve_auth(doc, &at.key("auth"), name, targets)?),
    };
    let rate_limit = match &route.rate_limit {
        None => None,
        Some(name) => Some(resolve_rate_limit(
            doc,
            &at.key("rate_limit"),
            name,
            &targets.rate_limits,
        )?),
    };
    let fallback = fallback::check_fallback(
        doc,
        &at.key("fallback"),
        route.fallback.as_ref(),
        auth,
        &targets.jwt,
    )?;
    let timeout_ms = retry::check_route_timeout(doc, &at.key("timeout_ms"), route.timeout_ms)?;
    let retry = match &route.retry {
        None => None,
        Some(config) => Some(retry::check_retry(
            doc,
            &at.key("retry"),
            config,
            &upstreams[upstream],
        )?),
    };
    let context = transform::Context {
        path: &path,
        auth,
        jwt: &targets.jwt,
        identity_headers: &targets.identity_headers,
        request_id: route.request_id,
    };
    let request_headers = transform::check_header_edits(
        doc,
        &at.key("request_headers"),
        &route.request_headers,
        transform::Side::Request,
        &context,
    )?;
    let response_headers = transform::check_header_edits(
        doc,
        &at.key("response_headers"),
        &route.response_headers,
        transform::Side::Response,
        &context,
    )?;
    let json_filter =
        json_filter::check_json_filter(doc, &at.key("json_filter"), route.json_filter.as_ref())?;
    Ok(Route {
        name,
        host,
        methods,
        path,
        headers,
        headers_present,
        upstream,
        rewrite,
        body_bytes_max: route.body_bytes_max.unwrap_or(server.body_bytes_max),
        auth,
        rate_limit,
        fallback,
        request_headers,
        response_headers,
        request_id: route.request_id,
        retry,
        timeout_ms,
        aggregate,
        json_filter,
    })
}

/// A route's or aggregate part's `upstream = "NAME"`: an index into the upstreams.
fn resolve_upstream(
    doc: &Document<'_>,
    at: &FieldPath,
    name: &str,
    upstreams: &[Upstream],
) -> Result<usize, ConfigError> {
    if let Some(i) = upstreams.iter().position(|u| u.name == name) {
        return Ok(i);
    }
    let hint = if upstreams.is_empty() {
        "no upstreams are defined; add [upstreams.NAME] with endpoints".to_owned()
    } else {
        let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
        format!("defined upstreams: {}", names.join(", "))
    };
    fail(
        doc,
        at,
        Target::Value,
        format!("no upstream named `{name}`"),
        &hint,
    )
}

/// A route's `auth = "NAME"`: an `[auth.jwt.NAME]` or `[auth.api_keys.NAME]` (names are unique
/// across both).
fn resolve_auth(
    doc: &Document<'_>,
    at: &FieldPath,
    name: &str,
    targets: &Targets,
) -> Result<AuthRef, ConfigError> {
    if let Some(i) = targets.jwt.iter().position(|j| j.name == name) {
        return Ok(AuthRef::Jwt(i));
    }
    if let Some(i) = targets.api_keys.iter().position(|k| k.name == name) {
        return Ok(AuthRef::ApiKey(i));
    }
    let mut defined: Vec<String> = targets
        .jwt
        .iter()
        .map(|j| format!("{} (jwt)", j.name))
        .chain(
            targets
                .api_keys
                .iter()
                .map(|k| format!("{} (api_keys)", k.name)),
        )
        .collect();
    defined.sort();
    let hint = if defined.is_empty() {
        "no authentication is defined; add [auth.jwt.NAME] or [auth.api_keys.NAME]".to_owned()
    } else {
        format!("defined auth: {}", defined.join(", "))
    };
    fail(
        doc,
        at,
        Target::Value,
        format!("no [auth.jwt] or [auth.api_keys] entry named `{name}`"),
        &hint,
    )
}

/// A route's `rate_limit = "NAME"`: an index into the rate limits.
fn resolve_rate_limit(
    doc: &Document<'_>,
    at: &FieldPath,
    name: &str,
    limits: &[RateLimit],
) -> Result<usize, ConfigError> {
    if let Some(i) = limits.iter().position(|l| l.name == name) {
        return Ok(i);
    }
    let hint = if limits.is_empty() {
        "no rate limits are defined; add [rate_limits.NAME] with rate_per_second".to_owned()
    } else {
        let names: Vec<&str> = limits.iter().map(|l| l.name.as_str()).collect();
        format!("defined rate limits: {}", names.join(", "))
    };
    fail(
        doc,
        at,
        Target::Value,
        format!("no rate limit named `{name}`"),
        &hint,
    )
}

/// Parses a route's `host`. Errors are `(message, hint)`.
fn parse_host(host: &str) -> Result<HostMatch, (String, String)> {
    let any_host = "remove `host` to match any host".to_owned();
    if host.is_empty() {
        return Err(("host is empty".to_owned(), any_host));
    }
    let lower = host.to_ascii_lowercase();
    if lower == "*" {
        return Err(("`*` alone is not a host pattern".to_owned(), any_host));
    }
    if let Some(suffix) = lower.strip_prefix("*.") {
        if suffix.is_empty() {
            return Err((
                "`*.` has no domain after the wildcard".to_owned(),
                "write e.g. \"*.example.com\"".to_owned(),
            ));
        }
        check_host_name(host, suffix)?;
        return Ok(HostMatch::Suffix(format!(".{suffix}")));
    }
    if lower.contains('*') {
        return Err((
            format!("host {host:?} has a `*` that is not a leading `*.`"),
            "the only wildcard is a leading `*.`, e.g. \"*.example.com\"".to_owned(),
        ));
    }
    if let Some(inner) = lower.strip_prefix('[') {
        // An IPv6 literal, as it appears in a Host header (RFC 3986 §3.2.2).
        return match inner.split_once(']') {
            Some((ip, "")) if ip.parse::<Ipv6Addr>().is_ok() => Ok(HostMatch::Exact(lower)),
            Some((ip, port)) if port.starts_with(':') && ip.parse::<Ipv6Addr>().is_ok() => {
                Err(port_error(host, &format!("[{ip}]")))
            }
            _ => Err((
                format!("host {host:?} is not a bracketed IPv6 address"),
                "write IPv6 hosts as in the Host header, e.g. \"[::1]\"".to_owned(),
            )),
        };
    }
    check_host_name(host, &lower)?;
    Ok(HostMatch::Exact(lower))
}

fn port_error(host: &str, without_port: &str) -> (String, String) {
    (
        format!("host {host:?} includes a port"),
        format!("routes match the Host without its port; write \"{without_port}\""),
    )
}

/// Checks a lower-case DNS name (or IPv4 address) `name`, a part of `host` as written.
fn check_host_name(host: &str, name: &str) -> Result<(), (String, String)> {
    if let Some((before, port)) = name.rsplit_once(':') {
        if !before.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            let without_port = &host[..host.len() - port.len() - 1];
            return Err(port_error(host, without_port));
        }
        return Err((
            format!("host {host:?} contains `:`"),
            "write IPv6 hosts in brackets, e.g. \"[::1]\"; ports are not matched".to_owned(),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err((
            format!("host {host:?} contains {c:?}, which is not allowed in a host name"),
            "host names use letters, digits, `-` and `.`".to_owned(),
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err((
            format!("host {host:?} has an empty label (a leading, trailing or doubled `.`)"),
            "write the name without the extra `.`, e.g. \"api.example.com\"".to_owned(),
        ));
    }
    Ok(())
}

fn check_methods(
    doc: &Document<'_>,
    at: &FieldPath,
    methods: &[String],
) -> Result<Vec<String>, ConfigError> {
    let mut upper: Vec<String> = Vec::with_capacity(methods.len());
    for (j, method) in methods.iter().enumerate() {
        if !is_token(method) {
            return fail(
                doc,
                &at.index(j),
                Target::Value,
                format!("method {method:?} is not an HTTP method token"),
                "write method names like \"GET\" or \"POST\"; omit `methods` to match any",
            );
        }
        let method = method.to_ascii_uppercase();
        if upper.contains(&method) {
            return fail(
                doc,
                &at.index(j),
                Target::Value,
                format!("method {method} is listed twice"),
                "list each method once (names are matched upper-case)",
            );
        }
        upper.push(method);
    }
    Ok(upper)
}

/// Splits a `path` (exact, may have `{param}` segments) or `path_prefix` (literal only,
/// trailing `/` dropped) into segments, as [`PathPattern`] documents.
fn parse_path(
    doc: &Document<'_>,
    at: &FieldPath,
    path: &str,
    kind: PathKind,
) -> Result<PathPattern, ConfigError> {
    let field = at.last_key().unwrap_or("path");
    let Some(body) = path.strip_prefix('/') else {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{field} {path:?} does not start with `/`"),
            &format!("write \"/{path}\""),
        );
    };
    check_path_chars(doc, at, field, path)?;
    let mut segments = Vec::new();
    if !body.is_empty() {
        let parts: Vec<&str> = body.split('/').collect();
        for (n, part) in parts.iter().enumerate() {
            let last = n + 1 == parts.len();
            if part.is_empty() && !last {
                return fail(
                    doc,
                    at,
                    Target::Value,
                    format!("{field} {path:?} has an empty segment (`//`)"),
                    "remove the doubled `/`",
                );
            }
            if part.is_empty() && kind == PathKind::Prefix {
                // `/api/` matches exactly what `/api` does, by whole segments.
                continue;
            }
            segments.push(parse_segment(doc, at, field, path, part, kind, &segments)?);
        }
    }
    Ok(PathPattern { kind, segments })
}

/// Rejects characters that never reach a route: the query and fragment are not part of the
/// path, and whitespace cannot appear in a request target (RFC 9112 §3.2).
fn check_path_chars(
    doc: &Document<'_>,
    at: &FieldPath,
    field: &str,
    path: &str,
) -> Result<(), ConfigError> {
    let Some(c) = path
        .chars()
        .find(|&c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
    else {
        return Ok(());
    };
    let hint = match c {
        '?' => "routes match the path only; the query string is not matched",
        '#' => "a fragment is never sent to a server",
        _ => "encode the character, e.g. a space as %20",
    };
    fail(
        doc,
        at,
        Target::Value,
        format!("{field} {path:?} contains {c:?}"),
        hint,
    )
}

fn parse_segment(
    doc: &Document<'_>,
    at: &FieldPath,
    field: &str,
    path: &str,
    part: &str,
    kind: PathKind,
    earlier: &[Segment],
) -> Result<Segment, ConfigError> {
    let param = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
    let Some(name) = param else {
        if part.contains(['{', '}']) {
            return fail(
                doc,
                at,
                Target::Value,
                format!("{field} {path:?}: segment {part:?} has a brace but is not a {{param}}"),
                "a parameter is a whole segment, as in /files/{name}, not /files/{name}.txt",
            );
        }
        return Ok(Segment::Literal(part.to_owned()));
    };
    if kind == PathKind::Prefix {
        return fail(
            doc,
            at,
            Target::Value,
            format!("path_prefix {path:?} has a parameter; prefixes are literal"),
            "use path = \"...\" for {param} segments",
        );
    }
    if !is_identifier(name) {
        return fail(
            doc,
            at,
            Target::Value,
            format!("path {path:?}: {{{name}}} is not a valid parameter name"),
            "parameter names use letters, digits and `_`, and do not start with a digit",
        );
    }
    if earlier.contains(&Segment::Param(name.to_owned())) {
        return fail(
            doc,
            at,
            Target::Value,
            format!("path {path:?} uses the parameter {{{name}}} twice"),
            "give each parameter its own name",
        );
    }
    Ok(Segment::Param(name.to_owned()))
}

fn check_headers(
    doc: &Document<'_>,
    at: &FieldPath,
    route: &RouteConfig,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(route.headers.len());
    for (name, value) in &route.headers {
        let header_at = at.key(name);
        let lower = check_header_name(doc, &header_at, Target::Key, name)?;
        if headers.iter().any(|(n, _)| *n == lower) {
            return fail(
                doc,
                &header_at,
                Target::Key,
                format!("header {name} is listed twice (names are case-insensitive)"),
                "list each header once",
            );
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return fail(
                doc,
                &header_at,
                Target::Value,
                format!("the value for header {name} contains a control character"),
                "header values are visible text; CR, LF and NUL can never match",
            );
        }
        if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
            return fail(
                doc,
                &header_at,
                Target::Value,
                format!("the value for header {name} starts or ends with whitespace"),
                "HTTP strips whitespace around header values (RFC 9110 §5.5), so this could \
                 never match; remove it",
            );
        }
        headers.push((lower, value.clone()));
    }
    Ok(headers)
}

fn check_headers_present(
    doc: &Document<'_>,
    at: &FieldPath,
    route: &RouteConfig,
) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::with_capacity(route.headers_present.len());
    for (j, name) in route.headers_present.iter().enumerate() {
        let lower = check_header_name(doc, &at.index(j), Target::Value, name)?;
        if names.contains(&lower) {
            return fail(
                doc,
                &at.index(j),
                Target::Value,
                format!("header {name} is listed twice (names are case-insensitive)"),
                "list each header once",
            );
        }
        names.push(lower);
    }
    Ok(names)
}

/// A header name must be a token (RFC 9110 §5.1); it is stored lower-case.
fn check_header_name(
    doc: &Document<'_>,
    at: &FieldPath,
    target: Target,
    name: &str,
) -> Result<String, ConfigError> {
    if is_token(name) {
        return Ok(name.to_ascii_lowercase());
    }
    fail(
        doc,
        at,
        target,
        format!("{name:?} is not a valid header name"),
        "header names use letters, digits and !#$%&'*+-.^_`|~, e.g. \"x-api-version\"",
    )
}

/// An HTTP token (RFC 9110 §5.6.2): one or more tchar.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_matches_the_reference_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(
            parse_host("API.Example.COM"),
            Ok(HostMatch::Exact("api.example.com".to_owned()))
        );
        assert_eq!(
            parse_host("*.Example.com"),
            Ok(HostMatch::Suffix(".example.com".to_owned()))
        );
        assert_eq!(
            parse_host("10.0.0.1"),
            Ok(HostMatch::Exact("10.0.0.1".to_owned()))
        );
        assert_eq!(
            parse_host("[::1]"),
            Ok(HostMatch::Exact("[::1]".to_owned()))
        );
        let port = parse_host("[::1]:8080").map_err(|(_, hint)| hint);
        assert_eq!(
            port,
            Err("routes match the Host without its port; write \"[::1]\"".to_owned())
        );
    }

    #[test]
    fn tokens_and_identifiers() {
        assert!(is_token("X-Api-Version"));
        assert!(is_token("M-SEARCH"));
        assert!(!is_token(""));
        assert!(!is_token("a b"));
        assert!(!is_token("a:b"));
        assert!(is_identifier("user_id2"));
        assert!(is_identifier("_"));
        assert!(!is_identifier("2x"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
    }
}
