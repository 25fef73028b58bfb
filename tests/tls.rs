//! TLS (issue 7): termination with SNI, versions and ALPN, X-Forwarded-Proto, certificates
//! swapped on disk under traffic and bad ones refused, session resumption across reloads,
//! TLS to upstreams, redirects to HTTPS, handshake timeouts and garbage, large bodies and
//! pipelining over TLS, the demo's HTTPS listener and `coregate check` on a mismatched key.
//!
//! Certificates are made at test time (tests/common/tls.rs). curl checks what a user sees
//! (a certificate that verifies for a name); a rustls client checks what curl cannot show
//! (which certificate was presented, whether the handshake resumed, version and ALPN).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::tls::*;
use common::*;
use coregate_loadtest::origin::OriginTls;
use rustls::{HandshakeKind, ProtocolVersion};

const HANDSHAKES_OK: &str = "coregate_tls_handshakes_total{result=\"ok\"}";
const HANDSHAKES_RESUMED: &str = "coregate_tls_handshakes_total{result=\"resumed\"}";
const HANDSHAKES_FAILED: &str = "coregate_tls_handshakes_total{result=\"failed\"}";
const HANDSHAKES_TIMEOUT: &str = "coregate_tls_handshakes_total{result=\"timeout\"}";
const REDIRECTS: &str = "coregate_https_redirects_total";
const UPSTREAM_TLS_FAILURES: &str = "coregate_upstream_tls_failures_total";
const RELOADS_OK: &str = "coregate_config_reloads_total{result=\"ok\"}";
const RELOADS_INVALID: &str = "coregate_config_reloads_total{result=\"invalid\"}";

/// Workers report their counters every 250 ms; this is how long a test waits for a metric.
const METRIC_WAIT: Duration = Duration::from_secs(10);

/// A metric's value, 0 while the series is absent.
fn count(admin: SocketAddr, series: &str) -> f64 {
    metric(admin, series).unwrap_or(0.0)
}

/// Waits until `series` reaches at least `at_least`; panics with the gateway's stderr if not.
fn await_metric(gw: &Gateway, admin: SocketAddr, series: &str, at_least: f64) {
    assert!(
        eventually(METRIC_WAIT, || count(admin, series) >= at_least),
        "{series} stayed at {} (wanted at least {at_least}); stderr:\n{}",
        count(admin, series),
        gw.stderr()
    );
}

/// A CA, one certificate for `names` written as `site.pem` / `site.key`, and the CA as
/// `ca.pem`, in a fresh directory.
struct Site {
    ca: Ca,
    dir: CertDir,
    cert_pem: String,
    cert: PathBuf,
    key: PathBuf,
    ca_file: PathBuf,
}

impl Site {
    fn new(tag: &str, names: &[&str]) -> Site {
        let ca = Ca::new(&format!("coregate {tag} test CA"));
        let dir = CertDir::new(tag);
        let (cert_pem, key_pem) = ca.issue(names);
        let cert = dir.write("site.pem", &cert_pem);
        let key = dir.write("site.key", &key_pem);
        let ca_file = dir.write("ca.pem", &ca.pem);
        Site {
            ca,
            dir,
            cert_pem,
            cert,
            key,
            ca_file,
        }
    }

    /// `[listener.tls]` with `tls_extra` lines and this site's certificate.
    fn listener_tls(&self, tls_extra: &str) -> String {
        format!(
            "[listener.tls]\n{tls_extra}\n{}",
            certificate_toml(&self.cert, &self.key, "")
        )
    }
}

/// `[server]` (`workers`, `server_extra`), the first listener on `{listen}` with `tls`
/// (its `[listener.tls]` and certificates), then `rest` and the admin listener.
fn https_config(workers: usize, server_extra: &str, tls: &str, rest: &str) -> String {
    format!(
        "{}{tls}\n{rest}\n{ADMIN_TOML}",
        server_toml(workers, server_extra)
    )
}

/// One upstream `o` at `addr` and a catch-all route to it.
fn catch_all(addr: SocketAddr) -> String {
    format!(
        "{}{}",
        upstream_toml("o", &[addr], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    )
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

// ---------------------------------------------------------------------------------------------
// 1. SNI

#[test]
fn sni_chooses_the_certificate_and_the_default_serves_unknown_names() {
    let ca = Ca::new("coregate sni test CA");
    let dir = CertDir::new("sni");
    let (a_pem, a_key) = ca.issue(&["a.test"]);
    let (b_pem, b_key) = ca.issue(&["b.test", "*.b.test"]);
    let ca_file = dir.write("ca.pem", &ca.pem);
    let o = origin("o", Mode::Json);
    // `a` takes its names from the certificate; `b`, second, is marked the default (without
    // the marker the first certificate would be).
    let tls = format!(
        "[listener.tls]\n{}{}",
        certificate_toml(&dir.write("a.pem", &a_pem), &dir.write("a.key", &a_key), ""),
        certificate_toml(
            &dir.write("b.pem", &b_pem),
            &dir.write("b.key", &b_key),
            "names = [\"b.test\", \"*.b.test\"]\ndefault = true"
        )
    );
    let (gw, admin) = start_gateway_with_admin(&https_config(1, "", &tls, &catch_all(o.addr())));

    if curl_available() {
        // Each name verifies against the CA: the certificate served covers it.
        for host in ["a.test", "b.test", "x.b.test"] {
            let (status, body) = curl_https(&ca_file, host, gw.addr, "/sni", &[])
                .unwrap_or_else(|e| panic!("{e}\nstderr:\n{}", gw.stderr()));
            assert_eq!(status, 200, "{host}: {body}");
            assert!(body.contains("\"/sni\""), "{host}: {body}");
        }
    }

    let client = TlsClient::new(&ca.pem);
    let (a, b) = (der(&a_pem), der(&b_pem));
    for (name, want, which) in [
        ("a.test", &a, "a"),
        ("b.test", &b, "b"),
        ("x.b.test", &b, "b"),
    ] {
        let mut c = client
            .connect(gw.addr, name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            c.peer_certificate() == *want,
            "{name}: not certificate {which}"
        );
        let resp = c.request(&get("/rustls", name));
        assert_eq!(resp.status, 200, "{name}: {}", resp.body_text());
    }
    // A name no certificate answers for gets the default (which then does not verify for it).
    let unknown = client.connect(gw.addr, "unknown.test");
    assert!(
        unknown.is_err(),
        "b's certificate verified for unknown.test"
    );
    assert!(
        client.last_presented() == Some(b.clone()),
        "unknown.test was not served the default certificate b"
    );
    // A wildcard stands for one label only.
    let _ = client.connect(gw.addr, "y.x.b.test");
    assert!(client.last_presented() == Some(b.clone()));
    // No SNI at all: an IP address is never sent as SNI, and a client told not to send it.
    let _ = client.connect(gw.addr, "127.0.0.1");
    assert!(
        client.last_presented() == Some(b.clone()),
        "a connection by IP (no SNI) was not served the default certificate b"
    );
    let no_sni = TlsClient::with(
        &ca.pem,
        ClientOptions {
            sni: false,
            ..ClientOptions::default()
        },
    );
    assert!(
        no_sni.connect(gw.addr, "a.test").is_err(),
        "without SNI, a.test's certificate was served"
    );
    assert!(no_sni.last_presented() == Some(b.clone()));
    assert!(
        no_sni.connect(gw.addr, "b.test").is_ok(),
        "without SNI, the default certificate b verifies for b.test"
    );
    await_metric(&gw, admin, HANDSHAKES_OK, 4.0);
}

// ---------------------------------------------------------------------------------------------
// 2. Versions and ALPN

#[test]
fn tls_12_and_13_negotiate_alpn_is_http11_and_a_13_only_listener_refuses_12() {
    let site = Site::new("versions", &["a.test"]);
    let o = origin("o", Mode::Json);
    let only13 = free_addr();
    let rest = format!(
        "[[listener]]\nname = \"only13\"\naddress = \"{only13}\"\n{}\n{}",
        site.listener_tls("versions = [\"1.3\"]"),
        catch_all(o.addr())
    );
    let (gw, admin) = start_gateway_with_admin(&https_config(1, "", &site.listener_tls(""), &rest));

    for (versions, want) in [
        (TLS12_ONLY, ProtocolVersion::TLSv1_2),
        (TLS13_ONLY, ProtocolVersion::TLSv1_3),
    ] {
        let client = TlsClient::with(
            &site.ca.pem,
            ClientOptions {
                versions,
                ..ClientOptions::default()
            },
        );
        let mut c = client
            .connect(gw.addr, "a.test")
            .unwrap_or_else(|e| panic!("{want:?}: {e}"));
        assert_eq!(c.version(), Some(want));
        assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]), "{want:?}");
        assert_eq!(c.request(&get("/v", "a.test")).status, 200, "{want:?}");
    }
    if curl_available() {
        for args in [&["--tlsv1.2", "--tls-max", "1.2"][..], &["--tlsv1.3"][..]] {
            let (status, body) = curl_https(&site.ca_file, "a.test", gw.addr, "/curl", args)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(status, 200, "{args:?}: {body}");
        }
    }

    // The 1.3-only listener: a 1.2-only client fails its handshake, and it is counted.
    let failed_before = count(admin, HANDSHAKES_FAILED);
    let tls12 = TlsClient::with(
        &site.ca.pem,
        ClientOptions {
            versions: TLS12_ONLY,
            ..ClientOptions::default()
        },
    );
    let refused = tls12.connect(only13, "a.test");
    assert!(
        refused.is_err(),
        "a TLS 1.2 client got through to the versions = [\"1.3\"] listener"
    );
    await_metric(&gw, admin, HANDSHAKES_FAILED, failed_before + 1.0);
    let mut c = TlsClient::new(&site.ca.pem)
        .connect(only13, "a.test")
        .unwrap_or_else(|e| panic!("1.3 to the 1.3-only listener: {e}"));
    assert_eq!(c.version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(c.request(&get("/v", "a.test")).status, 200);
}

// ---------------------------------------------------------------------------------------------
// 3. X-Forwarded-Proto

#[test]
fn x_forwarded_proto_is_https_on_terminated_requests_and_http_on_plain_ones() {
    let site = Site::new("proto", &["a.test"]);
    let o = origin("o", Mode::Json);
    let plain = free_addr();
    let rest = format!(
        "[[listener]]\nname = \"plain\"\naddress = \"{plain}\"\n\n{}",
        catch_all(o.addr())
    );
    let (gw, _admin) =
        start_gateway_with_admin(&https_config(1, "", &site.listener_tls(""), &rest));

    // A value the client sends is replaced, not passed on beside the gateway's.
    let spoofed = |host: &str, proto: &str| {
        format!("GET /p HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: {proto}\r\n\r\n")
    };
    let mut tls = TlsClient::new(&site.ca.pem)
        .connect(gw.addr, "a.test")
        .unwrap();
    let seen = Seen::from_response(&tls.request(&spoofed("a.test", "http")));
    assert_eq!(
        seen.all("x-forwarded-proto"),
        ["https"],
        "{:?}",
        seen.headers
    );

    let mut c = Client::connect(plain);
    c.send(spoofed("a.test", "https").as_bytes());
    let seen = Seen::from_response(&c.read_response());
    assert_eq!(
        seen.all("x-forwarded-proto"),
        ["http"],
        "{:?}",
        seen.headers
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A certificate swapped on disk under traffic

/// What the traffic thread of the swap test saw.
#[derive(Default)]
struct SwapTraffic {
    failures: Vec<String>,
    /// Requests the kept-alive connection had answered once the new certificate was seen.
    kept_after_new: u64,
    old_seen: u64,
}

#[test]
fn a_certificate_swapped_on_disk_is_served_to_new_handshakes_without_failing_a_request() {
    let site = Site::new("swap", &["a.test"]);
    let o = origin("o", Mode::Json);
    let (gw, admin) = start_gateway_with_admin(&https_config(
        2,
        "",
        &site.listener_tls(""),
        &catch_all(o.addr()),
    ));
    let (new_pem, new_key) = site.ca.issue(&["a.test"]);
    let (old, new) = (der(&site.cert_pem), der(&new_pem));
    assert!(old != new);

    let stop = Arc::new(AtomicBool::new(false));
    let new_seen = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, new_seen, rounds) = (stop.clone(), new_seen.clone(), rounds.clone());
        let client = TlsClient::new(&site.ca.pem);
        let addr = gw.addr;
        std::thread::spawn(move || {
            let mut seen = SwapTraffic::default();
            let mut kept = client
                .connect(addr, "a.test")
                .expect("the kept-alive connection");
            while !stop.load(Ordering::Relaxed) {
                let n = rounds.load(Ordering::Relaxed);
                // The connection opened before the swap keeps working through it.
                match kept
                    .send(get(&format!("/kept/{n}"), "a.test").as_bytes())
                    .and_then(|()| kept.try_read_response())
                {
                    Ok(r) if r.status == 200 => {
                        if new_seen.load(Ordering::Relaxed) {
                            seen.kept_after_new += 1;
                        }
                    }
                    Ok(r) => seen.failures.push(format!("kept {n}: status {}", r.status)),
                    Err(e) => {
                        seen.failures.push(format!("kept {n}: {e}"));
                        return seen;
                    }
                }
                // A new connection: a full handshake, verified against the CA.
                match client.connect(addr, "a.test") {
                    Ok(mut c) => {
                        let cert = c.peer_certificate();
                        if cert == new {
                            new_seen.store(true, Ordering::Relaxed);
                        } else if cert == old {
                            seen.old_seen += 1;
                        } else {
                            seen.failures
                                .push(format!("new {n}: an unknown certificate"));
                        }
                        match c
                            .send(get(&format!("/new/{n}"), "a.test").as_bytes())
                            .and_then(|()| c.try_read_response())
                        {
                            Ok(r) if r.status == 200 => {}
                            Ok(r) => seen.failures.push(format!("new {n}: status {}", r.status)),
                            Err(e) => seen.failures.push(format!("new {n}: {e}")),
                        }
                    }
                    Err(e) => seen.failures.push(format!("new {n}: {e}")),
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            seen
        })
    };
    let wait_rounds = |at_least: u64| {
        assert!(
            eventually(Duration::from_secs(30), || rounds.load(Ordering::Relaxed)
                >= at_least),
            "traffic stalled at round {}; stderr:\n{}",
            rounds.load(Ordering::Relaxed),
            gw.stderr()
        );
    };
    wait_rounds(5);
    // Each file is replaced whole (written beside, renamed over), as deployment tools do.
    site.dir.write("site.pem", &new_pem);
    site.dir.write("site.key", &new_key);
    let swapped = eventually(Duration::from_secs(20), || new_seen.load(Ordering::Relaxed));
    if swapped {
        let now = rounds.load(Ordering::Relaxed);
        wait_rounds(now + 5);
    }
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.join().expect("the traffic thread");
    assert!(
        swapped,
        "new handshakes never presented the new certificate; stderr:\n{}",
        gw.stderr()
    );
    assert!(
        seen.failures.is_empty(),
        "requests failed during the swap: {:?}\nstderr:\n{}",
        seen.failures,
        gw.stderr()
    );
    assert!(seen.old_seen > 0, "the old certificate was never seen");
    assert!(
        seen.kept_after_new > 0,
        "the kept-alive connection answered nothing after the swap"
    );
    assert!(count(admin, RELOADS_OK) >= 1.0, "{}", gw.stderr());
}

// ---------------------------------------------------------------------------------------------
// 5. A bad certificate is refused, the old one keeps serving

#[test]
fn a_mismatched_key_or_a_non_pem_certificate_is_refused_and_the_old_one_keeps_serving() {
    let site = Site::new("bad", &["a.test"]);
    let o = origin("o", Mode::Json);
    let (gw, admin) = start_gateway_with_admin(&https_config(
        1,
        "",
        &site.listener_tls(""),
        &catch_all(o.addr()),
    ));
    let client = TlsClient::new(&site.ca.pem);
    let old = der(&site.cert_pem);
    let still_serving = |what: &str| {
        let mut c = client
            .connect(gw.addr, "a.test")
            .unwrap_or_else(|e| panic!("after {what}: {e}\nstderr:\n{}", gw.stderr()));
        assert!(
            c.peer_certificate() == old,
            "after {what}: not the old certificate"
        );
        assert_eq!(
            c.request(&get("/still", "a.test")).status,
            200,
            "after {what}"
        );
        if curl_available() {
            let got = curl_https(&site.ca_file, "a.test", gw.addr, "/curl", &[]);
            assert_eq!(got.map(|(s, _)| s), Ok(200), "after {what}");
        }
    };
    still_serving("start");
    let key_pem = std::fs::read_to_string(&site.key).unwrap();

    // A key that is not the certificate's.
    let (_, other_key) = site.ca.issue(&["a.test"]);
    site.dir.write("site.key", &other_key);
    // One line that names the key file and says what is wrong with it.
    let key_path = site.key.display().to_string();
    rejection_line(&gw, &[&key_path, "does not match"]);
    await_metric(&gw, admin, RELOADS_INVALID, 1.0);
    still_serving("a mismatched key");

    // Put the key back (the same material as served: nothing to reload), then break the
    // certificate file.
    site.dir.write("site.key", &key_pem);
    site.dir.write("site.pem", "this is not a certificate\n");
    let cert_path = site.cert.display().to_string();
    rejection_line(&gw, &[&cert_path, "no CERTIFICATE"]);
    await_metric(&gw, admin, RELOADS_INVALID, 2.0);
    still_serving("a non-PEM certificate");
    assert_eq!(count(admin, RELOADS_OK), 0.0, "{}", gw.stderr());
}

/// Waits for a `reload … rejected` line on the gateway's stderr containing every one of
/// `needles`; panics with stderr if none comes.
fn rejection_line(gw: &Gateway, needles: &[&str]) {
    let find = || {
        gw.stderr()
            .lines()
            .find(|l| l.contains("rejected") && needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
    };
    assert!(
        eventually(Duration::from_secs(10), || find().is_some()),
        "no rejected reload mentioning all of {needles:?}; stderr:\n{}",
        gw.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Session resumption, across a reload

#[test]
fn sessions_resume_with_tickets_and_still_resume_after_a_reload() {
    let site = Site::new("resume", &["a.test"]);
    let o = origin("o", Mode::Json);
    let config = https_config(2, "", &site.listener_tls(""), &catch_all(o.addr()));
    let (gw, admin) = start_gateway_with_admin(&config);
    let clients: Vec<(TlsClient, &str)> = [(TLS13_ONLY, "1.3"), (TLS12_ONLY, "1.2")]
        .into_iter()
        .map(|(versions, label)| {
            let options = ClientOptions {
                versions,
                resume: true,
                ..ClientOptions::default()
            };
            (TlsClient::with(&site.ca.pem, options), label)
        })
        .collect();
    // One exchange per connection, so the client reads the tickets sent after the handshake.
    let exchange = |client: &TlsClient, label: &str| -> Option<HandshakeKind> {
        let mut c = client
            .connect(gw.addr, "a.test")
            .unwrap_or_else(|e| panic!("TLS {label}: {e}"));
        assert_eq!(c.request(&get("/r", "a.test")).status, 200, "TLS {label}");
        c.handshake_kind()
    };
    for (client, label) in &clients {
        assert_eq!(
            exchange(client, label),
            Some(HandshakeKind::Full),
            "TLS {label}"
        );
        assert_eq!(
            exchange(client, label),
            Some(HandshakeKind::Resumed),
            "TLS {label}: the second connection did not resume"
        );
    }
    await_metric(&gw, admin, HANDSHAKES_RESUMED, 2.0);

    // A reload that changes something unrelated: the ticket keys carry over, so the tickets
    // issued before it still resume.
    let next = config
        .replace("name = \"all\"", "name = \"renamed\"")
        .replace("{admin}", &admin.to_string());
    assert_ne!(next, config.replace("{admin}", &admin.to_string()));
    gw.rewrite_config(&next);
    gw.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(10), || admin_get(admin, "/config")
            .json()["version"]
            == 2),
        "no version 2; stderr:\n{}",
        gw.stderr()
    );
    for (client, label) in &clients {
        assert_eq!(
            exchange(client, label),
            Some(HandshakeKind::Resumed),
            "TLS {label}: no resumption after the reload"
        );
    }
    await_metric(&gw, admin, HANDSHAKES_RESUMED, 4.0);
}

// ---------------------------------------------------------------------------------------------
// 7. TLS to upstreams

#[test]
fn upstream_tls_verifies_the_origin_reuses_connections_and_a_wrong_ca_is_502() {
    let origin_site = Site::new("origin", &["origin.test"]);
    let wrong_ca = Ca::new("coregate wrong test CA");
    let wrong_ca_file = origin_site.dir.write("wrong-ca.pem", &wrong_ca.pem);
    let o = origin_with("secure", Mode::Json, |c| {
        c.tls = Some(OriginTls {
            cert_file: origin_site.cert.clone(),
            key_file: origin_site.key.clone(),
        })
    });
    let tls_table = |name: &str, ca: &Path| {
        format!(
            "[upstreams.{name}.tls]\nserver_name = \"origin.test\"\nca_file = \"{}\"\n\n",
            ca.display()
        )
    };
    let config = format!(
        "{}{}{}{}{}{}{}{ADMIN_TOML}",
        server_toml(1, ""),
        upstream_toml("good", &[o.addr()], ""),
        tls_table("good", &origin_site.ca_file),
        upstream_toml("wrong", &[o.addr()], ""),
        tls_table("wrong", &wrong_ca_file),
        route_toml("good", "path_prefix = \"/good\"", "good"),
        route_toml("wrong", "path_prefix = \"/wrong\"", "wrong"),
    );
    let (gw, admin) = start_gateway_with_admin(&config);

    // A CA that did not sign the origin's certificate: 502, counted, nothing reaches it.
    let wrong_ca_is_refused = |when: &str| {
        let resp = gw.get("/wrong/x");
        assert_eq!(
            resp.status,
            502,
            "{when}: the upstream with the wrong CA got through: {}",
            resp.body_text()
        );
    };
    wrong_ca_is_refused("with nothing pooled");
    await_metric(&gw, admin, UPSTREAM_TLS_FAILURES, 1.0);
    assert_eq!(o.requests(), 0);

    // Ten requests on one client connection, ten on new ones: one upstream connection serves.
    const REQUESTS: u64 = 20;
    let mut kept = gw.connect();
    for i in 0..REQUESTS {
        let raw = get(&format!("/good/{i}"), "a");
        let resp = if i % 2 == 0 {
            kept.send(raw.as_bytes());
            kept.read_response()
        } else {
            gw.request(&raw)
        };
        assert_eq!(resp.status, 200, "{i}: {}", resp.body_text());
        let seen = Seen::from_response(&resp);
        assert_eq!(
            (seen.origin.as_str(), seen.target),
            ("secure", format!("/good/{i}"))
        );
    }
    assert_eq!(o.requests(), REQUESTS);
    // Connections: the wrong-CA attempt's, and the good upstream's one (two at most).
    let good_handshakes = o.tls_handshakes();
    assert!(
        (1..=2).contains(&good_handshakes) && o.connections_accepted() <= 3,
        "{good_handshakes} handshakes and {} connections for {REQUESTS} requests: upstream \
         TLS connections are not reused",
        o.connections_accepted()
    );

    // A connection the good upstream verified and pooled is no business of the wrong-CA
    // upstream, though both name the same endpoint address.
    wrong_ca_is_refused("with the good upstream's connection to the same address pooled");
    assert_eq!(o.requests(), REQUESTS);
    await_metric(&gw, admin, UPSTREAM_TLS_FAILURES, 2.0);
    assert_eq!(gw.get("/good/after").status, 200);
}

// ---------------------------------------------------------------------------------------------
// 8. Redirects to HTTPS

#[test]
fn a_redirect_listener_answers_308_with_the_https_location_except_listed_prefixes() {
    let o = origin("o", Mode::Json);
    let second = free_addr();
    let config = format!(
        "{}[listener.redirect_https]\nport = 8443\n\
         except_prefixes = [\"/.well-known/acme-challenge/\"]\n\n\
         [[listener]]\nname = \"moved\"\naddress = \"{second}\"\n\
         [listener.redirect_https]\nport = 443\nstatus = 301\n\n{}{ADMIN_TOML}",
        server_toml(1, ""),
        catch_all(o.addr())
    );
    let (gw, admin) = start_gateway_with_admin(&config);

    let mut c = gw.connect();
    c.send(get("/x?y=1", "example.test:8080").as_bytes());
    let resp = c.read_response();
    assert_eq!(resp.status, 308, "{}", resp.body_text());
    assert_eq!(
        resp.header("location"),
        Some("https://example.test:8443/x?y=1")
    );
    // An absolute-form target redirects to its path and query.
    c.send(get("http://example.test/abs?q=2", "example.test").as_bytes());
    let resp = c.read_response();
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some("https://example.test:8443/abs?q=2")
    );
    // The exempt prefix is routed as usual, on the same connection.
    c.send(get("/.well-known/acme-challenge/token", "example.test").as_bytes());
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert_eq!(
        Seen::from_response(&resp).target,
        "/.well-known/acme-challenge/token"
    );
    // Without a Host (HTTP/1.0), the listener's address stands in.
    let resp = first_response(&send_raw(gw.addr, b"GET /h HTTP/1.0\r\n\r\n"));
    assert_eq!(resp.status, 308);
    assert_eq!(resp.header("location"), Some("https://127.0.0.1:8443/h"));

    // The other listener: 301, and port 443 left out of the Location.
    let mut c = Client::connect(second);
    c.send(get("/x?y=1", "example.test:8080").as_bytes());
    let resp = c.read_response();
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("location"), Some("https://example.test/x?y=1"));

    assert_eq!(o.requests(), 1, "a redirected request reached the upstream");
    assert!(
        eventually(METRIC_WAIT, || metric(admin, REDIRECTS) == Some(4.0)),
        "{REDIRECTS} = {:?}, wanted 4",
        metric(admin, REDIRECTS)
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Handshake timeout, garbage, a slow head after the handshake

#[test]
fn silent_and_non_tls_clients_are_closed_and_a_slow_head_over_tls_is_408() {
    let site = Site::new("timeouts", &["a.test"]);
    let o = origin("o", Mode::Json);
    let config = https_config(
        1,
        "header_read_timeout_ms = 500",
        &site.listener_tls("handshake_timeout_ms = 300"),
        &catch_all(o.addr()),
    );
    let (gw, admin) = start_gateway_with_admin(&config);

    // Connects and says nothing: closed once the handshake timeout passes.
    let mut silent = connect(gw.addr);
    let (got, closed) = read_until_close(&mut silent, Duration::from_secs(10));
    assert!(
        closed,
        "a silent client was not closed: got {:?}",
        show(&got)
    );
    await_metric(&gw, admin, HANDSHAKES_TIMEOUT, 1.0);

    // Plain HTTP to the TLS port: closed without an HTTP answer, counted as a failure.
    let (got, closed) = send_raw_closed(gw.addr, b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        closed,
        "a non-TLS client was not closed: got {:?}",
        show(&got)
    );
    assert!(
        !got.starts_with(b"HTTP/"),
        "answered in plain HTTP: {:?}",
        show(&got)
    );
    await_metric(&gw, admin, HANDSHAKES_FAILED, 1.0);

    // Half a head after a completed handshake: 408, as on plain HTTP, then closed.
    let mut c = TlsClient::new(&site.ca.pem)
        .connect(gw.addr, "a.test")
        .unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Half: ")
        .unwrap();
    let resp = c.read_response();
    assert_eq!(resp.status, 408, "{}", resp.body_text());
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "connection left open after 408"
    );
    assert_eq!(o.requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// 10. Large bodies and pipelining over TLS

#[test]
fn ten_mib_bodies_echo_intact_and_pipelined_requests_answer_in_order_over_tls() {
    let site = Site::new("bodies", &["a.test"]);
    let echo = origin("echo", Mode::Echo);
    let json = origin("json", Mode::Json);
    let rest = format!(
        "{}{}{}{}",
        upstream_toml("echo", &[echo.addr()], ""),
        upstream_toml("json", &[json.addr()], ""),
        route_toml("echo", "path_prefix = \"/echo\"", "echo"),
        route_toml("json", "path_prefix = \"/\"", "json"),
    );
    let (gw, _admin) =
        start_gateway_with_admin(&https_config(1, "", &site.listener_tls(""), &rest));
    let mut c = TlsClient::new(&site.ca.pem)
        .connect(gw.addr, "a.test")
        .unwrap();
    let body = pattern(10 * MIB);
    let sum = checksum(&body);

    let mut raw = format!(
        "POST /echo/cl HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    c.send(&raw).unwrap_or_else(|e| panic!("{e}"));
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), body.len(), "Content-Length body");
    assert_eq!(checksum(&resp.body), sum, "Content-Length body altered");

    let mut raw = b"POST /echo/chunked HTTP/1.1\r\nHost: a.test\r\n\
                    Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    raw.extend_from_slice(&chunked_encode(&body, &[65536, 1000, 16384 + 7]));
    c.send(&raw).unwrap_or_else(|e| panic!("{e}"));
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), body.len(), "chunked body");
    assert_eq!(checksum(&resp.body), sum, "chunked body altered");
    assert_eq!(echo.body_bytes_received(), 2 * body.len() as u64);

    // Two requests in one write, on the same connection: answered in order.
    let two = format!("{}{}", get("/p/1", "a.test"), get("/p/2", "a.test"));
    c.send(two.as_bytes()).unwrap();
    for want in ["/p/1", "/p/2"] {
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(Seen::from_response(&resp).target, want);
    }
}

// ---------------------------------------------------------------------------------------------
// 11. The demo's HTTPS listener

#[test]
fn demo_serves_https_with_the_ca_it_prints() {
    let mut started = None;
    let mut last_error = String::new();
    for _ in 0..3 {
        let (listen, https, admin) = (free_addr(), free_addr(), free_addr());
        let mut cmd = Command::new(BIN);
        cmd.arg("demo")
            .args(["--listen", &listen.to_string()])
            .args(["--https", &https.to_string()])
            .args(["--admin", &admin.to_string()]);
        match spawn_until_listening(cmd, listen) {
            Ok(gw) => {
                started = Some((gw, https));
                break;
            }
            Err(e) => last_error = e,
        }
        if !last_error.contains("in use") {
            break;
        }
    }
    let Some((gw, https)) = started else {
        panic!("demo did not start: {last_error}");
    };
    const PREFIX: &str = "demo CA certificate: ";
    let ca_line = || {
        gw.stdout_lines()
            .into_iter()
            .find_map(|l| l.strip_prefix(PREFIX).map(str::to_owned))
    };
    assert!(
        eventually(Duration::from_secs(10), || ca_line().is_some()),
        "no {PREFIX:?} line; stdout: {:?}",
        gw.stdout_lines()
    );
    let ca_file = PathBuf::from(ca_line().unwrap().trim());

    if curl_available() {
        let (status, body) = curl_https(&ca_file, "localhost", https, "/users/1", &[])
            .unwrap_or_else(|e| panic!("{e}\nstderr:\n{}", gw.stderr()));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["id"], 1, "{body}");
        assert_eq!(v["name"], "Ada Lovelace", "{body}");
    }
    let ca_pem = std::fs::read_to_string(&ca_file).unwrap();
    let mut c = TlsClient::new(&ca_pem)
        .connect(https, "localhost")
        .unwrap_or_else(|e| panic!("{e}"));
    let resp = c.request(&get("/users/1", "localhost"));
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert_eq!(resp.json()["name"], "Ada Lovelace");
}

// ---------------------------------------------------------------------------------------------
// 12. `coregate check` on a key that does not match its certificate

#[test]
fn check_rejects_a_key_that_does_not_match_its_certificate_and_names_the_key_file() {
    let site = Site::new("check", &["a.test"]);
    let (_, other_key) = site.ca.issue(&["a.test"]);
    let other = site.dir.write("other.key", &other_key);
    let config_with = |key: &Path| {
        let tls = format!("[listener.tls]\n{}", certificate_toml(&site.cert, key, ""));
        https_config(1, "", &tls, &catch_all("127.0.0.1:9".parse().unwrap()))
            .replace("{listen}", "127.0.0.1:8443")
            .replace("{admin}", "127.0.0.1:9901")
    };

    let good = TempFile::new("check-good", &config_with(&site.key));
    let (status, stdout, stderr) = run_cli(&["check", "-c", &good.path().display().to_string()]);
    assert!(
        status.success(),
        "a matching key was refused: {stdout}{stderr}"
    );

    let bad = TempFile::new("check-bad", &config_with(&other));
    let (status, stdout, stderr) = run_cli(&["check", "-c", &bad.path().display().to_string()]);
    assert!(
        !status.success(),
        "check accepted a mismatched key: {stdout}"
    );
    let other_path = other.display().to_string();
    assert!(
        stderr.contains(&other_path) && stderr.contains("does not match"),
        "the message should name {other_path} and say it does not match: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Parking

/// A TLS connection quiet past the park window (its session's buffers dropped, its serving
/// task ended) is served again, and keeps its session: no second handshake.
#[test]
fn a_parked_tls_connection_is_served_again_with_its_session() {
    let o = origin("o", Mode::Json);
    let site = Site::new("park", &["a.test"]);
    let config = https_config(1, "", &site.listener_tls(""), &catch_all(o.addr()));
    let (gw, admin) = start_gateway_with_admin(&config);
    let mut c = TlsClient::new(&site.ca.pem)
        .connect(gw.addr, "a.test")
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        let resp = c.request(&get(&format!("/park/{i}"), "a.test"));
        assert_eq!(resp.status, 200, "round {i}");
        assert!(String::from_utf8_lossy(&resp.body).contains(&format!("/park/{i}")));
        std::thread::sleep(Duration::from_millis(400));
    }
    let handshakes = || metric(admin, "coregate_tls_handshakes_total{result=\"ok\"}");
    assert!(
        eventually(METRIC_WAIT, || handshakes() == Some(1.0)),
        "handshakes: {:?}",
        handshakes()
    );
}

/// A TLS connection the gateway ends (here: idle past `client_idle_timeout_ms`) ends with a
/// close_notify, so the client reads a clean end, not a truncation.
#[test]
fn an_idle_tls_connection_is_closed_with_close_notify() {
    use std::io::Read;
    let o = origin("o", Mode::Json);
    let site = Site::new("close-notify", &["a.test"]);
    let config = https_config(
        1,
        "client_idle_timeout_ms = 500",
        &site.listener_tls(""),
        &catch_all(o.addr()),
    );
    let (gw, _admin) = start_gateway_with_admin(&config);
    let mut c = TlsClient::new(&site.ca.pem)
        .connect(gw.addr, "a.test")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.request(&get("/once", "a.test")).status, 200);
    c.tls.sock.set_nonblocking(false).unwrap();
    c.tls
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    // rustls reports Ok(0) only after a close_notify; a bare TCP close is UnexpectedEof.
    match c.tls.read(&mut buf) {
        Ok(0) => {}
        other => panic!("expected a clean close (close_notify), got {other:?}"),
    }
}
