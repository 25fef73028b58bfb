//! The plain-text summary `coregate check` prints for a valid config: one line per listener,
//! route, upstream, authentication scheme and rate limit, under a heading per kind (the last
//! two only when there are any), and under a TLS listener one indented line per certificate.
//! Meant for people and `grep`, not for parsing back; nothing here is on a hot path. Never
//! prints a secret, a key or a key hash: key material appears as its kind and file, API keys
//! as a count.

use std::fmt::Write as _;

use crate::{
    AuthRef, Balancer, BreakerSettings, Config, Fallback, HashKey, HostMatch, JsonFilterMode,
    JwtAuth, JwtKeys, KeySource, Listener, PathKind, PathPattern, RateKey, Retry, Rewrite, Segment,
    TemplatePart, TlsVersion, TokenSource, UpstreamTls, Variable,
};

impl Config {
    /// What this config sets up, e.g.
    ///
    /// ```text
    /// config gateway.toml fnv1a64=5b1c0ad7e3f2a911
    /// listeners (3):
    ///   https 0.0.0.0:8443 tls versions=1.2,1.3 handshake_timeout_ms=10000 certificates=2
    ///     certificate[0] default names=api.example.com,*.api.example.com cert_file=/etc/c/api.pem
    ///     certificate[1] names=(from the certificate) cert_file=/etc/c/static.pem
    ///   http 0.0.0.0:8080 redirect_https port=8443 status=308 except_prefixes=/.well-known/
    ///   public 0.0.0.0:8081
    /// routes (1):
    ///   user-by-id host=api.example.com methods=GET,HEAD path=/users/{id} upstream=users
    /// upstreams (1):
    ///   users balancer=round_robin endpoints=10.0.0.1:8080 (weight 1), 10.0.0.2:8080 (weight 3)
    ///     tls server_name=users.internal ca_file=/etc/c/ca.pem
    /// auth (2):
    ///   users jwt algorithms=ES256 key=jwks_file:keys/jwks.json (1 key) token=bearer
    ///     leeway_seconds=60 claims_to_headers=sub:X-User-Id cache_entries=10000
    ///   partners api_keys keys=2 from=header:x-api-key consumer_header=X-Consumer
    /// identity_headers x-consumer, x-user-id
    /// rate_limits (1) sync_interval_ms=100:
    ///   per_ip rate_per_second=10 burst=20 key=client_ip keys_max=100000
    /// ```
    ///
    /// (the `users` jwt line, and the `users` upstream line with its `tls`, are one line each).
    /// A TLS listener with `session_tickets = false` adds `session_tickets=off`; an upstream
    /// TLS without `server_name` shows `server_name=(none: endpoint IP)`, without `ca_file`
    /// `ca=system roots`. An aggregate route follows its `upstream=` (the
    /// first part's, unless written) with `aggregate=profile:users,orders:orders?`, each part's
    /// key and upstream, `?` marking an optional part. A route with `auth` or `rate_limit` ends in
    /// `auth=NAME` and `rate_limit=NAME`, and one with a `[route.fallback]` in
    /// `fallback=stale`, `fallback=static 503` or `fallback=stale,static 503`, then one with a
    /// `[route.retry]` in `retry=1x on 502,503,504 budget 20%` (`on connect failures only` when
    /// `on_statuses = []`) and one with `timeout_ms` in `timeout_ms=5000`; one with
    /// `rewrite_path` shows `rewrite=template:/users/{id}`, one with header edits
    /// `request_headers=3 edits` / `response_headers=1 edit`, one with a `[route.json_filter]`
    /// `json_filter=remove:2` / `json_filter=keep:3` (its mode and number of paths), and one
    /// with `request_id = true` ends in `request_id=on`. An upstream
    /// with a breaker ends in e.g. `breaker=5 in a row or 50% of ≥20 in 10000ms, cool-down
    /// 1000..60000ms x2, 3 probes, statuses 502,503,504` (a trigger turned off is left out;
    /// `statuses none` when only connect errors and timeouts count).
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
            listener_lines(&mut out, listener);
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
                Rewrite::Template(parts) => {
                    let _ = write!(out, " rewrite=template:{}", template(parts, &route.path));
                }
            }
            // Validation made the index valid; the fallback keeps a summary from panicking.
            let upstream = self
                .upstreams
                .get(route.upstream)
                .map_or("?", |u| u.name.as_str());
            let _ = write!(out, " upstream={upstream}");
            if !route.aggregate.is_empty() {
                let parts: Vec<String> = route
                    .aggregate
                    .iter()
                    .map(|part| {
                        let upstream = self
                            .upstreams
                            .get(part.upstream)
                            .map_or("?", |u| u.name.as_str());
                        let optional = if part.required { "" } else { "?" };
                        format!("{}:{upstream}{optional}", part.key)
                    })
                    .collect();
                let _ = write!(out, " aggregate={}", parts.join(","));
            }
            match route.auth {
                None => {}
                Some(AuthRef::Jwt(i)) => {
                    let name = self.jwt.get(i).map_or("?", |j| j.name.as_str());
                    let _ = write!(out, " auth={name}");
                }
                Some(AuthRef::ApiKey(i)) => {
                    let name = self.api_keys.get(i).map_or("?", |k| k.name.as_str());
                    let _ = write!(out, " auth={name}");
                }
            }
            if let Some(i) = route.rate_limit {
                let name = self.rate_limits.get(i).map_or("?", |l| l.name.as_str());
                let _ = write!(out, " rate_limit={name}");
            }
            if let Some(fallback) = fallback(&route.fallback) {
                let _ = write!(out, " fallback={fallback}");
            }
            if let Some(retry) = &route.retry {
                let _ = write!(out, " retry={}", retry_summary(retry));
            }
            if let Some(ms) = route.timeout_ms {
                let _ = write!(out, " timeout_ms={ms}");
            }
            for (key, edits) in [
                ("request_headers", &route.request_headers),
                ("response_headers", &route.response_headers),
            ] {
                match edits.remove.len() + edits.rename.len() + edits.set.len() + edits.add.len() {
                    0 => {}
                    1 => {
                        let _ = write!(out, " {key}=1 edit");
                    }
                    n => {
                        let _ = write!(out, " {key}={n} edits");
                    }
                }
            }
            if let Some(filter) = &route.json_filter {
                let mode = match filter.mode {
                    JsonFilterMode::Keep => "keep",
                    JsonFilterMode::Remove => "remove",
                };
                let _ = write!(out, " json_filter={mode}:{}", filter.paths.len());
            }
            if route.request_id {
                out.push_str(" request_id=on");
            }
            out.push('\n');
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
            if let Some(settings) = &upstream.breaker {
                let _ = write!(out, " breaker={}", breaker(settings));
            }
            if let Some(tls) = &upstream.tls {
                let _ = write!(out, " tls {}", upstream_tls(tls));
            }
            out.push('\n');
        }
        self.auth_summary(&mut out);
        if !self.rate_limits.is_empty() {
            let _ = writeln!(
                out,
                "rate_limits ({}) sync_interval_ms={}:",
                self.rate_limits.len(),
                self.server.rate_limit_sync_interval_ms
            );
        }
        for limit in &self.rate_limits {
            let key = match &limit.key {
                RateKey::ClientIp => "client_ip".to_owned(),
                RateKey::Consumer => "consumer".to_owned(),
                RateKey::Claim(claim) => format!("claim:{claim}"),
                RateKey::Header(name) => format!("header:{name}"),
            };
            let _ = writeln!(
                out,
                "  {} rate_per_second={} burst={} key={key} keys_max={}",
                limit.name, limit.rate_per_second, limit.burst, limit.keys_max
            );
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

impl Config {
    /// The `auth` heading, one line per verifier and key set, and the identity headers.
    fn auth_summary(&self, out: &mut String) {
        let count = self.jwt.len() + self.api_keys.len();
        if count == 0 {
            return;
        }
        let _ = writeln!(out, "auth ({count}):");
        for jwt in &self.jwt {
            jwt_line(out, jwt);
        }
        for set in &self.api_keys {
            let from = match &set.source {
                KeySource::Header(name) => format!("header:{name}"),
                KeySource::Query(name) => format!("query:{name}"),
            };
            let _ = writeln!(
                out,
                "  {} api_keys keys={} from={from} consumer_header={}",
                set.name,
                set.keys.len(),
                set.consumer_header
            );
        }
        if !self.identity_headers.is_empty() {
            let _ = writeln!(out, "identity_headers {}", self.identity_headers.join(", "));
        }
    }
}

fn jwt_line(out: &mut String, jwt: &JwtAuth) {
    let key = match &jwt.keys {
        JwtKeys::Secret(_) => "secret".to_owned(),
        JwtKeys::PublicKeyPem { path, .. } => format!("public_key_file:{}", path.display()),
        JwtKeys::Jwks { path, json } => {
            // Validation parsed the document already; the fallback keeps this total.
            let keys = serde_json::from_str::<serde_json::Value>(json)
                .ok()
                .and_then(|doc| doc.get("keys")?.as_array().map(Vec::len));
            match keys {
                Some(1) => format!("jwks_file:{} (1 key)", path.display()),
                Some(n) => format!("jwks_file:{} ({n} keys)", path.display()),
                None => format!("jwks_file:{}", path.display()),
            }
        }
    };
    let _ = write!(
        out,
        "  {} jwt algorithms={} key={key}",
        jwt.name,
        jwt.algorithms.join(",")
    );
    if let Some(issuer) = &jwt.issuer {
        let _ = write!(out, " issuer={issuer}");
    }
    if !jwt.audiences.is_empty() {
        let _ = write!(out, " audiences={}", jwt.audiences.join(","));
    }
    if !jwt.required_claims.is_empty() {
        let _ = write!(out, " required_claims={}", jwt.required_claims.join(","));
    }
    let token = match &jwt.token_source {
        TokenSource::Bearer => "bearer".to_owned(),
        TokenSource::Header(name) => format!("header:{name}"),
        TokenSource::Cookie(name) => format!("cookie:{name}"),
    };
    let _ = write!(out, " token={token} leeway_seconds={}", jwt.leeway_seconds);
    if !jwt.require_exp {
        out.push_str(" require_exp=false");
    }
    let claims: Vec<String> = jwt
        .claims_to_headers
        .iter()
        .map(|(claim, header)| format!("{claim}:{header}"))
        .collect();
    if !claims.is_empty() {
        let _ = write!(out, " claims_to_headers={}", claims.join(","));
    }
    let _ = writeln!(out, " cache_entries={}", jwt.cache_entries);
}

/// A listener's line and, under a TLS listener, one line per certificate.
fn listener_lines(out: &mut String, listener: &Listener) {
    let address = listener.address.to_string();
    if listener.name == address {
        let _ = write!(out, "  {address}");
    } else {
        let _ = write!(out, "  {} {address}", listener.name);
    }
    if let Some(redirect) = &listener.redirect_https {
        let _ = write!(
            out,
            " redirect_https port={} status={}",
            redirect.port, redirect.status
        );
        if !redirect.except_prefixes.is_empty() {
            let _ = write!(
                out,
                " except_prefixes={}",
                redirect.except_prefixes.join(",")
            );
        }
    }
    let Some(tls) = &listener.tls else {
        out.push('\n');
        return;
    };
    let versions: Vec<&str> = tls
        .versions
        .iter()
        .map(|version| match version {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
        .collect();
    let _ = write!(
        out,
        " tls versions={} handshake_timeout_ms={}",
        versions.join(","),
        tls.handshake_timeout_ms
    );
    if !tls.session_tickets {
        out.push_str(" session_tickets=off");
    }
    let _ = writeln!(out, " certificates={}", tls.certificates.len());
    for (j, certificate) in tls.certificates.iter().enumerate() {
        let default = if j == tls.default_certificate {
            " default"
        } else {
            ""
        };
        let names = if certificate.names.is_empty() {
            "(from the certificate)".to_owned()
        } else {
            certificate.names.join(",")
        };
        let _ = writeln!(
            out,
            "    certificate[{j}]{default} names={names} cert_file={}",
            certificate.cert_path.display()
        );
    }
}

/// `server_name=api.internal ca_file=/etc/c/ca.pem`.
fn upstream_tls(tls: &UpstreamTls) -> String {
    let server_name = tls.server_name.as_deref().unwrap_or("(none: endpoint IP)");
    match &tls.ca {
        Some((path, _)) => format!("server_name={server_name} ca_file={}", path.display()),
        None => format!("server_name={server_name} ca=system roots"),
    }
}

/// `5 in a row or 50% of ≥20 in 10000ms, cool-down 1000..60000ms x2, 3 probes, statuses
/// 502,503,504`.
fn breaker(settings: &BreakerSettings) -> String {
    let mut triggers = Vec::with_capacity(2);
    if settings.consecutive_failures > 0 {
        triggers.push(format!("{} in a row", settings.consecutive_failures));
    }
    if settings.failure_ratio > 0.0 {
        // Hundredths of a percent, so 0.333 reads 33.3% rather than 33.300000000000004%.
        let percent = (settings.failure_ratio * 10_000.0).round() / 100.0;
        triggers.push(format!(
            "{percent}% of ≥{} in {}ms",
            settings.minimum_requests, settings.window_ms
        ));
    }
    let statuses = if settings.failure_statuses.is_empty() {
        "none".to_owned()
    } else {
        let statuses: Vec<String> = settings
            .failure_statuses
            .iter()
            .map(u16::to_string)
            .collect();
        statuses.join(",")
    };
    let probes = match settings.half_open_probes {
        1 => "1 probe".to_owned(),
        n => format!("{n} probes"),
    };
    format!(
        "{}, cool-down {}..{}ms x{}, {probes}, statuses {statuses}",
        triggers.join(" or "),
        settings.cooldown_ms,
        settings.cooldown_max_ms,
        settings.cooldown_multiplier,
    )
}

/// `1x on 502,503,504 budget 20%`, or `1x on connect failures only budget 20%` when no status
/// is retried.
fn retry_summary(retry: &Retry) -> String {
    let on = if retry.on_statuses.is_empty() {
        "connect failures only".to_owned()
    } else {
        let statuses: Vec<String> = retry.on_statuses.iter().map(u16::to_string).collect();
        statuses.join(",")
    };
    format!(
        "{}x on {on} budget {}%",
        retry.attempts, retry.budget_percent
    )
}

/// A `rewrite_path` template as written: `/users/{id}`.
fn template(parts: &[TemplatePart], pattern: &PathPattern) -> String {
    let params: Vec<&str> = pattern
        .segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
        .collect();
    let mut text = String::new();
    for part in parts {
        match part {
            TemplatePart::Literal(literal) => text.push_str(literal),
            // Validation resolved every path variable to a parameter; `?` keeps this total.
            TemplatePart::Var(Variable::Param(i)) => {
                let _ = write!(text, "{{{}}}", params.get(*i).copied().unwrap_or("?"));
            }
            TemplatePart::Var(_) => text.push_str("{?}"),
        }
    }
    text
}

/// `stale`, `static 503` or `stale,static 503`; `None` for the default (503 JSON).
fn fallback(fallback: &Fallback) -> Option<String> {
    let mut parts = Vec::with_capacity(2);
    if fallback.stale {
        parts.push("stale".to_owned());
    }
    if let Some(response) = &fallback.static_response {
        parts.push(format!("static {}", response.status));
    }
    (!parts.is_empty()).then(|| parts.join(","))
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
