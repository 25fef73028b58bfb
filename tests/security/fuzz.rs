//! Defects the fuzz targets (`fuzz/`) found, replayed against the real binary with the bytes
//! that triggered them: a JWT whose claims are not UTF-8 (accepted).

use std::time::{SystemTime, UNIX_EPOCH};

use coregate_engine::policy::jwt::base64url_encode as b64url;

use crate::common::*;

const SECRET: &str = "a-fuzz-test-secret-long-enough-for-hs256";

fn hs256(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64url(header), b64url(claims));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(tag.as_ref()))
}

/// RFC 7519 §7.2 step 10: the claims must be UTF-8 JSON. The verifier skipped the claims it
/// does not read without checking their bytes, so a signed payload with a 0xFF byte in an
/// unread claim was accepted and forwarded to an upstream whose own strict parser refuses it.
#[test]
fn jwt_with_claims_that_are_not_utf8_is_refused() {
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&format!(
        r#"[server]
workers = 1

[[listener]]
address = "{{listen}}"

[upstreams.o]
endpoints = [{{ address = "{origin}" }}]

[auth.jwt.hs]
algorithms = ["HS256"]
secret = "{SECRET}"

[[route]]
name = "hs"
path_prefix = "/"
upstream = "o"
auth = "hs"
"#,
        origin = o.addr()
    ));
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
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
