//! A valid config becomes exactly the model the engine expects: defaults filled in, names
//! resolved to indexes, hosts and header names lower-cased, methods upper-cased, paths split,
//! key files read, key hashes lower-cased, breakers, fallbacks and retries filled in.

use std::net::SocketAddr;
use std::path::PathBuf;

use coregate_config::defaults;
use coregate_config::{
    load_str, AggregatePart, ApiKeyAuth, AuthRef, Balancer, BreakerSettings, Endpoint, Fallback,
    HashKey, HeaderEdits, HostMatch, JsonFilter, JsonFilterMode, JwtAuth, JwtKeys, KeySource,
    Listener, PathKind, PathPattern, RateKey, RateLimit, Retry, Rewrite, Segment, StaticResponse,
    TemplatePart, TokenSource, Variable,
};

const TEXT: &str = r#"
[server]
workers = 4
body_bytes_max = 1000

[[listener]]
name = "public"
address = "0.0.0.0:8080"

[[listener]]
address = "[::1]:8081"

# Declared out of order: the model sorts upstreams by name.
[upstreams.zeta]
endpoints = [{ address = "10.0.0.3:80" }]
balancer = "consistent_hash"
hash_key = "header:X-User"
connect_timeout_ms = 50

[upstreams.alpha]
endpoints = [{ address = "10.0.0.1:80", weight = 5 }, { address = "[fd00::1]:80" }]
balancer = "least_outstanding"

[upstreams.mid]
endpoints = [{ address = "10.0.0.2:80" }]
balancer = "consistent_hash"
hash_key = "client_ip"

[[route]]
name = "users"
host = "API.Example.com"
methods = ["get", "HEAD"]
path = "/users/{id}/"
headers = { "X-Api-Version" = "2" }
headers_present = ["Authorization"]
upstream = "zeta"
body_bytes_max = 0

[[route]]
host = "*.Example.com"
path_prefix = "/api/v1/"
replace_prefix = "/internal/"
upstream = "alpha"

[[route]]
path_prefix = "/"
strip_prefix = true
upstream = "mid"

[[route]]
path = "/"
replace_prefix = "/"
path_prefix = "/x"
upstream = "mid"
"#;

fn literal(s: &str) -> Segment {
    Segment::Literal(s.to_owned())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn a_full_config_becomes_the_expected_model() {
    // The last route has both path and path_prefix; drop it for the valid config.
    let text = &TEXT[..TEXT.rfind("[[route]]").expect("last route")];
    let config = match load_str(text, "<full>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };

    assert_eq!(config.source.display_name, "<full>");
    assert_eq!(config.source.path, None);
    assert_eq!(config.server.workers, 4);
    assert_eq!(config.server.header_count_max, defaults::HEADER_COUNT_MAX);

    assert_eq!(
        config.listeners,
        vec![
            Listener {
                name: "public".to_owned(),
                address: addr("0.0.0.0:8080"),
                tls: None,
                redirect_https: None,
            },
            Listener {
                name: "[::1]:8081".to_owned(),
                address: addr("[::1]:8081"),
                tls: None,
                redirect_https: None,
            },
        ]
    );

    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    let alpha = &config.upstreams[0];
    assert_eq!(alpha.balancer, Balancer::LeastOutstanding);
    assert_eq!(
        alpha.endpoints,
        vec![
            Endpoint {
                address: addr("10.0.0.1:80"),
                weight: 5,
            },
            Endpoint {
                address: addr("[fd00::1]:80"),
                weight: defaults::ENDPOINT_WEIGHT,
            },
        ]
    );
    assert_eq!(alpha.connect_timeout_ms, defaults::CONNECT_TIMEOUT_MS);
    assert_eq!(alpha.pool_idle_max, defaults::POOL_IDLE_MAX);
    assert_eq!(
        config.upstreams[1].balancer,
        Balancer::ConsistentHash(HashKey::ClientIp)
    );
    let zeta = &config.upstreams[2];
    assert_eq!(
        zeta.balancer,
        Balancer::ConsistentHash(HashKey::Header("x-user".to_owned()))
    );
    assert_eq!(zeta.connect_timeout_ms, 50);

    assert_eq!(config.routes.len(), 3);
    let users = &config.routes[0];
    assert_eq!(users.name, "users");
    assert_eq!(users.host, HostMatch::Exact("api.example.com".to_owned()));
    assert_eq!(users.methods, ["GET", "HEAD"]);
    assert_eq!(
        users.path,
        PathPattern {
            kind: PathKind::Exact,
            segments: vec![
                literal("users"),
                Segment::Param("id".to_owned()),
                literal("")
            ],
        }
    );
    assert_eq!(
        users.headers,
        [("x-api-version".to_owned(), "2".to_owned())]
    );
    assert_eq!(users.headers_present, ["authorization"]);
    assert_eq!(users.upstream, 2);
    assert_eq!(users.rewrite, Rewrite::None);
    assert_eq!(users.body_bytes_max, 0);

    let api = &config.routes[1];
    assert_eq!(api.name, "route-1");
    assert_eq!(api.host, HostMatch::Suffix(".example.com".to_owned()));
    assert!(api.methods.is_empty());
    assert_eq!(
        api.path,
        PathPattern {
            kind: PathKind::Prefix,
            segments: vec![literal("api"), literal("v1")],
        }
    );
    assert_eq!(api.upstream, 0);
    assert_eq!(api.rewrite, Rewrite::ReplacePrefix("/internal".to_owned()));
    assert_eq!(
        api.body_bytes_max, 1000,
        "defaults to server.body_bytes_max"
    );

    let all = &config.routes[2];
    assert_eq!(all.name, "route-2");
    assert_eq!(all.host, HostMatch::Any);
    assert_eq!(
        all.path,
        PathPattern {
            kind: PathKind::Prefix,
            segments: vec![],
        }
    );
    assert_eq!(all.upstream, 1);
    assert_eq!(all.rewrite, Rewrite::StripPrefix);
}

#[test]
fn root_paths_and_slash_replacement() {
    let text = "[[listener]]\naddress = \"127.0.0.1:1\"\n\
                [upstreams.u]\nendpoints = [{ address = \"127.0.0.1:2\" }]\n\
                [[route]]\npath = \"/\"\nupstream = \"u\"\n\
                [[route]]\npath_prefix = \"/a\"\nreplace_prefix = \"/\"\nupstream = \"u\"\n\
                [[route]]\nhost = \"[::1]\"\npath = \"/a\"\nupstream = \"u\"\n";
    let config = match load_str(text, "t") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(
        config.routes[0].path,
        PathPattern {
            kind: PathKind::Exact,
            segments: vec![],
        }
    );
    assert_eq!(
        config.routes[1].rewrite,
        Rewrite::ReplacePrefix("/".to_owned())
    );
    assert_eq!(config.routes[2].host, HostMatch::Exact("[::1]".to_owned()));
}

#[test]
fn the_source_hash_is_fnv1a_64_of_the_text() {
    let text = &TEXT[..TEXT.rfind("[[route]]").expect("last route")];
    let first = load_str(text, "a").map_err(|e| e.to_string());
    let second = load_str(text, "b").map_err(|e| e.to_string());
    let changed = load_str(&format!("{text}\n"), "c").map_err(|e| e.to_string());
    let (Ok(first), Ok(second), Ok(changed)) = (first, second, changed) else {
        panic!("valid text rejected");
    };
    let expected = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    assert_eq!(first.source.hash, expected);
    assert_eq!(first.source.hash, second.source.hash);
    assert_ne!(first.source.hash, changed.source.hash);
}

#[test]
fn path_and_path_prefix_together_are_rejected_in_the_full_text() {
    let error = match load_str(TEXT, "<full>") {
        Ok(_) => panic!("accepted both path and path_prefix"),
        Err(error) => error,
    };
    assert_eq!(error.field, "route[3].path_prefix");
    assert_eq!(
        error.line,
        1 + TEXT[..TEXT.rfind("path_prefix = \"/x\"").unwrap_or(0)]
            .matches('\n')
            .count()
    );
}

#[test]
fn summary_lists_listeners_routes_and_upstreams() {
    let text = &TEXT[..TEXT.rfind("[[route]]").expect("last route")];
    let config = match load_str(text, "<full>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let summary = config.summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "listeners (2):",
            "  public 0.0.0.0:8080",
            "  [::1]:8081",
            "routes (3):",
            "  users host=api.example.com methods=GET,HEAD path=/users/{id}/ \
             header=x-api-version:\"2\" header_present=authorization upstream=zeta",
            "  route-1 host=*.example.com methods=any path_prefix=/api/v1 \
             rewrite=replace_prefix:/internal upstream=alpha",
            "  route-2 host=* methods=any path_prefix=/ rewrite=strip_prefix upstream=mid",
            "upstreams (3):",
            "  alpha balancer=least_outstanding endpoints=10.0.0.1:80 (weight 5), \
             [fd00::1]:80 (weight 1)",
            "  mid balancer=consistent_hash(client_ip) endpoints=10.0.0.2:80 (weight 1)",
            "  zeta balancer=consistent_hash(header:x-user) endpoints=10.0.0.3:80 (weight 1)",
            "admin 127.0.0.1:9901",
        ]
    );
    assert!(
        lines[0].starts_with("config <full> fnv1a64="),
        "{}",
        lines[0]
    );
}

/// Authentication and rate limits, declared out of order and partly defaulted. The key files
/// are the example's, named relative to the current directory (the crate root under
/// `cargo test`), which is what a config without a file resolves against.
const POLICIES: &str = r#"
[server]
rate_limit_sync_interval_ms = 250

[[listener]]
address = "127.0.0.1:8080"

[upstreams.app]
endpoints = [{ address = "10.0.0.1:80" }]

[rate_limits.per_tenant]
rate_per_second = 2.5
key = "claim:tenant"
keys_max = 500

[rate_limits.per_ip]
rate_per_second = 10

[auth.jwt.users]
algorithms = ["ES256", "RS256"]
jwks_file = "examples/keys/jwks.json"
issuer = "https://issuer.example"
audiences = ["api", "web"]
required_claims = ["sub", "tenant"]
leeway_seconds = 5
require_exp = false
token = "cookie:Session"
claims_to_headers = { sub = "X-User-Id", tenant = "X-Tenant" }
cache_entries = 0

[auth.jwt.internal]
algorithms = ["HS384"]
secret = "0123456789abcdef0123456789abcdef0123456789abcdef"

[auth.jwt.console]
algorithms = ["ES256"]
public_key_file = "examples/keys/ec-p256-public.pem"
token = "header:X-Console-Token"
claims_to_headers = {}

[auth.api_keys.partners]
keys = [
    { consumer = "acme", sha256 = "2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE" },
    { consumer = "acme", sha256 = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9" },
]
from = "query:api_key"
consumer_header = "X-Partner"

[[route]]
path_prefix = "/users"
upstream = "app"
auth = "users"
rate_limit = "per_tenant"

[[route]]
path_prefix = "/partners"
upstream = "app"
auth = "partners"
rate_limit = "per_ip"

[[route]]
path_prefix = "/internal"
upstream = "app"
auth = "internal"

[[route]]
path_prefix = "/"
upstream = "app"
"#;

#[test]
fn auth_and_rate_limits_become_the_expected_model() {
    let config = match load_str(POLICIES, "<policies>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(config.server.rate_limit_sync_interval_ms, 250);

    let pem = std::fs::read_to_string("examples/keys/ec-p256-public.pem").expect("example key");
    let jwks = std::fs::read_to_string("examples/keys/jwks.json").expect("example jwks");
    assert_eq!(
        config.jwt,
        vec![
            JwtAuth {
                name: "console".to_owned(),
                algorithms: vec!["ES256".to_owned()],
                keys: JwtKeys::PublicKeyPem {
                    path: PathBuf::from("examples/keys/ec-p256-public.pem"),
                    pem,
                },
                issuer: None,
                audiences: vec![],
                required_claims: vec![],
                leeway_seconds: defaults::JWT_LEEWAY_SECONDS,
                require_exp: true,
                token_source: TokenSource::Header("x-console-token".to_owned()),
                claims_to_headers: vec![],
                cache_entries: defaults::JWT_CACHE_ENTRIES,
            },
            JwtAuth {
                name: "internal".to_owned(),
                algorithms: vec!["HS384".to_owned()],
                keys: JwtKeys::Secret(b"0123456789abcdef0123456789abcdef0123456789abcdef".to_vec()),
                issuer: None,
                audiences: vec![],
                required_claims: vec![],
                leeway_seconds: 60,
                require_exp: true,
                token_source: TokenSource::Bearer,
                claims_to_headers: vec![("sub".to_owned(), "X-User-Id".to_owned())],
                cache_entries: 10_000,
            },
            JwtAuth {
                name: "users".to_owned(),
                algorithms: vec!["ES256".to_owned(), "RS256".to_owned()],
                keys: JwtKeys::Jwks {
                    path: PathBuf::from("examples/keys/jwks.json"),
                    json: jwks,
                },
                issuer: Some("https://issuer.example".to_owned()),
                audiences: vec!["api".to_owned(), "web".to_owned()],
                required_claims: vec!["sub".to_owned(), "tenant".to_owned()],
                leeway_seconds: 5,
                require_exp: false,
                token_source: TokenSource::Cookie("Session".to_owned()),
                claims_to_headers: vec![
                    ("sub".to_owned(), "X-User-Id".to_owned()),
                    ("tenant".to_owned(), "X-Tenant".to_owned()),
                ],
                cache_entries: 0,
            },
        ]
    );
    assert_eq!(
        config.api_keys,
        vec![ApiKeyAuth {
            name: "partners".to_owned(),
            keys: vec![
                (
                    "acme".to_owned(),
                    "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".to_owned()
                ),
                (
                    "acme".to_owned(),
                    "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9".to_owned()
                ),
            ],
            source: KeySource::Query("api_key".to_owned()),
            consumer_header: "X-Partner".to_owned(),
        }]
    );
    assert_eq!(
        config.rate_limits,
        vec![
            RateLimit {
                name: "per_ip".to_owned(),
                rate_per_second: 10.0,
                burst: 10,
                key: RateKey::ClientIp,
                keys_max: defaults::RATE_LIMIT_KEYS_MAX,
            },
            RateLimit {
                name: "per_tenant".to_owned(),
                rate_per_second: 2.5,
                burst: 3,
                key: RateKey::Claim("tenant".to_owned()),
                keys_max: 500,
            },
        ]
    );
    assert_eq!(
        config.identity_headers,
        ["x-partner", "x-tenant", "x-user-id"]
    );
    let refs: Vec<(Option<AuthRef>, Option<usize>)> = config
        .routes
        .iter()
        .map(|route| (route.auth, route.rate_limit))
        .collect();
    assert_eq!(
        refs,
        [
            (Some(AuthRef::Jwt(2)), Some(1)),
            (Some(AuthRef::ApiKey(0)), Some(0)),
            (Some(AuthRef::Jwt(1)), None),
            (None, None),
        ]
    );
}

#[test]
fn summary_lists_auth_and_rate_limits_without_secrets() {
    let config = match load_str(POLICIES, "<policies>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let summary = config.summary();
    let lines: Vec<&str> = summary.lines().collect();
    let from = |heading: &str| {
        lines
            .iter()
            .position(|line| line.starts_with(heading))
            .unwrap_or_else(|| panic!("no {heading} in\n{summary}"))
    };
    let routes = from("routes (4):");
    assert_eq!(
        lines[routes + 1..routes + 5],
        [
            "  route-0 host=* methods=any path_prefix=/users upstream=app auth=users \
             rate_limit=per_tenant",
            "  route-1 host=* methods=any path_prefix=/partners upstream=app auth=partners \
             rate_limit=per_ip",
            "  route-2 host=* methods=any path_prefix=/internal upstream=app auth=internal",
            "  route-3 host=* methods=any path_prefix=/ upstream=app",
        ]
    );
    let auth = from("auth (4):");
    assert_eq!(
        lines[auth..auth + 8],
        [
            "auth (4):",
            "  console jwt algorithms=ES256 key=public_key_file:examples/keys/ec-p256-public.pem \
             token=header:x-console-token leeway_seconds=60 cache_entries=10000",
            "  internal jwt algorithms=HS384 key=secret token=bearer leeway_seconds=60 \
             claims_to_headers=sub:X-User-Id cache_entries=10000",
            "  users jwt algorithms=ES256,RS256 key=jwks_file:examples/keys/jwks.json (1 key) \
             issuer=https://issuer.example audiences=api,web required_claims=sub,tenant \
             token=cookie:Session leeway_seconds=5 require_exp=false \
             claims_to_headers=sub:X-User-Id,tenant:X-Tenant cache_entries=0",
            "  partners api_keys keys=2 from=query:api_key consumer_header=X-Partner",
            "identity_headers x-partner, x-tenant, x-user-id",
            "rate_limits (2) sync_interval_ms=250:",
            "  per_ip rate_per_second=10 burst=10 key=client_ip keys_max=100000",
        ]
    );
    assert_eq!(
        lines[auth + 8],
        "  per_tenant rate_per_second=2.5 burst=3 key=claim:tenant keys_max=500"
    );
    for secret in ["0123456789abcdef", "2c26b46b", "2C26B46B", "fcde2b2e"] {
        assert!(!summary.contains(secret), "{secret} in\n{summary}");
    }
    // Debug output of the model is safe to log too.
    let debug = format!("{:?}", config.jwt[1]);
    assert!(!debug.contains("0123456789abcdef"), "{debug}");
    assert!(debug.contains("Secret(<48 bytes redacted>)"), "{debug}");
}

/// Circuit breakers and route fallbacks: one breaker written out in full, one defaulted with
/// only the ratio trigger, one upstream without; fallbacks of every kind.
const RESILIENCE: &str = r#"
[[listener]]
address = "127.0.0.1:8080"

[upstreams.orders]
endpoints = [{ address = "10.0.0.1:80" }]

[upstreams.orders.breaker]
consecutive_failures = 0
failure_ratio = 0.333
window_ms = 30000
minimum_requests = 50
cooldown_ms = 250
cooldown_multiplier = 1.5
cooldown_max_ms = 250
half_open_probes = 1
failure_statuses = []

[upstreams.users]
endpoints = [{ address = "10.0.0.2:80" }]
breaker = {}

[upstreams.plain]
endpoints = [{ address = "10.0.0.3:80" }]

[[route]]
name = "orders"
path_prefix = "/orders"
upstream = "orders"

[route.fallback]
stale = true
status = 503
content_type = "application/problem+json"
body = '{"title":"orders are unavailable, try again soon"}'

[[route]]
name = "users"
path_prefix = "/users"
upstream = "users"
fallback = { stale = true }

[[route]]
name = "maintenance"
path_prefix = "/shop"
upstream = "plain"

[route.fallback]
status = 200
content_type = "text/html; charset=utf-8"

[[route]]
name = "rest"
path_prefix = "/"
upstream = "plain"

[route.fallback]
"#;

#[test]
fn breakers_and_fallbacks_become_the_expected_model() {
    let config = match load_str(RESILIENCE, "<resilience>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["orders", "plain", "users"]);
    assert_eq!(
        config.upstreams[0].breaker,
        Some(BreakerSettings {
            consecutive_failures: 0,
            failure_ratio: 0.333,
            window_ms: 30_000,
            minimum_requests: 50,
            cooldown_ms: 250,
            cooldown_multiplier: 1.5,
            cooldown_max_ms: 250,
            half_open_probes: 1,
            failure_statuses: vec![],
        })
    );
    assert_eq!(config.upstreams[1].breaker, None);
    assert_eq!(
        config.upstreams[2].breaker,
        Some(BreakerSettings {
            consecutive_failures: defaults::BREAKER_CONSECUTIVE_FAILURES,
            failure_ratio: defaults::BREAKER_FAILURE_RATIO,
            window_ms: defaults::BREAKER_WINDOW_MS,
            minimum_requests: defaults::BREAKER_MINIMUM_REQUESTS,
            cooldown_ms: defaults::BREAKER_COOLDOWN_MS,
            cooldown_multiplier: defaults::BREAKER_COOLDOWN_MULTIPLIER,
            cooldown_max_ms: defaults::BREAKER_COOLDOWN_MAX_MS,
            half_open_probes: defaults::BREAKER_HALF_OPEN_PROBES,
            failure_statuses: defaults::BREAKER_FAILURE_STATUSES.to_vec(),
        })
    );

    let fallbacks: Vec<&Fallback> = config.routes.iter().map(|r| &r.fallback).collect();
    assert_eq!(
        fallbacks,
        [
            &Fallback {
                stale: true,
                stale_per_identity: false,
                static_response: Some(StaticResponse {
                    status: 503,
                    content_type: "application/problem+json".to_owned(),
                    body: r#"{"title":"orders are unavailable, try again soon"}"#.to_owned(),
                }),
            },
            &Fallback {
                stale: true,
                stale_per_identity: false,
                static_response: None,
            },
            &Fallback {
                stale: false,
                stale_per_identity: false,
                static_response: Some(StaticResponse {
                    status: 200,
                    content_type: "text/html; charset=utf-8".to_owned(),
                    body: String::new(),
                }),
            },
            &Fallback {
                stale: false,
                stale_per_identity: false,
                static_response: None,
            },
        ]
    );
    // Routes still resolve their upstreams by sorted index.
    let upstreams: Vec<usize> = config.routes.iter().map(|r| r.upstream).collect();
    assert_eq!(upstreams, [0, 2, 1, 1]);
}

#[test]
fn summary_shows_breakers_and_fallbacks() {
    let config = match load_str(RESILIENCE, "<resilience>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let summary = config.summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[3..],
        [
            "routes (4):",
            "  orders host=* methods=any path_prefix=/orders upstream=orders \
             fallback=stale,static 503",
            "  users host=* methods=any path_prefix=/users upstream=users fallback=stale",
            "  maintenance host=* methods=any path_prefix=/shop upstream=plain \
             fallback=static 200",
            "  rest host=* methods=any path_prefix=/ upstream=plain",
            "upstreams (3):",
            "  orders balancer=round_robin endpoints=10.0.0.1:80 (weight 1) \
             breaker=33.3% of ≥50 in 30000ms, cool-down 250..250ms x1.5, 1 probe, \
             statuses none",
            "  plain balancer=round_robin endpoints=10.0.0.3:80 (weight 1)",
            "  users balancer=round_robin endpoints=10.0.0.2:80 (weight 1) \
             breaker=5 in a row or 50% of ≥20 in 10000ms, cool-down 1000..60000ms x2, \
             3 probes, statuses 502,503,504",
            "admin 127.0.0.1:9901",
        ]
    );
    // A breaker with only the consecutive trigger.
    let text = RESILIENCE
        .replace("consecutive_failures = 0", "consecutive_failures = 3")
        .replace("failure_ratio = 0.333", "failure_ratio = 0");
    let summary = match load_str(&text, "t") {
        Ok(config) => config.summary(),
        Err(error) => panic!("{error}"),
    };
    assert!(
        summary.contains(" breaker=3 in a row, cool-down 250..250ms x1.5,"),
        "{summary}"
    );
}

/// Rewrites and header edits on three routes: a JWT route whose templates use parameters and
/// claims (the verifier's claims sort to email, sub, tenant), an API-key route without a
/// request id, and a prefix route with only response edits.
const TRANSFORMS: &str = r#"
[[listener]]
address = "127.0.0.1:8080"

[upstreams.users]
endpoints = [{ address = "10.0.0.1:80" }]

[auth.jwt.staff]
algorithms = ["HS256"]
secret = "0123456789abcdef0123456789abcdef"
claims_to_headers = { tenant = "X-Tenant", sub = "X-User-Id", email = "X-Email" }

[auth.api_keys.partners]
keys = [{ consumer = "acme", sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" }]

[[route]]
name = "org-user"
path = "/v1/orgs/{org}/users/{id}/{part}"
rewrite_path = "/users/{id}/{part}.json?"
upstream = "users"
auth = "staff"
request_id = true

[route.request_headers]
remove = ["X-Debug", "cookie"]
rename = { "X-Old-Trace" = "X-Trace" }
set = { "X-Org" = "${param.org}", "X-Who" = "${claim.tenant}/${claim.email}" }
add = { "X-Client" = "${client_ip} via ${route}", "X-Req" = "${request_id}" }

[route.response_headers]
set = { "X-User-Id" = "${claim.sub}", "Cache-Control" = "no-store" }

[[route]]
name = "partner"
path = "/p/{id}"
rewrite_path = "/partners/{id}"
upstream = "users"
auth = "partners"
request_id = false

[route.request_headers]
add = { "X-Price" = "$$${param.id}" }

[[route]]
name = "rest"
path_prefix = "/"
upstream = "users"

[route.response_headers]
remove = ["server"]
"#;

#[test]
fn rewrites_and_header_edits_become_the_expected_model() {
    // The `?` is not allowed in rewrite_path: the query is the client's.
    let error = match load_str(TRANSFORMS, "<transforms>") {
        Ok(_) => panic!("accepted a query in rewrite_path"),
        Err(error) => error,
    };
    assert_eq!(error.field, "route[0].rewrite_path");
    let text = TRANSFORMS.replace(".json?\"", ".json\"");
    let config = match load_str(&text, "<transforms>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let literal = |s: &str| TemplatePart::Literal(s.to_owned());
    let var = TemplatePart::Var;
    let (org_user, partner, rest) = (&config.routes[0], &config.routes[1], &config.routes[2]);

    // {org} {id} {part} are parameters 0, 1, 2.
    assert_eq!(
        org_user.rewrite,
        Rewrite::Template(vec![
            literal("/users/"),
            var(Variable::Param(1)),
            literal("/"),
            var(Variable::Param(2)),
            literal(".json"),
        ])
    );
    assert!(org_user.request_id);
    assert_eq!(
        org_user.request_headers,
        HeaderEdits {
            remove: vec!["x-debug".to_owned(), "cookie".to_owned()],
            rename: vec![("x-old-trace".to_owned(), "X-Trace".to_owned())],
            set: vec![
                ("X-Org".to_owned(), vec![var(Variable::Param(0))]),
                (
                    "X-Who".to_owned(),
                    vec![
                        var(Variable::Claim(2)),
                        literal("/"),
                        var(Variable::Claim(0)),
                    ],
                ),
            ],
            add: vec![
                (
                    "X-Client".to_owned(),
                    vec![
                        var(Variable::ClientIp),
                        literal(" via "),
                        var(Variable::Route),
                    ],
                ),
                ("X-Req".to_owned(), vec![var(Variable::RequestId)]),
            ],
        }
    );
    // An identity header may be set on the response; BTreeMap order puts Cache-Control first.
    assert_eq!(
        org_user.response_headers,
        HeaderEdits {
            set: vec![
                ("Cache-Control".to_owned(), vec![literal("no-store")]),
                ("X-User-Id".to_owned(), vec![var(Variable::Claim(1))]),
            ],
            ..HeaderEdits::default()
        }
    );
    assert_eq!(
        config.jwt[0].claims_to_headers[2],
        ("tenant".to_owned(), "X-Tenant".to_owned())
    );

    assert_eq!(
        partner.rewrite,
        Rewrite::Template(vec![literal("/partners/"), var(Variable::Param(0))])
    );
    assert!(!partner.request_id);
    assert_eq!(
        partner.request_headers.add,
        vec![(
            "X-Price".to_owned(),
            vec![literal("$"), var(Variable::Param(0))]
        )]
    );
    assert_eq!(partner.response_headers, HeaderEdits::default());

    assert_eq!(rest.rewrite, Rewrite::None);
    assert!(!rest.request_id, "request ids are off unless asked for");
    assert_eq!(rest.request_headers, HeaderEdits::default());
    assert_eq!(rest.response_headers.remove, ["server"]);

    let summary = config.summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[3..7],
        [
            "routes (3):",
            "  org-user host=* methods=any path=/v1/orgs/{org}/users/{id}/{part} \
             rewrite=template:/users/{id}/{part}.json upstream=users auth=staff \
             request_headers=7 edits response_headers=2 edits request_id=on",
            "  partner host=* methods=any path=/p/{id} rewrite=template:/partners/{id} \
             upstream=users auth=partners request_headers=1 edit",
            "  rest host=* methods=any path_prefix=/ upstream=users response_headers=1 edit",
        ]
    );
}

/// Retries and route timeouts: a route with every retry key, one with the defaults and a
/// timeout, one retrying only connect failures, and one with neither.
const RETRIES: &str = r#"
[[listener]]
address = "127.0.0.1:8080"

[upstreams.users]
endpoints = [{ address = "10.0.0.1:80" }, { address = "10.0.0.2:80" }, { address = "10.0.0.3:80" }]

[upstreams.solo]
endpoints = [{ address = "10.0.0.9:80" }]

[[route]]
name = "users"
path_prefix = "/users"
upstream = "users"
timeout_ms = 5000

[route.retry]
attempts = 2
on_statuses = [503, 502]
budget_percent = 50

[[route]]
name = "defaults"
path_prefix = "/d"
upstream = "users"
retry = {}

[[route]]
name = "connect-only"
path_prefix = "/c"
upstream = "users"
timeout_ms = 1

[route.retry]
on_statuses = []

[[route]]
name = "solo"
path_prefix = "/"
upstream = "solo"
timeout_ms = 3600000
"#;

#[test]
fn retries_and_timeouts_become_the_expected_model() {
    let config = match load_str(RETRIES, "<retries>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let retries: Vec<Option<Retry>> = config.routes.iter().map(|r| r.retry.clone()).collect();
    assert_eq!(
        retries,
        [
            Some(Retry {
                attempts: 2,
                on_statuses: vec![503, 502],
                budget_percent: 50,
            }),
            Some(Retry {
                attempts: defaults::RETRY_ATTEMPTS,
                on_statuses: defaults::RETRY_ON_STATUSES.to_vec(),
                budget_percent: defaults::RETRY_BUDGET_PERCENT,
            }),
            Some(Retry {
                attempts: 1,
                on_statuses: vec![],
                budget_percent: 20,
            }),
            None,
        ]
    );
    let timeouts: Vec<Option<u64>> = config.routes.iter().map(|r| r.timeout_ms).collect();
    assert_eq!(timeouts, [Some(5000), None, Some(1), Some(3_600_000)]);

    let summary = config.summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[3..8],
        [
            "routes (4):",
            "  users host=* methods=any path_prefix=/users upstream=users \
             retry=2x on 503,502 budget 50% timeout_ms=5000",
            "  defaults host=* methods=any path_prefix=/d upstream=users \
             retry=1x on 502,503,504 budget 20%",
            "  connect-only host=* methods=any path_prefix=/c upstream=users \
             retry=1x on connect failures only budget 20% timeout_ms=1",
            "  solo host=* methods=any path_prefix=/ upstream=solo timeout_ms=3600000",
        ]
    );
}

const AGGREGATES: &str = r#"
[[listener]]
address = "127.0.0.1:8080"

[upstreams.orders]
endpoints = [{ address = "10.0.0.2:80" }]

[upstreams.users]
endpoints = [{ address = "10.0.0.1:80" }]

[upstreams.billing]
endpoints = [{ address = "10.0.0.3:80" }]

[[route]]
name = "dashboard"
path = "/v1/orgs/{org}/users/{id}/dashboard"

[[route.aggregate]]
key = "profile"
upstream = "users"
path = "/orgs/{org}/users/{id}"

[[route.aggregate]]
key = "recent.orders"
upstream = "orders"
path = "/orders?user={id}&org={org}&limit=5"
required = false
timeout_ms = 250

[[route.aggregate]]
key = "invoice_total-v2"
upstream = "billing"
path = "/totals/{id}.json"
timeout_ms = 60000

[[route]]
name = "status"
methods = ["head", "GET"]
path_prefix = "/status"
upstream = "billing"
aggregate = [
    { key = "users", upstream = "users", path = "/healthz" },
    { key = "orders", upstream = "orders", path = "/healthz", required = false },
]

[[route]]
name = "plain"
path_prefix = "/"
upstream = "users"
"#;

#[test]
fn aggregates_become_the_expected_model() {
    let config = match load_str(AGGREGATES, "<aggregates>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    // Upstreams are sorted by name: billing 0, orders 1, users 2.
    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["billing", "orders", "users"]);
    let literal = |s: &str| TemplatePart::Literal(s.to_owned());
    // The pattern's parameters in order: org is 0, id is 1 (literal segments do not count).
    let org = TemplatePart::Var(Variable::Param(0));
    let id = TemplatePart::Var(Variable::Param(1));
    let dashboard = &config.routes[0];
    assert_eq!(
        dashboard.upstream, 2,
        "no upstream: the first part's (users)"
    );
    assert!(
        dashboard.methods.is_empty(),
        "no methods: any, as on other routes"
    );
    assert_eq!(
        dashboard.aggregate,
        [
            AggregatePart {
                key: "profile".to_owned(),
                upstream: 2,
                path: vec![
                    literal("/orgs/"),
                    org.clone(),
                    literal("/users/"),
                    id.clone()
                ],
                required: true,
                timeout_ms: defaults::AGGREGATE_TIMEOUT_MS,
            },
            AggregatePart {
                key: "recent.orders".to_owned(),
                upstream: 1,
                path: vec![
                    literal("/orders?user="),
                    id.clone(),
                    literal("&org="),
                    org,
                    literal("&limit=5"),
                ],
                required: false,
                timeout_ms: 250,
            },
            AggregatePart {
                key: "invoice_total-v2".to_owned(),
                upstream: 0,
                path: vec![literal("/totals/"), id, literal(".json")],
                required: true,
                timeout_ms: defaults::AGGREGATE_TIMEOUT_MS_MAX,
            },
        ]
    );
    let status = &config.routes[1];
    assert_eq!(status.upstream, 0, "a written upstream is kept (billing)");
    assert_eq!(status.methods, ["HEAD", "GET"]);
    assert_eq!(
        status.aggregate,
        [
            AggregatePart {
                key: "users".to_owned(),
                upstream: 2,
                path: vec![literal("/healthz")],
                required: true,
                timeout_ms: defaults::AGGREGATE_TIMEOUT_MS,
            },
            AggregatePart {
                key: "orders".to_owned(),
                upstream: 1,
                path: vec![literal("/healthz")],
                required: false,
                timeout_ms: defaults::AGGREGATE_TIMEOUT_MS,
            },
        ]
    );
    assert!(config.routes[2].aggregate.is_empty());

    let summary = config.summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[3..7],
        [
            "routes (3):",
            "  dashboard host=* methods=any path=/v1/orgs/{org}/users/{id}/dashboard \
             upstream=users aggregate=profile:users,recent.orders:orders?,\
             invoice_total-v2:billing",
            "  status host=* methods=HEAD,GET path_prefix=/status upstream=billing \
             aggregate=users:users,orders:orders?",
            "  plain host=* methods=any path_prefix=/ upstream=users",
        ]
    );
}

const JSON_FILTERS: &str = r#"
[[listener]]
address = "127.0.0.1:8080"

[upstreams.users]
endpoints = [{ address = "10.0.0.1:80" }]

[[route]]
name = "private"
path_prefix = "/users"
upstream = "users"

[route.json_filter]
remove = ["internal", "user.ssn", "items.price-cents", "@meta.$ref"]
body_bytes_max = 16777216

[[route]]
name = "public"
path_prefix = "/public"
upstream = "users"
json_filter = { keep = ["id", "name", "items.sku"] }

[[route]]
name = "plain"
path_prefix = "/"
upstream = "users"
"#;

#[test]
fn json_filters_become_the_expected_model() {
    let config = match load_str(JSON_FILTERS, "<json_filters>") {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let path = |p: &[&str]| -> Vec<String> { p.iter().map(|s| (*s).to_owned()).collect() };
    let filters: Vec<Option<JsonFilter>> = config
        .routes
        .iter()
        .map(|r| r.json_filter.clone())
        .collect();
    assert_eq!(
        filters,
        [
            Some(JsonFilter {
                mode: JsonFilterMode::Remove,
                paths: vec![
                    path(&["internal"]),
                    path(&["user", "ssn"]),
                    path(&["items", "price-cents"]),
                    path(&["@meta", "$ref"]),
                ],
                body_bytes_max: defaults::JSON_FILTER_BODY_BYTES_MAX_CEILING,
            }),
            Some(JsonFilter {
                mode: JsonFilterMode::Keep,
                paths: vec![path(&["id"]), path(&["name"]), path(&["items", "sku"])],
                body_bytes_max: defaults::JSON_FILTER_BODY_BYTES_MAX,
            }),
            None,
        ]
    );
    assert_eq!(defaults::JSON_FILTER_BODY_BYTES_MAX, 1024 * 1024);

    let summary = config.summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[3..7],
        [
            "routes (3):",
            "  private host=* methods=any path_prefix=/users upstream=users json_filter=remove:4",
            "  public host=* methods=any path_prefix=/public upstream=users json_filter=keep:3",
            "  plain host=* methods=any path_prefix=/ upstream=users",
        ]
    );
}
