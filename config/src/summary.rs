//! The plain-text summary `coregate check` prints for a valid config: one line per listener,
//! route and upstream, under a heading per kind. Meant for people and `grep`, not for parsing
//! back; nothing here is on a hot path.

use std::fmt::Write as _;

use crate::{Balancer, Config, HashKey, HostMatch, PathKind, PathPattern, Rewrite, Segment};

impl Config {
    /// What this config sets up, e.g.
    ///
    /// ```text
    /// config gateway.toml fnv1a64=5b1c0ad7e3f2a911
    /// listeners (1):
    ///   public 0.0.0.0:8080
    /// routes (1):
    ///   user-by-id host=api.example.com methods=GET,HEAD path=/users/{id} upstream=users
    /// upstreams (1):
    ///   users balancer=round_robin endpoints=10.0.0.1:8080 (weight 1), 10.0.0.2:8080 (weight 3)
    /// ```
    pub fn summary(&self) -> String {
        // Writing to a String cannot fail, so the fmt::Results below are ignored.
        let mut out = String::new();
        let _ = writeln!(
            out,
            "config {} fnv1a64={:016x}",
            self.source.display_name, self.source.hash
        );
        let _ = writeln!(out, "listeners ({}):", self.listeners.len());
        for listener in &self.listeners {
            let address = listener.address.to_string();
            if listener.name == address {
                let _ = writeln!(out, "  {address}");
            } else {
                let _ = writeln!(out, "  {} {address}", listener.name);
            }
        }
        let _ = writeln!(out, "routes ({}):", self.routes.len());
        for route in &self.routes {
            let methods = if route.methods.is_empty() {
                "any".to_owned()
            } else {
                route.methods.join(",")
            };
            let _ = write!(
                out,
                "  {} host={} methods={methods} {}",
                route.name,
                host(&route.host),
                path(&route.path)
            );
            for (name, value) in &route.headers {
                let _ = write!(out, " header={name}:{value:?}");
            }
            for name in &route.headers_present {
                let _ = write!(out, " header_present={name}");
            }
            match &route.rewrite {
                Rewrite::None => {}
                Rewrite::StripPrefix => out.push_str(" rewrite=strip_prefix"),
                Rewrite::ReplacePrefix(to) => {
                    let _ = write!(out, " rewrite=replace_prefix:{to}");
                }
            }
            // Validation made the index valid; the fallback keeps a summary from panicking.
            let upstream = self
                .upstreams
                .get(route.upstream)
                .map_or("?", |u| u.name.as_str());
            let _ = writeln!(out, " upstream={upstream}");
        }
        let _ = writeln!(out, "upstreams ({}):", self.upstreams.len());
        for upstream in &self.upstreams {
            let balancer = match &upstream.balancer {
                Balancer::RoundRobin => "round_robin".to_owned(),
                Balancer::LeastOutstanding => "least_outstanding".to_owned(),
                Balancer::ConsistentHash(HashKey::ClientIp) => {
                    "consistent_hash(client_ip)".to_owned()
                }
                Balancer::ConsistentHash(HashKey::Header(name)) => {
                    format!("consistent_hash(header:{name})")
                }
            };
            let endpoints: Vec<String> = upstream
                .endpoints
                .iter()
                .map(|e| format!("{} (weight {})", e.address, e.weight))
                .collect();
            let _ = write!(
                out,
                "  {} balancer={balancer} endpoints={}",
                upstream.name,
                endpoints.join(", ")
            );
            if let Some(check) = &upstream.health_check {
                let _ = write!(
                    out,
                    " health_check=GET {} every {}ms (expect {})",
                    check.path, check.interval_ms, check.expected_status
                );
            }
            out.push('\n');
        }
        match &self.admin {
            Some(admin) => {
                let _ = writeln!(out, "admin {}", admin.address);
            }
            None => out.push_str("admin off\n"),
        }
        if let Some(log) = &self.access_log {
            let _ = writeln!(out, "access_log {}", log.path.display());
        }
        out
    }
}

fn host(host: &HostMatch) -> String {
    match host {
        HostMatch::Any => "*".to_owned(),
        HostMatch::Exact(name) => name.clone(),
        HostMatch::Suffix(suffix) => format!("*{suffix}"),
    }
}

/// `path=/users/{id}` or `path_prefix=/api`, written as in the config.
fn path(pattern: &PathPattern) -> String {
    let key = match pattern.kind {
        PathKind::Exact => "path",
        PathKind::Prefix => "path_prefix",
    };
    let mut text = String::new();
    for segment in &pattern.segments {
        text.push('/');
        match segment {
            Segment::Literal(literal) => text.push_str(literal),
            Segment::Param(name) => {
                let _ = write!(text, "{{{name}}}");
            }
        }
    }
    if text.is_empty() {
        text.push('/');
    }
    format!("{key}={text}")
}
