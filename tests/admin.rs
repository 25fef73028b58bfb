//! The admin listener: its own address, `/healthz`, `/ready`, `/config`, `/upstreams` and
//! `/metrics` counting the traffic that went through the public listener.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn config(o: SocketAddr) -> String {
    format!(
        "{}{}{}{ADMIN_TOML}",
        server_toml(2, ""),
        upstream_toml("o", &[o], ""),
        route_toml("api", "path_prefix = \"/api\"", "o")
    )
}

#[test]
fn admin_endpoints_answer_on_their_own_address() {
    let o = origin("o", Mode::Json);
    let (gw, admin) = start_gateway_with_admin(&config(o.addr()));
    let line = format!("admin on http://{admin} ");
    assert!(
        gw.stdout_lines().iter().any(|l| l.starts_with(&line)),
        "{:?}",
        gw.stdout_lines()
    );

    let healthz = admin_get(admin, "/healthz");
    assert_eq!(healthz.status, 200);
    assert_eq!(healthz.json()["status"], "alive");

    let ready = admin_get(admin, "/ready");
    assert_eq!(ready.status, 200, "{}", ready.body_text());
    assert_eq!(ready.json()["workers_serving"], 2);

    let config = admin_get(admin, "/config");
    assert_eq!(config.status, 200);
    let v = config.json();
    assert_eq!(v["version"], 1);
    let path = gw.config_path().unwrap().display().to_string();
    assert_eq!(v["file"], path.as_str());
    let hash = v["hash"].as_str().unwrap_or_default();
    assert!(
        hash.starts_with("fnv1a64:") && hash.len() == 8 + 16,
        "{hash}"
    );
    // The same hash `coregate check` prints.
    let (_, out, _) = run_cli(&["check", &path]);
    assert!(out.contains(&hash["fnv1a64:".len()..]), "{out}");
    assert!(v["loaded_at"].as_str().unwrap_or_default().ends_with('Z'));

    let upstreams = admin_get(admin, "/upstreams").json();
    let o_json = &upstreams["upstreams"][0];
    assert_eq!(o_json["name"], "o");
    assert_eq!(o_json["endpoints"][0]["address"], o.addr().to_string());
    assert_eq!(o_json["endpoints"][0]["health"], "unchecked");

    assert_eq!(admin_get(admin, "/nope").status, 404);
    // The admin paths are not served on the public listener.
    assert_eq!(gw.get("/metrics").status, 404);
}

#[test]
fn metrics_count_the_traffic_sent() {
    const OK: u64 = 25;
    const MISSES: u64 = 3;
    let o = origin("o", Mode::Json);
    let (gw, admin) = start_gateway_with_admin(&config(o.addr()));
    let mut client = gw.connect();
    for i in 0..OK {
        client.send(format!("GET /api/{i} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        assert_eq!(client.read_response().status, 200);
    }
    for _ in 0..MISSES {
        assert_eq!(gw.get("/elsewhere").status, 404);
    }
    let ok = "coregate_requests_total{route=\"api\",class=\"2xx\"}";
    let missed = "coregate_rejections_total{reason=\"no_route\"}";
    // Workers report about every 250 ms.
    let counted = eventually(Duration::from_secs(5), || {
        metric(admin, ok) == Some(OK as f64) && metric(admin, missed) == Some(MISSES as f64)
    });
    let text = admin_get(admin, "/metrics").body_text();
    assert!(
        counted,
        "metrics do not show {OK} + {MISSES} requests:\n{text}"
    );
    assert_eq!(
        metric(admin, "coregate_request_duration_us_count{route=\"api\"}"),
        Some(OK as f64)
    );
    for q in ["0.5", "0.99", "0.999"] {
        let series = format!("coregate_request_duration_us{{route=\"api\",quantile=\"{q}\"}}");
        let value = metric(admin, &series).unwrap_or_else(|| panic!("no {series}:\n{text}"));
        assert!(value > 0.0, "{series} = {value}");
    }
    assert!(metric(admin, "coregate_upstream_duration_us{quantile=\"0.99\"}").unwrap_or(0.0) > 0.0);
    assert!(
        metric(admin, "coregate_connections_accepted_total").unwrap_or(0.0) >= 1.0 + MISSES as f64
    );
    assert_eq!(metric(admin, "coregate_config_version"), Some(1.0));
    assert!(
        text.contains("# TYPE coregate_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE coregate_request_duration_us summary"),
        "{text}"
    );
}

#[test]
fn admin_can_be_turned_off() {
    let o = origin("o", Mode::Json);
    let text = config(o.addr()).replace(ADMIN_TOML, "\n[admin]\nenabled = false\n");
    let gw = start_gateway(&text);
    assert!(
        gw.stdout_lines().iter().any(|l| l == "admin: off"),
        "{:?}",
        gw.stdout_lines()
    );
}

#[test]
fn a_taken_admin_address_written_in_the_file_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let o = origin("o", Mode::Json);
    let text = config(o.addr())
        .replace("{admin}", &taken.local_addr().unwrap().to_string())
        .replace("{listen}", &free_addr().to_string());
    let file = TempFile::new("admin-taken", &text);
    let (status, _, stderr) = run_cli(&["run", "-c", file.path().to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("admin listener"), "{stderr}");
}

fn temp_log_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "coregate-test-{}-{tag}-access.log",
        std::process::id()
    ))
}

#[test]
fn the_access_log_is_opened_at_start_and_a_bad_path_rejects_a_reload() {
    let log = temp_log_path("open");
    let _ = std::fs::remove_file(&log);
    let o = origin("o", Mode::Json);
    let text = format!(
        "{}\n[access_log]\npath = \"{}\"\n",
        config(o.addr()),
        log.display()
    );
    let (gw, admin) = start_gateway_with_admin(&text);
    assert!(log.exists(), "the access log was not created");
    let bad = text
        .replace("{admin}", &admin.to_string())
        .replace(&log.display().to_string(), "/nonexistent/dir/access.log");
    gw.rewrite_config(&bad);
    gw.signal(libc::SIGHUP);
    assert!(
        gw.stderr_contains_within("access_log.path: cannot open", Duration::from_secs(5)),
        "{}",
        gw.stderr()
    );
    let invalid = metric(admin, "coregate_config_reloads_total{result=\"invalid\"}");
    assert!(invalid.unwrap_or(0.0) >= 1.0, "{invalid:?}");
    let _ = std::fs::remove_file(&log);
    // A path that cannot be opened at start stops the start.
    let file = TempFile::new(
        "bad-log",
        &text
            .replace("{admin}", &free_addr().to_string())
            .replace("{listen}", &free_addr().to_string())
            .replace(&log.display().to_string(), "/nonexistent/dir/access.log"),
    );
    let (status, _, stderr) = run_cli(&["run", "-c", file.path().to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("access log /nonexistent/dir/access.log"),
        "{stderr}"
    );
}

#[test]
fn the_access_log_gets_one_json_line_per_request() {
    const REQUESTS: usize = 10;
    let log = temp_log_path("lines");
    let _ = std::fs::remove_file(&log);
    let o = origin("o", Mode::Json);
    let text = format!(
        "{}\n[access_log]\npath = \"{}\"\n",
        config(o.addr()),
        log.display()
    );
    let (gw, _admin) = start_gateway_with_admin(&text);
    for i in 0..REQUESTS {
        assert_eq!(gw.get(&format!("/api/{i}")).status, 200);
    }
    assert_eq!(gw.get("/elsewhere").status, 404);
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // Workers send batches at least once a second.
    assert!(
        eventually(Duration::from_secs(5), || lines().len() > REQUESTS),
        "{:?}",
        lines()
    );
    let lines = lines();
    let _ = std::fs::remove_file(&log);
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in [
            "time",
            "client",
            "method",
            "path",
            "status",
            "latency_us",
            "bytes",
        ] {
            assert!(!v[key].is_null(), "no {key:?} in {line}");
        }
    }
    let api: Vec<_> = lines.iter().filter(|l| l.contains("\"/api/")).collect();
    assert_eq!(api.len(), REQUESTS, "{lines:?}");
    assert!(api[0].contains("\"route\":\"api\""), "{}", api[0]);
    assert!(api[0].contains(&o.addr().to_string()), "{}", api[0]);
}

#[test]
fn the_demo_serves_the_admin_listener_and_says_how_to_reload() {
    let (addr, https, admin) = (free_addr(), free_addr(), free_addr());
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "demo",
        "--listen",
        &addr.to_string(),
        "--https",
        &https.to_string(),
        "--admin",
        &admin.to_string(),
    ]);
    let mut gw = spawn_until_listening(cmd, addr).expect("demo starts");
    let has = |gw: &Gateway, needle: &str| gw.stdout_lines().iter().any(|l| l.contains(needle));
    assert!(
        eventually(Duration::from_secs(5), || has(&gw, "stop: ")),
        "{:?}",
        gw.stdout_lines()
    );
    for needle in [
        format!("admin on http://{admin}"),
        format!("curl http://{admin}/metrics"),
        format!("curl http://{admin}/upstreams"),
        format!("kill -HUP {}", gw.pid()),
    ] {
        assert!(
            has(&gw, &needle),
            "no {needle:?} in {:?}",
            gw.stdout_lines()
        );
    }
    assert_eq!(gw.get("/users/1").status, 200);
    assert_eq!(
        admin_get(admin, "/upstreams").json()["upstreams"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    gw.signal(libc::SIGHUP);
    assert!(
        gw.stderr_contains_within("unchanged", Duration::from_secs(5)),
        "{}",
        gw.stderr()
    );
    gw.signal(libc::SIGTERM);
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn sighup_reopens_the_access_log_after_a_rotation() {
    let log = temp_log_path("rotate");
    let rotated = log.with_extension("log.1");
    let _ = std::fs::remove_file(&log);
    let o = origin("o", Mode::Json);
    let text = format!(
        "{}\n[access_log]\npath = \"{}\"\n",
        config(o.addr()),
        log.display()
    );
    let (gw, _admin) = start_gateway_with_admin(&text);
    assert!(log.exists());
    std::fs::rename(&log, &rotated).expect("rotate");
    gw.signal(libc::SIGHUP);
    let reopened = eventually(Duration::from_secs(5), || log.exists());
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&rotated);
    assert!(
        reopened,
        "no fresh file after SIGHUP; stderr:\n{}",
        gw.stderr()
    );
}
