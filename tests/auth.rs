//! Authentication end to end: JWT (HS256 from a secret, ES256 from a JWKS file generated
//! here) and API keys (header and query), identity headers passed upstream, spoofed identity
//! headers removed on every route, and 401 answers that say why without reaching the
//! upstream. Tokens are minted in the test with ring.

mod common;

use common::*;
use coregate_engine::policy::jwt::base64url_encode as b64url;
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn hs256(header: &str, claims: &str) -> String {
    hs256_sign(SECRET, header.as_bytes(), claims.as_bytes())
}

fn claims(sub: &str, exp: u64) -> String {
    format!(r#"{{"sub":"{sub}","exp":{exp},"iss":"https://issuer.test"}}"#)
}

fn config(origin: std::net::SocketAddr, jwks: &str) -> String {
    format!(
        r#"{}
[auth.jwt.hs]
algorithms = ["HS256"]
secret = "{SECRET}"
issuer = "https://issuer.test"

[auth.jwt.es]
algorithms = ["ES256"]
jwks_file = "{jwks}"

{api_keys}
[[route]]
name = "hs"
path_prefix = "/hs"
upstream = "o"
auth = "hs"

[[route]]
name = "es"
path_prefix = "/es"
upstream = "o"
auth = "es"

{API_KEY_ROUTES}
[[route]]
name = "open"
path_prefix = "/open"
upstream = "o"
"#,
        one_upstream_config(origin),
        api_keys = api_key_policies(),
    )
}

fn es256(pair: &EcdsaKeyPair, kid: &str, claims: &str) -> String {
    let header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#);
    let signing_input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    );
    let sig = pair
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    format!("{signing_input}.{}", b64url(sig.as_ref()))
}

fn get_with(gw: &Gateway, path: &str, headers: &str) -> Response {
    gw.request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n"))
}

fn seen_header(r: &Response, name: &str) -> Option<String> {
    let json = r.json();
    json["headers"].as_array().unwrap().iter().find_map(|h| {
        (h[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .then(|| h[1].as_str().unwrap().to_owned())
    })
}

#[test]
fn jwt_hs256_passes_identity_and_refuses_bad_tokens() {
    let o = origin("o", Mode::Json);
    let (_, jwks) = es256_key("k1");
    let gw = start_gateway(&config(o.addr(), &jwks.path().display().to_string()));
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;

    let good = hs256(header, &claims("alice", unix_now() + 600));
    let r = get_with(
        &gw,
        "/hs/x",
        &format!("Authorization: Bearer {good}\r\nX-User-Id: mallory\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(seen_header(&r, "x-user-id").as_deref(), Some("alice"));
    // The spoofed copy is gone, not merely followed by the real one.
    let json = r.json();
    let copies = json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("x-user-id"))
        .count();
    assert_eq!(copies, 1);

    let before = o.requests();
    let missing = get_with(&gw, "/hs/x", "");
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));

    let cases = [
        (
            "expired",
            hs256(header, &claims("alice", unix_now() - 3600)),
            "expired",
        ),
        (
            "alg none",
            {
                let t = hs256(header, &claims("alice", unix_now() + 600));
                let parts: Vec<&str> = t.split('.').collect();
                format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1])
            },
            "",
        ),
        (
            "alg NoNe",
            format!(
                "{}.{}.",
                b64url(br#"{"alg":"NoNe"}"#),
                b64url(claims("alice", unix_now() + 600).as_bytes())
            ),
            "",
        ),
        (
            "tampered",
            {
                let t = hs256(header, &claims("alice", unix_now() + 600));
                let parts: Vec<&str> = t.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64url(claims("root", unix_now() + 600).as_bytes()),
                    parts[2]
                )
            },
            "",
        ),
        (
            "wrong issuer",
            hs256(
                header,
                &format!(
                    r#"{{"sub":"a","exp":{},"iss":"https://evil"}}"#,
                    unix_now() + 600
                ),
            ),
            "",
        ),
    ];
    for (name, token, reason) in cases {
        let r = get_with(&gw, "/hs/x", &format!("Authorization: Bearer {token}\r\n"));
        assert_eq!(r.status, 401, "{name}: {}", r.body_text());
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(r.body_text().contains(reason), "{name}: {}", r.body_text());
        assert!(!r.body_text().contains(SECRET), "{name}");
    }
    assert_eq!(
        o.requests(),
        before,
        "a refused request reached the upstream"
    );

    // An unauthenticated route still drops client-sent identity headers.
    let r = get_with(
        &gw,
        "/open",
        "X-User-Id: mallory\r\nX-Consumer: mallory\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(seen_header(&r, "x-user-id"), None);
    assert_eq!(seen_header(&r, "x-consumer"), None);
}

#[test]
fn jwt_es256_from_a_jwks_file_and_no_alg_confusion() {
    let o = origin("o", Mode::Json);
    let (pair, jwks) = es256_key("k1");
    let gw = start_gateway(&config(o.addr(), &jwks.path().display().to_string()));
    let token = es256(&pair, "k1", &claims("bob", unix_now() + 600));
    let r = get_with(&gw, "/es/x", &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(seen_header(&r, "x-user-id").as_deref(), Some("bob"));

    // Unknown kid (a path trick), an HS256 token on the ES256 route, an all-zero signature.
    let bad_kid = es256(&pair, "../../etc/passwd", &claims("bob", unix_now() + 600));
    let hs_on_es = hs256(
        r#"{"alg":"HS256","kid":"k1"}"#,
        &claims("bob", unix_now() + 600),
    );
    let zero_sig = {
        let parts: Vec<&str> = token.split('.').collect();
        format!("{}.{}.{}", parts[0], parts[1], b64url(&[0u8; 64]))
    };
    for (name, t) in [
        ("kid", bad_kid),
        ("hs on es", hs_on_es),
        ("zero sig", zero_sig),
    ] {
        let r = get_with(&gw, "/es/x", &format!("Authorization: Bearer {t}\r\n"));
        assert_eq!(r.status, 401, "{name}: {}", r.body_text());
    }
}

#[test]
fn api_keys_from_a_header_or_the_query_are_checked_and_removed() {
    let o = origin("o", Mode::Json);
    let (_, jwks) = es256_key("k1");
    let gw = start_gateway(&config(o.addr(), &jwks.path().display().to_string()));

    let r = get_with(&gw, "/key/x", "X-Api-Key: acme-key\r\n");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(seen_header(&r, "x-consumer").as_deref(), Some("acme"));
    assert_eq!(
        seen_header(&r, "x-api-key"),
        None,
        "the key must not go upstream"
    );

    for headers in ["", "X-Api-Key: wrong\r\n"] {
        let r = get_with(&gw, "/key/x", headers);
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(r.header("www-authenticate").is_some());
    }

    let r = get_with(&gw, "/query/x?a=1&api_key=globex-key&b=2", "");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.json()["target"], "/query/x?a=1&b=2");
    assert_eq!(seen_header(&r, "x-consumer").as_deref(), Some("globex"));
    assert_eq!(get_with(&gw, "/query/x?api_key=nope", "").status, 401);
}

/// A JWKS file rotated on disk is read again by the control thread on SIGHUP, although the
/// config text did not change: a token signed by the new key then passes.
#[test]
fn a_rotated_jwks_file_is_picked_up_on_sighup() {
    let o = origin("o", Mode::Json);
    let (_, jwks) = es256_key("old");
    let gw = start_gateway(&config(o.addr(), &jwks.path().display().to_string()));
    let (new_pair, new_jwks) = es256_key("new");
    let token = es256(&new_pair, "new", &claims("carol", unix_now() + 600));
    let auth = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(get_with(&gw, "/es/x", &auth).status, 401);
    std::fs::copy(new_jwks.path(), jwks.path()).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(
        eventually(std::time::Duration::from_secs(5), || get_with(
            &gw, "/es/x", &auth
        )
        .status
            == 200),
        "the new key was not picked up"
    );
}

/// The demo protects a route with JWT and one with an API key, rate-limits a third, and
/// prints a token that works.
#[test]
fn the_demo_shows_jwt_api_key_and_rate_limit_routes() {
    let gw = start_demo();
    let has_token = || gw.stdout_lines().iter().any(|l| l.contains("TOKEN="));
    assert!(eventually(std::time::Duration::from_secs(10), has_token));
    let lines = gw.stdout_lines();
    let token = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("TOKEN="))
        .unwrap_or_else(|| panic!("no TOKEN= line in {lines:?}"))
        .to_owned();
    let r = get_with(
        &gw,
        "/secure/users/1",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(get_with(&gw, "/secure/users/1", "").status, 401);
    assert_eq!(
        get_with(&gw, "/partner/orders", "X-Api-Key: demo-partner-key\r\n").status,
        200
    );
    assert_eq!(get_with(&gw, "/partner/orders", "").status, 401);
    let statuses: Vec<u16> = (0..8)
        .map(|_| get_with(&gw, "/limited/products", "").status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}
