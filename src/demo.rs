//! `coregate demo`: the gateway on an embedded config, in front of demo services started in
//! this process on loopback (the loadtest crate's fixture origin in its demo mode), so that
//! `curl` works right after the build. Prints what to try.

use std::process::ExitCode;

use coregate_loadtest::origin::{Mode, Origin, OriginConfig};

/// Where the demo gateway listens unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The demo config; `{listen}`, `{users}`, `{orders}`, `{products}` are filled in at start.
const DEMO_CONFIG: &str = r#"
# The embedded demo configuration (coregate demo).
[server]
workers = 0

[[listener]]
name = "demo"
address = "{listen}"

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
# Probed by the control thread; see `curl ADMIN/upstreams`.
[upstreams.products.health_check]
path = "/products"
interval_ms = 2000

[[route]]
name = "users"
path_prefix = "/users"
upstream = "users"

[[route]]
name = "orders"
methods = ["GET", "HEAD"]
path_prefix = "/orders"
upstream = "orders"

[[route]]
name = "products"
path_prefix = "/products"
upstream = "products"

# /api/users/1 reaches the users service as /users/1.
[[route]]
name = "api-users"
path_prefix = "/api"
strip_prefix = true
upstream = "users"
"#;

pub fn run(listen: &str, admin: Option<&str>) -> ExitCode {
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
        .replace("{users}", &origins[0].addr().to_string())
        .replace("{orders}", &origins[1].addr().to_string())
        .replace("{products}", &origins[2].addr().to_string());
    // Without --admin the default address is used, which only warns when taken.
    if let Some(admin) = admin {
        text.push_str(&format!("\n[admin]\naddress = \"{admin}\"\n"));
    }
    // The config goes to a file so that editing it (or SIGHUP) reloads it, as in production.
    let file =
        DemoFile(std::env::temp_dir().join(format!("coregate-demo-{}.toml", std::process::id())));
    if let Err(e) = std::fs::write(&file.0, &text) {
        eprintln!(
            "error: cannot write the demo config {}: {e}",
            file.0.display()
        );
        return ExitCode::FAILURE;
    }
    let config = match coregate_config::load_file(&file.0) {
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
    println!(
        "  curl -i -X POST http://{listen}/orders    # 405: the orders route allows GET and HEAD"
    );
    println!("  curl -i http://{listen}/nowhere           # 404 JSON");
    if let Some(admin) = gateway.admin_addr() {
        println!("  curl http://{admin}/metrics       # Prometheus metrics");
        println!("  curl http://{admin}/upstreams     # endpoints and their health checks");
        println!("  curl http://{admin}/config        # version and hash of the config");
    }
    let pid = std::process::id();
    println!(
        "reload: edit {} (it is reloaded when it changes) or `kill -HUP {pid}`",
        file.0.display()
    );
    println!("stop: Ctrl-C or `kill -TERM {pid}` (drains in-flight requests, exits 0)");
    let code = crate::finish(gateway, signals);
    drop(origins);
    code
}

/// The demo's config file, removed when the demo ends.
struct DemoFile(std::path::PathBuf);

impl Drop for DemoFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
