//! Defects the fuzz targets (`fuzz/`) found, replayed against the real binary with the bytes
//! that triggered them: a JWT whose claims are not UTF-8 (accepted), and a JSON body whose
//! untouched numbers the JSON filter changed (serde_json's float parsing was not correctly
//! rounded).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

use crate::common::*;

const SECRET: &str = "a-fuzz-test-secret-long-enough-for-hs256";

fn hs256(header: &[u8], claims: &[u8]) -> String {
    hs256_sign(SECRET, header, claims)
}

/// RFC 7519 §7.2 step 10: the claims must be UTF-8 JSON. The verifier skipped the claims it
/// does not read without checking their bytes, so a signed payload with a 0xFF byte in an
/// unread claim was accepted and forwarded to an upstream whose own strict parser refuses it.
#[test]
fn jwt_with_claims_that_are_not_utf8_is_refused() {
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&format!(
        r#"{}
[auth.jwt.hs]
algorithms = ["HS256"]
secret = "{SECRET}"

[[route]]
name = "hs"
path_prefix = "/"
upstream = "o"
auth = "hs"
"#,
        one_upstream_config(o.addr()),
    ));
    let exp = unix_now() + 600;
    let header = br#"{"alg":"HS256","typ":"JWT"}"#;
    let get = |token: &str| {
        gw.request(&format!(
            "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n"
        ))
    };

    let good = format!(r#"{{"sub":"alice","exp":{exp},"note":"ab"}}"#);
    let r = get(&hs256(header, good.as_bytes()));
    assert_eq!(r.status, 200, "the well-formed token: {}", r.body_text());

    let before = o.requests();
    let bad = format!(r#"{{"sub":"alice","exp":{exp},"note":"a"#).into_bytes();
    let bad = [&bad[..], b"\xff", b"b\"}"].concat();
    let r = get(&hs256(header, &bad));
    assert_eq!(r.status, 401, "claims with a 0xFF byte: {}", r.body_text());
    assert_eq!(o.requests(), before, "the upstream saw the request");
}

/// An upstream that answers every request on its connection with `body` as JSON.
fn json_upstream(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Requests without a body: answer each complete head.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// A number the filter does not touch reaches the client with the value the upstream sent.
/// serde_json's default float parser is not correctly rounded: `0.17801246309558322749`
/// became the neighbouring double `0.17801246309558325` on its way through the filter.
#[test]
fn json_filter_keeps_the_value_of_numbers_it_does_not_touch() {
    const NUMBER: &str = "0.17801246309558322749";
    const BODY: &str = r#"{"f":0.17801246309558322749,"secret":1}"#;
    let upstream = json_upstream(BODY);
    let gw = start_gateway(&format!(
        r#"{}
[[route]]
name = "filtered"
path_prefix = "/"
upstream = "o"

[route.json_filter]
remove = ["secret"]
"#,
        one_upstream_config(upstream)
    ));
    let r = gw.get("/x");
    assert_eq!(r.status, 200);
    let text = r.body_text();
    let written = text
        .strip_prefix(r#"{"f":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("unexpected body {text}"));
    // std's float parser is correctly rounded: the two texts must name the same double.
    assert_eq!(
        written.parse::<f64>().unwrap(),
        NUMBER.parse::<f64>().unwrap(),
        "the filter changed an untouched number: {text}"
    );
}
