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
