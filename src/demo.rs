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

[upstreams.orders]
endpoints = [{ address = "{orders}" }]

[upstreams.products]
endpoints = [{ address = "{products}" }]

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

pub fn run(listen: &str) -> ExitCode {
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
    let text = DEMO_CONFIG
        .replace("{listen}", listen)
        .replace("{users}", &origins[0].addr().to_string())
        .replace("{orders}", &origins[1].addr().to_string())
        .replace("{products}", &origins[2].addr().to_string());
    let config = match coregate_config::load_str(&text, "<demo>") {
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
    gateway.wait();
    drop(origins);
    ExitCode::SUCCESS
}
