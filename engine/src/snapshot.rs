//! What the control side publishes to the workers, and the cell that hands it over.
//!
//! Two things are published: the [`Snapshot`] (a validated config compiled for serving:
//! router built, limits resolved) and the [`Health`] of the endpoints. Both go through a
//! [`Published`] cell: the control side stores a new `Arc` and bumps a version number; a
//! worker reads the version (one atomic load, no write, no lock) before each request and only
//! when it changed takes the new `Arc` — so the shared cache line is written once per
//! publish, never per request. A request keeps the snapshot it started with until it ends.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use coregate_config::Config;

use crate::http::{Limits, PathOptions};
use crate::policy::Policies;
use crate::router::Router;
use crate::stale::RouteFingerprint;
use crate::tls::{ClientTls, ServerTls};

/// Everything a worker needs to serve requests, compiled once per config load.
pub struct Snapshot {
    /// Increases with every publish; 1 for the first.
    pub version: u64,
    pub config: Config,
    pub router: Router,
    pub limits: Limits,
    /// How request paths are normalised (`[server]` `merge_slashes`, `allow_encoded_slashes`).
    pub path_options: PathOptions,
    /// Per upstream (same index as `config.upstreams`): the `Host` value sent when the client
    /// sent none (HTTP/1.0): the first endpoint's address.
    pub default_hosts: Vec<Box<[u8]>>,
    /// Authentication compiled with its key material.
    pub policies: Policies,
    /// Per listener (same index as `config.listeners`): its TLS, when it terminates TLS.
    pub tls: Vec<Option<ServerTls>>,
    /// Per upstream (same index as `config.upstreams`): TLS to its endpoints, when on.
    /// Shared with the control side's health probes.
    pub upstream_tls: Vec<Option<Arc<ClientTls>>>,
    /// Per route (same index as `config.routes`): what the stale cache knows it by, for a
    /// route with `fallback.stale`, so a request looks it up instead of computing it.
    pub route_fingerprints: Vec<Option<RouteFingerprint>>,
}

impl Snapshot {
    /// Compiles a validated config. Fails only on key material that validation could not
    /// judge: a PEM or JWKS that parses as text but holds no usable key, a certificate whose
    /// key does not match it. `previous`, the snapshot this one replaces, lends what must
    /// outlive one config version (TLS ticket keys).
    pub fn compile(
        config: Config,
        version: u64,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, String> {
        let policies = Policies::compile(&config)?;
        let tls = config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, listener)| {
                let Some(tls) = &listener.tls else {
                    return Ok(None);
                };
                // Matched by address: listener addresses cannot change without a restart.
                let before = previous.and_then(|p| {
                    let at = p
                        .config
                        .listeners
                        .iter()
                        .position(|l| l.address == listener.address)?;
                    p.tls[at].as_ref()
                });
                ServerTls::compile(tls, before)
                    .map(Some)
                    .map_err(|e| format!("listener[{i}] ({}) tls: {e}", listener.name))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let upstream_tls = config
            .upstreams
            .iter()
            .map(|u| match &u.tls {
                Some(tls) => ClientTls::compile(tls)
                    .map(|tls| Some(Arc::new(tls)))
                    .map_err(|e| format!("upstreams.{}.tls: {e}", u.name)),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, String>>()?;
        let router = Router::new(&config.routes);
        let limits = Limits {
            request_line_bytes_max: config.server.request_line_bytes_max,
            header_bytes_max: config.server.header_bytes_max,
            header_count_max: config.server.header_count_max,
        };
        let path_options = PathOptions {
            merge_slashes: config.server.merge_slashes,
            allow_encoded_slashes: config.server.allow_encoded_slashes,
        };
        let default_hosts = config
            .upstreams
            .iter()
            .map(|u| {
                u.endpoints[0]
                    .address
                    .to_string()
                    .into_bytes()
                    .into_boxed_slice()
            })
            .collect();
        let route_fingerprints = config
            .routes
            .iter()
            .map(|r| {
                r.fallback
                    .stale
                    .then(|| RouteFingerprint::of(&config, &policies, r))
            })
            .collect();
        Ok(Snapshot {
            version,
            config,
            router,
            limits,
            path_options,
            default_hosts,
            policies,
            tls,
            upstream_tls,
            route_fingerprints,
        })
    }
}

/// Which endpoints the active health checks consider down. Endpoints are named by address,
/// so the same health snapshot serves every config version.
#[derive(Debug, Default)]
pub struct Health {
    /// Increases with every publish; 1 for the first.
    pub version: u64,
    down: HashSet<SocketAddr>,
}

impl Health {
    /// A health snapshot where everything not listed in `down` is up.
    pub fn new(version: u64, down: impl IntoIterator<Item = SocketAddr>) -> Health {
        Health {
            version,
            down: down.into_iter().collect(),
        }
    }

    /// Whether requests may go to `addr`.
    #[inline]
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.down.is_empty() || !self.down.contains(&addr)
    }

    /// The endpoints marked down.
    pub fn down(&self) -> impl Iterator<Item = &SocketAddr> {
        self.down.iter()
    }
}

/// Something published through a [`Published`] cell: it knows its version.
pub trait Versioned {
    fn version(&self) -> u64;
}

impl Versioned for Snapshot {
    fn version(&self) -> u64 {
        self.version
    }
}

impl Versioned for Health {
    fn version(&self) -> u64 {
        self.version
    }
}

/// Where the control side publishes and workers pick up without locks.
pub struct Published<T> {
    version: AtomicU64,
    current: ArcSwap<T>,
}

/// The config snapshot cell.
pub type SnapshotCell = Published<Snapshot>;
/// The health snapshot cell.
pub type HealthCell = Published<Health>;

impl<T: Versioned> Published<T> {
    pub fn new(first: T) -> Published<T> {
        Published {
            version: AtomicU64::new(first.version()),
            current: ArcSwap::from_pointee(first),
        }
    }

    /// Makes `next` what every new request uses. Its version must be higher than the
    /// current one's.
    pub fn publish(&self, next: T) {
        let version = next.version();
        debug_assert!(version > self.version.load(Ordering::Relaxed));
        self.current.store(Arc::new(next));
        // Release pairs with the Acquire in `version`: a worker that sees the new number
        // finds the new value in `current`.
        self.version.store(version, Ordering::Release);
    }

    /// The newest version: what a worker compares with the one it holds.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The newest value. Called by a worker only when `version` changed.
    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }
}
