//! Loading from files: the annotated example loads (and sets every schema key, counting its
//! commented-out TLS blocks, which load too once enabled), and unreadable or non-UTF-8 files
//! give located errors.

use std::path::{Path, PathBuf};

use coregate_config::{
    defaults, load_file, AggregatePart, BreakerSettings, HeaderEdits, JsonFilter, JsonFilterMode,
    JwtKeys, Retry, Rewrite, TemplatePart, TlsVersion, Variable,
};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml")
}

/// The example with its commented-out blocks enabled: a `#` directly followed by config text
/// (not a space, `#` or `-`) is removed, as the example tells an operator to do. Prose comments
/// (`# ...`) and the section rules (`# ---`) stay.
fn example_uncommented() -> String {
    let text = std::fs::read_to_string(example()).expect("example readable");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let enabled = line
            .strip_prefix('#')
            .filter(|rest| !rest.is_empty() && !rest.starts_with([' ', '#', '-']));
        out.push_str(enabled.unwrap_or(line));
        out.push('\n');
    }
    out
}

/// A file in the temp dir, unique to this test process, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("coregate-config-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_annotated_example_loads() {
    let path = example();
    let config = match load_file(&path) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(config.source.path.as_deref(), Some(path.as_path()));
    assert_eq!(config.source.display_name, path.display().to_string());
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(config.upstreams.len(), 5);
    assert_eq!(config.routes.len(), 8);
    assert_eq!(config.routes[7].name, "route-7");
    let summary = config.summary();
    assert!(
        summary.contains("sessions balancer=consistent_hash(header:x-session-id)"),
        "{summary}"
    );
    // Key files are resolved against the example's directory, wherever the test runs.
    let names: Vec<&str> = config.jwt.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["batch", "console", "internal", "users"]);
    let keys = path.parent().expect("examples dir").join("keys");
    match &config.jwt[1].keys {
        JwtKeys::PublicKeyPem { path, pem } => {
            assert_eq!(path, &keys.join("ec-p256-public.pem"));
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        }
        other => panic!("console keys: {other:?}"),
    }
    match &config.jwt[3].keys {
        JwtKeys::Jwks { path, json } => {
            assert_eq!(path, &keys.join("jwks.json"));
            assert!(json.contains("\"kty\": \"EC\""), "{json}");
        }
        other => panic!("users keys: {other:?}"),
    }
    assert_eq!(
        config.jwt[0].keys,
        JwtKeys::Secret(
            b"example-only-hs512-secret-do-not-use-in-production-0123456789abcdef".to_vec()
        ),
        "secret_file, without its line break"
    );
    assert_eq!(config.api_keys.len(), 1);
    assert_eq!(config.rate_limits.len(), 3);
    assert_eq!(
        config.identity_headers,
        ["x-consumer", "x-tenant", "x-user-id"]
    );
    assert!(
        summary.contains(
            "  search host=api.example.com methods=any path_prefix=/search \
             rewrite=strip_prefix upstream=search auth=partners rate_limit=per_partner\n"
        ),
        "{summary}"
    );
    // The users upstream has a breaker written out with every default; the first route a
    // stale and static fallback.
    let users = config
        .upstreams
        .iter()
        .find(|u| u.name == "users")
        .expect("users upstream");
    assert_eq!(
        users.breaker,
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
    let with_breaker = config.upstreams.iter().filter(|u| u.breaker.is_some());
    assert_eq!(with_breaker.count(), 1);
    assert_eq!(config.routes[0].name, "user-by-id");
    assert!(config.routes[0].fallback.stale);
    let response = config.routes[0]
        .fallback
        .static_response
        .clone()
        .expect("static fallback");
    assert_eq!(
        (response.status, response.content_type.as_str()),
        (503, defaults::FALLBACK_CONTENT_TYPE)
    );
    assert!(
        response
            .body
            .starts_with(r#"{"error": "users are unavailable"#),
        "{}",
        response.body
    );
    assert!(
        config.routes[1..]
            .iter()
            .all(|r| !r.fallback.stale && r.fallback.static_response.is_none()),
        "only the first route has a fallback"
    );
    assert!(
        summary.contains(" breaker=5 in a row or 50% of ≥20 in 10000ms, cool-down 1000..60000ms"),
        "{summary}"
    );
    assert!(
        summary.contains(
            " rate_limit=per_tenant fallback=stale,static 503 \
             retry=1x on 502,503,504 budget 20% timeout_ms=5000\n"
        ),
        "{summary}"
    );
    // The same route retries with every default written out, and has a route timeout; no
    // other route has either.
    assert_eq!(
        config.routes[0].retry,
        Some(Retry {
            attempts: defaults::RETRY_ATTEMPTS,
            on_statuses: defaults::RETRY_ON_STATUSES.to_vec(),
            budget_percent: defaults::RETRY_BUDGET_PERCENT,
        })
    );
    assert!(config.upstreams[config.routes[0].upstream].endpoints.len() > 1);
    assert_eq!(config.routes[0].timeout_ms, Some(5000));
    assert!(
        config.routes[1..]
            .iter()
            .all(|r| r.retry.is_none() && r.timeout_ms.is_none()),
        "only the first route retries or has a timeout"
    );
    assert!(
        !summary.contains("2c26b46b"),
        "the summary shows a key hash:\n{summary}"
    );
    assert!(
        !summary.contains("example-only"),
        "the summary shows a secret:\n{summary}"
    );
}

#[test]
fn the_example_rewrites_and_edits_headers() {
    let config = match load_file(&example()) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let route = config
        .routes
        .iter()
        .find(|r| r.name == "org-user")
        .expect("org-user route");
    let literal = |s: &str| TemplatePart::Literal(s.to_owned());
    let var = TemplatePart::Var;
    // path = "/v1/orgs/{org}/users/{id}": org is parameter 0, id parameter 1. The `users`
    // verifier maps sub and tenant, sorted: sub is claim 0, tenant claim 1.
    assert_eq!(
        route.rewrite,
        Rewrite::Template(vec![literal("/users/"), var(Variable::Param(1))])
    );
    assert!(route.request_id);
    assert_eq!(
        route.request_headers,
        HeaderEdits {
            remove: vec!["x-debug".to_owned(), "x-internal-token".to_owned()],
            rename: vec![("x-trace".to_owned(), "X-Trace-Id".to_owned())],
            set: vec![
                ("X-Env".to_owned(), vec![literal("prod")]),
                ("X-Org".to_owned(), vec![var(Variable::Param(0))]),
            ],
            add: vec![
                ("X-Client-Ip".to_owned(), vec![var(Variable::ClientIp)]),
                (
                    "X-Via-Route".to_owned(),
                    vec![var(Variable::Route), literal("/"), var(Variable::Claim(1))],
                ),
            ],
        }
    );
    assert_eq!(
        route.response_headers.set[1],
        ("X-Price-Unit".to_owned(), vec![literal("US$")])
    );
    assert_eq!(
        route.response_headers.add,
        vec![
            ("X-Request-Ref".to_owned(), vec![var(Variable::RequestId)]),
            (
                "X-User-Ref".to_owned(),
                vec![
                    var(Variable::Claim(0)),
                    literal(":"),
                    var(Variable::Param(1)),
                ],
            ),
        ]
    );
    let summary = config.summary();
    assert!(
        summary.contains(
            "  org-user host=api.example.com methods=GET path=/v1/orgs/{org}/users/{id} \
             rewrite=template:/users/{id} upstream=users auth=users request_headers=7 edits \
             response_headers=7 edits json_filter=keep:4 request_id=on\n"
        ),
        "{summary}"
    );
}

#[test]
fn the_example_filters_json_on_one_route() {
    let config = match load_file(&example()) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let path = |p: &[&str]| -> Vec<String> { p.iter().map(|s| (*s).to_owned()).collect() };
    for route in &config.routes {
        if route.name == "org-user" {
            assert_eq!(
                route.json_filter,
                Some(JsonFilter {
                    mode: JsonFilterMode::Keep,
                    paths: vec![
                        path(&["id"]),
                        path(&["name"]),
                        path(&["email"]),
                        path(&["address", "city"]),
                    ],
                    body_bytes_max: defaults::JSON_FILTER_BODY_BYTES_MAX,
                })
            );
        } else {
            assert_eq!(route.json_filter, None, "{}", route.name);
        }
    }
}

#[test]
fn the_example_aggregates_a_dashboard() {
    let config = match load_file(&example()) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let route = config
        .routes
        .iter()
        .find(|r| r.name == "dashboard")
        .expect("dashboard route");
    let upstream = |name: &str| {
        config
            .upstreams
            .iter()
            .position(|u| u.name == name)
            .unwrap_or_else(|| panic!("no upstream {name}"))
    };
    let literal = |s: &str| TemplatePart::Literal(s.to_owned());
    let id = TemplatePart::Var(Variable::Param(0));
    // No `upstream` key: the route's upstream is its first part's.
    assert_eq!(route.upstream, upstream("users"));
    assert_eq!(route.rewrite, Rewrite::None);
    assert_eq!(route.retry, None);
    assert_eq!(
        route.aggregate,
        [
            AggregatePart {
                key: "profile".to_owned(),
                upstream: upstream("users"),
                path: vec![literal("/users/"), id.clone()],
                required: true,
                timeout_ms: defaults::AGGREGATE_TIMEOUT_MS,
            },
            AggregatePart {
                key: "orders".to_owned(),
                upstream: upstream("orders"),
                path: vec![literal("/orders?user="), id.clone(), literal("&limit=10")],
                required: defaults::AGGREGATE_REQUIRED,
                timeout_ms: defaults::AGGREGATE_TIMEOUT_MS,
            },
            AggregatePart {
                key: "recommendations".to_owned(),
                upstream: upstream("search"),
                path: vec![literal("/recommendations/"), id],
                required: false,
                timeout_ms: 500,
            },
        ]
    );
    assert!(
        config
            .routes
            .iter()
            .filter(|r| r.name != "dashboard")
            .all(|r| r.aggregate.is_empty()),
        "only the dashboard aggregates"
    );
    let summary = config.summary();
    assert!(
        summary.contains(
            "  dashboard host=api.example.com methods=GET,HEAD path=/api/dashboard/{id} \
             upstream=users aggregate=profile:users,orders:orders,recommendations:search? \
             auth=users\n"
        ),
        "{summary}"
    );
}

#[test]
fn the_example_sets_every_schema_key() {
    // Every field the schema declares (`pub NAME: TYPE,`) is written in the example (some in
    // its commented-out blocks, which `the_examples_commented_out_tls_blocks_load` keeps
    // valid), so the example stays a complete reference as fields are added.
    let text = example_uncommented();
    let keys: Vec<&str> = include_str!("../src/schema.rs")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub "))
        .filter_map(|rest| rest.split_once(':').map(|(name, _)| name))
        .filter(|name| !name.contains(' '))
        .map(|name| match name {
            // Renamed in TOML to read naturally as [[listener]] / [[route]] tables.
            "listeners" => "listener",
            "routes" => "route",
            "certificates" => "certificate",
            other => other,
        })
        .collect();
    assert!(keys.len() > 25, "schema scan found only {keys:?}");
    for key in keys {
        let written = text.lines().any(|raw| {
            let line = raw.trim_start_matches([' ', '[']);
            [format!("{key} ="), format!("{key}."), format!("{key}]")]
                .iter()
                .any(|start| line.starts_with(start.as_str()))
                || line.contains(&format!("{{ {key} ="))
                || line.contains(&format!(", {key} ="))
                // A nested table: [upstreams.users.health_check].
                || line.contains(&format!(".{key}]"))
                // A table inside a header: `jwt` in [auth.jwt.users].
                || (raw.starts_with('[') && line.split(['.', ']']).any(|part| part == key))
        });
        assert!(written, "the example does not set `{key}`");
    }
}

#[test]
fn an_unreadable_file_has_no_line() {
    let path = Path::new("/nonexistent/coregate/gateway.toml");
    let error = match load_file(path) {
        Ok(_) => panic!("loaded a missing file"),
        Err(error) => error,
    };
    assert_eq!((error.line, error.column), (0, 0));
    assert_eq!(error.file, path.display().to_string());
    assert!(
        error.message.starts_with("cannot read the config file: "),
        "{error}"
    );
    assert!(error
        .to_string()
        .starts_with("/nonexistent/coregate/gateway.toml: cannot read"));
}

#[test]
fn a_file_that_is_not_utf8_is_located() {
    let file = TempFile::new("latin1.toml", b"[server]\nworkers = 1 # caf\xe9\n");
    let error = match load_file(&file.0) {
        Ok(_) => panic!("loaded invalid UTF-8"),
        Err(error) => error,
    };
    assert_eq!((error.line, error.column), (2, 18), "{error}");
}

#[test]
fn file_errors_name_the_path_and_line() {
    let file = TempFile::new("broken.toml", b"[[listener]]\naddress = \"nope\"\n");
    let error = match load_file(&file.0) {
        Ok(_) => panic!("loaded a bad address"),
        Err(error) => error,
    };
    let first_line = error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        first_line,
        format!(
            "{}:2:11: listener[0].address: `nope` is not an IP:port address",
            file.0.display()
        )
    );
}

/// A directory in the temp dir, unique to this test process and `name`, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("coregate-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(path.join("keys")).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const KEYS_CONFIG: &str = r#"
[[listener]]
address = "127.0.0.1:8080"

[upstreams.app]
endpoints = [{ address = "10.0.0.1:80" }]

[auth.jwt.hmac]
algorithms = ["HS256"]
secret_file = "keys/secret"

[auth.jwt.jwks]
algorithms = ["ES256"]
jwks_file = "keys/../keys/jwks.json"

[[route]]
path_prefix = "/"
upstream = "app"
auth = "jwks"
"#;

#[test]
fn key_files_are_resolved_against_the_config_files_directory() {
    let dir = TempDir::new("relative-keys");
    let secret = "0123456789abcdef0123456789abcdef";
    std::fs::write(dir.0.join("keys/secret"), format!("{secret}\n")).expect("write secret");
    let jwks =
        std::fs::read_to_string(example().with_file_name("keys/jwks.json")).expect("example jwks");
    std::fs::write(dir.0.join("keys/jwks.json"), &jwks).expect("write jwks");
    let path = dir.0.join("gateway.toml");
    std::fs::write(&path, KEYS_CONFIG).expect("write config");

    let config = match load_file(&path) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(
        config.jwt[0].keys,
        JwtKeys::Secret(secret.as_bytes().to_vec())
    );
    assert_eq!(
        config.jwt[1].keys,
        JwtKeys::Jwks {
            path: dir.0.join("keys/../keys/jwks.json"),
            json: jwks,
        }
    );

    // The same text without a file resolves against the current directory (the crate root
    // under `cargo test`), where there is no keys/secret.
    let error = match coregate_config::load_str(KEYS_CONFIG, "<text>") {
        Ok(_) => panic!("found keys/secret in the current directory"),
        Err(error) => error,
    };
    assert_eq!(error.field, "auth.jwt.hmac.secret_file");
    assert!(
        error.message.starts_with("cannot read keys/secret: "),
        "{error}"
    );
}

#[test]
fn a_missing_key_file_names_the_resolved_path_and_its_key() {
    let dir = TempDir::new("missing-keys");
    let path = dir.0.join("gateway.toml");
    std::fs::write(&path, KEYS_CONFIG).expect("write config");
    let error = match load_file(&path) {
        Ok(_) => panic!("loaded without key files"),
        Err(error) => error,
    };
    let line = 1 + KEYS_CONFIG[..KEYS_CONFIG.find("\"keys/secret\"").unwrap_or(0)]
        .matches('\n')
        .count();
    assert_eq!(
        error.to_string().lines().next().unwrap_or_default(),
        format!(
            "{}:{line}:15: auth.jwt.hmac.secret_file: cannot read {}: No such file or \
             directory (os error 2)",
            path.display(),
            dir.0.join("keys/secret").display()
        )
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("a relative path is resolved against the config file's directory")
    );
}

#[test]
fn the_examples_commented_out_tls_blocks_load() {
    let dir = TempDir::new("example-tls");
    let examples = example().with_file_name("");
    for key in ["jwks.json", "ec-p256-public.pem", "example-hs512.secret"] {
        std::fs::copy(
            examples.join("keys").join(key),
            dir.0.join("keys").join(key),
        )
        .expect("copy example key");
    }
    // Fake PEM: the config crate reads the blocks' labels, the engine parses the DER.
    let cert = "-----BEGIN CERTIFICATE-----\nMIIBZmFrZQ==\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIGHZmFrZQ==\n-----END PRIVATE KEY-----\n";
    std::fs::create_dir_all(dir.0.join("certs")).expect("certs dir");
    for (file, text) in [
        ("api.pem", cert),
        ("api.key", key),
        ("static.pem", cert),
        ("static.key", key),
        ("internal-ca.pem", cert),
    ] {
        std::fs::write(dir.0.join("certs").join(file), text).expect("write pem");
    }
    let path = dir.0.join("gateway.toml");
    std::fs::write(&path, example_uncommented()).expect("write config");
    let config = match load_file(&path) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["public", "[::1]:8081", "https", "http-redirect"]);
    let tls = config.listeners[2].tls.as_ref().expect("https has tls");
    assert_eq!(tls.versions, [TlsVersion::Tls12, TlsVersion::Tls13]);
    assert!(tls.session_tickets);
    assert_eq!(tls.handshake_timeout_ms, defaults::TLS_HANDSHAKE_TIMEOUT_MS);
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.default_certificate, 0);
    assert_eq!(tls.certificates[0].cert_path, dir.0.join("certs/api.pem"));
    assert_eq!(tls.certificates[0].key_pem, key.as_bytes());
    assert_eq!(
        tls.certificates[0].names,
        ["api.example.com", "*.api.example.com"]
    );
    assert!(tls.certificates[1].names.is_empty());
    let redirect = config.listeners[3]
        .redirect_https
        .as_ref()
        .expect("http-redirect redirects");
    assert_eq!(
        (redirect.port, redirect.status),
        (8443, defaults::REDIRECT_HTTPS_STATUS)
    );
    assert_eq!(redirect.except_prefixes, ["/.well-known/acme-challenge/"]);
    let billing = config
        .upstreams
        .iter()
        .find(|u| u.name == "billing")
        .expect("billing upstream");
    let upstream_tls = billing.tls.as_ref().expect("billing has tls");
    assert_eq!(
        upstream_tls.server_name.as_deref(),
        Some("billing.internal")
    );
    assert_eq!(
        upstream_tls.ca,
        Some((
            dir.0.join("certs/internal-ca.pem"),
            cert.as_bytes().to_vec()
        ))
    );
    // The commented-out blocks are all there is to TLS in the example.
    let plain = load_file(&example()).expect("example loads");
    assert!(plain
        .listeners
        .iter()
        .all(|l| l.tls.is_none() && l.redirect_https.is_none()));
    assert!(plain.upstreams.iter().all(|u| u.tls.is_none()));
}
