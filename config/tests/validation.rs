//! Every load-time rule, through the public API: each broken config must be rejected with the
//! line, column and field of the offending key or value, and a hint.

mod common;

use common::failed_at;
use coregate_config::{
    defaults, load_str, AggregatePart, BreakerSettings, ConfigError, Fallback, HeaderEdits,
    JsonFilter, JsonFilterMode, Retry, Rewrite, Route, StaticResponse, TemplatePart, Variable,
};

const LISTENER: &str = "[[listener]]\naddress = \"127.0.0.1:8080\"\n\n";
const UPSTREAM: &str = "[upstreams.users]\nendpoints = [{ address = \"10.0.0.1:8080\" }]\n\n";
const ROUTE: &str = "[[route]]\npath_prefix = \"/\"\nupstream = \"users\"\n";

/// A valid config with `server` lines first.
fn server(lines: &str) -> String {
    format!("[server]\n{lines}\n{LISTENER}{UPSTREAM}{ROUTE}")
}

/// A valid config with these listener tables instead of the default one.
fn listeners(tables: &str) -> String {
    format!("{tables}\n{UPSTREAM}{ROUTE}")
}

/// A valid config with these upstream tables instead of the default one.
fn upstreams(tables: &str) -> String {
    format!("{LISTENER}{tables}\n{ROUTE}")
}

/// A valid config whose only route has `lines` (plus `upstream = "users"` unless given).
fn route(lines: &str) -> String {
    let upstream = if lines.contains("upstream =") {
        ""
    } else {
        "upstream = \"users\"\n"
    };
    format!("{LISTENER}{UPSTREAM}[[route]]\n{lines}\n{upstream}")
}

/// Loads `text`, which must fail at the start of `needle` with `field`, and a hint.
#[track_caller]
fn fails_at(text: &str, needle: &str, field: &str) -> ConfigError {
    fails_at_nth(text, needle, 0, field)
}

/// As [`fails_at`], at the `nth` (from 0) occurrence of `needle`.
#[track_caller]
fn fails_at_nth(text: &str, needle: &str, nth: usize, field: &str) -> ConfigError {
    failed_at(load_str(text, "t.toml"), text, "t.toml", needle, nth, field)
}

/// Loads `text`, which must fail about `field` with no place in the text (line 0).
#[track_caller]
fn fails_unplaced(text: &str, field: &str) -> ConfigError {
    let error = match load_str(text, "t.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error,
    };
    assert_eq!((error.line, error.field.as_str()), (0, field), "{error}");
    assert!(error.hint.is_some(), "no hint: {error}");
    error
}

#[test]
fn the_fixtures_are_valid() {
    for text in [
        server("workers = 2"),
        listeners(LISTENER),
        upstreams(UPSTREAM),
        route("path_prefix = \"/\""),
    ] {
        if let Err(error) = load_str(&text, "t.toml") {
            panic!("{error}\n{text}");
        }
    }
}

// ----- syntax and schema -----

#[test]
fn syntax_error_has_line_and_column() {
    let text = route("path = \"/x\"\nhost = api.example.com");
    let error = fails_at(&text, "api.example.com", "route[0].host");
    assert!(error.message.starts_with("TOML syntax"), "{error}");
    assert_eq!(
        error.hint.as_deref(),
        Some("text values need double quotes: host = \"api.example.com\"")
    );
}

#[test]
fn unclosed_table_header_is_a_syntax_error() {
    let text = format!("{LISTENER}{UPSTREAM}[[route]\npath = \"/\"\n");
    let error = fails_at(&text, "\npath = \"/\"", "");
    assert!(error.message.contains("unclosed"), "{error}");
}

#[test]
fn duplicate_key_names_the_key() {
    let text = server("workers = 1\nworkers = 2");
    let error = fails_at(&text, "workers = 2", "");
    assert_eq!(error.message, "TOML syntax: duplicate key `workers`");
}

#[test]
fn unknown_key_is_rejected_with_valid_keys() {
    let text = route("path = \"/x\"\nmethod = [\"GET\"]");
    let error = fails_at(&text, "method =", "route[0].method");
    assert!(error.message.contains("unknown field `method`"), "{error}");
    let hint = error.hint.unwrap_or_default();
    assert!(hint.starts_with("did you mean `methods`?"), "{hint}");
    assert!(hint.contains("path_prefix"), "{hint}");
}

#[test]
fn unknown_table_is_rejected() {
    let text = format!("[sever]\nworkers = 1\n{LISTENER}{UPSTREAM}{ROUTE}");
    let error = fails_at(&text, "sever", "sever");
    assert!(error
        .hint
        .unwrap_or_default()
        .contains("did you mean `server`?"));
}

#[test]
fn unknown_key_in_inline_endpoint_is_rejected() {
    let text = upstreams("[upstreams.users]\nendpoints = [{ adress = \"10.0.0.1:80\" }]\n");
    fails_at(&text, "adress", "upstreams.users.endpoints[0].adress");
}

#[test]
fn wrong_type_is_rejected() {
    let text = server("workers = \"4\"");
    let error = fails_at(&text, "\"4\"", "server.workers");
    assert!(error.message.contains("expected usize"), "{error}");
}

#[test]
fn wrong_type_in_array_names_the_element() {
    let text = route("path = \"/x\"\nmethods = [\"GET\", 5]");
    fails_at(&text, "5]", "route[0].methods[1]");
}

#[test]
fn negative_body_bytes_max_is_rejected() {
    let text = server("body_bytes_max = -1");
    fails_at(&text, "-1", "server.body_bytes_max");
}

#[test]
fn unknown_balancer_lists_the_valid_ones() {
    let text = upstreams(
        "[upstreams.users]\nendpoints = [{ address = \"10.0.0.1:80\" }]\nbalancer = \"random\"\n",
    );
    let error = fails_at(&text, "\"random\"", "upstreams.users.balancer");
    assert_eq!(
        error.hint.as_deref(),
        Some("valid values: round_robin, least_outstanding, consistent_hash")
    );
}

#[test]
fn missing_required_field_points_at_its_table() {
    let text = format!("{LISTENER}{UPSTREAM}[[route]]\npath = \"/x\"\n");
    let error = fails_at(&text, "[[route]]", "route[0].upstream");
    assert_eq!(error.message, "missing field `upstream`");
}

#[test]
fn missing_listener_address_points_at_its_table() {
    let text = listeners("[[listener]]\nname = \"x\"\n");
    fails_at(&text, "[[listener]]", "listener[0].address");
}

// ----- server -----

#[test]
fn workers_above_the_ceiling_are_rejected() {
    let text = server("workers = 1025");
    fails_at(&text, "1025", "server.workers");
}

#[test]
fn request_line_bytes_max_is_range_checked() {
    fails_at(
        &server("request_line_bytes_max = 63"),
        "63",
        "server.request_line_bytes_max",
    );
    fails_at(
        &server("request_line_bytes_max = 65537\nheader_bytes_max = 65537"),
        "65537",
        "server.request_line_bytes_max",
    );
    assert!(load_str(&server("request_line_bytes_max = 64"), "t.toml").is_ok());
}

#[test]
fn header_bytes_max_below_request_line_is_rejected_where_written() {
    // header_bytes_max written: point at it.
    fails_at(
        &server("header_bytes_max = 1000"),
        "1000",
        "server.header_bytes_max",
    );
    // Only request_line_bytes_max written (above the default head size): point at it.
    fails_at(
        &server("request_line_bytes_max = 65536"),
        "65536",
        "server.request_line_bytes_max",
    );
}

#[test]
fn header_bytes_max_above_one_mib_is_rejected() {
    let text = server("header_bytes_max = 1048577");
    fails_at(&text, "1048577", "server.header_bytes_max");
    assert!(load_str(&server("header_bytes_max = 1048576"), "t.toml").is_ok());
}

#[test]
fn header_count_max_is_range_checked() {
    fails_at(
        &server("header_count_max = 0"),
        "0",
        "server.header_count_max",
    );
    fails_at(
        &server("header_count_max = 257"),
        "257",
        "server.header_count_max",
    );
    assert!(load_str(&server("header_count_max = 256"), "t.toml").is_ok());
}

#[test]
fn zero_server_timeouts_are_rejected() {
    for key in [
        "header_read_timeout_ms",
        "client_idle_timeout_ms",
        "body_read_timeout_ms",
        "body_timeout_ms",
    ] {
        let text = server(&format!("{key} = 0"));
        fails_at(&text, "0\n", &format!("server.{key}"));
    }
}

#[test]
fn zero_connections_per_worker_is_rejected() {
    let text = server("connections_max_per_worker = 0");
    fails_at(&text, "0\n", "server.connections_max_per_worker");
}

// ----- listeners -----

#[test]
fn a_listener_is_required() {
    let text = format!("{UPSTREAM}{ROUTE}");
    fails_unplaced(&text, "listener");
}

#[test]
fn an_empty_listener_array_is_located() {
    let text = listeners("listener = []\n");
    fails_at(&text, "[]", "listener");
}

#[test]
fn listener_address_must_be_ip_and_port() {
    let text = listeners("[[listener]]\naddress = \"localhost:8080\"\n");
    let error = fails_at(&text, "\"localhost:8080\"", "listener[0].address");
    assert!(error.hint.unwrap_or_default().contains("use IP:port"));
    let text = listeners("[[listener]]\naddress = \"0.0.0.0\"\n");
    fails_at(&text, "\"0.0.0.0\"", "listener[0].address");
}

#[test]
fn listener_port_zero_is_rejected() {
    let text = listeners("[[listener]]\naddress = \"127.0.0.1:0\"\n");
    let error = fails_at(&text, "\"127.0.0.1:0\"", "listener[0].address");
    assert!(error.message.contains("port 0"), "{error}");
}

#[test]
fn listener_addresses_are_unique() {
    let text = listeners(
        "[[listener]]\naddress = \"0.0.0.0:80\"\n[[listener]]\naddress = \"0.0.0.0:80\"\n",
    );
    let error = fails_at_nth(&text, "\"0.0.0.0:80\"", 1, "listener[1].address");
    assert!(error.message.contains("listener[0]"), "{error}");
}

#[test]
fn listener_names_are_checked_and_unique() {
    let text = listeners("[[listener]]\nname = \"\"\naddress = \"0.0.0.0:80\"\n");
    fails_at(&text, "\"\"", "listener[0].name");
    let text = listeners(
        "[[listener]]\nname = \"a\"\naddress = \"0.0.0.0:80\"\n\
         [[listener]]\nname = \"a\"\naddress = \"0.0.0.0:81\"\n",
    );
    fails_at_nth(&text, "\"a\"", 1, "listener[1].name");
}

// ----- upstreams -----

#[test]
fn upstream_names_are_restricted() {
    let text = upstreams("[upstreams.\"a b\"]\nendpoints = [{ address = \"10.0.0.1:80\" }]\n");
    fails_at(&text, "\"a b\"", "upstreams.\"a b\"");
    let text = upstreams("[upstreams.\"\"]\nendpoints = [{ address = \"10.0.0.1:80\" }]\n");
    fails_at(&text, "\"\"]", "upstreams.\"\"");
}

#[test]
fn upstream_needs_an_endpoint() {
    let text = upstreams("[upstreams.users]\nendpoints = []\n");
    fails_at(&text, "[]", "upstreams.users.endpoints");
}

#[test]
fn endpoint_address_must_be_ip_and_port() {
    let text = upstreams(
        "[upstreams.users]\nendpoints = [{ address = \"10.0.0.1:80\" }, { address = \"db:80\" }]\n",
    );
    fails_at(&text, "\"db:80\"", "upstreams.users.endpoints[1].address");
}

#[test]
fn endpoint_addresses_are_unique_in_a_group() {
    let text = upstreams(
        "[upstreams.users]\n\
         endpoints = [{ address = \"10.0.0.1:80\" }, { address = \"10.0.0.1:80\" }]\n",
    );
    fails_at_nth(
        &text,
        "\"10.0.0.1:80\"",
        1,
        "upstreams.users.endpoints[1].address",
    );
}

#[test]
fn endpoint_weight_is_range_checked() {
    for weight in ["0", "1001"] {
        let text = upstreams(&format!(
            "[upstreams.users]\nendpoints = [{{ address = \"10.0.0.1:80\", weight = {weight} }}]\n"
        ));
        fails_at(
            &text,
            &format!("{weight} }}"),
            "upstreams.users.endpoints[0].weight",
        );
    }
}

#[test]
fn consistent_hash_needs_a_hash_key() {
    let text = upstreams(
        "[upstreams.users]\nendpoints = [{ address = \"10.0.0.1:80\" }]\n\
         balancer = \"consistent_hash\"\n",
    );
    fails_at(&text, "\"consistent_hash\"", "upstreams.users.balancer");
}

#[test]
fn hash_key_only_with_consistent_hash() {
    let text = upstreams(
        "[upstreams.users]\nendpoints = [{ address = \"10.0.0.1:80\" }]\n\
         balancer = \"least_outstanding\"\nhash_key = \"client_ip\"\n",
    );
    fails_at(&text, "hash_key", "upstreams.users.hash_key");
}

#[test]
fn hash_key_format_is_checked() {
    for key in ["\"cookie:x\"", "\"header:\"", "\"header:a b\""] {
        let text = upstreams(&format!(
            "[upstreams.users]\nendpoints = [{{ address = \"10.0.0.1:80\" }}]\n\
             balancer = \"consistent_hash\"\nhash_key = {key}\n"
        ));
        fails_at(&text, key, "upstreams.users.hash_key");
    }
}

#[test]
fn zero_upstream_timeouts_are_rejected() {
    for key in [
        "connect_timeout_ms",
        "response_header_timeout_ms",
        "idle_read_timeout_ms",
        "pool_idle_timeout_ms",
    ] {
        let text = upstreams(&format!(
            "[upstreams.users]\nendpoints = [{{ address = \"10.0.0.1:80\" }}]\n{key} = 0\n"
        ));
        fails_at(&text, "0\n", &format!("upstreams.users.{key}"));
    }
}

// ----- routes -----

#[test]
fn a_route_is_required() {
    let text = format!("{LISTENER}{UPSTREAM}");
    fails_unplaced(&text, "route");
}

#[test]
fn route_names_are_unique() {
    let text = format!(
        "{LISTENER}{UPSTREAM}[[route]]\nname = \"a\"\npath = \"/a\"\nupstream = \"users\"\n\
         [[route]]\nname = \"a\"\npath = \"/b\"\nupstream = \"users\"\n"
    );
    fails_at_nth(&text, "\"a\"", 1, "route[1].name");
}

#[test]
fn default_route_names_collide_with_explicit_ones() {
    // route[1] is called route-1 by default; route[0] took that name.
    let text = format!(
        "{LISTENER}{UPSTREAM}[[route]]\nname = \"route-1\"\npath = \"/a\"\nupstream = \"users\"\n\
         [[route]]\npath = \"/b\"\nupstream = \"users\"\n"
    );
    let error = fails_at_nth(&text, "[[route]]", 1, "route[1].name");
    assert!(error
        .hint
        .unwrap_or_default()
        .contains("give this one a name"));
}

#[test]
fn route_name_must_not_be_empty() {
    let text = route("name = \"\"\npath = \"/\"");
    fails_at(&text, "\"\"", "route[0].name");
}

#[test]
fn bad_hosts_are_rejected() {
    for host in [
        "\"\"",
        "\"*\"",
        "\"*.\"",
        "\"a.*.com\"",
        "\"*foo.com\"",
        "\"api.example.com:8080\"",
        "\"bad host\"",
        "\"a..b\"",
        "\"example.com.\"",
        "\"::1\"",
        "\"[::1]:80\"",
        "\"[nope]\"",
    ] {
        let text = route(&format!("path = \"/\"\nhost = {host}"));
        fails_at(&text, host, "route[0].host");
    }
}

#[test]
fn host_with_port_gets_a_hint_without_it() {
    let text = route("path = \"/\"\nhost = \"API.example.com:8080\"");
    let error = fails_at(&text, "\"API", "route[0].host");
    assert_eq!(
        error.hint.as_deref(),
        Some("routes match the Host without its port; write \"API.example.com\"")
    );
}

#[test]
fn bad_methods_are_rejected() {
    let text = route("path = \"/\"\nmethods = [\"GET\", \"\"]");
    fails_at(&text, "\"\"]", "route[0].methods[1]");
    let text = route("path = \"/\"\nmethods = [\"GE T\"]");
    fails_at(&text, "\"GE T\"", "route[0].methods[0]");
    let text = route("path = \"/\"\nmethods = [\"GET\", \"get\"]");
    fails_at(&text, "\"get\"", "route[0].methods[1]");
}

#[test]
fn exactly_one_of_path_and_path_prefix() {
    let text = route("name = \"r\"");
    let error = fails_at(&text, "[[route]]", "route[0]");
    assert!(error.message.contains("neither"), "{error}");
    let text = route("path = \"/a\"\npath_prefix = \"/a\"");
    fails_at(&text, "path_prefix", "route[0].path_prefix");
}

#[test]
fn paths_start_with_a_slash() {
    fails_at(&route("path = \"users\""), "\"users\"", "route[0].path");
    fails_at(&route("path = \"\""), "\"\"", "route[0].path");
    fails_at(
        &route("path_prefix = \"api\""),
        "\"api\"",
        "route[0].path_prefix",
    );
}

#[test]
fn paths_have_no_query_fragment_whitespace_or_empty_segment() {
    for path in ["\"/a?b=1\"", "\"/a#top\"", "\"/a b\"", "\"/a//b\""] {
        fails_at(&route(&format!("path = {path}")), path, "route[0].path");
        fails_at(
            &route(&format!("path_prefix = {path}")),
            path,
            "route[0].path_prefix",
        );
    }
}

#[test]
fn path_params_are_whole_unique_identifiers() {
    for path in [
        "\"/files/{name}.txt\"",
        "\"/files/{name\"",
        "\"/a}\"",
        "\"/{1x}\"",
        "\"/{}\"",
        "\"/{id}/x/{id}\"",
    ] {
        fails_at(&route(&format!("path = {path}")), path, "route[0].path");
    }
}

#[test]
fn path_prefix_is_literal_only() {
    let text = route("path_prefix = \"/users/{id}\"");
    fails_at(&text, "\"/users/{id}\"", "route[0].path_prefix");
}

#[test]
fn header_names_are_tokens_and_values_are_matchable() {
    let text = route("path = \"/\"\nheaders = { \"bad name\" = \"1\" }");
    fails_at(&text, "\"bad name\"", "route[0].headers.\"bad name\"");
    let text = route("path = \"/\"\nheaders = { x-a = \"1\", X-A = \"2\" }");
    // BTreeMap order: "X-A" sorts before "x-a", so the lower-case one is the duplicate.
    fails_at(&text, "x-a", "route[0].headers.x-a");
    let text = route("path = \"/\"\nheaders = { x-a = \"a\\r\\nb\" }");
    fails_at(&text, "\"a\\r", "route[0].headers.x-a");
    let text = route("path = \"/\"\nheaders = { x-a = \" 2\" }");
    fails_at(&text, "\" 2\"", "route[0].headers.x-a");
}

#[test]
fn headers_present_are_tokens_listed_once() {
    let text = route("path = \"/\"\nheaders_present = [\"x-a\", \"x:b\"]");
    fails_at(&text, "\"x:b\"", "route[0].headers_present[1]");
    let text = route("path = \"/\"\nheaders_present = [\"x-a\", \"X-A\"]");
    fails_at(&text, "\"X-A\"", "route[0].headers_present[1]");
}

#[test]
fn route_upstream_must_exist() {
    let text = format!(
        "{LISTENER}{UPSTREAM}[upstreams.static]\nendpoints = [{{ address = \"10.0.0.2:80\" }}]\n\n\
         [[route]]\npath = \"/\"\nupstream = \"user\"\n"
    );
    let error = fails_at(&text, "\"user\"", "route[0].upstream");
    assert_eq!(error.message, "no upstream named `user`");
    assert_eq!(
        error.hint.as_deref(),
        Some("defined upstreams: static, users")
    );
}

#[test]
fn rewrites_need_path_prefix() {
    let text = route("path = \"/a\"\nstrip_prefix = true");
    fails_at(&text, "strip_prefix", "route[0].strip_prefix");
    let text = route("path = \"/a\"\nreplace_prefix = \"/b\"");
    fails_at(&text, "replace_prefix", "route[0].replace_prefix");
}

#[test]
fn strip_and_replace_prefix_exclude_each_other() {
    let text = route("path_prefix = \"/a\"\nstrip_prefix = true\nreplace_prefix = \"/b\"");
    fails_at(&text, "replace_prefix", "route[0].replace_prefix");
}

#[test]
fn replace_prefix_is_a_path() {
    let text = route("path_prefix = \"/a\"\nreplace_prefix = \"b\"");
    fails_at(&text, "\"b\"", "route[0].replace_prefix");
    let text = route("path_prefix = \"/a\"\nreplace_prefix = \"/b?x\"");
    fails_at(&text, "\"/b?x\"", "route[0].replace_prefix");
}

#[test]
fn errors_render_with_place_and_hint() {
    let text = route("path = \"/\"\nhost = \"*\"");
    let error = fails_at(&text, "\"*\"", "route[0].host");
    assert_eq!(
        error.to_string(),
        "t.toml:9:8: route[0].host: `*` alone is not a host pattern\n  \
         hint: remove `host` to match any host"
    );
}

// ----- admin, access log, health checks -----

#[test]
fn admin_defaults_to_loopback_9901_and_can_be_turned_off() {
    let config = load_str(&server(""), "t.toml").expect("valid");
    let admin = config.admin.expect("admin on by default");
    assert_eq!(admin.address.to_string(), "127.0.0.1:9901");
    assert!(!admin.required, "the default address is not required");
    let text = format!("{}\n[admin]\nenabled = false\n", server(""));
    assert!(load_str(&text, "t.toml").expect("valid").admin.is_none());
    let text = format!("{}\n[admin]\naddress = \"127.0.0.1:0\"\n", server(""));
    let admin = load_str(&text, "t.toml").expect("valid").admin.expect("on");
    assert!(admin.required, "a written address is required");
    assert_eq!(admin.address.port(), 0);
}

#[test]
fn admin_address_is_checked() {
    let text = format!("{}\n[admin]\naddress = \"localhost:9901\"\n", server(""));
    fails_at(&text, "\"localhost:9901\"", "admin.address");
    let text = format!("{}\n[admin]\naddress = \"127.0.0.1:8080\"\n", server(""));
    let error = fails_at_nth(&text, "\"127.0.0.1:8080\"", 1, "admin.address");
    assert!(error.message.contains("listener[0]"), "{error}");
    let text = format!("{}\n[admin]\nport = 1\n", server(""));
    fails_at(&text, "port", "admin.port");
}

#[test]
fn access_log_is_off_unless_configured() {
    assert!(load_str(&server(""), "t.toml")
        .expect("valid")
        .access_log
        .is_none());
    let text = format!("{}\n[access_log]\npath = \"/tmp/a.log\"\n", server(""));
    let log = load_str(&text, "t.toml").expect("valid").access_log;
    assert_eq!(
        log.map(|l| l.path),
        Some(std::path::PathBuf::from("/tmp/a.log"))
    );
    let text = format!("{}\n[access_log]\npath = \"\"\n", server(""));
    fails_at(&text, "\"\"", "access_log.path");
    let text = format!("{}\n[access_log]\n", server(""));
    let error = load_str(&text, "t.toml").expect_err("path is required");
    assert!(error.message.contains("path"), "{error}");
}

fn with_check(lines: &str) -> String {
    upstreams(&format!(
        "{UPSTREAM}[upstreams.users.health_check]\n{lines}\n"
    ))
}

#[test]
fn health_check_defaults() {
    let config = load_str(&with_check(""), "t.toml").expect("valid");
    let check = config.upstreams[0]
        .health_check
        .clone()
        .expect("configured");
    assert_eq!(check.path, "/healthz");
    assert_eq!((check.interval_ms, check.timeout_ms), (2000, 1000));
    assert_eq!((check.healthy_threshold, check.unhealthy_threshold), (2, 3));
    assert_eq!(check.expected_status, 200);
    let config = load_str(&upstreams(UPSTREAM), "t.toml").expect("valid");
    assert!(config.upstreams[0].health_check.is_none());
}

#[test]
fn health_check_values_are_checked() {
    fails_at(
        &with_check("path = \"healthz\""),
        "\"healthz\"",
        "upstreams.users.health_check.path",
    );
    fails_at(
        &with_check("path = \"/a b\""),
        "\"/a b\"",
        "upstreams.users.health_check.path",
    );
    fails_at(
        &with_check("interval_ms = 0"),
        "0\n",
        "upstreams.users.health_check.interval_ms",
    );
    let error = fails_at(
        &with_check("interval_ms = 500\ntimeout_ms = 900"),
        "900",
        "upstreams.users.health_check.timeout_ms",
    );
    assert!(error.message.contains("longer than interval_ms"), "{error}");
    fails_at(
        &with_check("healthy_threshold = 0"),
        "0\n",
        "upstreams.users.health_check.healthy_threshold",
    );
    fails_at(
        &with_check("unhealthy_threshold = 0"),
        "0\n",
        "upstreams.users.health_check.unhealthy_threshold",
    );
    fails_at(
        &with_check("expected_status = 99"),
        "99",
        "upstreams.users.health_check.expected_status",
    );
    fails_at(
        &with_check("expect = 200"),
        "expect",
        "upstreams.users.health_check.expect",
    );
}

// ----- authentication and rate limits -----

const SECRET_32: &str = "0123456789abcdef0123456789abcdef";
/// The SHA-256 of `foo`.
const FOO_SHA256: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/// A valid config with these `[auth…]` / `[rate_limits…]` tables, and its only route given
/// `route_lines` (e.g. `auth = "j"`).
fn policies(tables: &str, route_lines: &str) -> String {
    format!(
        "{LISTENER}{UPSTREAM}{tables}\n\n[[route]]\npath_prefix = \"/\"\nupstream = \"users\"\n\
         {route_lines}\n"
    )
}

/// A config with one `[auth.jwt.j]` of these lines.
fn jwt(lines: &str) -> String {
    policies(&format!("[auth.jwt.j]\n{lines}"), "")
}

/// A config with one valid HS256 `[auth.jwt.j]` plus these lines.
fn hs256(lines: &str) -> String {
    jwt(&format!(
        "algorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n{lines}"
    ))
}

/// A config with one `[auth.api_keys.k]` of these lines.
fn api_keys(lines: &str) -> String {
    policies(&format!("[auth.api_keys.k]\n{lines}"), "")
}

/// A config with one valid `[auth.api_keys.k]` plus these lines.
fn one_key(lines: &str) -> String {
    api_keys(&format!(
        "keys = [{{ consumer = \"acme\", sha256 = \"{FOO_SHA256}\" }}]\n{lines}"
    ))
}

/// A config with one `[rate_limits.r]` of these lines.
fn rate(lines: &str) -> String {
    policies(&format!("[rate_limits.r]\n{lines}"), "")
}

/// A file in the temp dir, unique to this test process and `name`, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "coregate-config-validation-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_policy_fixtures_are_valid() {
    for text in [
        hs256(""),
        one_key(""),
        rate("rate_per_second = 1"),
        policies(
            &format!("[auth.jwt.j]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\""),
            "auth = \"j\"",
        ),
    ] {
        if let Err(error) = load_str(&text, "t.toml") {
            panic!("{error}\n{text}");
        }
    }
}

#[test]
fn rate_limit_sync_interval_is_range_checked() {
    let key = "server.rate_limit_sync_interval_ms";
    fails_at(&server("rate_limit_sync_interval_ms = 9"), "9\n", key);
    fails_at(&server("rate_limit_sync_interval_ms = 10001"), "10001", key);
    for ok in [10, 10_000] {
        let config =
            load_str(&server(&format!("rate_limit_sync_interval_ms = {ok}")), "t").expect("valid");
        assert_eq!(config.server.rate_limit_sync_interval_ms, ok);
    }
    let config = load_str(&server(""), "t").expect("valid");
    assert_eq!(
        config.server.rate_limit_sync_interval_ms,
        coregate_config::defaults::RATE_LIMIT_SYNC_INTERVAL_MS
    );
}

#[test]
fn stale_bytes_max_is_range_checked() {
    let key = "server.stale_bytes_max";
    fails_at(&server("stale_bytes_max = 1023"), "1023", key);
    fails_at(&server("stale_bytes_max = 1073741825"), "1073741825", key);
    for ok in [1024, 1 << 30] {
        let config = load_str(&server(&format!("stale_bytes_max = {ok}")), "t").expect("valid");
        assert_eq!(config.server.stale_bytes_max, ok);
    }
    let config = load_str(&server(""), "t").expect("valid");
    assert_eq!(
        config.server.stale_bytes_max,
        coregate_config::defaults::STALE_BYTES_MAX
    );
}

/// `stale_per_identity` keys by a verified identity: it needs `stale`, the route's `auth`,
/// and a JWT verifier that passes `sub` on.
#[test]
fn stale_per_identity_needs_an_identity_to_key_by() {
    let key = "route[0].fallback.stale_per_identity";
    let fallback = "\n[route.fallback]\nstale = true\nstale_per_identity = true\n";
    let error = fails_at(&with_fallback("stale_per_identity = true"), "true", key);
    assert!(error.message.contains("stale = true"), "{error}");
    let error = fails_at_nth(
        &with_fallback("stale = true\nstale_per_identity = true"),
        "true",
        1,
        key,
    );
    assert!(error.message.contains("auth"), "{error}");
    let jwt = format!("[auth.jwt.j]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n");
    let no_sub = format!("{jwt}claims_to_headers = {{ tenant = \"X-Tenant\" }}\n");
    let text = policies(&no_sub, &format!("auth = \"j\"{fallback}"));
    let error = fails_at_nth(&text, "true", 1, key);
    assert!(error.message.contains("`sub`"), "{error}");
    for tables in [
        jwt,
        format!(
            "[auth.api_keys.j]\nkeys = [{{ consumer = \"acme\", sha256 = \"{FOO_SHA256}\" }}]\n"
        ),
    ] {
        let text = policies(&tables, &format!("auth = \"j\"{fallback}"));
        let config = load_str(&text, "t").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(config.routes[0].fallback.stale_per_identity);
    }
}

#[test]
fn jwt_algorithms_are_required_and_non_empty() {
    let text = jwt(&format!("secret = \"{SECRET_32}\""));
    let error = fails_at(&text, "[auth.jwt.j]", "auth.jwt.j.algorithms");
    assert_eq!(error.message, "missing field `algorithms`");
    let text = jwt(&format!("algorithms = []\nsecret = \"{SECRET_32}\""));
    fails_at(&text, "[]", "auth.jwt.j.algorithms");
}

#[test]
fn jwt_algorithm_none_is_refused_in_any_case() {
    for none in ["none", "None", "NONE"] {
        let text = jwt(&format!(
            "algorithms = [\"HS256\", \"{none}\"]\nsecret = \"{SECRET_32}\""
        ));
        let error = fails_at(&text, &format!("\"{none}\""), "auth.jwt.j.algorithms[1]");
        assert!(error.message.contains("unsigned"), "{error}");
        assert!(error.hint.unwrap_or_default().contains("forge"));
    }
}

#[test]
fn jwt_algorithm_names_are_known_and_case_sensitive() {
    let text = jwt("algorithms = [\"rs256\"]\npublic_key_file = \"x\"");
    let error = fails_at(&text, "\"rs256\"", "auth.jwt.j.algorithms[0]");
    assert_eq!(
        error.hint.as_deref(),
        Some("algorithm names are case-sensitive (RFC 7515 §4.1.1): write \"RS256\"")
    );
    let text = jwt("algorithms = [\"ES512\"]\npublic_key_file = \"x\"");
    let error = fails_at(&text, "\"ES512\"", "auth.jwt.j.algorithms[0]");
    assert!(
        error
            .hint
            .unwrap_or_default()
            .starts_with("known algorithms: HS256"),
        "hint lists the known names"
    );
    let text = jwt("algorithms = [\"ES256\", \"ES256\"]\npublic_key_file = \"x\"");
    fails_at_nth(&text, "\"ES256\"", 1, "auth.jwt.j.algorithms[1]");
}

#[test]
fn jwt_algorithms_do_not_mix_hmac_and_public_key() {
    let text = jwt(&format!(
        "algorithms = [\"HS256\", \"RS256\"]\nsecret = \"{SECRET_32}\""
    ));
    let error = fails_at(&text, "\"RS256\"", "auth.jwt.j.algorithms[1]");
    assert!(error.message.contains("HS256 and RS256"), "{error}");
    let text = jwt("algorithms = [\"ES256\", \"HS512\"]\npublic_key_file = \"x\"");
    fails_at(&text, "\"HS512\"", "auth.jwt.j.algorithms[1]");
}

#[test]
fn jwt_needs_exactly_one_key_source() {
    let text = jwt("algorithms = [\"HS256\"]");
    let error = fails_at(&text, "[auth.jwt.j]", "auth.jwt.j");
    assert!(
        error.hint.unwrap_or_default().contains("secret"),
        "HMAC hint"
    );
    let text = jwt("algorithms = [\"RS256\"]");
    let error = fails_at(&text, "[auth.jwt.j]", "auth.jwt.j");
    assert!(error.hint.unwrap_or_default().contains("jwks_file"));
    let text = hs256("secret_file = \"/etc/secret\"");
    let error = fails_at(&text, "secret_file", "auth.jwt.j.secret_file");
    assert_eq!(error.message, "secret and secret_file are both set");
    let text = jwt("algorithms = [\"RS256\"]\npublic_key_file = \"a\"\njwks_file = \"b\"");
    fails_at(&text, "jwks_file", "auth.jwt.j.jwks_file");
}

#[test]
fn jwt_key_source_matches_the_algorithms() {
    let text = jwt(&format!(
        "algorithms = [\"RS256\"]\nsecret = \"{SECRET_32}\""
    ));
    let error = fails_at(&text, "secret =", "auth.jwt.j.secret");
    assert!(error.message.contains("RS256"), "{error}");
    let text = jwt("algorithms = [\"HS256\"]\npublic_key_file = \"key.pem\"");
    fails_at(&text, "public_key_file", "auth.jwt.j.public_key_file");
    let text = jwt("algorithms = [\"HS384\"]\njwks_file = \"jwks.json\"");
    fails_at(&text, "jwks_file", "auth.jwt.j.jwks_file");
}

#[test]
fn jwt_secrets_are_at_least_as_long_as_the_hash() {
    let short = &SECRET_32[1..];
    let text = jwt(&format!("algorithms = [\"HS256\"]\nsecret = \"{short}\""));
    let error = fails_at(&text, &format!("\"{short}\""), "auth.jwt.j.secret");
    assert_eq!(
        error.message,
        "the secret is 31 bytes; HS256 needs at least 32"
    );
    assert!(
        !error.to_string().contains(short),
        "the secret is shown: {error}"
    );
    let text = jwt(&format!(
        "algorithms = [\"HS256\", \"HS512\"]\nsecret = \"{SECRET_32}{SECRET_32}\""
    ));
    assert!(load_str(&text, "t").is_ok(), "64 bytes suit HS512");
    let text = jwt(&format!(
        "algorithms = [\"HS256\", \"HS512\", \"HS384\"]\nsecret = \"{SECRET_32}{}\"",
        &SECRET_32[..16]
    ));
    let error = fails_at(&text, "\"0123", "auth.jwt.j.secret");
    assert_eq!(
        error.message,
        "the secret is 48 bytes; HS512 needs at least 64"
    );
}

#[test]
fn jwt_secret_file_is_read_without_its_line_break() {
    let file = TempFile::new("secret", format!("{SECRET_32}\r\n").as_bytes());
    let text = jwt(&format!(
        "algorithms = [\"HS256\"]\nsecret_file = \"{}\"",
        file.path()
    ));
    let config = load_str(&text, "t").expect("valid");
    assert_eq!(
        config.jwt[0].keys,
        coregate_config::JwtKeys::Secret(SECRET_32.as_bytes().to_vec())
    );
    // Without the line break it is 31 bytes: too short.
    let file = TempFile::new("short-secret", format!("{}\n", &SECRET_32[1..]).as_bytes());
    let text = jwt(&format!(
        "algorithms = [\"HS256\"]\nsecret_file = \"{}\"",
        file.path()
    ));
    let error = fails_at(
        &text,
        &format!("\"{}\"", file.path()),
        "auth.jwt.j.secret_file",
    );
    assert_eq!(
        error.message,
        "the secret_file is 31 bytes; HS256 needs at least 32"
    );
}

#[test]
fn an_unreadable_key_file_is_located_at_its_key() {
    let text = jwt("algorithms = [\"ES256\"]\npublic_key_file = \"/nonexistent/coregate/k.pem\"");
    let error = fails_at(
        &text,
        "\"/nonexistent/coregate/k.pem\"",
        "auth.jwt.j.public_key_file",
    );
    assert!(
        error
            .message
            .starts_with("cannot read /nonexistent/coregate/k.pem: "),
        "{error}"
    );
    let text = jwt("algorithms = [\"HS256\"]\nsecret_file = \"no-such-secret\"");
    let error = fails_at(&text, "\"no-such-secret\"", "auth.jwt.j.secret_file");
    assert_eq!(
        error.hint.as_deref(),
        Some("a relative path is resolved against the config file's directory")
    );
    let text = jwt("algorithms = [\"HS256\"]\nsecret_file = \"\"");
    fails_at(&text, "\"\"", "auth.jwt.j.secret_file");
}

#[test]
fn public_key_files_hold_a_public_key_in_pem() {
    let cases = [
        (
            "not-pem",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n",
            "is not PEM",
        ),
        (
            "private",
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
            "holds a private key",
        ),
        (
            "certificate",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "holds no PUBLIC KEY",
        ),
    ];
    for (name, content, message) in cases {
        let file = TempFile::new(name, content.as_bytes());
        let text = jwt(&format!(
            "algorithms = [\"ES256\"]\npublic_key_file = \"{}\"",
            file.path()
        ));
        let error = fails_at(
            &text,
            &format!("\"{}\"", file.path()),
            "auth.jwt.j.public_key_file",
        );
        assert!(error.message.contains(message), "{name}: {error}");
    }
    let file = TempFile::new("binary.der", &[0x30, 0x59, 0xff, 0xfe]);
    let text = jwt(&format!(
        "algorithms = [\"ES256\"]\npublic_key_file = \"{}\"",
        file.path()
    ));
    let error = fails_at(
        &text,
        &format!("\"{}\"", file.path()),
        "auth.jwt.j.public_key_file",
    );
    assert!(error.message.ends_with("is not text"), "{error}");
}

#[test]
fn jwks_files_hold_public_keys() {
    let cases = [
        ("garbage", "{\"keys\": [", "is not JSON"),
        ("array", "[]", "no \"keys\" array"),
        ("keys-object", "{\"keys\": {}}", "no \"keys\" array"),
        ("empty", "{\"keys\": []}", "has no keys"),
        (
            "no-kty",
            "{\"keys\": [{\"kid\": \"a\"}]}",
            "keys[0] is not a JWK",
        ),
        (
            "private",
            "{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"a\", \"y\": \"b\", \
             \"d\": \"c\"}]}",
            "keys[0] is a private key",
        ),
    ];
    for (name, content, message) in cases {
        let file = TempFile::new(&format!("{name}.jwks"), content.as_bytes());
        let text = jwt(&format!(
            "algorithms = [\"ES256\"]\njwks_file = \"{}\"",
            file.path()
        ));
        let error = fails_at(
            &text,
            &format!("\"{}\"", file.path()),
            "auth.jwt.j.jwks_file",
        );
        assert!(error.message.contains(message), "{name}: {error}");
    }
}

#[test]
fn jwt_claim_checks_are_validated() {
    fails_at(&hs256("issuer = \"\""), "\"\"", "auth.jwt.j.issuer");
    fails_at(
        &hs256("audiences = [\"api\", \"\"]"),
        "\"\"",
        "auth.jwt.j.audiences[1]",
    );
    fails_at_nth(
        &hs256("audiences = [\"api\", \"api\"]"),
        "\"api\"",
        1,
        "auth.jwt.j.audiences[1]",
    );
    fails_at_nth(
        &hs256("required_claims = [\"sub\", \"sub\"]"),
        "\"sub\"",
        1,
        "auth.jwt.j.required_claims[1]",
    );
    let seventeen: Vec<String> = (0..17).map(|i| format!("\"c{i}\"")).collect();
    let text = hs256(&format!("required_claims = [{}]", seventeen.join(", ")));
    let error = fails_at(&text, "[\"c0\"", "auth.jwt.j.required_claims");
    assert!(error.message.contains("more than 16"), "{error}");
    fails_at(
        &hs256("leeway_seconds = 3601"),
        "3601",
        "auth.jwt.j.leeway_seconds",
    );
    assert!(load_str(&hs256("leeway_seconds = 3600"), "t").is_ok());
    fails_at(
        &hs256("cache_entries = 1000001"),
        "1000001",
        "auth.jwt.j.cache_entries",
    );
    assert!(load_str(&hs256("cache_entries = 0"), "t").is_ok());
    let error = fails_at(&hs256("leeway = 5"), "leeway =", "auth.jwt.j.leeway");
    assert!(error.hint.unwrap_or_default().contains("leeway_seconds"));
}

#[test]
fn jwt_token_sources_are_parsed() {
    use coregate_config::TokenSource;
    let source = |token: &str| {
        load_str(&hs256(&format!("token = \"{token}\"")), "t")
            .map(|config| config.jwt[0].token_source.clone())
    };
    assert_eq!(source("bearer"), Ok(TokenSource::Bearer));
    assert_eq!(
        source("header:X-Token"),
        Ok(TokenSource::Header("x-token".to_owned()))
    );
    assert_eq!(
        source("cookie:Session"),
        Ok(TokenSource::Cookie("Session".to_owned()))
    );
    for bad in [
        "Bearer",
        "header:",
        "header:a b",
        "cookie:",
        "cookie:a;b",
        "query:t",
    ] {
        fails_at(
            &hs256(&format!("token = \"{bad}\"")),
            &format!("\"{bad}\""),
            "auth.jwt.j.token",
        );
    }
    let error = fails_at(
        &hs256("token = \"header:Authorization\""),
        "\"header:Authorization\"",
        "auth.jwt.j.token",
    );
    assert!(error.hint.unwrap_or_default().contains("\"bearer\""));
}

#[test]
fn claims_to_headers_are_safe_header_names() {
    fails_at(
        &hs256("claims_to_headers = { sub = \"X User\" }"),
        "\"X User\"",
        "auth.jwt.j.claims_to_headers.sub",
    );
    for reserved in [
        "Content-Length",
        "transfer-encoding",
        "Host",
        "Connection",
        "X-Forwarded-For",
        "Authorization",
        "Cookie",
        // CGI-style upstreams read these as the reserved names.
        "Content_Length",
        "X_Forwarded.For",
    ] {
        let text = hs256(&format!("claims_to_headers = {{ sub = \"{reserved}\" }}"));
        let error = fails_at(
            &text,
            &format!("\"{reserved}\""),
            "auth.jwt.j.claims_to_headers.sub",
        );
        assert!(
            error.message.contains("cannot carry an identity"),
            "{error}"
        );
    }
    let text = hs256("claims_to_headers = { sub = \"X-User\", email = \"x-user\" }");
    let error = fails_at(&text, "\"X-User\"", "auth.jwt.j.claims_to_headers.sub");
    assert_eq!(
        error.message,
        "claims email and sub both go to header X-User"
    );
    fails_at(
        &hs256("claims_to_headers = { \"\" = \"X-User\" }"),
        "\"\" =",
        "auth.jwt.j.claims_to_headers.\"\"",
    );
    let seventeen: Vec<String> = (0..17).map(|i| format!("c{i} = \"X-C{i}\"")).collect();
    let text = hs256(&format!(
        "claims_to_headers = {{ {} }}",
        seventeen.join(", ")
    ));
    fails_at(&text, "{ c0", "auth.jwt.j.claims_to_headers");
}

#[test]
fn auth_names_are_restricted_and_unique_across_kinds() {
    let text = policies(
        &format!("[auth.jwt.\"a b\"]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\""),
        "",
    );
    let error = fails_at(&text, "\"a b\"", "auth.jwt.\"a b\"");
    assert_eq!(error.message, "auth name \"a b\" contains ' '");
    let text = policies(
        &format!(
            "[auth.jwt.shared]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n\n\
             [auth.api_keys.shared]\nkeys = [{{ consumer = \"a\", sha256 = \"{FOO_SHA256}\" }}]"
        ),
        "",
    );
    let error = fails_at_nth(&text, "shared", 1, "auth.api_keys.shared");
    assert!(error.message.contains("both"), "{error}");
    let text = policies("[auth.jwts.x]\n", "");
    let error = fails_at(&text, "jwts", "auth.jwts.x");
    assert!(error.message.contains("unknown field `jwts`"), "{error}");
}

#[test]
fn api_keys_are_required_and_well_formed() {
    let error = fails_at(
        &api_keys("from = \"header:k\""),
        "[auth.api_keys.k]",
        "auth.api_keys.k.keys",
    );
    assert_eq!(error.message, "missing field `keys`");
    fails_at(&api_keys("keys = []"), "[]", "auth.api_keys.k.keys");
    let text = api_keys(&format!(
        "keys = [{{ consumer = \"\", sha256 = \"{FOO_SHA256}\" }}]"
    ));
    fails_at(&text, "\"\"", "auth.api_keys.k.keys[0].consumer");
    let text = api_keys(&format!(
        "keys = [{{ consumer = \" acme\", sha256 = \"{FOO_SHA256}\" }}]"
    ));
    fails_at(&text, "\" acme\"", "auth.api_keys.k.keys[0].consumer");
    let text = api_keys(&format!("keys = [{{ sha256 = \"{FOO_SHA256}\" }}]"));
    fails_at(&text, "{ sha256", "auth.api_keys.k.keys[0].consumer");
}

#[test]
fn api_key_hashes_are_64_hex_digits_never_echoed() {
    // An operator who pastes the key itself must not find it in a log.
    let text = api_keys("keys = [{ consumer = \"acme\", sha256 = \"my-real-api-key\" }]");
    let error = fails_at(
        &text,
        "\"my-real-api-key\"",
        "auth.api_keys.k.keys[0].sha256",
    );
    assert!(!error.to_string().contains("my-real-api-key"), "{error}");
    let not_hex = format!("{}z", &FOO_SHA256[1..]);
    let text = api_keys(&format!(
        "keys = [{{ consumer = \"acme\", sha256 = \"{not_hex}\" }}]"
    ));
    fails_at(
        &text,
        &format!("\"{not_hex}\""),
        "auth.api_keys.k.keys[0].sha256",
    );
    let upper = FOO_SHA256.to_ascii_uppercase();
    let text = api_keys(&format!(
        "keys = [{{ consumer = \"a\", sha256 = \"{FOO_SHA256}\" }}, \
         {{ consumer = \"b\", sha256 = \"{upper}\" }}]"
    ));
    let error = fails_at(
        &text,
        &format!("\"{upper}\""),
        "auth.api_keys.k.keys[1].sha256",
    );
    assert_eq!(error.message, "keys[1] has the same sha256 as keys[0]");
}

#[test]
fn api_key_sources_and_consumer_header_are_checked() {
    use coregate_config::KeySource;
    let source = |from: &str| {
        load_str(&one_key(&format!("from = \"{from}\"")), "t")
            .map(|config| config.api_keys[0].source.clone())
    };
    assert_eq!(
        source("header:X-Key"),
        Ok(KeySource::Header("x-key".to_owned()))
    );
    assert_eq!(
        source("query:api_key"),
        Ok(KeySource::Query("api_key".to_owned()))
    );
    for bad in [
        "x-api-key",
        "cookie:k",
        "header:",
        "query:",
        "query:a&b",
        "query:a=b",
    ] {
        fails_at(
            &one_key(&format!("from = \"{bad}\"")),
            &format!("\"{bad}\""),
            "auth.api_keys.k.from",
        );
    }
    fails_at(
        &one_key("consumer_header = \"Transfer-Encoding\""),
        "\"Transfer-Encoding\"",
        "auth.api_keys.k.consumer_header",
    );
    fails_at(
        &one_key("consumer_header = \"X Consumer\""),
        "\"X Consumer\"",
        "auth.api_keys.k.consumer_header",
    );
}

#[test]
fn identity_headers_never_carry_credentials() {
    // A JWT claim sent upstream in the header another scheme reads its key from: removing
    // identity headers from client requests would remove every API key.
    let text = policies(
        &format!(
            "[auth.jwt.j]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n\
             claims_to_headers = {{ sub = \"X-Api-Key\" }}\n\n\
             [auth.api_keys.k]\nkeys = [{{ consumer = \"a\", sha256 = \"{FOO_SHA256}\" }}]"
        ),
        "",
    );
    let error = fails_at(&text, "\"X-Api-Key\"", "auth.jwt.j.claims_to_headers.sub");
    assert!(error.message.contains("auth.api_keys.k.from"), "{error}");
    let text = policies(
        &format!(
            "[auth.jwt.j]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n\
             token = \"header:X-Token\"\n\n\
             [auth.api_keys.k]\nkeys = [{{ consumer = \"a\", sha256 = \"{FOO_SHA256}\" }}]\n\
             consumer_header = \"x-token\""
        ),
        "",
    );
    fails_at(&text, "\"x-token\"", "auth.api_keys.k.consumer_header");
}

#[test]
fn identity_headers_are_the_lower_case_union() {
    let text = policies(
        &format!(
            "[auth.jwt.j]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n\
             claims_to_headers = {{ sub = \"X-User-Id\", org = \"X-Consumer\" }}\n\n\
             [auth.api_keys.k]\nkeys = [{{ consumer = \"a\", sha256 = \"{FOO_SHA256}\" }}]\n\n\
             [auth.api_keys.l]\nkeys = [{{ consumer = \"a\", sha256 = \"{FOO_SHA256}\" }}]\n\
             consumer_header = \"X-Partner\""
        ),
        "",
    );
    let config = load_str(&text, "t").expect("valid");
    assert_eq!(
        config.identity_headers,
        ["x-consumer", "x-partner", "x-user-id"]
    );
    assert!(load_str(&server(""), "t")
        .expect("valid")
        .identity_headers
        .is_empty());
}

#[test]
fn rate_per_second_is_a_positive_number() {
    let key = "rate_limits.r.rate_per_second";
    let error = fails_at(&rate("burst = 1"), "[rate_limits.r]", key);
    assert_eq!(error.message, "missing field `rate_per_second`");
    for bad in ["0", "-1", "0.0", "nan", "inf", "1000001"] {
        fails_at(
            &rate(&format!("rate_per_second = {bad}")),
            &format!("{bad}\n"),
            key,
        );
    }
    let error = fails_at(&rate("rate_per_second = \"10\""), "\"10\"", key);
    assert_eq!(
        error.hint.as_deref(),
        Some("write a number without quotes, e.g. 10 or 2.5")
    );
    for (written, rate_per_second, burst) in [("10", 10.0, 10), ("2.5", 2.5, 3), ("0.1", 0.1, 1)] {
        let config = load_str(&rate(&format!("rate_per_second = {written}")), "t")
            .unwrap_or_else(|error| panic!("{error}"));
        let limit = &config.rate_limits[0];
        assert_eq!(
            (limit.rate_per_second, limit.burst),
            (rate_per_second, burst)
        );
    }
}

#[test]
fn rate_limit_burst_key_and_keys_max_are_checked() {
    use coregate_config::RateKey;
    fails_at(
        &rate("rate_per_second = 1\nburst = 0"),
        "0\n",
        "rate_limits.r.burst",
    );
    let key = |key: &str| {
        load_str(&rate(&format!("rate_per_second = 1\nkey = \"{key}\"")), "t")
            .map(|config| config.rate_limits[0].key.clone())
    };
    assert_eq!(key("client_ip"), Ok(RateKey::ClientIp));
    assert_eq!(key("consumer"), Ok(RateKey::Consumer));
    assert_eq!(key("claim:org_id"), Ok(RateKey::Claim("org_id".to_owned())));
    assert_eq!(
        key("header:X-Tenant"),
        Ok(RateKey::Header("x-tenant".to_owned()))
    );
    for bad in ["ip", "claim:", "header:", "header:a b", "Consumer"] {
        fails_at(
            &rate(&format!("rate_per_second = 1\nkey = \"{bad}\"")),
            &format!("\"{bad}\""),
            "rate_limits.r.key",
        );
    }
    fails_at(
        &rate("rate_per_second = 1\nkeys_max = 0"),
        "0\n",
        "rate_limits.r.keys_max",
    );
    fails_at(
        &rate("rate_per_second = 1\nkeys_max = 10000001"),
        "10000001",
        "rate_limits.r.keys_max",
    );
    let text = policies("[rate_limits.\"per ip\"]\nrate_per_second = 1", "");
    fails_at(&text, "\"per ip\"", "rate_limits.\"per ip\"");
}

#[test]
fn route_auth_and_rate_limit_must_exist() {
    let tables = format!(
        "[auth.jwt.users]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n\n\
         [auth.api_keys.partners]\nkeys = [{{ consumer = \"a\", sha256 = \"{FOO_SHA256}\" }}]\n\n\
         [rate_limits.per_ip]\nrate_per_second = 5\n"
    );
    let text = policies(&tables, "auth = \"user\"");
    let error = fails_at(&text, "\"user\"", "route[0].auth");
    assert_eq!(
        error.message,
        "no [auth.jwt] or [auth.api_keys] entry named `user`"
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("defined auth: partners (api_keys), users (jwt)")
    );
    let text = policies(&tables, "rate_limit = \"per-ip\"");
    let error = fails_at(&text, "\"per-ip\"", "route[0].rate_limit");
    assert_eq!(error.hint.as_deref(), Some("defined rate limits: per_ip"));
    let text = route("path = \"/\"\nauth = \"users\"");
    let error = fails_at(&text, "\"users\"\n", "route[0].auth");
    assert!(error
        .hint
        .unwrap_or_default()
        .starts_with("no authentication is defined"));
    let text = route("path = \"/\"\nrate_limit = \"x\"");
    fails_at(&text, "\"x\"", "route[0].rate_limit");
}

/// `openssl pkey -pubout` of an EC P-256 key (the example's).
const P256_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
    MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEASBJwnPOqr7p/qxlq+UjBgL52F76\n\
    rnGAiPyqnfQFUUwTelTuzO+01CFxdZ2JDNii64+3c54WlEmkrMnAj4TsqA==\n\
    -----END PUBLIC KEY-----\n";

#[test]
fn a_public_key_suits_every_listed_algorithm() {
    let file = TempFile::new("p256.pem", P256_PEM.as_bytes());
    let text = jwt(&format!(
        "algorithms = [\"ES256\", \"RS256\"]\npublic_key_file = \"{}\"",
        file.path()
    ));
    let error = fails_at(
        &text,
        &format!("\"{}\"", file.path()),
        "auth.jwt.j.public_key_file",
    );
    assert!(
        error
            .message
            .ends_with("holds an EC P-256 key, which cannot verify RS256"),
        "{error}"
    );
    assert!(error
        .hint
        .unwrap_or_default()
        .starts_with("list only what this key verifies: ES256"));
    // X25519 is a key-agreement key, not a signature key.
    let x25519 = "-----BEGIN PUBLIC KEY-----\n\
                  MCowBQYDK2VuAyEAFGIwhPOtGLDKv68mVkTcOK/zdieK3fOB0I3NjqVg9xo=\n\
                  -----END PUBLIC KEY-----\n";
    let file = TempFile::new("x25519.pem", x25519.as_bytes());
    let text = jwt(&format!(
        "algorithms = [\"EdDSA\"]\npublic_key_file = \"{}\"",
        file.path()
    ));
    let error = fails_at(
        &text,
        &format!("\"{}\"", file.path()),
        "auth.jwt.j.public_key_file",
    );
    assert!(error.message.contains("does not verify"), "{error}");
    // PKCS#1 holds an RSA key.
    let file = TempFile::new(
        "pkcs1.pem",
        b"-----BEGIN RSA PUBLIC KEY-----\nMIIBCgKCAQEA\n-----END RSA PUBLIC KEY-----\n",
    );
    let text = jwt(&format!(
        "algorithms = [\"PS256\"]\npublic_key_file = \"{}\"",
        file.path()
    ));
    assert!(load_str(&text, "t").is_ok());
}

#[test]
fn a_jwks_has_a_signature_key_for_a_listed_algorithm() {
    let ec = |extra: &str| {
        format!(
            "{{\"keys\": [{{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"a\", \
             \"y\": \"b\"{extra}}}]}}"
        )
    };
    let cases = [
        (
            "p256-for-es384",
            ec(""),
            "ES384",
            "can verify ES384 (it has EC P-256)",
        ),
        (
            "pinned",
            ec(", \"alg\": \"ES256\""),
            "ES384",
            "(it has EC P-256 (ES256))",
        ),
        (
            "encryption",
            ec(", \"use\": \"enc\""),
            "ES256",
            "(it has no usable signature key)",
        ),
        (
            "no-verify",
            ec(", \"key_ops\": [\"encrypt\"]"),
            "ES256",
            "(it has no usable signature key)",
        ),
        (
            "alg-none",
            ec(", \"alg\": \"none\""),
            "ES256",
            "\"alg\": \"none\"",
        ),
    ];
    for (name, content, alg, message) in cases {
        let file = TempFile::new(&format!("{name}.jwks"), content.as_bytes());
        let text = jwt(&format!(
            "algorithms = [\"{alg}\"]\njwks_file = \"{}\"",
            file.path()
        ));
        let error = fails_at(
            &text,
            &format!("\"{}\"", file.path()),
            "auth.jwt.j.jwks_file",
        );
        assert!(error.message.contains(message), "{name}: {error}");
    }
    // One suitable key is enough; others may serve algorithms after a rotation.
    let content = "{\"keys\": [{\"kty\": \"RSA\", \"n\": \"a\", \"e\": \"AQAB\"}, \
                   {\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"a\", \"y\": \"b\", \
                   \"use\": \"sig\", \"key_ops\": [\"verify\"]}]}";
    let file = TempFile::new("mixed.jwks", content.as_bytes());
    let text = jwt(&format!(
        "algorithms = [\"ES256\", \"ES384\"]\njwks_file = \"{}\"",
        file.path()
    ));
    if let Err(error) = load_str(&text, "t") {
        panic!("{error}\n{content}");
    }
}

// ----- circuit breaker -----

const BREAKER: &str = "upstreams.users.breaker";

/// A valid config whose upstream has `[upstreams.users.breaker]` with these lines.
fn with_breaker(lines: &str) -> String {
    upstreams(&format!("{UPSTREAM}[upstreams.users.breaker]\n{lines}\n"))
}

/// The breaker of a config that must load.
#[track_caller]
fn breaker_of(text: &str) -> BreakerSettings {
    match load_str(text, "t.toml") {
        Ok(config) => config.upstreams[0].breaker.clone().expect("breaker on"),
        Err(error) => panic!("{error}\n{text}"),
    }
}

#[test]
fn a_breaker_table_turns_it_on_with_the_defaults() {
    assert_eq!(
        breaker_of(&with_breaker("")),
        BreakerSettings {
            consecutive_failures: defaults::BREAKER_CONSECUTIVE_FAILURES,
            failure_ratio: defaults::BREAKER_FAILURE_RATIO,
            window_ms: defaults::BREAKER_WINDOW_MS,
            minimum_requests: defaults::BREAKER_MINIMUM_REQUESTS,
            cooldown_ms: defaults::BREAKER_COOLDOWN_MS,
            cooldown_multiplier: defaults::BREAKER_COOLDOWN_MULTIPLIER,
            cooldown_max_ms: defaults::BREAKER_COOLDOWN_MAX_MS,
            half_open_probes: defaults::BREAKER_HALF_OPEN_PROBES,
            failure_statuses: vec![502, 503, 504],
        }
    );
    let config = load_str(&upstreams(UPSTREAM), "t.toml").expect("valid");
    assert_eq!(config.upstreams[0].breaker, None, "off without the table");
}

#[test]
fn breaker_bounds_are_inclusive() {
    let low = breaker_of(&with_breaker(
        "consecutive_failures = 0\nwindow_ms = 10\nminimum_requests = 1\ncooldown_ms = 1\n\
         cooldown_multiplier = 1\ncooldown_max_ms = 1\nhalf_open_probes = 1\nfailure_statuses = []",
    ));
    assert_eq!(
        (
            low.consecutive_failures,
            low.window_ms,
            low.minimum_requests
        ),
        (0, 10, 1)
    );
    assert_eq!(
        (
            low.cooldown_ms,
            low.cooldown_multiplier,
            low.cooldown_max_ms
        ),
        (1, 1.0, 1)
    );
    assert_eq!(low.half_open_probes, 1);
    assert!(low.failure_statuses.is_empty());
    let high = breaker_of(&with_breaker(
        "consecutive_failures = 10000\nfailure_ratio = 1\nwindow_ms = 3600000\n\
         minimum_requests = 1000000\ncooldown_ms = 3600000\ncooldown_multiplier = 100\n\
         cooldown_max_ms = 86400000\nhalf_open_probes = 1000\nfailure_statuses = [500, 599]",
    ));
    assert_eq!(
        (
            high.consecutive_failures,
            high.failure_ratio,
            high.window_ms
        ),
        (10_000, 1.0, 3_600_000)
    );
    assert_eq!(
        (
            high.minimum_requests,
            high.cooldown_ms,
            high.cooldown_multiplier
        ),
        (1_000_000, 3_600_000, 100.0)
    );
    assert_eq!(
        (high.cooldown_max_ms, high.half_open_probes),
        (86_400_000, 1000)
    );
    assert_eq!(high.failure_statuses, [500, 599]);
}

#[test]
fn breaker_failure_ratio_takes_integers_and_zero_turns_it_off() {
    let off = breaker_of(&with_breaker("failure_ratio = 0"));
    assert_eq!(off.failure_ratio, 0.0);
    assert_eq!(off.consecutive_failures, 5, "the other trigger stays on");
    // -0.0 reads as 0 and is stored as the plain zero.
    let negative_zero = breaker_of(&with_breaker("failure_ratio = -0.0"));
    assert!(negative_zero.failure_ratio.is_sign_positive());
    assert_eq!(
        breaker_of(&with_breaker("failure_ratio = 0.25")).failure_ratio,
        0.25
    );
    for bad in ["1.5", "2", "-0.1", "nan", "inf"] {
        let text = with_breaker(&format!("failure_ratio = {bad}"));
        let error = fails_at(
            &text,
            &format!("{bad}\n"),
            &format!("{BREAKER}.failure_ratio"),
        );
        assert!(error.message.contains("neither 0 nor in (0, 1]"), "{error}");
    }
}

#[test]
fn breaker_needs_a_trigger() {
    let text = with_breaker("consecutive_failures = 0\nfailure_ratio = 0.0");
    let error = fails_at(&text, "0.0\n", &format!("{BREAKER}.failure_ratio"));
    assert_eq!(
        error.to_string(),
        "t.toml:9:17: upstreams.users.breaker.failure_ratio: consecutive_failures = 0 and \
         failure_ratio = 0 turn off both triggers, so the breaker could never open\n  \
         hint: turn one on, e.g. consecutive_failures = 5 or failure_ratio = 0.5; to have no \
         breaker, remove the [upstreams.NAME.breaker] table"
    );
}

#[test]
fn breaker_counts_and_windows_are_range_checked() {
    for (key, bad) in [
        ("consecutive_failures", "10001"),
        ("window_ms", "9"),
        ("window_ms", "3600001"),
        ("minimum_requests", "0"),
        ("minimum_requests", "1000001"),
        ("cooldown_ms", "0"),
        ("cooldown_ms", "3600001"),
        ("cooldown_multiplier", "0.5"),
        ("cooldown_multiplier", "100.5"),
        ("cooldown_multiplier", "nan"),
        ("cooldown_max_ms", "86400001"),
        ("half_open_probes", "0"),
        ("half_open_probes", "1001"),
    ] {
        // cooldown_max_ms is raised with cooldown_ms so only the bound under test is broken.
        let lines = if key == "cooldown_ms" {
            format!("{key} = {bad}\ncooldown_max_ms = 86400000")
        } else {
            format!("{key} = {bad}")
        };
        let error = fails_at(
            &with_breaker(&lines),
            &format!("{bad}\n"),
            &format!("{BREAKER}.{key}"),
        );
        assert!(error.message.starts_with(&format!("{key} = ")), "{error}");
    }
}

#[test]
fn breaker_cooldown_max_is_checked_where_written() {
    let text = with_breaker("cooldown_ms = 5000\ncooldown_max_ms = 4999");
    let error = fails_at(&text, "4999", &format!("{BREAKER}.cooldown_max_ms"));
    assert_eq!(
        error.message,
        "cooldown_max_ms = 4999 is less than cooldown_ms = 5000"
    );
    // With cooldown_max_ms defaulted, the error is at the cooldown_ms that passes it.
    let text = with_breaker("cooldown_ms = 120000");
    let error = fails_at(&text, "120000", &format!("{BREAKER}.cooldown_ms"));
    assert!(error.message.contains("(its default)"), "{error}");
    assert!(
        error
            .hint
            .unwrap_or_default()
            .contains("raise cooldown_max_ms"),
        "hint"
    );
    let equal = breaker_of(&with_breaker("cooldown_ms = 60000"));
    assert_eq!((equal.cooldown_ms, equal.cooldown_max_ms), (60_000, 60_000));
}

#[test]
fn breaker_failure_statuses_are_server_errors_listed_once() {
    let field = format!("{BREAKER}.failure_statuses[1]");
    let error = fails_at(
        &with_breaker("failure_statuses = [502, 404]"),
        "404",
        &field,
    );
    assert!(error.message.contains("not a server error"), "{error}");
    fails_at(
        &with_breaker("failure_statuses = [502, 600]"),
        "600",
        &field,
    );
    let error = fails_at_nth(
        &with_breaker("failure_statuses = [503, 503]"),
        "503",
        1,
        &field,
    );
    assert_eq!(
        error.message,
        "failure status 503 is listed twice (also failure_statuses[0])"
    );
    // Shape errors come from the schema, located at the element.
    fails_at(
        &with_breaker("failure_statuses = [502, \"503\"]"),
        "\"503\"",
        &field,
    );
    fails_at(
        &with_breaker("failure_statuses = [502, 70000]"),
        "70000",
        &field,
    );
    let order = breaker_of(&with_breaker("failure_statuses = [504, 500]"));
    assert_eq!(
        order.failure_statuses,
        [504, 500],
        "kept in the file's order"
    );
}

#[test]
fn breaker_rejects_unknown_keys_and_wrong_types() {
    let error = fails_at(
        &with_breaker("half_open_probe = 5"),
        "half_open_probe =",
        &format!("{BREAKER}.half_open_probe"),
    );
    assert!(
        error
            .hint
            .unwrap_or_default()
            .starts_with("did you mean `half_open_probes`?"),
        "hint"
    );
    fails_at(
        &with_breaker("window_ms = \"10s\""),
        "\"10s\"",
        &format!("{BREAKER}.window_ms"),
    );
    fails_at(
        &with_breaker("consecutive_failures = -1"),
        "-1",
        &format!("{BREAKER}.consecutive_failures"),
    );
    // `breaker = true` is not how it is turned on.
    let text = upstreams(
        "[upstreams.users]\nendpoints = [{ address = \"10.0.0.1:8080\" }]\nbreaker = true\n",
    );
    fails_at(&text, "true", "upstreams.users.breaker");
}

// ----- route fallback -----

/// A valid config whose only route has `[route.fallback]` with these lines.
fn with_fallback(lines: &str) -> String {
    format!(
        "{}\n[route.fallback]\n{lines}\n",
        route("path_prefix = \"/\"")
    )
}

/// The fallback of a config that must load.
#[track_caller]
fn fallback_of(text: &str) -> Fallback {
    match load_str(text, "t.toml") {
        Ok(config) => config.routes[0].fallback.clone(),
        Err(error) => panic!("{error}\n{text}"),
    }
}

fn static_response(status: u16, content_type: &str, body: &str) -> Option<StaticResponse> {
    Some(StaticResponse {
        status,
        content_type: content_type.to_owned(),
        body: body.to_owned(),
    })
}

#[test]
fn fallback_defaults_to_503_json() {
    let none = Fallback {
        stale: false,
        stale_per_identity: false,
        static_response: None,
    };
    assert_eq!(fallback_of(&route("path_prefix = \"/\"")), none);
    assert_eq!(fallback_of(&with_fallback("")), none);
    assert_eq!(
        fallback_of(&with_fallback("stale = true")),
        Fallback {
            stale: true,
            stale_per_identity: false,
            static_response: None,
        }
    );
    assert_eq!(
        fallback_of(&with_fallback("status = 503")),
        Fallback {
            stale: false,
            stale_per_identity: false,
            static_response: static_response(503, defaults::FALLBACK_CONTENT_TYPE, ""),
        }
    );
    // An inline table is the same thing.
    let text =
        route("path_prefix = \"/\"\nfallback = { stale = true, status = 200, body = \"ok\" }");
    assert_eq!(
        fallback_of(&text),
        Fallback {
            stale: true,
            stale_per_identity: false,
            static_response: static_response(200, "application/json", "ok"),
        }
    );
}

#[test]
fn fallback_content_type_and_body_need_a_status() {
    for key in ["content_type", "body"] {
        let text = with_fallback(&format!("stale = true\n{key} = \"x/y\""));
        let error = fails_at(
            &text,
            &format!("{key} ="),
            &format!("route[0].fallback.{key}"),
        );
        assert_eq!(error.message, format!("{key} is only used with status"));
        assert!(
            error
                .hint
                .unwrap_or_default()
                .starts_with("add status = 503"),
            "hint"
        );
    }
}

#[test]
fn fallback_status_is_a_final_status() {
    for bad in ["199", "600", "100"] {
        let text = with_fallback(&format!("status = {bad}"));
        let error = fails_at(&text, &format!("{bad}\n"), "route[0].fallback.status");
        assert!(error.message.contains("outside 200..=599"), "{error}");
    }
    fails_at(
        &with_fallback("status = 70000"),
        "70000",
        "route[0].fallback.status",
    );
    fails_at(
        &with_fallback("status = \"503\""),
        "\"503\"",
        "route[0].fallback.status",
    );
    for ok in [200, 599] {
        let fallback = fallback_of(&with_fallback(&format!("status = {ok}")));
        assert_eq!(fallback.static_response.map(|r| r.status), Some(ok));
    }
}

#[test]
fn fallback_content_type_is_one_media_type_header_value() {
    let field = "route[0].fallback.content_type";
    for (bad, message) in [
        (r#""text/plain\r\nX-Injected: 1""#, "contains '\\r'"),
        (r#""text/plain\nX: 1""#, "contains '\\n'"),
        (r#""text/plain\u0000""#, "contains '\\0'"),
        (r#""text/plain; name=é""#, "contains 'é'"),
        (r#"" text/plain""#, "starts or ends with whitespace"),
        (r#""text/plain ""#, "starts or ends with whitespace"),
        (r#""""#, "is not a type/subtype media type"),
        (r#""json""#, "is not a type/subtype media type"),
        (r#""text/""#, "is not a type/subtype media type"),
        (r#""text plain/html""#, "is not a type/subtype media type"),
    ] {
        let text = with_fallback(&format!("status = 503\ncontent_type = {bad}"));
        let error = fails_at(&text, bad, field);
        assert!(error.message.contains(message), "{bad}: {error}");
    }
    let fallback = fallback_of(&with_fallback(
        "status = 503\ncontent_type = \"text/html; charset=utf-8\"\nbody = \"<p>down</p>\"",
    ));
    assert_eq!(
        fallback.static_response,
        static_response(503, "text/html; charset=utf-8", "<p>down</p>")
    );
}

#[test]
fn fallback_body_is_bounded_and_allowed_by_the_status() {
    let max = defaults::FALLBACK_BODY_BYTES_MAX;
    let body = "a".repeat(max);
    let fallback = fallback_of(&with_fallback(&format!("status = 503\nbody = \"{body}\"")));
    assert_eq!(fallback.static_response.map(|r| r.body.len()), Some(max));
    // Bytes, not characters: 32 KiB of a two-byte character plus one more.
    let body = "é".repeat(max / 2 + 1);
    let text = with_fallback(&format!("status = 503\nbody = \"{body}\""));
    let error = fails_at(&text, "\"é", "route[0].fallback.body");
    assert_eq!(
        error.message,
        format!("body is {} bytes, more than {max} (64 KiB)", max + 2)
    );
    for status in [204, 205, 304] {
        let text = with_fallback(&format!("status = {status}\nbody = \"x\""));
        let error = fails_at(&text, "\"x\"", "route[0].fallback.body");
        assert_eq!(
            error.message,
            format!("status {status} never carries a body")
        );
        let fallback = fallback_of(&with_fallback(&format!("status = {status}")));
        assert_eq!(
            fallback.static_response.map(|r| r.body),
            Some(String::new())
        );
    }
}

#[test]
fn fallback_rejects_unknown_keys_and_is_located_in_its_own_route() {
    let error = fails_at(
        &with_fallback("stale = true\nstatic = 503"),
        "static =",
        "route[0].fallback.static",
    );
    assert!(
        error.hint.unwrap_or_default().contains("valid keys here"),
        "hint"
    );
    fails_at(
        &with_fallback("stale = \"yes\""),
        "\"yes\"",
        "route[0].fallback.stale",
    );
    // The table after the second [[route]] belongs to route[1].
    let text = format!(
        "{}\n[route.fallback]\nstatus = 503\n\n[[route]]\npath = \"/b\"\nupstream = \"users\"\n\n\
         [route.fallback]\nstatus = 99\n",
        route("path_prefix = \"/\"")
    );
    fails_at(&text, "99", "route[1].fallback.status");
}

// ----- rewrite_path, request_id and header edits -----

/// A valid config: verifier `j` mapping `tenant`, `sub` and `email` (claims 2, 1 and 0: the
/// model sorts them), and one route on `/v1/{org}/users/{id}` with `auth = "j"`, these route
/// lines, and these tables after it.
fn edits(route_lines: &str, tables: &str) -> String {
    format!(
        "{LISTENER}{UPSTREAM}[auth.jwt.j]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n\
         claims_to_headers = {{ tenant = \"X-Tenant\", sub = \"X-User-Id\", email = \"X-Email\" }}\n\n\
         [[route]]\npath = \"/v1/{{org}}/users/{{id}}\"\nupstream = \"users\"\nauth = \"j\"\n\
         {route_lines}\n{tables}\n"
    )
}

/// [`edits`] with `[route.request_headers]` of these lines.
fn request_headers(lines: &str) -> String {
    edits("", &format!("[route.request_headers]\n{lines}"))
}

/// [`edits`] with `[route.response_headers]` of these lines.
fn response_headers(lines: &str) -> String {
    edits("", &format!("[route.response_headers]\n{lines}"))
}

/// The only route of a config that must load.
#[track_caller]
fn route_of(text: &str) -> Route {
    match load_str(text, "t.toml") {
        Ok(config) => config.routes[0].clone(),
        Err(error) => panic!("{error}\n{text}"),
    }
}

fn lit(s: &str) -> TemplatePart {
    TemplatePart::Literal(s.to_owned())
}

fn var(variable: Variable) -> TemplatePart {
    TemplatePart::Var(variable)
}

#[test]
fn rewrite_path_becomes_a_template_of_the_patterns_parameters() {
    use Variable::Param;
    for (template, parts) in [
        (
            "/users/{id}/orgs/{org}",
            vec![lit("/users/"), var(Param(1)), lit("/orgs/"), var(Param(0))],
        ),
        (
            "/{org}-{id}.json",
            vec![
                lit("/"),
                var(Param(0)),
                lit("-"),
                var(Param(1)),
                lit(".json"),
            ],
        ),
        ("/{id}{id}", vec![lit("/"), var(Param(1)), var(Param(1))]),
        ("/static/a%7Bb", vec![lit("/static/a%7Bb")]),
        ("/", vec![lit("/")]),
    ] {
        let route = route_of(&edits(&format!("rewrite_path = \"{template}\""), ""));
        assert_eq!(route.rewrite, Rewrite::Template(parts), "{template}");
    }
    assert_eq!(route_of(&edits("", "")).rewrite, Rewrite::None);
}

#[test]
fn rewrite_path_needs_an_exact_path() {
    let text = route("path_prefix = \"/a\"\nrewrite_path = \"/b\"");
    let error = fails_at(&text, "rewrite_path", "route[0].rewrite_path");
    assert_eq!(
        error.message,
        "rewrite_path needs path, but this route has path_prefix"
    );
    // The prefix rewrites point the other way.
    let text = route("path = \"/a\"\nstrip_prefix = true");
    let error = fails_at(&text, "strip_prefix", "route[0].strip_prefix");
    assert!(
        error.hint.unwrap_or_default().contains("rewrite_path"),
        "hint"
    );
}

#[test]
fn rewrite_path_excludes_prefix_rewrites_at_the_later_key() {
    for (lines, later, message) in [
        (
            "path = \"/a\"\nrewrite_path = \"/b\"\nstrip_prefix = true",
            "strip_prefix",
            "rewrite_path and strip_prefix are both set",
        ),
        (
            "path = \"/a\"\nstrip_prefix = true\nrewrite_path = \"/b\"",
            "rewrite_path",
            "strip_prefix and rewrite_path are both set",
        ),
        (
            "path_prefix = \"/a\"\nreplace_prefix = \"/c\"\nrewrite_path = \"/b\"",
            "rewrite_path",
            "replace_prefix and rewrite_path are both set",
        ),
        (
            "path_prefix = \"/a\"\nrewrite_path = \"/b\"\nreplace_prefix = \"/c\"",
            "replace_prefix",
            "rewrite_path and replace_prefix are both set",
        ),
        (
            "path_prefix = \"/a\"\nreplace_prefix = \"/c\"\nstrip_prefix = true",
            "strip_prefix",
            "replace_prefix and strip_prefix are both set",
        ),
    ] {
        let text = route(lines);
        let error = fails_at(&text, later, &format!("route[0].{later}"));
        assert_eq!(error.message, message);
    }
    // `strip_prefix = false` sets nothing.
    let route = route_of(&edits("rewrite_path = \"/{id}\"\nstrip_prefix = false", ""));
    assert!(matches!(route.rewrite, Rewrite::Template(_)));
}

#[test]
fn rewrite_path_is_a_request_path() {
    for (bad, message) in [
        ("\"users/{id}\"", "does not start with `/`"),
        ("\"/u?x=1\"", "contains '?'"),
        ("\"/u#f\"", "contains '#'"),
        ("\"/u v\"", "contains ' '"),
        ("\"/u\\t\"", "contains '\\t'"),
        ("\"/ü\"", "contains 'ü'"),
        ("\"/u//{id}\"", "has an empty segment (`//`)"),
    ] {
        let text = edits(&format!("rewrite_path = {bad}"), "");
        let error = fails_at(&text, bad, "route[0].rewrite_path");
        assert!(error.message.contains(message), "{bad}: {error}");
    }
    let error = fails_at(
        &edits("rewrite_path = \"/u?x=1\"", ""),
        "\"/u?",
        "route[0].rewrite_path",
    );
    assert!(
        error
            .hint
            .unwrap_or_default()
            .contains("query is forwarded"),
        "hint"
    );
}

#[test]
fn rewrite_path_braces_name_parameters() {
    for bad in [
        "\"/{}\"",
        "\"/{id\"",
        "\"/id}\"",
        "\"/{a/b}\"",
        "\"/{{id}}\"",
    ] {
        let text = edits(&format!("rewrite_path = {bad}"), "");
        let error = fails_at(&text, bad, "route[0].rewrite_path");
        assert!(
            error.message.contains("that is not part of a {name}"),
            "{bad}: {error}"
        );
    }
    let text = edits("rewrite_path = \"/{user}\"", "");
    let error = fails_at(&text, "\"/{user}\"", "route[0].rewrite_path");
    assert_eq!(
        error.message,
        "rewrite_path \"/{user}\": {user} is not a parameter of path"
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("parameters of this route's path: org, id")
    );
    let text = route("path = \"/static\"\nrewrite_path = \"/{id}\"");
    let error = fails_at(&text, "\"/{id}\"", "route[0].rewrite_path");
    assert!(
        error.hint.unwrap_or_default().contains("has no {param}"),
        "hint"
    );
}

#[test]
fn request_id_defaults_to_false_and_can_be_turned_on() {
    assert!(!route_of(&edits("", "")).request_id);
    assert!(route_of(&edits("request_id = true", "")).request_id);
    fails_at(
        &edits("request_id = \"no\"", ""),
        "\"no\"",
        "route[0].request_id",
    );
    let config = load_str(&edits("request_id = true", ""), "t.toml").expect("valid");
    assert!(
        config.summary().contains(" auth=j request_id=on\n"),
        "{}",
        config.summary()
    );
    let config = load_str(&edits("", ""), "t.toml").expect("valid");
    assert!(
        !config.summary().contains("request_id"),
        "{}",
        config.summary()
    );
}

#[test]
fn header_edits_default_to_none() {
    let route = route_of(&edits("", ""));
    assert_eq!(route.request_headers, HeaderEdits::default());
    assert_eq!(route.response_headers, HeaderEdits::default());
    let route = route_of(&edits(
        "",
        "[route.request_headers]\n\n[route.response_headers]\nremove = []\n",
    ));
    assert_eq!(route.request_headers, HeaderEdits::default());
    assert_eq!(route.response_headers, HeaderEdits::default());
}

#[test]
fn header_edits_become_the_model() {
    let route = route_of(&request_headers(
        "remove = [\"X-Debug\", \"x-trace\"]\nrename = { \"X-Old\" = \"X-New\", x-case = \"X-Case\" }\n\
         set = { \"X-Env\" = \"prod\" }\nadd = { \"X-Client\" = \"ip=${client_ip}\" }",
    ));
    assert_eq!(
        route.request_headers,
        HeaderEdits {
            remove: vec!["x-debug".to_owned(), "x-trace".to_owned()],
            // A BTreeMap: "X-Old" sorts before "x-case". A rename may change only the case.
            rename: vec![
                ("x-old".to_owned(), "X-New".to_owned()),
                ("x-case".to_owned(), "X-Case".to_owned()),
            ],
            set: vec![("X-Env".to_owned(), vec![lit("prod")])],
            add: vec![(
                "X-Client".to_owned(),
                vec![lit("ip="), var(Variable::ClientIp)]
            )],
        }
    );
}

#[test]
fn header_edit_names_are_tokens_listed_once() {
    let at = "route[0].request_headers";
    let text = request_headers("remove = [\"x-a\", \"x:b\"]");
    fails_at(&text, "\"x:b\"", &format!("{at}.remove[1]"));
    let text = request_headers("remove = [\"x-a\", \"X-A\"]");
    let error = fails_at(&text, "\"X-A\"", &format!("{at}.remove[1]"));
    assert_eq!(
        error.message,
        "header X-A is listed twice in remove (names are case-insensitive)"
    );
    let text = request_headers("rename = { \"x a\" = \"y\" }");
    fails_at(&text, "\"x a\"", &format!("{at}.rename.\"x a\""));
    let text = request_headers("rename = { x-a = \"y b\" }");
    fails_at(&text, "\"y b\"", &format!("{at}.rename.x-a"));
    let text = request_headers("rename = { X-A = \"y\", x-a = \"z\" }");
    fails_at(&text, "x-a =", &format!("{at}.rename.x-a"));
    // BTreeMap order: "X-A" sorts before "x-a", so the lower-case one is the duplicate.
    let text = request_headers("set = { X-A = \"1\", x-a = \"2\" }");
    fails_at(&text, "x-a =", &format!("{at}.set.x-a"));
    let text = request_headers("add = { \"a@b\" = \"1\" }");
    fails_at(&text, "\"a@b\"", &format!("{at}.add.\"a@b\""));
    let text = response_headers("add = { X-A = \"1\", x-a = \"2\" }");
    fails_at(&text, "x-a =", "route[0].response_headers.add.x-a");
    // The same name under two keys is allowed: set replaces, add appends.
    route_of(&request_headers(
        "set = { X-A = \"1\" }\nadd = { X-A = \"2\" }",
    ));
}

#[test]
fn header_edits_never_touch_framing_or_routing_headers() {
    for name in [
        "host",
        "Content-Length",
        "transfer-encoding",
        "Connection",
        "keep-alive",
        "TE",
        "trailer",
        "upgrade",
        "Expect",
    ] {
        for (table, lines) in [
            ("request_headers", format!("remove = [\"{name}\"]")),
            (
                "response_headers",
                format!("rename = {{ \"{name}\" = \"X-A\" }}"),
            ),
            (
                "request_headers",
                format!("rename = {{ X-A = \"{name}\" }}"),
            ),
            (
                "response_headers",
                format!("set = {{ \"{name}\" = \"1\" }}"),
            ),
            ("request_headers", format!("add = {{ \"{name}\" = \"1\" }}")),
        ] {
            let text = edits("", &format!("[route.{table}]\n{lines}"));
            let field = match lines.split_once(' ').map(|(key, _)| key) {
                Some("remove") => format!("route[0].{table}.remove[0]"),
                Some("rename") if lines.contains("X-A = ") => {
                    format!("route[0].{table}.rename.X-A")
                }
                Some(key) => format!("route[0].{table}.{key}.{name}"),
                None => unreachable!(),
            };
            let error = fails_at(&text, &format!("\"{name}\""), &field);
            assert!(
                error
                    .message
                    .starts_with(&format!("{name} cannot be edited: ")),
                "{error}"
            );
        }
    }
}

#[test]
fn request_edits_never_write_identity_headers() {
    let at = "route[0].request_headers";
    let text = request_headers("set = { \"X-User-Id\" = \"admin\" }");
    let error = fails_at(&text, "\"X-User-Id\" =", &format!("{at}.set.X-User-Id"));
    assert_eq!(
        error.message,
        "request_headers cannot set X-User-Id: it is an identity header"
    );
    let text = request_headers("add = { x-tenant = \"t\" }");
    fails_at(&text, "x-tenant =", &format!("{at}.add.x-tenant"));
    // So would its CGI twin, which the upstream reads as the same header.
    let text = request_headers("add = { X_User_Id = \"admin\" }");
    fails_at(&text, "X_User_Id =", &format!("{at}.add.X_User_Id"));
    // Renaming a client header to an identity header would forge one.
    let text = request_headers("rename = { X-Mine = \"X-Email\" }");
    let error = fails_at_nth(&text, "\"X-Email\"", 1, &format!("{at}.rename.X-Mine"));
    assert!(
        error.message.contains("cannot rename to X-Email"),
        "{error}"
    );
    // Responses may carry them; and X-Consumer is no identity header without an API-key set.
    route_of(&response_headers(
        "set = { \"X-User-Id\" = \"${claim.sub}\" }",
    ));
    route_of(&request_headers("set = { \"X-Consumer\" = \"web\" }"));
}

#[test]
fn request_id_header_is_the_gateways_unless_request_id_is_off() {
    for (table, lines, needle, field) in [
        (
            "request_headers",
            "remove = [\"x-request-id\"]",
            "\"x-request-id\"",
            "remove[0]",
        ),
        (
            "response_headers",
            "rename = { X-Request-Id = \"X-Id\" }",
            "X-Request-Id =",
            "rename.X-Request-Id",
        ),
        (
            "request_headers",
            "rename = { X-Id = \"X-Request-Id\" }",
            "\"X-Request-Id\"",
            "rename.X-Id",
        ),
        (
            "request_headers",
            "set = { X-Request-Id = \"1\" }",
            "X-Request-Id =",
            "set.X-Request-Id",
        ),
        (
            "response_headers",
            "add = { X-Request-Id = \"1\" }",
            "X-Request-Id =",
            "add.X-Request-Id",
        ),
    ] {
        let text = edits("request_id = true", &format!("[route.{table}]\n{lines}"));
        let error = fails_at(&text, needle, &format!("route[0].{table}.{field}"));
        assert!(
            error
                .message
                .ends_with("is the gateway's with request_id = true"),
            "{error}"
        );
        let route = route_of(&edits("", &format!("[route.{table}]\n{lines}")));
        assert!(!route.request_id);
    }
}

#[test]
fn renames_do_not_depend_on_their_order() {
    let at = "route[0].request_headers.rename";
    let text = request_headers("remove = [\"x-a\"]\nrename = { X-A = \"x-b\" }");
    let error = fails_at(&text, "X-A =", &format!("{at}.X-A"));
    assert_eq!(error.message, "X-A is removed, so renaming it does nothing");
    let text = request_headers("rename = { a = \"b\", b = \"c\" }");
    let error = fails_at(&text, "\"b\"", &format!("{at}.a"));
    assert_eq!(error.message, "a is renamed to b, which is renamed too");
    let text = request_headers("rename = { a = \"X\", b = \"x\" }");
    let error = fails_at(&text, "\"x\"", &format!("{at}.b"));
    assert_eq!(error.message, "a and b are both renamed to x");
}

#[test]
fn value_templates_resolve_every_variable() {
    use Variable::{Claim, ClientIp, Param, RequestId, Route};
    let route = route_of(&edits(
        "request_id = true",
        "[route.request_headers]\nset = { X-A = \"${client_ip} ${route} ${request_id}\", \
         X-B = \"${param.org}/${param.id}\", \
         X-C = \"${claim.email},${claim.sub},${claim.tenant}\", \
         X-D = \"$$${route}$$a$$\", X-E = \"\", X-F = \"a\\tb\" }",
    ));
    assert_eq!(
        route.request_headers.set,
        vec![
            (
                "X-A".to_owned(),
                vec![
                    var(ClientIp),
                    lit(" "),
                    var(Route),
                    lit(" "),
                    var(RequestId)
                ]
            ),
            (
                "X-B".to_owned(),
                vec![var(Param(0)), lit("/"), var(Param(1))]
            ),
            (
                "X-C".to_owned(),
                vec![
                    var(Claim(0)),
                    lit(","),
                    var(Claim(1)),
                    lit(","),
                    var(Claim(2))
                ]
            ),
            // `$$` is `$`, merged with the literal text around it.
            ("X-D".to_owned(), vec![lit("$"), var(Route), lit("$a$")]),
            ("X-E".to_owned(), vec![]),
            ("X-F".to_owned(), vec![lit("a\tb")]),
        ]
    );
}

#[test]
fn value_template_syntax_is_checked() {
    for (bad, message) in [
        ("${nope}", "uses the unknown variable ${nope}"),
        ("${CLIENT_IP}", "uses the unknown variable ${CLIENT_IP}"),
        ("${client_ip", "has an unclosed `${`"),
        ("a ${}", "has an empty ${}"),
        ("$client_ip", "has a `$` that starts no ${name}"),
        ("US$", "has a `$` that starts no ${name}"),
        ("${param.}", "${param.} names no parameter"),
        ("${param.a-b}", "${param.a-b} names no parameter"),
        ("${claim.}", "${claim.} names no claim"),
    ] {
        let text = request_headers(&format!("set = {{ X-A = \"{bad}\" }}"));
        let error = fails_at(
            &text,
            &format!("\"{bad}\""),
            "route[0].request_headers.set.X-A",
        );
        assert!(error.message.contains(message), "{bad}: {error}");
    }
    let text = request_headers("add = { X-A = \"${nope}\" }");
    let error = fails_at(&text, "\"${nope}\"", "route[0].request_headers.add.X-A");
    assert!(
        error.hint.unwrap_or_default().contains("${client_ip}"),
        "hint lists the variables"
    );
}

#[test]
fn value_literals_are_header_value_bytes() {
    for (bad, message) in [
        ("a\\r\\nX-Injected: 1", "contains '\\r'"),
        ("a\\nb", "contains '\\n'"),
        ("a\\u0000", "contains '\\0'"),
        ("caf\u{e9}", "contains 'é'"),
        (" a", "starts or ends with whitespace"),
        ("a\\t", "starts or ends with whitespace"),
    ] {
        let text = response_headers(&format!("set = {{ X-A = \"{bad}\" }}"));
        let error = fails_at(
            &text,
            &format!("\"{bad}\""),
            "route[0].response_headers.set.X-A",
        );
        assert!(error.message.contains(message), "{bad}: {error}");
    }
    let max = defaults::HEADER_VALUE_TEMPLATE_BYTES_MAX;
    route_of(&response_headers(&format!(
        "add = {{ X-A = \"{}\" }}",
        "a".repeat(max)
    )));
    let text = response_headers(&format!("add = {{ X-A = \"{}\" }}", "a".repeat(max + 1)));
    let error = fails_at(&text, "\"aaa", "route[0].response_headers.add.X-A");
    assert_eq!(
        error.message,
        format!("the value of X-A is {} bytes, more than {max}", max + 1)
    );
}

#[test]
fn param_variables_need_a_parameter_of_the_pattern() {
    let text = request_headers("set = { X-A = \"${param.user}\" }");
    let error = fails_at(
        &text,
        "\"${param.user}\"",
        "route[0].request_headers.set.X-A",
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("parameters of this route's path: org, id")
    );
    let text = format!(
        "{}\n[route.response_headers]\nadd = {{ X-A = \"${{param.id}}\" }}\n",
        route("path_prefix = \"/users\"")
    );
    let error = fails_at(
        &text,
        "\"${param.id}\"",
        "route[0].response_headers.add.X-A",
    );
    assert!(
        error
            .hint
            .unwrap_or_default()
            .starts_with("a path_prefix route has no parameters"),
        "hint"
    );
}

#[test]
fn claim_variables_need_a_jwt_that_maps_the_claim() {
    let field = "route[0].request_headers.set.X-A";
    let table = "[route.request_headers]\nset = { X-A = \"${claim.role}\" }";
    let text = request_headers("set = { X-A = \"${claim.role}\" }");
    let error = fails_at(&text, "\"${claim.role}\"", field);
    assert_eq!(
        error.message,
        "the value of X-A uses claim role, which [auth.jwt.j] does not map in claims_to_headers"
    );
    assert_eq!(
        error.hint.as_deref(),
        Some(
            "claims mapped by [auth.jwt.j]: email, sub, tenant; add role to its \
             claims_to_headers"
        )
    );
    // No auth at all.
    let text = format!("{}\n{table}\n", route("path_prefix = \"/\""));
    let error = fails_at(&text, "\"${claim.role}\"", field);
    assert!(
        error.message.ends_with("but the route has no auth"),
        "{error}"
    );
    // API keys carry no claims.
    let text = format!(
        "{}\n{table}\n",
        policies(
            &format!(
                "[auth.api_keys.k]\nkeys = [{{ consumer = \"acme\", sha256 = \"{FOO_SHA256}\" }}]"
            ),
            "auth = \"k\""
        )
    );
    let error = fails_at(&text, "\"${claim.role}\"", field);
    assert!(error.message.ends_with("is an API-key set"), "{error}");
    // A verifier that maps nothing.
    let text = format!(
        "{}\n{table}\n",
        policies(
            &format!(
                "[auth.jwt.j]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET_32}\"\n\
                 claims_to_headers = {{}}"
            ),
            "auth = \"j\""
        )
    );
    let error = fails_at(&text, "\"${claim.role}\"", field);
    assert_eq!(
        error.hint.as_deref(),
        Some("[auth.jwt.j] maps no claims; add claims_to_headers = { role = \"X-Header\" }")
    );
}

#[test]
fn the_request_id_variable_needs_request_id() {
    let text = edits(
        "request_id = false",
        "[route.response_headers]\nadd = { X-A = \"${request_id}\" }",
    );
    let error = fails_at(
        &text,
        "\"${request_id}\"",
        "route[0].response_headers.add.X-A",
    );
    assert_eq!(
        error.message,
        "the value of X-A uses ${request_id}, but request_id = false"
    );
}

#[test]
fn header_edits_are_bounded() {
    let max = defaults::HEADER_EDITS_MAX;
    let names = |n: usize| {
        let names: Vec<String> = (0..n).map(|i| format!("\"x-{i}\"")).collect();
        names.join(", ")
    };
    let route = route_of(&request_headers(&format!("remove = [{}]", names(max))));
    assert_eq!(route.request_headers.remove.len(), max);
    let text = request_headers(&format!(
        "remove = [{}]\nset = {{ X-A = \"1\" }}",
        names(max)
    ));
    let error = fails_at(&text, "[route.request_headers]", "route[0].request_headers");
    assert_eq!(
        error.message,
        format!("{} header edits, more than {max}", max + 1)
    );
}

#[test]
fn header_edits_reject_unknown_keys_and_are_located_in_their_own_route() {
    let error = fails_at(
        &request_headers("removes = [\"X-A\"]"),
        "removes =",
        "route[0].request_headers.removes",
    );
    assert!(
        error
            .hint
            .unwrap_or_default()
            .contains("did you mean `remove`?"),
        "hint"
    );
    fails_at(
        &request_headers("remove = \"X-A\""),
        "\"X-A\"",
        "route[0].request_headers.remove",
    );
    fails_at(
        &response_headers("set = { X-A = 1 }"),
        "1 }",
        "route[0].response_headers.set.X-A",
    );
    // The table after the second [[route]] belongs to route[1].
    let text = format!(
        "{}\n[route.request_headers]\nremove = [\"x-a\"]\n\n[[route]]\npath = \"/b\"\n\
         upstream = \"users\"\n\n[route.request_headers]\nremove = [\"host\"]\n",
        route("path_prefix = \"/\"")
    );
    fails_at(&text, "\"host\"", "route[1].request_headers.remove[0]");
}

// ----- route retry and timeout -----

/// An upstream with two endpoints, so a retry has somewhere to go.
const TWO_ENDPOINTS: &str = "[upstreams.users]\nendpoints = [{ address = \"10.0.0.1:8080\" }, \
                             { address = \"10.0.0.2:8080\" }]\n\n";

/// A valid config whose only route (on a two-endpoint upstream) has `[route.retry]` with these
/// lines.
fn with_retry(lines: &str) -> String {
    format!("{LISTENER}{TWO_ENDPOINTS}{ROUTE}\n[route.retry]\n{lines}\n")
}

#[test]
fn a_retry_table_turns_retries_on_with_the_defaults() {
    assert_eq!(
        route_of(&with_retry("")).retry,
        Some(Retry {
            attempts: defaults::RETRY_ATTEMPTS,
            on_statuses: defaults::RETRY_ON_STATUSES.to_vec(),
            budget_percent: defaults::RETRY_BUDGET_PERCENT,
        })
    );
    assert_eq!(
        (defaults::RETRY_ATTEMPTS, defaults::RETRY_BUDGET_PERCENT),
        (1, 20)
    );
    assert_eq!(defaults::RETRY_ON_STATUSES, [502, 503, 504]);
    let plain = route_of(&format!("{LISTENER}{TWO_ENDPOINTS}{ROUTE}"));
    assert_eq!(
        (plain.retry, plain.timeout_ms),
        (None, None),
        "off by default"
    );
    // An inline table is the same thing.
    let text = format!(
        "{LISTENER}{TWO_ENDPOINTS}{ROUTE}retry = {{ attempts = 2, on_statuses = [503] }}\n"
    );
    assert_eq!(
        route_of(&text).retry,
        Some(Retry {
            attempts: 2,
            on_statuses: vec![503],
            budget_percent: 20,
        })
    );
}

#[test]
fn retry_bounds_are_inclusive() {
    let low = route_of(&with_retry(
        "attempts = 1\non_statuses = []\nbudget_percent = 1",
    ));
    assert_eq!(
        low.retry,
        Some(Retry {
            attempts: 1,
            on_statuses: vec![],
            budget_percent: 1,
        })
    );
    let high = route_of(&with_retry(
        "attempts = 10\non_statuses = [599, 500]\nbudget_percent = 100",
    ));
    assert_eq!(
        high.retry,
        Some(Retry {
            attempts: 10,
            on_statuses: vec![599, 500],
            budget_percent: 100,
        }),
        "statuses kept in the file's order"
    );
}

#[test]
fn retry_attempts_and_budget_are_range_checked() {
    for (key, bad, range) in [
        ("attempts", "0", "1..=10"),
        ("attempts", "11", "1..=10"),
        ("budget_percent", "0", "1..=100"),
        ("budget_percent", "101", "1..=100"),
    ] {
        let error = fails_at(
            &with_retry(&format!("{key} = {bad}")),
            &format!("{bad}\n"),
            &format!("route[0].retry.{key}"),
        );
        assert_eq!(
            error.message,
            format!("{key} = {bad} is outside {range}"),
            "{error}"
        );
    }
    let text = with_retry("attempts = 0");
    let error = fails_at(&text, "0\n", "route[0].retry.attempts");
    assert_eq!(
        error.to_string(),
        "t.toml:12:12: route[0].retry.attempts: attempts = 0 is outside 1..=10\n  hint: \
         attempts counts the tries after the first, each on another endpoint; the default is \
         1; remove [route.retry] for no retries"
    );
}

#[test]
fn retry_statuses_are_server_errors_listed_once() {
    let field = "route[0].retry.on_statuses[1]";
    let error = fails_at(&with_retry("on_statuses = [502, 404]"), "404", field);
    assert_eq!(
        error.message,
        "retry status 404 is not a server error (5xx)"
    );
    fails_at(&with_retry("on_statuses = [502, 600]"), "600", field);
    let error = fails_at_nth(&with_retry("on_statuses = [503, 503]"), "503", 1, field);
    assert_eq!(
        error.message,
        "retry status 503 is listed twice (also on_statuses[0])"
    );
    // Shape errors come from the schema, located at the element.
    fails_at(
        &with_retry("on_statuses = [502, \"503\"]"),
        "\"503\"",
        field,
    );
    fails_at(&with_retry("on_statuses = [502, 70000]"), "70000", field);
}

#[test]
fn retry_needs_another_endpoint() {
    let text = format!("{LISTENER}{UPSTREAM}{ROUTE}\n[route.retry]\nattempts = 2\n");
    let error = fails_at(&text, "[route.retry]", "route[0].retry");
    assert_eq!(
        error.to_string(),
        "t.toml:11:1: route[0].retry: upstream `users` has a single endpoint (10.0.0.1:8080), \
         so no retry could ever be sent\n  hint: retries go to another endpoint; the upstream \
         has only one: add endpoints to it, or remove [route.retry]"
    );
    // Written inline, the error is at the inline table.
    let text = format!("{LISTENER}{UPSTREAM}{ROUTE}retry = {{ attempts = 1 }}\n");
    fails_at(&text, "{ attempts", "route[0].retry");
    // The upstream is the route's own, not the first one.
    let text = format!(
        "{LISTENER}{TWO_ENDPOINTS}[upstreams.solo]\nendpoints = [{{ address = \"10.0.0.9:80\" }}]\
         \n\n{ROUTE}\n[[route]]\npath = \"/solo\"\nupstream = \"solo\"\n\n[route.retry]\n"
    );
    let error = fails_at(&text, "[route.retry]", "route[1].retry");
    assert!(error.message.starts_with("upstream `solo`"), "{error}");
    let two = text.replace("[[route]]\npath = \"/solo\"\nupstream = \"solo\"\n\n", "");
    assert!(route_of(&two).retry.is_some(), "two endpoints are enough");
}

#[test]
fn retry_rejects_unknown_keys_and_wrong_types() {
    let error = fails_at(
        &with_retry("attempt = 2"),
        "attempt =",
        "route[0].retry.attempt",
    );
    assert!(
        error
            .hint
            .unwrap_or_default()
            .starts_with("did you mean `attempts`?"),
        "hint"
    );
    fails_at(
        &with_retry("attempts = \"2\""),
        "\"2\"",
        "route[0].retry.attempts",
    );
    fails_at(
        &with_retry("budget_percent = -1"),
        "-1",
        "route[0].retry.budget_percent",
    );
    fails_at(
        &with_retry("on_statuses = 502"),
        "502",
        "route[0].retry.on_statuses",
    );
    // `retry = true` is not how it is turned on.
    let text = format!("{LISTENER}{TWO_ENDPOINTS}{ROUTE}retry = true\n");
    fails_at(&text, "true", "route[0].retry");
}

#[test]
fn route_timeout_is_range_checked() {
    for ok in [1, 5000, 3_600_000] {
        let text = route(&format!("path_prefix = \"/\"\ntimeout_ms = {ok}"));
        assert_eq!(route_of(&text).timeout_ms, Some(ok));
    }
    assert_eq!(defaults::ROUTE_TIMEOUT_MS_MAX, 3_600_000);
    for bad in ["0", "3600001"] {
        let text = route(&format!("path_prefix = \"/\"\ntimeout_ms = {bad}"));
        let error = fails_at(&text, &format!("{bad}\n"), "route[0].timeout_ms");
        assert_eq!(
            error.message,
            format!("timeout_ms = {bad} is outside 1..=3600000")
        );
        assert!(
            error
                .hint
                .unwrap_or_default()
                .contains("remove the key for no route bound"),
            "hint"
        );
    }
    let text = route("path_prefix = \"/\"\ntimeout_ms = \"5s\"");
    fails_at(&text, "\"5s\"", "route[0].timeout_ms");
    let text = route("path_prefix = \"/\"\ntimeout_ms = -1");
    fails_at(&text, "-1", "route[0].timeout_ms");
    // No retry needed, and a single endpoint is fine.
    let config = route_of(&route("path_prefix = \"/\"\ntimeout_ms = 250"));
    assert_eq!((config.retry, config.timeout_ms), (None, Some(250)));
}

// ----- aggregate routes -----

const ORDERS: &str = "[upstreams.orders]\nendpoints = [{ address = \"10.0.0.2:8080\" }]\n\n";

/// A valid config (upstreams `orders` 0 and `users` 1) whose only route has `lines` in its
/// `[[route]]` table (`path = "/dash/{org}/{id}"` unless a path is given), then `parts`.
fn aggregate(lines: &str, parts: &str) -> String {
    let path = if lines
        .lines()
        .any(|line| line.starts_with("path =") || line.starts_with("path_prefix ="))
    {
        ""
    } else {
        "path = \"/dash/{org}/{id}\"\n"
    };
    format!("{LISTENER}{UPSTREAM}{ORDERS}[[route]]\n{path}{lines}\n{parts}")
}

/// A `[[route.aggregate]]` table with `lines`, and `key = "profile"`, `upstream = "users"`,
/// `path = "/users/{id}"` for those not in `lines`.
fn part(lines: &str) -> String {
    let mut text = format!("[[route.aggregate]]\n{lines}\n");
    for (key, default) in [
        ("key", "\"profile\""),
        ("upstream", "\"users\""),
        ("path", "\"/users/{id}\""),
    ] {
        if !lines.contains(&format!("{key} =")) {
            text.push_str(&format!("{key} = {default}\n"));
        }
    }
    text.push('\n');
    text
}

#[test]
fn an_aggregate_route_defaults_its_upstream_and_part_settings() {
    let first = route_of(&aggregate("", &part("")));
    assert_eq!(first.upstream, 1, "the first part's upstream, users");
    assert_eq!(
        first.aggregate,
        [AggregatePart {
            key: "profile".to_owned(),
            upstream: 1,
            path: vec![lit("/users/"), var(Variable::Param(1))],
            required: defaults::AGGREGATE_REQUIRED,
            timeout_ms: defaults::AGGREGATE_TIMEOUT_MS,
        }]
    );
    const { assert!(defaults::AGGREGATE_REQUIRED) };
    assert_eq!(defaults::AGGREGATE_TIMEOUT_MS, 2000);
    // A written upstream wins, and need not be a part's.
    let text = aggregate("upstream = \"orders\"", &part(""));
    assert_eq!(route_of(&text).upstream, 0);
    // Inline parts work the same.
    let text = aggregate(
        "aggregate = [{ key = \"a\", upstream = \"orders\", path = \"/a\" }]",
        "",
    );
    let inline = route_of(&text);
    assert_eq!((inline.upstream, inline.aggregate.len()), (0, 1));
    // A route without parts forwards as before.
    assert!(route_of(&route("path_prefix = \"/\"")).aggregate.is_empty());
}

#[test]
fn an_aggregate_routes_written_upstream_must_exist() {
    let text = aggregate("upstream = \"nope\"", &part(""));
    let error = fails_at(&text, "\"nope\"", "route[0].upstream");
    assert_eq!(error.message, "no upstream named `nope`");
    assert_eq!(
        error.hint.as_deref(),
        Some("defined upstreams: orders, users")
    );
}

#[test]
fn a_route_with_neither_upstream_nor_parts_is_missing_upstream() {
    // Unchanged by aggregate routes making the key optional: the route's table, this message
    // and hint.
    let text = format!("{LISTENER}{UPSTREAM}[[route]]\nname = \"x\"\npath = \"/x\"\n");
    let error = fails_at(&text, "[[route]]", "route[0].upstream");
    assert_eq!(error.message, "missing field `upstream`");
    assert_eq!(
        error.hint.as_deref(),
        Some("add upstream = \"NAME\", naming one of the [upstreams.NAME] tables")
    );
    // The second route's table, not the first's.
    let text = format!("{LISTENER}{UPSTREAM}{ROUTE}\n[[route]]\npath = \"/x\"\n");
    fails_at_nth(&text, "[[route]]", 1, "route[1].upstream");
}

#[test]
fn an_aggregate_route_has_one_to_sixteen_parts() {
    let text = aggregate("aggregate = []", "");
    let error = fails_at(&text, "[]", "route[0].aggregate");
    assert_eq!(error.message, "aggregate = [] has no parts");
    assert_eq!(defaults::AGGREGATE_PARTS_MAX, 16);
    let parts = |n: usize| -> String {
        (0..n)
            .map(|i| part(&format!("key = \"p{i}\"")))
            .collect::<String>()
    };
    assert_eq!(route_of(&aggregate("", &parts(16))).aggregate.len(), 16);
    let text = aggregate("", &parts(17));
    let error = fails_at_nth(&text, "[[route.aggregate]]", 16, "route[0].aggregate[16]");
    assert_eq!(
        error.message,
        "the route has 17 aggregate parts, more than 16"
    );
}

#[test]
fn an_aggregate_route_answers_get_and_head_only() {
    for ok in ["[\"GET\"]", "[\"HEAD\"]", "[\"get\", \"Head\"]", "[]"] {
        let route = route_of(&aggregate(&format!("methods = {ok}"), &part("")));
        assert_eq!(route.aggregate.len(), 1, "{ok}");
    }
    let text = aggregate("methods = [\"GET\", \"post\"]", &part(""));
    let error = fails_at(&text, "\"post\"", "route[0].methods[1]");
    assert_eq!(
        error.message,
        "an aggregate route answers GET and HEAD only, not POST"
    );
    assert!(
        error.hint.unwrap_or_default().contains("remove `methods`"),
        "hint"
    );
}

#[test]
fn an_aggregate_route_takes_no_forwarding_keys() {
    // Written before the parts: reported at the parts, the later key.
    let text = aggregate(
        "path_prefix = \"/dash\"\nstrip_prefix = true",
        &part("path = \"/users\""),
    );
    let error = fails_at(&text, "aggregate]]", "route[0].aggregate");
    assert_eq!(
        error.message,
        "aggregate parts on a route with strip_prefix"
    );
    let hint = error.hint.unwrap_or_default();
    assert!(hint.contains("builds its own calls"), "{hint}");
    assert!(hint.ends_with("remove strip_prefix"), "{hint}");
    let text = aggregate("rewrite_path = \"/x/{id}\"", &part(""));
    let error = fails_at(&text, "aggregate]]", "route[0].aggregate");
    assert_eq!(
        error.message,
        "aggregate parts on a route with rewrite_path"
    );
    // Written after inline parts: reported at the key itself.
    let inline = "aggregate = [{ key = \"a\", upstream = \"users\", path = \"/a\" }]";
    let text = aggregate(
        &format!("path_prefix = \"/dash\"\n{inline}\nreplace_prefix = \"/v2\""),
        "",
    );
    let error = fails_at(&text, "replace_prefix", "route[0].replace_prefix");
    assert_eq!(
        error.message,
        "replace_prefix is not allowed on an aggregate route"
    );
    let text = aggregate(&format!("{inline}\nrewrite_path = \"/x\""), "");
    fails_at(&text, "rewrite_path", "route[0].rewrite_path");
    // [route.retry] after the parts, or before them.
    let retry = "[route.retry]\nattempts = 1\n\n";
    let text = aggregate("", &format!("{}{retry}", part("")));
    let error = fails_at(&text, "retry]", "route[0].retry");
    assert_eq!(
        error.message,
        "[route.retry] is not allowed on an aggregate route"
    );
    assert!(
        error.hint.unwrap_or_default().contains("does not retry"),
        "hint"
    );
    let text = aggregate("", &format!("{retry}{}", part("")));
    let error = fails_at(&text, "aggregate]]", "route[0].aggregate");
    assert_eq!(
        error.message,
        "aggregate parts on a route with [route.retry]"
    );
    // Their defaults are fine.
    let text = aggregate("strip_prefix = false", &part(""));
    assert_eq!(route_of(&text).aggregate.len(), 1);
}

#[test]
fn aggregate_keys_are_plain_unique_and_not_errors() {
    for ok in ["a", "recent.orders", "invoice_total-v2", "A9"] {
        let text = aggregate("", &part(&format!("key = \"{ok}\"")));
        assert_eq!(route_of(&text).aggregate[0].key, ok);
    }
    for (bad, message) in [
        ("\"\"", "the aggregate key is empty"),
        ("\"a b\"", "aggregate key \"a b\" contains ' '"),
        ("\"a\\\"b\"", "aggregate key \"a\\\"b\" contains '\"'"),
        ("\"é\"", "aggregate key \"é\" contains 'é'"),
        ("\"errors\"", "aggregate key \"errors\" is reserved"),
    ] {
        let text = aggregate("", &part(&format!("key = {bad}")));
        let error = fails_at(&text, &format!("{bad}\n"), "route[0].aggregate[0].key");
        assert_eq!(error.message, message);
    }
    let text = aggregate(
        "",
        &format!("{}{}", part(""), part("upstream = \"orders\"")),
    );
    let error = fails_at_nth(&text, "\"profile\"", 1, "route[0].aggregate[1].key");
    assert_eq!(
        error.message,
        "aggregate key `profile` is already used by aggregate[0]"
    );
}

#[test]
fn aggregate_parts_name_an_existing_upstream() {
    let text = aggregate(
        "",
        &format!("{}{}", part(""), part("key = \"o\"\nupstream = \"order\"")),
    );
    let error = fails_at(&text, "\"order\"", "route[0].aggregate[1].upstream");
    assert_eq!(error.message, "no upstream named `order`");
    assert_eq!(
        error.hint.as_deref(),
        Some("defined upstreams: orders, users")
    );
}

#[test]
fn aggregate_paths_are_targets_over_the_routes_parameters() {
    // Parameters by their index among the pattern's parameters, inside segments and queries.
    let text = aggregate("", &part("path = \"/o/{org}/u/{id}.json?x={id}&y=1\""));
    assert_eq!(
        route_of(&text).aggregate[0].path,
        [
            lit("/o/"),
            var(Variable::Param(0)),
            lit("/u/"),
            var(Variable::Param(1)),
            lit(".json?x="),
            var(Variable::Param(1)),
            lit("&y=1"),
        ]
    );
    for (bad, message) in [
        (
            "users/{id}",
            "aggregate path \"users/{id}\" does not start with `/`",
        ),
        ("", "aggregate path \"\" does not start with `/`"),
        ("/u#top", "aggregate path \"/u#top\" contains '#'"),
        ("/u v", "aggregate path \"/u v\" contains ' '"),
        ("/u\\tv", "aggregate path \"/u\\tv\" contains '\\t'"),
        ("/ü", "aggregate path \"/ü\" contains 'ü'"),
        (
            "/u/{id",
            "aggregate path \"/u/{id\" has a `{` that is not part of a {name}",
        ),
        (
            "/u/id}",
            "aggregate path \"/u/id}\" has a `}` that is not part of a {name}",
        ),
        (
            "/u/{}",
            "aggregate path \"/u/{}\" has a `{` that is not part of a {name}",
        ),
        (
            "/u/{{id}}",
            "aggregate path \"/u/{{id}}\" has a `{` that is not part of a {name}",
        ),
    ] {
        let written = format!("\"{bad}\"");
        let text = aggregate("", &part(&format!("path = {written}")));
        let error = fails_at(&text, &format!("{written}\n"), "route[0].aggregate[0].path");
        assert_eq!(error.message, message, "{bad}");
    }
    let text = aggregate("", &part("path = \"/u/{user}\""));
    let error = fails_at(&text, "\"/u/{user}\"", "route[0].aggregate[0].path");
    assert_eq!(
        error.message,
        "aggregate path \"/u/{user}\": {user} is not a parameter of the route's path"
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("parameters of this route's path: org, id")
    );
    // A prefix route has no parameters; literal targets are fine.
    let text = aggregate("path_prefix = \"/dash\"", &part("path = \"/u/{id}\""));
    let error = fails_at(&text, "\"/u/{id}\"", "route[0].aggregate[0].path");
    assert!(
        error
            .hint
            .unwrap_or_default()
            .contains("a path_prefix route has no parameters"),
        "hint"
    );
    let text = aggregate("path_prefix = \"/dash\"", &part("path = \"/\""));
    assert_eq!(route_of(&text).aggregate[0].path, [lit("/")]);
}

#[test]
fn aggregate_part_timeouts_are_range_checked() {
    assert_eq!(defaults::AGGREGATE_TIMEOUT_MS_MAX, 60_000);
    for ok in [1, 60_000] {
        let text = aggregate("", &part(&format!("timeout_ms = {ok}")));
        assert_eq!(route_of(&text).aggregate[0].timeout_ms, ok);
    }
    for bad in ["0", "60001"] {
        let text = aggregate("", &part(&format!("timeout_ms = {bad}")));
        let error = fails_at(
            &text,
            &format!("{bad}\n"),
            "route[0].aggregate[0].timeout_ms",
        );
        assert_eq!(
            error.message,
            format!("timeout_ms = {bad} is outside 1..=60000")
        );
    }
    let text = aggregate("", &part("required = false"));
    assert!(!route_of(&text).aggregate[0].required);
    let text = aggregate("", &part("required = \"no\""));
    fails_at(&text, "\"no\"", "route[0].aggregate[0].required");
}

#[test]
fn aggregate_parts_reject_missing_and_unknown_keys() {
    let text = aggregate(
        "",
        "[[route.aggregate]]\nupstream = \"users\"\npath = \"/u\"\n",
    );
    let error = fails_at(&text, "[[route.aggregate]]", "route[0].aggregate[0].key");
    assert_eq!(error.message, "missing field `key`");
    assert!(
        error
            .hint
            .unwrap_or_default()
            .starts_with("add key = \"NAME\""),
        "hint"
    );
    let text = aggregate("", "[[route.aggregate]]\nkey = \"k\"\npath = \"/u\"\n");
    let error = fails_at(
        &text,
        "[[route.aggregate]]",
        "route[0].aggregate[0].upstream",
    );
    assert_eq!(error.message, "missing field `upstream`");
    let text = aggregate("", &part("timout_ms = 5"));
    let error = fails_at(&text, "timout_ms =", "route[0].aggregate[0].timout_ms");
    assert!(
        error
            .hint
            .unwrap_or_default()
            .starts_with("did you mean `timeout_ms`?"),
        "hint"
    );
}

// ----- JSON response filters -----

/// A valid config whose only route has `[route.json_filter]` with these lines.
fn with_filter(lines: &str) -> String {
    format!("{LISTENER}{UPSTREAM}{ROUTE}\n[route.json_filter]\n{lines}\n")
}

/// `n` distinct one-segment paths, `"p0", "p1", ...`, as TOML list items.
fn filter_paths(n: usize) -> String {
    let paths: Vec<String> = (0..n).map(|i| format!("\"p{i}\"")).collect();
    paths.join(", ")
}

#[test]
fn a_json_filter_has_a_mode_split_paths_and_a_default_body_limit() {
    let remove = route_of(&with_filter("remove = [\"internal\", \"user.ssn\"]"));
    assert_eq!(
        remove.json_filter,
        Some(JsonFilter {
            mode: JsonFilterMode::Remove,
            paths: vec![
                vec!["internal".to_owned()],
                vec!["user".to_owned(), "ssn".to_owned()],
            ],
            body_bytes_max: defaults::JSON_FILTER_BODY_BYTES_MAX,
        })
    );
    let keep = route_of(&with_filter("keep = [\"id\"]\nbody_bytes_max = 1"));
    let filter = keep.json_filter.expect("a filter");
    assert_eq!(
        (filter.mode, filter.paths, filter.body_bytes_max),
        (JsonFilterMode::Keep, vec![vec!["id".to_owned()]], 1)
    );
    // No table, no filter.
    assert_eq!(route_of(&route("path_prefix = \"/\"")).json_filter, None);
}

#[test]
fn a_json_filter_has_exactly_one_of_remove_and_keep() {
    let text = with_filter("body_bytes_max = 1024");
    let error = fails_at(&text, "[route.json_filter]", "route[0].json_filter");
    assert_eq!(
        error.message,
        "[route.json_filter] has neither remove nor keep"
    );
    // Both: reported at the one written later.
    let text = with_filter("remove = [\"a\"]\nkeep = [\"b\"]");
    let error = fails_at(&text, "keep", "route[0].json_filter.keep");
    assert_eq!(error.message, "remove and keep are both set");
    assert!(
        error.hint.unwrap_or_default().starts_with("keep one"),
        "hint"
    );
    let text = with_filter("keep = [\"b\"]\nremove = [\"a\"]");
    fails_at(&text, "remove", "route[0].json_filter.remove");
}

#[test]
fn a_json_filter_lists_one_to_sixty_four_paths() {
    let text = with_filter("keep = []");
    let error = fails_at(&text, "[]", "route[0].json_filter.keep");
    assert_eq!(error.message, "keep = [] lists no paths");
    let max = defaults::JSON_FILTER_PATHS_MAX;
    assert_eq!(max, 64);
    let route = route_of(&with_filter(&format!("remove = [{}]", filter_paths(max))));
    assert_eq!(route.json_filter.expect("a filter").paths.len(), max);
    let text = with_filter(&format!("remove = [{}]", filter_paths(max + 1)));
    let error = fails_at(&text, "\"p64\"", "route[0].json_filter.remove[64]");
    assert_eq!(error.message, "remove lists 65 paths, more than 64");
}

#[test]
fn json_filter_paths_are_dotted_printable_ascii() {
    for (bad, message) in [
        ("\"\"", "the path is empty"),
        (
            "\".a\"",
            "path \".a\" has an empty segment (a leading, trailing or doubled `.`)",
        ),
        (
            "\"a.\"",
            "path \"a.\" has an empty segment (a leading, trailing or doubled `.`)",
        ),
        (
            "\"a..b\"",
            "path \"a..b\" has an empty segment (a leading, trailing or doubled `.`)",
        ),
        ("\"a b\"", "path \"a b\" contains ' '"),
        ("\"a\\tb\"", "path \"a\\tb\" contains '\\t'"),
        ("\"a\\u0001b\"", "path \"a\\u{1}b\" contains '\\u{1}'"),
        ("\"a\\\"b\"", "path \"a\\\"b\" contains '\"'"),
        ("'a\\b'", "path \"a\\\\b\" contains '\\\\'"),
        ("\"café\"", "path \"café\" contains 'é'"),
    ] {
        let text = with_filter(&format!("remove = [\"ok\", {bad}]"));
        let error = fails_at(&text, bad, "route[0].json_filter.remove[1]");
        assert_eq!(error.message, message, "{bad}");
    }
    let text = with_filter("keep = [\"a b\"]");
    let error = fails_at(&text, "\"a b\"", "route[0].json_filter.keep[0]");
    assert!(
        error.hint.unwrap_or_default().contains("no whitespace"),
        "hint"
    );
    // Other printable ASCII is part of a segment.
    let route = route_of(&with_filter("keep = [\"@type\", \"a-b.$ref_2\", \"x:y\"]"));
    assert_eq!(
        route.json_filter.expect("a filter").paths,
        [
            vec!["@type".to_owned()],
            vec!["a-b".to_owned(), "$ref_2".to_owned()],
            vec!["x:y".to_owned()],
        ]
    );
}

#[test]
fn json_filter_paths_are_listed_once_and_never_inside_one_another() {
    let text = with_filter("remove = [\"a.b\", \"x\", \"a.b\"]");
    let error = fails_at_nth(&text, "\"a.b\"", 1, "route[0].json_filter.remove[2]");
    assert_eq!(error.message, "path `a.b` is listed twice (also remove[0])");
    // The later path inside an earlier one.
    let text = with_filter("remove = [\"user\", \"user.ssn\"]");
    let error = fails_at(&text, "\"user.ssn\"", "route[0].json_filter.remove[1]");
    assert_eq!(
        error.message,
        "path `user.ssn` lies inside `user` (remove[0])"
    );
    assert_eq!(
        error.hint.as_deref(),
        Some(
            "removing `user` removes `user.ssn` with it: list `user` alone, or `user.ssn` \
             alone to keep the rest of `user`"
        )
    );
    // The later path around an earlier one.
    let text = with_filter("keep = [\"id\", \"user.name\", \"user\"]");
    let error = fails_at(&text, "\"user\"]", "route[0].json_filter.keep[2]");
    assert_eq!(error.message, "path `user` contains `user.name` (keep[1])");
    assert!(
        error
            .hint
            .unwrap_or_default()
            .starts_with("keeping `user` keeps `user.name` with it"),
        "hint"
    );
    // Prefixes by whole segments only: `user` does not contain `username`.
    let route = route_of(&with_filter(
        "keep = [\"user\", \"username\", \"user_id.x\", \"a.b\", \"a.bc\"]",
    ));
    assert_eq!(route.json_filter.expect("a filter").paths.len(), 5);
}

#[test]
fn json_filter_body_limit_is_range_checked() {
    let ceiling = defaults::JSON_FILTER_BODY_BYTES_MAX_CEILING;
    assert_eq!(ceiling, 16 * 1024 * 1024);
    let route = route_of(&with_filter(&format!(
        "remove = [\"a\"]\nbody_bytes_max = {ceiling}"
    )));
    assert_eq!(route.json_filter.expect("a filter").body_bytes_max, ceiling);
    for bad in ["0".to_owned(), (ceiling + 1).to_string()] {
        let text = with_filter(&format!("remove = [\"a\"]\nbody_bytes_max = {bad}"));
        // The value at the end of its line (a bare `0` also occurs in the listener's address).
        let error = fails_at(
            &text,
            &format!("{bad}\n"),
            "route[0].json_filter.body_bytes_max",
        );
        assert_eq!(
            error.message,
            format!("body_bytes_max = {bad} is outside 1..=16777216 (16 MiB)")
        );
        assert!(
            error.hint.unwrap_or_default().contains("1048576 (1 MiB)"),
            "hint"
        );
    }
    let text = with_filter("remove = [\"a\"]\nbody_bytes_max = -1");
    fails_at(&text, "-1", "route[0].json_filter.body_bytes_max");
    let text = with_filter("remove = [\"a\"]\nbody_bytes_max = \"1MiB\"");
    fails_at(&text, "\"1MiB\"", "route[0].json_filter.body_bytes_max");
}

#[test]
fn json_filter_rejects_unknown_keys_and_wrong_types() {
    let error = fails_at(
        &with_filter("removes = [\"a\"]"),
        "removes",
        "route[0].json_filter.removes",
    );
    assert!(
        error
            .hint
            .unwrap_or_default()
            .contains("did you mean `remove`?"),
        "hint"
    );
    fails_at(
        &with_filter("keep = \"a\""),
        "\"a\"",
        "route[0].json_filter.keep",
    );
    fails_at(
        &with_filter("keep = [1]"),
        "1]",
        "route[0].json_filter.keep[0]",
    );
    // The table after the second [[route]] belongs to route[1].
    let text = format!(
        "{}\n[route.json_filter]\nkeep = [\"a\"]\n\n[[route]]\npath = \"/b\"\n\
         upstream = \"users\"\n\n[route.json_filter]\nkeep = [\"a.\"]\n",
        route("path_prefix = \"/\"")
    );
    fails_at(&text, "\"a.\"", "route[1].json_filter.keep[0]");
}

#[test]
fn an_aggregate_route_has_no_json_filter() {
    let filter = "[route.json_filter]\nkeep = [\"profile\"]\n\n";
    // Written after the parts: reported at the filter.
    let text = aggregate("", &format!("{}{filter}", part("")));
    let error = fails_at(&text, "json_filter]", "route[0].json_filter");
    assert_eq!(
        error.message,
        "[route.json_filter] is not allowed on an aggregate route"
    );
    let hint = error.hint.unwrap_or_default();
    assert!(hint.contains("builds its own"), "{hint}");
    assert!(hint.ends_with("remove [route.json_filter]"), "{hint}");
    // Written before them (as a table, or inline in the route): reported at the parts.
    for text in [
        aggregate("", &format!("{filter}{}", part(""))),
        aggregate("json_filter = { keep = [\"profile\"] }", &part("")),
    ] {
        let error = fails_at(&text, "aggregate]]", "route[0].aggregate");
        assert_eq!(
            error.message,
            "aggregate parts on a route with [route.json_filter]"
        );
    }
}
