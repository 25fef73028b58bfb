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
}
