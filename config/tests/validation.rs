//! Every load-time rule, through the public API: each broken config must be rejected with the
//! line, column and field of the offending key or value, and a hint.

use coregate_config::{load_str, ConfigError};

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

/// 1-based line and column of byte `offset`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = 1 + before.matches('\n').count();
    let column = 1 + before[before.rfind('\n').map_or(0, |nl| nl + 1)..]
        .chars()
        .count();
    (line, column)
}

/// Loads `text`, which must fail at the start of `needle` with `field`, and a hint.
#[track_caller]
fn fails_at(text: &str, needle: &str, field: &str) -> ConfigError {
    fails_at_nth(text, needle, 0, field)
}

/// As [`fails_at`], at the `nth` (from 0) occurrence of `needle`.
#[track_caller]
fn fails_at_nth(text: &str, needle: &str, nth: usize, field: &str) -> ConfigError {
    let error = match load_str(text, "t.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error,
    };
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in test text"))
        .0;
    let (line, column) = position(text, offset);
    assert_eq!(
        (error.line, error.column, error.field.as_str()),
        (line, column, field),
        "wrong place for: {error}\n--- text:\n{text}"
    );
    assert!(error.hint.is_some(), "no hint: {error}");
    assert_eq!(error.file, "t.toml");
    error
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
