//! Issue 14, defects 8 and 12: the admin listener and TLS to upstreams.
//!
//! - 8: the admin listener served one connection at a time, so one client dribbling bytes
//!   held `/healthz` and `/ready` for as long as it liked; it also answered any `Host`, which
//!   a DNS-rebinding page can use to read it from a browser.
//! - 12: a TLS upstream that closed its TCP stream without `close_notify` ended a
//!   close-delimited body as if it were complete.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::common::tls::{Ca, CertDir};
use crate::common::*;

// ---------------------------------------------------------------------------------------------
// 12. A close-delimited body from a TLS upstream ends only at close_notify

/// The body the TLS fixture sends, close-delimited (no Content-Length, no chunked).
const PARTIAL_BODY: &[u8] = b"the first part of a body that goes on";

/// A TLS origin on a fresh port that answers every request with a close-delimited body and
/// then closes: with `close_notify` first when `clean`, else with a bare TCP close (what a
/// cut connection, or an attacker forging a FIN, looks like).
fn tls_origin(cert_pem: &str, key_pem: &str, clean: bool) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate chain");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS origin");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let config = config.clone();
            std::thread::spawn(move || serve_once(config, tcp, clean));
        }
    });
    addr
}

fn serve_once(config: Arc<rustls::ServerConfig>, tcp: TcpStream, clean: bool) {
    let _ = tcp.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(session) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(session, tcp);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    out.extend_from_slice(PARTIAL_BODY);
    if tls.write_all(&out).and_then(|()| tls.flush()).is_err() {
        return;
    }
    if clean {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    let _ = tls.sock.shutdown(std::net::Shutdown::Both);
}

/// A gateway with one route to a TLS origin (see [`tls_origin`]) and its admin address.
fn gateway_to_tls_origin(clean: bool) -> (Gateway, SocketAddr, CertDir) {
    let ca = Ca::new("coregate admintls test CA");
    let dir = CertDir::new("admintls");
    let (cert_pem, key_pem) = ca.issue(&["origin.test"]);
    let ca_file = dir.write("ca.pem", &ca.pem);
    let origin = tls_origin(&cert_pem, &key_pem, clean);
    let config = format!(
        "{}{}[upstreams.o.tls]\nserver_name = \"origin.test\"\nca_file = \"{}\"\n\n{}{ADMIN_TOML}",
        server_toml(1, ""),
        upstream_toml("o", &[origin], ""),
        ca_file.display(),
        route_toml("all", "path_prefix = \"/\"", "o"),
    );
    let (gw, admin) = start_gateway_with_admin(&config);
    (gw, admin, dir)
}

#[test]
fn a_tls_upstream_closing_without_close_notify_does_not_end_the_body_cleanly() {
    let (gw, admin, _dir) = gateway_to_tls_origin(false);
    let mut stream = connect(gw.addr);
    stream
        .write_all(b"GET /cut HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let (got, closed) = read_until_close(&mut stream, Duration::from_secs(20));
    assert!(closed, "the gateway kept the connection: {}", show(&got));
    // Whatever reached the client must not parse as a whole response, even with the close
    // taken as the end of a body.
    let parsed = parse_response(&got, false, true);
    assert!(
        !matches!(parsed, Ok(Some(_))),
        "a body cut short by a TCP close without close_notify reached the client as a \
         complete response: {}",
        show(&got)
    );
    // The part that did arrive went out chunked, with no last chunk.
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
    assert!(
        eventually(Duration::from_secs(10), || {
            metric(admin, "coregate_upstream_truncated_total").unwrap_or(0.0) >= 1.0
        }),
        "the cut body was not counted"
    );
}

#[test]
fn a_tls_upstream_closing_with_close_notify_ends_the_body_and_the_client_stays() {
    let (gw, admin, _dir) = gateway_to_tls_origin(true);
    let mut c = gw.connect();
    c.send(b"GET /whole HTTP/1.1\r\nHost: test\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.chunked, "close-delimited body not re-framed: {resp:?}");
    assert_eq!(resp.body, PARTIAL_BODY);
    assert!(!resp.says_close(), "{resp:?}");
    // Chunked framing told the end, so the client connection serves another request.
    c.send(b"GET /again HTTP/1.1\r\nHost: test\r\n\r\n");
    let again = c.read_response();
    assert_eq!(again.body, PARTIAL_BODY);
    assert_eq!(
        metric(admin, "coregate_upstream_truncated_total"),
        Some(0.0),
        "a clean close counted as a cut body"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. The admin listener: concurrent, bounded, deadlines, Host check

/// Connections the admin listener serves at once (`admin::CONNECTIONS_MAX`).
const ADMIN_CONNECTIONS_MAX: usize = 64;
/// How long the admin listener waits for a whole request head (`admin::HEAD_TIMEOUT_MS`).
const ADMIN_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A gateway with an admin listener, and that listener's address.
fn gateway_with_admin() -> (Gateway, SocketAddr, Origin) {
    let o = origin("o", Mode::Json);
    let config = format!(
        "{}{}{}{ADMIN_TOML}",
        server_toml(1, ""),
        upstream_toml("o", &[o.addr()], ""),
        route_toml("api", "path_prefix = \"/\"", "o")
    );
    let (gw, admin) = start_gateway_with_admin(&config);
    (gw, admin, o)
}

/// Sends `request` on a new connection to `admin` and reads the answer, which must come
/// within `wait`; Err says what happened instead.
fn admin_exchange(admin: SocketAddr, request: &str, wait: Duration) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&admin, wait).map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let (got, closed) = read_until_close(&mut stream, wait);
    match parse_response(&got, request.starts_with("HEAD"), closed) {
        Ok(Some((resp, _))) => Ok(resp),
        _ => Err(format!(
            "no answer within {wait:?} (closed: {closed}): {:?}",
            show(&got)
        )),
    }
}

/// A client that connects to `admin`, sends a request head one byte a second and reads
/// whatever comes back, until the listener closes the connection or `stop` is set.
/// Returns (the connection, whether the listener had closed it, what it answered).
struct Dribbler {
    thread: std::thread::JoinHandle<(bool, Vec<u8>)>,
}

impl Dribbler {
    fn start(admin: SocketAddr, stop: Arc<std::sync::atomic::AtomicBool>) -> Dribbler {
        use std::sync::atomic::Ordering;
        let mut stream = connect(admin);
        // The first bytes go out before this returns, so the listener has the connection.
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            let dribble = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for byte in dribble.iter().cycle() {
                // A byte a second: under any per-read timeout, and never a whole head.
                match stream.read(&mut buf) {
                    Ok(0) => return (true, got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if stop.load(Ordering::Relaxed) {
                            return (false, got);
                        }
                    }
                    Err(_) => return (true, got),
                }
                let _ = stream.write_all(std::slice::from_ref(byte));
            }
            unreachable!("the dribble cycles")
        });
        Dribbler { thread }
    }

    fn finish(self) -> (bool, Vec<u8>) {
        self.thread.join().expect("dribbler thread")
    }
}

#[test]
fn a_client_dribbling_a_head_does_not_hold_up_healthz_and_is_cut_at_the_deadline() {
    let (_gw, admin, _o) = gateway_with_admin();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = Dribbler::start(admin, stop.clone());
    // Served beside the slow one, not after it: before the fix this waited for it to end.
    let healthz = admin_exchange(
        admin,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ADMIN_HEAD_TIMEOUT,
    );
    let ready = admin_exchange(
        admin,
        "GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ADMIN_HEAD_TIMEOUT,
    );
    // The slow client is cut by the whole-head deadline, however steadily it sends. It
    // stops by itself only when the listener closes on it; `stop` ends a test that failed.
    let cut = std::thread::spawn({
        let stop = stop.clone();
        move || {
            std::thread::sleep(ADMIN_HEAD_TIMEOUT * 4);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let (closed, answer) = slow.finish();
    drop(cut);
    let healthz = healthz.expect("/healthz beside a slow client");
    assert_eq!(healthz.status, 200, "{healthz:?}");
    assert_eq!(ready.expect("/ready beside a slow client").status, 200);
    assert!(
        closed,
        "a client sending a byte a second kept its admin connection for {:?}",
        ADMIN_HEAD_TIMEOUT * 4
    );
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{:?}",
        show(&answer)
    );
}

#[test]
fn slow_clients_beyond_the_bound_are_refused_and_healthz_answers_once_they_are_cut() {
    let (_gw, admin, _o) = gateway_with_admin();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<Dribbler> = (0..ADMIN_CONNECTIONS_MAX + 8)
        .map(|_| Dribbler::start(admin, stop.clone()))
        .collect();
    // While the slots are full a request may be refused; once the deadline has cut the slow
    // clients (and with them gone), /healthz answers.
    let answered = eventually(ADMIN_HEAD_TIMEOUT * 4, || {
        admin_exchange(
            admin,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
            Duration::from_secs(2),
        )
        .is_ok_and(|r| r.status == 200)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ends: Vec<(bool, Vec<u8>)> = slow.into_iter().map(Dribbler::finish).collect();
    assert!(
        answered,
        "/healthz did not answer after slow clients filled the admin listener"
    );
    let refused = ends
        .iter()
        .filter(|(_, got)| got.starts_with(b"HTTP/1.1 503"))
        .count();
    let timed_out = ends
        .iter()
        .filter(|(_, got)| got.starts_with(b"HTTP/1.1 408"))
        .count();
    assert!(
        ends.iter().all(|(closed, _)| *closed),
        "slow admin clients were not all closed"
    );
    assert!(refused >= 1, "no connection beyond the bound was refused");
    assert!(
        timed_out + refused == ends.len() && timed_out <= ADMIN_CONNECTIONS_MAX,
        "{timed_out} cut by the deadline, {refused} refused, of {}",
        ends.len()
    );
}

#[test]
fn the_admin_listener_answers_only_its_own_host_names() {
    let (_gw, admin, _o) = gateway_with_admin();
    let port = admin.port();
    let wait = Duration::from_secs(15);
    let ask = |host_line: &str| {
        let request = format!("GET /config HTTP/1.1\r\n{host_line}\r\n");
        admin_exchange(admin, &request, wait).unwrap_or_else(|e| panic!("{host_line:?}: {e}"))
    };
    // A DNS-rebinding page: the browser sends its own name.
    for host in [
        "Host: evil.example\r\n".to_owned(),
        format!("Host: evil.example:{port}\r\n"),
        format!("Host: localhost.evil.example:{port}\r\n"),
        format!("Host: 127.0.0.1.evil.example:{port}\r\n"),
    ] {
        let resp = ask(&host);
        assert_eq!(resp.status, 421, "{host:?}: {resp:?}");
        assert!(!resp.body_text().contains("\"hash\""), "{resp:?}");
    }
    let resp = ask("");
    assert_eq!(resp.status, 400, "HTTP/1.1 without Host: {resp:?}");
    for host in [
        format!("Host: localhost:{port}\r\n"),
        "Host: localhost\r\n".to_owned(),
        format!("Host: {admin}\r\n"),
        format!("Host: 127.0.0.2:{port}\r\n"),
        format!("Host: [::1]:{port}\r\n"),
    ] {
        let resp = ask(&host);
        assert_eq!(resp.status, 200, "{host:?}: {resp:?}");
        assert!(resp.body_text().contains("\"hash\""), "{resp:?}");
    }
    // No browser sends HTTP/1.0 without Host; other clients may.
    let resp = admin_exchange(admin, "GET /healthz HTTP/1.0\r\n\r\n", wait).unwrap();
    assert_eq!(resp.status, 200, "HTTP/1.0 without Host: {resp:?}");
}
