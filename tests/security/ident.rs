//! Identity and credential headers, and what an unauthenticated flood costs (issue 14,
//! defects 2, 4 and 9), on the real binary over loopback:
//!
//! - 2: a client copy of an identity header in any CGI spelling (`X_User_Id`, `x.user.id`)
//!   never reaches the upstream beside the gateway's own; the same for `X-Consumer`, the
//!   request id and a header a route fills from a claim.
//! - 4: two `Authorization` fields, two of a policy's token or key header, its cookie twice
//!   in `Cookie` or its query key twice are refused with 400 and nothing goes upstream.
//! - 9: a client-IP rate limit runs before authentication, so forged tokens beyond the
//!   limit get 429 without a signature check (the failure cache itself is unit-tested in
//!   `engine/src/policy/jwt.rs`); a limit keyed on an identity header counts the verified
//!   identity, not a spoofed copy.

use std::net::SocketAddr;

use coregate_engine::policy::jwt::base64url_encode as b64url;

use crate::common::*;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn token(sub: &str) -> String {
    let claims = format!(
        r#"{{"sub":"{sub}","tenant":"t-{sub}","exp":{}}}"#,
        unix_now() + 600
    );
    hs256_sign(SECRET, br#"{"alg":"HS256","typ":"JWT"}"#, claims.as_bytes())
}

fn config(origin: SocketAddr) -> String {
    format!(
        r#"{}
[auth.jwt.hs]
algorithms = ["HS256"]
secret = "{SECRET}"
claims_to_headers = {{ sub = "X-User-Id", tenant = "X-Tenant-Id" }}

[auth.jwt.by_header]
algorithms = ["HS256"]
secret = "{SECRET}"
token = "header:X-Token"

[auth.jwt.by_cookie]
algorithms = ["HS256"]
secret = "{SECRET}"
token = "cookie:session"

{api_keys}
[[route]]
name = "hs"
path_prefix = "/hs"
upstream = "o"
auth = "hs"
request_id = true

[route.request_headers]
add = {{ "X-Tenant" = "${{claim.tenant}}" }}

[[route]]
name = "by_header"
path_prefix = "/header"
upstream = "o"
auth = "by_header"

[[route]]
name = "by_cookie"
path_prefix = "/cookie"
upstream = "o"
auth = "by_cookie"

{API_KEY_ROUTES}
[[route]]
name = "open"
path_prefix = "/open"
upstream = "o"
request_id = true
"#,
        one_upstream_config(origin),
        api_keys = api_key_policies(),
    )
}

/// How a CGI gateway (RFC 3875 §4.1.18), WSGI, Rack or PHP names a header: upper case,
/// `-` as `_` (Apache also maps other punctuation).
fn cgi_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Every (name, value) the upstream received whose CGI name is that of `name`.
fn seen_as(r: &Response, name: &str) -> Vec<(String, String)> {
    let want = cgi_name(name);
    r.json()["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap(), h[1].as_str().unwrap()))
        .filter(|(n, _)| cgi_name(n) == want)
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn get(gw: &Gateway, target: &str, headers: &str) -> Response {
    gw.request(&format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n"
    ))
}

/// Client copies of identity headers under their CGI aliases, and of the headers the
/// gateway fills from a claim and from the request id.
const SPOOFS: &str = "X_User_Id: admin\r\nx.user.id: admin\r\nX_Consumer: admin\r\n\
                      X_Tenant_Id: evil\r\nX_Tenant: evil\r\nx-tenant: evil\r\n\
                      X_Request_Id: forged\r\n";

#[test]
fn identity_headers_in_any_cgi_spelling_never_reach_the_upstream() {
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&config(o.addr()));

    let r = get(
        &gw,
        "/hs/x",
        &format!("Authorization: Bearer {}\r\n{SPOOFS}", token("alice")),
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let one = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
    assert_eq!(seen_as(&r, "X-User-Id"), one("X-User-Id", "alice"));
    assert_eq!(seen_as(&r, "X-Tenant-Id"), one("X-Tenant-Id", "t-alice"));
    assert_eq!(seen_as(&r, "X-Tenant"), one("X-Tenant", "t-alice"));
    assert_eq!(seen_as(&r, "X-Consumer"), vec![]);
    let ids = seen_as(&r, "X-Request-Id");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(Some(ids[0].1.as_str()), r.header("x-request-id"));
    assert_ne!(ids[0].1, "forged");

    let r = get(&gw, "/key/x", &format!("X-Api-Key: acme-key\r\n{SPOOFS}"));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(seen_as(&r, "X-Consumer"), one("X-Consumer", "acme"));
    assert_eq!(seen_as(&r, "X-User-Id"), vec![]);

    // A route without authentication drops them too; a request id the client sent the
    // right way is passed once, its underscore twin not at all.
    let r = get(&gw, "/open/x", &format!("X-Request-Id: abc-1\r\n{SPOOFS}"));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(seen_as(&r, "X-User-Id"), vec![]);
    assert_eq!(seen_as(&r, "X-Consumer"), vec![]);
    assert_eq!(seen_as(&r, "X-Tenant-Id"), vec![]);
    assert_eq!(seen_as(&r, "X-Request-Id"), one("X-Request-Id", "abc-1"));
    assert_eq!(r.header("x-request-id"), Some("abc-1"));
}

#[test]
fn duplicate_credentials_are_refused_before_anything_goes_upstream() {
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&config(o.addr()));
    let good = token("alice");
    // A second copy that would not verify: which one a reader takes decides the answer.
    let forged = format!("{}x", token("admin"));

    // Each single-copy request is admitted, so the 400s below come from the duplicate.
    for (target, headers) in [
        ("/hs/x", format!("Authorization: Bearer {good}\r\n")),
        ("/header/x", format!("X-Token: {good}\r\n")),
        (
            "/cookie/x",
            format!("Cookie: theme=dark; theme=light; session={good}\r\n"),
        ),
        ("/key/x", "X-Api-Key: acme-key\r\n".to_owned()),
        ("/query/x?api_key=globex-key", String::new()),
    ] {
        let r = get(&gw, target, &headers);
        assert_eq!(r.status, 200, "{target} {headers:?}: {}", r.body_text());
    }

    let before = o.requests();
    for (target, headers) in [
        (
            "/hs/x",
            format!("Authorization: Bearer {good}\r\nAuthorization: Bearer {forged}\r\n"),
        ),
        (
            "/open/x",
            format!("Authorization: Bearer {good}\r\nauthorization: Basic YTpi\r\n"),
        ),
        (
            "/header/x",
            format!("X-Token: {good}\r\nX-Token: {forged}\r\n"),
        ),
        (
            "/header/x",
            format!("X-Token: {good}\r\nX_Token: {forged}\r\n"),
        ),
        (
            "/cookie/x",
            format!("Cookie: session={good}; session={forged}\r\n"),
        ),
        (
            "/cookie/x",
            format!("Cookie: session={good}\r\nCookie: session={forged}\r\n"),
        ),
        (
            "/key/x",
            "X-Api-Key: acme-key\r\nX-Api-Key: other\r\n".to_owned(),
        ),
        (
            "/key/x",
            "X-Api-Key: acme-key\r\nX_Api_Key: other\r\n".to_owned(),
        ),
        ("/query/x?api_key=globex-key&api_key=other", String::new()),
    ] {
        let r = get(&gw, target, &headers);
        assert_eq!(r.status, 400, "{target} {headers:?}: {}", r.body_text());
    }
    assert_eq!(
        o.requests(),
        before,
        "a refused request reached the upstream"
    );
}

/// An ES256 JWKS under `kid`, and a token with that kid whose signature is garbage: it
/// costs the gateway an ECDSA verification to refuse.
fn es256_jwks_and_forgery(kid: &str) -> (TempFile, String) {
    let (_, jwks) = es256_key(kid);
    let forged = format!(
        "{}.{}.{}",
        b64url(format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#).as_bytes()),
        b64url(format!(r#"{{"sub":"admin","exp":{}}}"#, unix_now() + 600).as_bytes()),
        b64url(&[7u8; 64])
    );
    (jwks, forged)
}

/// A gateway whose one route `/` is behind JWT policy `auth` (its settings `policy`) and
/// rate limit `limit`: a burst of `burst` keyed on `key`, refilled too slowly to matter here.
fn rate_limited_gateway(
    origin: SocketAddr,
    auth: &str,
    policy: &str,
    limit: &str,
    burst: u32,
    key: &str,
) -> Gateway {
    start_gateway(&format!(
        r#"{}
[auth.jwt.{auth}]
{policy}
[rate_limits.{limit}]
rate_per_second = 0.01
burst = {burst}
key = "{key}"

[[route]]
name = "{auth}"
path_prefix = "/"
upstream = "o"
auth = "{auth}"
rate_limit = "{limit}"
"#,
        one_upstream_config(origin)
    ))
}

#[test]
fn a_client_ip_rate_limit_refuses_forged_tokens_before_checking_them() {
    let o = origin("o", Mode::Json);
    let (jwks, forged) = es256_jwks_and_forgery("k1");
    let es = format!(
        "algorithms = [\"ES256\"]\njwks_file = \"{}\"\n",
        jwks.path().display()
    );
    let gw = rate_limited_gateway(o.addr(), "es", &es, "per_ip", 2, "client_ip");

    // Pipelined on one connection: the burst of 2 is spent on the first two forgeries
    // (checked and refused, 401); the rest are refused by the limit (429), unchecked.
    let mut client = gw.connect();
    let one = format!("GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {forged}\r\n\r\n");
    client.send(one.repeat(6).as_bytes());
    let statuses: Vec<u16> = (0..6).map(|_| client.read_response().status).collect();
    assert_eq!(statuses, [401, 401, 429, 429, 429, 429]);
    assert_eq!(o.requests(), 0);
}

/// A limit keyed on an identity header must count the identity the gateway verified, not
/// the client's copy of the header (which the gateway drops): rotating a spoofed
/// `X-User-Id` does not buy a fresh budget.
#[test]
fn a_rate_limit_on_an_identity_header_counts_the_verified_identity() {
    let o = origin("o", Mode::Json);
    let hs = format!("algorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n");
    let gw = rate_limited_gateway(o.addr(), "hs", &hs, "per_user", 1, "header:x-user-id");
    let alice = format!("Authorization: Bearer {}\r\n", token("alice"));
    let statuses: Vec<u16> = (0..3)
        .map(|i| get(&gw, "/x", &format!("{alice}X-User-Id: spoof-{i}\r\n")).status)
        .collect();
    assert_eq!(statuses, [200, 429, 429]);
    // Another verified user has a budget of their own.
    let bob = format!("Authorization: Bearer {}\r\n", token("bob"));
    assert_eq!(get(&gw, "/x", &bob).status, 200);
}
