//! `coregate demo`: the gateway on an embedded config, in front of demo services started in
//! this process on loopback (the loadtest crate's fixture origin in its demo mode), so that
//! `curl` works right after the build. Also serves HTTPS, with a CA and a certificate for
//! `localhost` made at start (the loadtest crate's test certificates) and written beside the
//! demo's config file. Prints what to try.

use std::process::ExitCode;

use coregate_engine::policy::jwt::base64url_encode;
use coregate_loadtest::origin::{Mode, Origin, OriginConfig};
use coregate_loadtest::tls::TestCertificates;

/// Where the demo gateway listens unless `--listen` says otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Where the demo gateway serves HTTPS unless `--https` says otherwise.
const DEFAULT_HTTPS: &str = "127.0.0.1:8443";

/// `coregate demo [--listen ADDR] [--https ADDR] [--admin ADDR]`.
pub struct Options {
    listen: String,
    https: String,
    /// `None`: the config's default admin address, which only warns when taken.
    admin: Option<String>,
}

impl Options {
    /// Parses the arguments after `demo`.
    pub fn parse(args: &[&str]) -> Result<Options, String> {
        let mut options = Options {
            listen: DEFAULT_LISTEN.to_owned(),
            https: DEFAULT_HTTPS.to_owned(),
            admin: None,
        };
        let mut args = args.iter();
        while let Some(&flag) = args.next() {
            let value = args
                .next()
                .map(|v| (*v).to_owned())
                .ok_or_else(|| format!("demo: {flag} needs an address"))?;
            match flag {
                "--listen" => options.listen = value,
                "--https" => options.https = value,
                "--admin" => options.admin = Some(value),
                _ => return Err(format!("demo: unknown option {flag}")),
            }
        }
        Ok(options)
    }
}

/// The HS256 secret of the demo's JWT route. A demo value: anyone reading this can mint
/// tokens for it.
const DEMO_JWT_SECRET: &str = "coregate-demo-secret-do-not-use-in-production";
/// The API key of the demo's partner route (its SHA-256 goes in the config).
const DEMO_API_KEY: &str = "demo-partner-key";
/// How long the sample token printed at start stays valid.
const DEMO_TOKEN_SECONDS: u64 = 24 * 3600;

/// The demo config; `{listen}`, `{https}`, `{users}`, `{orders}`, `{products}`, `{secret}`
/// and `{key_sha256}` are filled in at start.
const DEMO_CONFIG: &str = r#"
# The embedded demo configuration (coregate demo).
[server]
workers = 0

[[listener]]
name = "demo"
address = "{listen}"

# HTTPS with the certificate made at start; its CA is printed (curl --cacert).
[[listener]]
name = "demo-https"
address = "{https}"
[listener.tls]
[[listener.tls.certificate]]
cert_file = "server.pem"
key_file = "server.key"

[upstreams.users]
endpoints = [{ address = "{users}" }]
# Probed by the control thread; see `curl ADMIN/upstreams`.
[upstreams.users.health_check]
path = "/users"
interval_ms = 2000

[upstreams.orders]
endpoints = [{ address = "{orders}" }]
# Probed by the control thread; see `curl ADMIN/upstreams`.
[upstreams.orders.health_check]
path = "/orders"
interval_ms = 2000

[upstreams.products]
endpoints = [{ address = "{products}" }]
# Three failures in a row cut the products service off for 5 s (per worker); meanwhile the
# products route answers from its stale fallback. `curl .../products/fail?seconds=30` makes
# the demo service fail.
[upstreams.products.breaker]
consecutive_failures = 3
cooldown_ms = 5000
# Probed by the control thread; see `curl ADMIN/upstreams`.
[upstreams.products.health_check]
path = "/products"
interval_ms = 2000

[[route]]
name = "users"
path_prefix = "/users"
upstream = "users"
# X-Request-Id passed upstream and returned (off unless a route asks for it).
request_id = true

# Transformation: the upstream sees who called through which route; the client sees it too.
[route.request_headers]
add = { "X-Client-Ip" = "${client_ip}", "X-Gateway-Route" = "${route}" }
[route.response_headers]
add = { "X-Served-By" = "coregate route ${route}" }

[[route]]
name = "orders"
methods = ["GET", "HEAD"]
path_prefix = "/orders"
upstream = "orders"

[[route]]
name = "products"
path_prefix = "/products"
upstream = "products"

# While the products service is cut off, its last good answers are served, marked stale.
[route.fallback]
stale = true

# Aggregation: one request, three services called at once, one merged JSON answer. The
# products part is optional: when that service fails or stalls the dashboard still answers,
# with products null and listed in errors.
[[route]]
name = "dashboard"
path = "/api/dashboard/{id}"
methods = ["GET"]

[[route.aggregate]]
key = "profile"
upstream = "users"
path = "/users/{id}"

[[route.aggregate]]
key = "orders"
upstream = "orders"
path = "/orders"

[[route.aggregate]]
key = "products"
upstream = "products"
path = "/products"
required = false
timeout_ms = 500

# /api/users/1 reaches the users service as /users/1.
[[route]]
name = "api-users"
path_prefix = "/api"
strip_prefix = true
upstream = "users"

# JWT (HS256): /secure/users/1 needs `Authorization: Bearer TOKEN`; the token's `sub` goes
# upstream as X-User-Id.
[auth.jwt.demo-jwt]
algorithms = ["HS256"]
secret = "{secret}"

[[route]]
name = "secure-users"
path_prefix = "/secure/users"
replace_prefix = "/users"
upstream = "users"
auth = "demo-jwt"

# API key: /partner/orders needs `X-Api-Key: demo-partner-key`; the consumer goes upstream
# as X-Consumer and the key does not.
[auth.api_keys.demo-key]
keys = [{ consumer = "demo-partner", sha256 = "{key_sha256}" }]

[[route]]
name = "partner-orders"
path_prefix = "/partner/orders"
replace_prefix = "/orders"
upstream = "orders"
auth = "demo-key"

# Rate limit: /limited/products admits 2 requests a second per client IP (burst 3).
[rate_limits.demo-slow]
rate_per_second = 2
burst = 3

[[route]]
name = "limited-products"
path_prefix = "/limited/products"
replace_prefix = "/products"
upstream = "products"
rate_limit = "demo-slow"
"#;

pub fn run(options: &Options) -> ExitCode {
    let listen = options.listen.as_str();
    let signals = match crate::block_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut origins = Vec::new();
    for name in ["users", "orders", "products"] {
        match Origin::start(OriginConfig::new(name, Mode::Demo)) {
            Ok(o) => origins.push(o),
            Err(e) => {
                eprintln!("error: cannot start the demo {name} service: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut text = DEMO_CONFIG
        .replace("{listen}", listen)
        .replace("{https}", &options.https)
        .replace("{users}", &origins[0].addr().to_string())
        .replace("{orders}", &origins[1].addr().to_string())
        .replace("{products}", &origins[2].addr().to_string())
        .replace("{secret}", DEMO_JWT_SECRET)
        .replace("{key_sha256}", &sha256_hex(DEMO_API_KEY));
    // Without --admin the default address is used, which only warns when taken.
    if let Some(admin) = &options.admin {
        text.push_str(&format!("\n[admin]\naddress = \"{admin}\"\n"));
    }
    // The config goes to a file so that editing it (or SIGHUP) reloads it, as in production;
    // the certificates go beside it, where the config names them.
    let dir = DemoDir(std::env::temp_dir().join(format!("coregate-demo-{}", std::process::id())));
    let made = std::fs::create_dir_all(&dir.0).and_then(|()| {
        let names = ["localhost", "127.0.0.1", "::1"];
        TestCertificates::generate(&names)?.write(&dir.0)
    });
    let certificates = match made {
        Ok(files) => files,
        Err(e) => {
            eprintln!(
                "error: cannot make the demo certificates in {}: {e}",
                dir.0.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let file = dir.0.join("coregate-demo.toml");
    if let Err(e) = std::fs::write(&file, &text) {
        eprintln!(
            "error: cannot write the demo config {}: {e}",
            file.display()
        );
        return ExitCode::FAILURE;
    }
    let config = match coregate_config::load_file(&file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: demo config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match crate::serve_started(config) {
        Ok(g) => g,
        Err(code) => return code,
    };
    println!(
        "demo services: users {}, orders {}, products {}",
        origins[0].addr(),
        origins[1].addr(),
        origins[2].addr()
    );
    println!("try:");
    for path in [
        "/users/1",
        "/users",
        "/orders/1",
        "/products",
        "/api/users/2",
    ] {
        println!("  curl -i http://{listen}{path}");
    }
    let ca = certificates.ca_file.display();
    let https_port = options.https.rsplit(':').next().unwrap_or("8443");
    println!("demo CA certificate: {ca}");
    println!("  curl -i --cacert {ca} https://localhost:{https_port}/users/1   # HTTPS, terminated by coregate");
    println!(
        "  curl -i -X POST http://{listen}/orders    # 405: the orders route allows GET and HEAD"
    );
    println!("  curl -i http://{listen}/nowhere           # 404 JSON");
    let token = demo_token("demo-user");
    println!("authentication and rate limiting (demo HS256 secret: {DEMO_JWT_SECRET}):");
    println!("  TOKEN={token}");
    println!("  curl -i -H \"Authorization: Bearer $TOKEN\" http://{listen}/secure/users/1   # 200, X-User-Id: demo-user upstream");
    println!("  curl -i http://{listen}/secure/users/1                                  # 401 without a token");
    println!("  curl -i -H 'X-Api-Key: {DEMO_API_KEY}' http://{listen}/partner/orders     # 200 with the API key, 401 without");
    println!("  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}}\\n' http://{listen}/limited/products; done   # 429 after 3");
    println!("aggregation:");
    println!("  curl -i http://{listen}/api/dashboard/1   # users, orders and products merged; X-Coregate-Complete");
    println!("transformation, circuit breaker and stale fallback:");
    println!("  curl -i http://{listen}/users/1        # X-Served-By and X-Request-Id added by the route");
    println!("  curl -i http://{listen}/products/1     # a good answer, remembered");
    println!("  curl http://{listen}/products/fail?seconds=30   # the products service now fails");
    println!("  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}}\\n' http://{listen}/products/1; done   # 503s, then the breaker opens");
    println!(
        "  curl -i http://{listen}/products/1     # 200 with X-Coregate-Stale: 1 while it is open"
    );
    if let Some(admin) = gateway.admin_addr() {
        println!("  curl http://{admin}/metrics       # Prometheus metrics");
        println!("  curl http://{admin}/upstreams     # endpoints and their health checks");
        println!("  curl http://{admin}/config        # version and hash of the config");
    }
    let pid = std::process::id();
    println!(
        "reload: edit {} (it is reloaded when it changes) or `kill -HUP {pid}`",
        file.display()
    );
    println!("stop: Ctrl-C or `kill -TERM {pid}` (drains in-flight requests, exits 0)");
    let code = crate::finish(gateway, signals);
    drop(origins);
    code
}

/// Lower-case hex SHA-256.
fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An HS256 token for `sub` signed with the demo secret, valid for a day.
fn demo_token(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + DEMO_TOKEN_SECONDS;
    let header = base64url_encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = base64url_encode(format!(r#"{{"sub":"{sub}","exp":{exp}}}"#).as_bytes());
    let signing_input = format!("{header}.{claims}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, DEMO_JWT_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", base64url_encode(tag.as_ref()))
}

/// The demo's folder (config and certificates), removed when the demo ends.
struct DemoDir(std::path::PathBuf);

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
