//! JWT verifier ([`Verifier::verify`], [`TokenCache::verify`]) on arbitrary tokens, with
//! fixed keys: an HS256 secret (kid `hs`) and an Ed25519 key (kid `ed`).
//!
//! Two input shapes. An input starting with `{` is `header JSON \n claims JSON`: the target
//! encodes and signs it with the key the header names (EdDSA if it mentions `EdDSA`, else
//! HS256), so the fuzzer reaches the header and claim checks behind the signature. Any other
//! input is the token bytes as a client would send them.
//!
//! Properties, for every input:
//! - never panics; the verdict is deterministic, and the per-worker cache gives the same
//!   verdict as the verifier, on a miss and on the following hit;
//! - no forgery: an accepted token's signature is exactly the one our key makes over its
//!   first two parts, and changing any one byte of an accepted token gets it refused;
//! - an accepted token satisfies every rule, re-checked here on a plain `serde_json::Value`:
//!   a JSON-object header with an allowed `alg`, `typ` JWT and no `crit`; a claims object
//!   with `exp` in the future (within the leeway), `nbf`/`iat` not in the future, the
//!   configured `iss`, an accepted `aud`, the required `sub`, and `X-User-Id` = `sub`.
#![cfg_attr(fuzzing, no_main)]

use std::cell::RefCell;
use std::sync::LazyLock;

use coregate_engine::policy::jwt::{
    base64url_encode, Alg, Key, KeySet, TokenCache, Verified, Verifier, VerifierConfig,
};
use ring::hmac;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::Value;

const NOW: u64 = 1_800_000_000;
const LEEWAY_SECONDS: u64 = 60;
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123456789";
const ED25519_SEED: [u8; 32] = *b"coregate fuzz ed25519 seed 32 b!";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "api";

struct Fixture {
    verifier: Verifier,
    hmac: hmac::Key,
    ed25519: Ed25519KeyPair,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ed25519 = Ed25519KeyPair::from_seed_unchecked(&ED25519_SEED).expect("seed");
    let mut keys = KeySet::new();
    keys.insert("hs", Key::hmac_secret(SECRET).expect("secret"))
        .expect("kid");
    keys.insert(
        "ed",
        Key::ed25519(ed25519.public_key().as_ref()).expect("ed25519"),
    )
    .expect("kid");
    let config = VerifierConfig {
        algorithms: vec![Alg::Hs256, Alg::EdDsa],
        issuer: Some(ISSUER.to_owned()),
        audiences: vec![AUDIENCE.to_owned()],
        required_claims: vec!["sub".to_owned()],
        require_exp: true,
        leeway_seconds: LEEWAY_SECONDS,
        claim_headers: vec![
            ("sub".to_owned(), "X-User-Id".to_owned()),
            ("role".to_owned(), "X-Role".to_owned()),
        ],
        allowed_types: vec!["JWT".to_owned()],
        ..VerifierConfig::default()
    };
    Fixture {
        verifier: Verifier::new(config, keys).expect("verifier"),
        hmac: hmac::Key::new(hmac::HMAC_SHA256, SECRET),
        ed25519,
    }
});

thread_local! {
    static CACHE: RefCell<TokenCache> = RefCell::new(TokenCache::new(64, 300));
}

pub fn check(data: &[u8]) {
    let fixture = &*FIXTURE;
    let token = match data.first() {
        Some(b'{') => sign(fixture, data),
        _ => data.to_vec(),
    };
    let verdict = fixture.verifier.verify(&token, NOW);
    assert_eq!(
        fixture.verifier.verify(&token, NOW),
        verdict,
        "not deterministic"
    );
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        for _ in 0..2 {
            let cached = cache.verify(&fixture.verifier, &token, NOW).cloned();
            assert_eq!(cached, verdict, "cache and verifier disagree");
        }
    });
    let Ok(verified) = verdict else {
        return;
    };
    holds_every_rule(fixture, &token, &verified);
    // Any single-byte change is refused (a sample of positions, deterministic).
    let step = (token.len() / 16).max(1);
    for at in (0..token.len()).step_by(step) {
        let mut mutated = token.clone();
        mutated[at] ^= 0x01;
        let verdict = fixture.verifier.verify(&mutated, NOW);
        assert!(verdict.is_err(), "changed byte {at} still verifies");
    }
}

/// `header JSON \n claims JSON` → a compact JWS signed with the fixture's key.
fn sign(fixture: &Fixture, data: &[u8]) -> Vec<u8> {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let header = &data[..split];
    let claims = data.get(split + 1..).unwrap_or_default();
    let mut token = base64url_encode(header);
    token.push('.');
    token.push_str(&base64url_encode(claims));
    let signature = signature_over(fixture, header, token.as_bytes());
    token.push('.');
    token.push_str(&base64url_encode(&signature));
    token.into_bytes()
}

fn signature_over(fixture: &Fixture, header: &[u8], signing_input: &[u8]) -> Vec<u8> {
    let eddsa = header.windows(5).any(|w| w == b"EdDSA");
    if eddsa {
        fixture.ed25519.sign(signing_input).as_ref().to_vec()
    } else {
        hmac::sign(&fixture.hmac, signing_input).as_ref().to_vec()
    }
}

fn holds_every_rule(fixture: &Fixture, token: &[u8], verified: &Verified) {
    let text = std::str::from_utf8(token).expect("accepted token is ASCII");
    let parts: Vec<&str> = text.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| b64url_decode(part).expect("accepted part decodes");
    let (header, claims, signature) = (decode(parts[0]), decode(parts[1]), decode(parts[2]));

    let Some(header) = json(&header) else {
        return;
    };
    let header = header.as_object().expect("header is an object");
    let alg = header["alg"].as_str().expect("alg is a string");
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    let expected = match alg {
        "HS256" => {
            assert_eq!(header.get("kid").and_then(Value::as_str), Some("hs"));
            hmac::sign(&fixture.hmac, signing_input).as_ref().to_vec()
        }
        "EdDSA" => {
            assert_eq!(header.get("kid").and_then(Value::as_str), Some("ed"));
            fixture.ed25519.sign(signing_input).as_ref().to_vec()
        }
        other => panic!("accepted alg {other:?}"),
    };
    assert_eq!(
        signature, expected,
        "accepted a signature our key did not make"
    );
    assert!(!header.contains_key("crit"), "accepted crit");
    let typ = header.get("typ").and_then(Value::as_str).expect("typ");
    assert!(typ.eq_ignore_ascii_case("JWT"), "typ {typ:?}");

    let Some(claims) = json(&claims) else {
        return;
    };
    let claims = claims.as_object().expect("claims are an object");
    let date = |name: &str| claims.get(name).map(|v| v.as_f64().expect("NumericDate"));
    let exp = date("exp").expect("exp required");
    assert!(
        exp.floor() + LEEWAY_SECONDS as f64 > NOW as f64,
        "expired: {exp}"
    );
    assert_eq!(verified.exp(), Some(exp.floor() as u64));
    for name in ["nbf", "iat"] {
        if let Some(t) = date(name) {
            assert!(
                t.ceil() <= (NOW + LEEWAY_SECONDS) as f64,
                "{name} {t} in the future"
            );
        }
    }
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    assert!(audience_ok, "aud {:?}", claims.get("aud"));
    let sub = claims.get("sub").expect("sub required");
    assert!(!sub.is_null());
    if let Value::String(sub) = sub {
        assert_eq!(verified.header_value(0), Some(sub.as_str()));
    }
    for (index, value) in fixture.verifier.identity_headers(verified).enumerate() {
        assert!(
            value.1.bytes().all(|b| b >= 0x20 && b != 0x7f),
            "header {index} could split a head: {value:?}"
        );
    }
}

/// `bytes` as a `Value`; `None` for the valid JSON that `Value` cannot hold but a verifier
/// may skip unread (a lone surrogate escape, a number beyond f64), which leaves nothing to
/// re-check against. Anything else that is not JSON fails the property.
fn json(bytes: &[u8]) -> Option<Value> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(e) if e.to_string().contains("surrogate") || e.to_string().contains("out of range") => {
            None
        }
        Err(e) => panic!("accepted a token part that is not JSON: {e}"),
    }
}

/// Strict base64url without padding (what the verifier accepted, so it decodes).
fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits = 0u32;
    let mut count = 0;
    for b in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == b)? as u32;
        bits = bits << 6 | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

coregate_fuzz::fuzz_target!(check);
