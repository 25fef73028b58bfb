//! The Demo mode: three small read-only JSON services (users, orders, products) over a few
//! fixed records, for the gateway's `demo` command and its aggregation examples.
//!
//! Every body is rendered once per process and served by reference; routing a request costs a
//! few string comparisons and allocates nothing. Orders refer to users and products by id, so
//! an aggregation route can join them.
//!
//! A service can be told to fail, to show the gateway's breakers and fallbacks:
//! `GET /{resource}/fail?seconds=N` makes every request for that resource answer 503 for N
//! seconds (at most an hour; `seconds=0` recovers at once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// The answer to a Demo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reply {
    pub status: u16,
    pub body: &'static str,
}

/// One service: its collection and its records by id (1-based).
struct Resource {
    name: &'static str,
    list: String,
    items: Vec<String>,
    not_found: String,
}

struct Catalog {
    index: String,
    resources: [Resource; 3],
    not_found: String,
    method_not_allowed: String,
    failing: String,
    fail_set: String,
}

/// Per resource (catalog order): until when (Unix ms) it answers 503. Process-wide, like the
/// demo's services, which all run in the one `coregate demo` process.
static FAIL_UNTIL_MS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
/// Longest failure a request can ask for, seconds.
const FAIL_SECONDS_MAX: u64 = 3600;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let users = [
            json!({"id": 1, "name": "Ada Lovelace", "email": "ada@example.com"}),
            json!({"id": 2, "name": "Alan Turing", "email": "alan@example.com"}),
            json!({"id": 3, "name": "Grace Hopper", "email": "grace@example.com"}),
        ];
        let orders = [
            json!({"id": 1, "user_id": 1, "items": [
                {"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": 2}
            ], "total_cents": 11300}),
            json!({"id": 2, "user_id": 2, "items": [
                {"product_id": 3, "quantity": 1}
            ], "total_cents": 32900}),
            json!({"id": 3, "user_id": 1, "items": [
                {"product_id": 2, "quantity": 3}
            ], "total_cents": 3600}),
        ];
        let products = [
            json!({"id": 1, "name": "Mechanical keyboard", "price_cents": 8900}),
            json!({"id": 2, "name": "USB-C cable", "price_cents": 1200}),
            json!({"id": 3, "name": "27-inch monitor", "price_cents": 32900}),
        ];
        let resource = |name: &'static str, records: &[Value]| Resource {
            name,
            list: Value::from(records.to_vec()).to_string(),
            items: records.iter().map(Value::to_string).collect(),
            not_found: json!({"error": format!("{} not found", &name[..name.len() - 1])})
                .to_string(),
        };
        Catalog {
            index: json!({"services": ["users", "orders", "products"]}).to_string(),
            resources: [
                resource("users", &users),
                resource("orders", &orders),
                resource("products", &products),
            ],
            not_found: json!({"error": "not found"}).to_string(),
            method_not_allowed: json!({"error": "method not allowed"}).to_string(),
            failing: json!({"error": "this demo service was told to fail"}).to_string(),
            fail_set: json!({"ok": "failure mode set"}).to_string(),
        }
    })
}

/// Routes a request: GET or HEAD on `/`, `/{resource}` or `/{resource}/{id}`.
pub(super) fn route(method: &str, target: &str) -> Reply {
    let catalog = catalog();
    if method != "GET" && method != "HEAD" {
        return Reply {
            status: 405,
            body: &catalog.method_not_allowed,
        };
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path == "/" {
        return Reply {
            status: 200,
            body: &catalog.index,
        };
    }
    let mut segments = path.strip_prefix('/').unwrap_or(path).splitn(2, '/');
    let name = segments.next().unwrap_or_default();
    let id = segments.next();
    let Some(index) = catalog.resources.iter().position(|r| r.name == name) else {
        return Reply {
            status: 404,
            body: &catalog.not_found,
        };
    };
    let resource = &catalog.resources[index];
    if id == Some("fail") {
        let seconds = target
            .split_once("seconds=")
            .and_then(|(_, rest)| rest.split('&').next()?.parse::<u64>().ok())
            .unwrap_or(30)
            .min(FAIL_SECONDS_MAX);
        FAIL_UNTIL_MS[index].store(now_ms() + seconds * 1000, Ordering::Relaxed);
        return Reply {
            status: 200,
            body: &catalog.fail_set,
        };
    }
    if FAIL_UNTIL_MS[index].load(Ordering::Relaxed) > now_ms() {
        return Reply {
            status: 503,
            body: &catalog.failing,
        };
    }
    let Some(id) = id else {
        return Reply {
            status: 200,
            body: &resource.list,
        };
    };
    let item = id
        .parse::<usize>()
        .ok()
        .and_then(|id| id.checked_sub(1))
        .and_then(|index| resource.items.get(index));
    match item {
        Some(body) => Reply { status: 200, body },
        None => Reply {
            status: 404,
            body: &resource.not_found,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(reply: Reply) -> Value {
        serde_json::from_str(reply.body).unwrap()
    }

    #[test]
    fn serves_collections_and_records() {
        let users = route("GET", "/users");
        assert_eq!(users.status, 200);
        assert_eq!(json(users).as_array().unwrap().len(), 3);

        let ada = route("GET", "/users/1?verbose=1");
        assert_eq!(json(ada)["name"], "Ada Lovelace");
        assert_eq!(json(route("HEAD", "/orders/2"))["user_id"], 2);
        assert_eq!(json(route("GET", "/products/3"))["price_cents"], 32900);
        assert_eq!(json(route("GET", "/"))["services"][1], "orders");
    }

    #[test]
    fn unknown_ids_paths_and_methods_are_json_errors() {
        for (method, target, status) in [
            ("GET", "/users/4", 404),
            ("GET", "/users/0", 404),
            ("GET", "/users/x", 404),
            ("GET", "/users/1/orders", 404),
            ("GET", "/nothing", 404),
            ("POST", "/users", 405),
        ] {
            let reply = route(method, target);
            assert_eq!(reply.status, status, "{method} {target}");
            assert!(json(reply)["error"].is_string());
        }
        assert_eq!(json(route("GET", "/users/9"))["error"], "user not found");
    }
}
