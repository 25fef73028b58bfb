//! JSON response filtering on the wire: listed fields removed (or only listed fields kept)
//! with the Content-Length fixed up, and a body over the bound passed unchanged and counted.

mod common;

use common::*;

fn config(origin: std::net::SocketAddr, filter: &str) -> String {
    format!(
        r#"{}
[[route]]
name = "filtered"
path_prefix = "/"
upstream = "o"

[route.json_filter]
{filter}
{ADMIN_TOML}"#,
        one_upstream_config(origin)
    )
}

#[test]
fn listed_fields_are_removed() {
    let o = origin("o", Mode::Json);
    let (gw, _) =
        start_gateway_with_admin(&config(o.addr(), "remove = [\"headers\", \"version\"]"));
    let r = gw.get("/x");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert!(
        v.get("headers").is_none() && v.get("version").is_none(),
        "{v}"
    );
    assert_eq!(v["origin"], "o");
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
}

#[test]
fn only_listed_fields_are_kept() {
    let o = origin("o", Mode::Json);
    let (gw, _) = start_gateway_with_admin(&config(o.addr(), "keep = [\"origin\", \"target\"]"));
    let v = gw.get("/y?z=1").json();
    assert_eq!(v, serde_json::json!({"origin": "o", "target": "/y?z=1"}));
}

#[test]
fn a_body_over_the_bound_passes_unchanged_and_is_counted() {
    let o = origin("o", Mode::Json);
    let (gw, admin) = start_gateway_with_admin(&config(
        o.addr(),
        "remove = [\"headers\"]\nbody_bytes_max = 16",
    ));
    let v = gw.get("/x").json();
    assert!(v.get("headers").is_some(), "a large body was filtered");
    assert!(eventually(std::time::Duration::from_secs(3), || {
        metric(admin, "coregate_json_filter_skipped_total") == Some(1.0)
    }));
}
