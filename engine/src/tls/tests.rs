//! The adapter and the SNI table against real rustls peers over loopback sockets, with
//! certificates made here.

use std::net::SocketAddr;
use std::sync::Arc;

use coregate_config::{Certificate, ListenerTls, TlsVersion, UpstreamTls};
use coregate_rt::{Runtime, TcpListener, TcpStream};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::*;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "unit CA");
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` whose common name is `cn`.
    fn issue(&self, cn: &str, names: &[&str]) -> Certificate {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Certificate {
            cert_path: format!("{cn}.pem").into(),
            cert_pem: cert.pem().into_bytes(),
            key_path: format!("{cn}.key").into(),
            key_pem: key.serialize_pem().into_bytes(),
            names: Vec::new(),
        }
    }
}

fn listener_tls(certificates: Vec<Certificate>, default_certificate: usize) -> ListenerTls {
    ListenerTls {
        certificates,
        default_certificate,
        versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        session_tickets: true,
        handshake_timeout_ms: 5_000,
    }
}

fn client_for(ca: &Ca, server_name: Option<&str>) -> ClientTls {
    ClientTls::compile(&UpstreamTls {
        server_name: server_name.map(str::to_owned),
        ca: Some(("ca.pem".into(), ca.pem.clone().into_bytes())),
    })
    .unwrap()
}

/// The common name of the certificate the server presented.
fn served_cn(stream: &TlsStream) -> String {
    let der = &stream.session().peer_certificates().unwrap()[0];
    let text = String::from_utf8_lossy(der.as_ref()).into_owned();
    ["alpha", "beta", "gamma"]
        .into_iter()
        .find(|cn| text.contains(cn))
        .unwrap_or("?")
        .to_owned()
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    Runtime::new(64).unwrap().block_on(f)
}

/// Accepts one connection on `listener` and runs `serve` on it after the handshake.
async fn accept_one(listener: &TcpListener, server: &ServerTls) -> TlsStream {
    let (tcp, _) = listener.accept().await.unwrap();
    server.accept(tcp).await.unwrap()
}

async fn connect(addr: SocketAddr, client: &ClientTls) -> TlsStream {
    let tcp = TcpStream::connect_addr(addr).await.unwrap();
    client.connect(tcp, addr.ip()).await.unwrap()
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let ca = Ca::new();
    let alpha = ca.issue("alpha", &["alpha.test"]);
    let mut beta = ca.issue("beta", &["beta.test", "*.beta.test"]);
    beta.names = vec!["*.beta.test".to_owned()];
    let gamma = ca.issue("gamma", &["gamma.test", "127.0.0.1"]);
    let server = ServerTls::compile(&listener_tls(vec![alpha, beta, gamma], 2), None).unwrap();
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for (name, expected) in [
            (Some("alpha.test"), "alpha"),
            (Some("api.beta.test"), "beta"),
            (None, "gamma"),
        ] {
            let client = client_for(&ca, name);
            let (server_side, client_side) =
                futures_join(accept_one(&listener, &server), connect(addr, &client)).await;
            assert_eq!(served_cn(&client_side), expected, "{name:?}");
            assert_eq!(
                server_side.session().alpn_protocol(),
                Some(ALPN_HTTP11),
                "ALPN"
            );
        }
    });
    // `beta.test` itself is not configured (only its wildcard), so it falls to the default.
    let resolver = SniResolver::compile(&listener_tls(
        vec![ca.issue("alpha", &["alpha.test"]), {
            let mut b = ca.issue("beta", &["beta.test", "*.beta.test"]);
            b.names = vec!["*.beta.test".to_owned()];
            b
        }],
        0,
    ))
    .unwrap();
    let is =
        |name: Option<&str>, index: &Arc<CertifiedKey>| Arc::ptr_eq(resolver.choose(name), index);
    let beta = resolver.wildcard.get("beta.test").unwrap();
    assert!(is(Some("x.beta.test"), beta));
    assert!(is(Some("beta.test"), &resolver.default));
    assert!(is(Some("a.x.beta.test"), &resolver.default));
    assert!(is(Some("unknown.test"), &resolver.default));
}

/// Polls two futures to completion on one task.
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_naming_the_file() {
    let ca = Ca::new();
    let mut alpha = ca.issue("alpha", &["alpha.test"]);
    alpha.key_pem = ca.issue("beta", &["beta.test"]).key_pem;
    let err = ServerTls::compile(&listener_tls(vec![alpha], 0), None)
        .err()
        .unwrap();
    assert!(
        err.contains("alpha.key") && err.contains("does not match"),
        "{err}"
    );

    let mut named = ca.issue("alpha", &["alpha.test"]);
    named.names = vec!["other.test".to_owned()];
    let err = ServerTls::compile(&listener_tls(vec![named], 0), None)
        .err()
        .unwrap();
    assert!(
        err.contains("does not cover") && err.contains("other.test"),
        "{err}"
    );

    let mut garbage = ca.issue("alpha", &["alpha.test"]);
    garbage.cert_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
    let err = ServerTls::compile(&listener_tls(vec![garbage], 0), None)
        .err()
        .unwrap();
    assert!(err.contains("alpha.pem"), "{err}");
}

/// Both directions at once over the split halves (the proxy's duplex path), with buffers
/// released and refilled between exchanges (the idle path), byte for byte.
#[test]
fn split_halves_carry_both_directions_at_once() {
    let ca = Ca::new();
    let server = ServerTls::compile(
        &listener_tls(vec![ca.issue("alpha", &["alpha.test"])], 0),
        None,
    )
    .unwrap();
    let client = client_for(&ca, Some("alpha.test"));
    const BYTES: usize = 4 * 1024 * 1024;
    let pattern = |i: usize| (i % 251) as u8;
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut server_side, client_side) =
            futures_join(accept_one(&listener, &server), connect(addr, &client)).await;
        // A first small exchange, then idle: buffers go, and come back on the next read.
        let mut client_side = client_side;
        let (r, _) = client_side.write_all(b"ping".to_vec()).await;
        r.unwrap();
        let (r, got) = server_side.read(Vec::with_capacity(16)).await;
        assert_eq!((r.unwrap(), &got[..]), (4, &b"ping"[..]));
        server_side.release_buffers();
        assert!(!server_side.has_buffered());

        // The server echoes as it reads, on its split halves; the client writes and reads
        // concurrently on its own.
        let (mut srx, mut stx) = server_side.into_split();
        let echo = async move {
            let mut total = 0;
            while total < BYTES {
                let (r, buf) = srx.read(Vec::with_capacity(64 * 1024)).await;
                let n = r.unwrap();
                assert!(n > 0, "early end after {total}");
                total += n;
                let (r, _) = stx.write_all(buf).await;
                r.unwrap();
            }
        };
        let (mut crx, mut ctx) = client_side.into_split();
        let send = async move {
            let data: Vec<u8> = (0..BYTES).map(pattern).collect();
            for chunk in data.chunks(100_000) {
                let (r, _) = ctx.write_all(chunk.to_vec()).await;
                r.unwrap();
            }
        };
        let receive = async move {
            let mut got = 0;
            while got < BYTES {
                let (r, buf) = crx.read(Vec::with_capacity(64 * 1024)).await;
                let n = r.unwrap();
                assert!(n > 0);
                for (k, b) in buf.iter().enumerate() {
                    assert_eq!(*b, pattern(got + k), "byte {}", got + k);
                }
                got += n;
            }
        };
        let ((), ((), ())) = futures_join(echo, futures_join(send, receive)).await;
    });
}

#[test]
fn a_session_resumes_with_a_ticket_across_a_recompile() {
    let ca = Ca::new();
    let tls = listener_tls(vec![ca.issue("alpha", &["alpha.test"])], 0);
    let first = ServerTls::compile(&tls, None).unwrap();
    // The next snapshot's config, as after a reload: it lends the ticket keys.
    let second = ServerTls::compile(&tls, Some(&first)).unwrap();
    let client = client_for(&ca, Some("alpha.test"));
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut kinds = Vec::new();
        for server in [&first, &second] {
            let (mut s, mut c) =
                futures_join(accept_one(&listener, server), connect(addr, &client)).await;
            // The client takes the tickets sent after the handshake with its first read.
            let (r, _) = s.write_all(b"x".to_vec()).await;
            r.unwrap();
            let (r, _) = c.read(Vec::with_capacity(8)).await;
            r.unwrap();
            kinds.push(s.session().handshake_kind());
        }
        assert_eq!(
            kinds,
            [
                Some(rustls::HandshakeKind::Full),
                Some(rustls::HandshakeKind::Resumed)
            ]
        );
    });
}

/// Plaintext lands in buffers of any size through their spare (uninitialised) capacity, a
/// read taking what several records hold; only close_notify reads as a clean end (Ok(0)),
/// and a bare TCP close is an `UnexpectedEof` error once the data is read.
#[test]
fn reads_fill_spare_capacity_and_only_close_notify_is_a_clean_end() {
    let ca = Ca::new();
    let server = ServerTls::compile(
        &listener_tls(vec![ca.issue("alpha", &["alpha.test"])], 0),
        None,
    )
    .unwrap();
    let client = client_for(&ca, Some("alpha.test"));
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for clean in [true, false] {
            let (mut s, mut c) =
                futures_join(accept_one(&listener, &server), connect(addr, &client)).await;
            // Two records, then the close.
            for part in [&b"first record, "[..], b"second record"] {
                let (r, _) = s.write_all(part.to_vec()).await;
                r.unwrap();
            }
            if clean {
                s.shutdown().await.unwrap();
            } else {
                drop(s);
            }
            let mut got = Vec::new();
            // Three bytes at a time, then the rest in one read, always into spare capacity
            // past what the buffer already holds.
            while got.len() < 9 {
                let (r, buf) = c.read(Vec::with_capacity(3)).await;
                let n = r.unwrap();
                assert!(n > 0 && n <= 3, "{n}");
                got.extend_from_slice(&buf);
            }
            let mut buf = got;
            let end = loop {
                let len = buf.len();
                buf.reserve(64);
                let (r, slice) = c.read(buf.slice_mut(len..)).await;
                buf = slice.into_inner();
                match r {
                    Ok(0) => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            };
            assert_eq!(&buf[..], b"first record, second record");
            match (clean, end) {
                (true, Ok(())) => {}
                (false, Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                (clean, end) => panic!("clean close {clean}: {end:?}"),
            }
        }
    });
}
