//! Criterion benches of JWT verification and API-key lookup, without sockets: HS256, RS256
//! (2048-bit) and ES256 (P-256) verification cold (a full check: base64url, header and
//! claims parsing, signature) and cached (a [`TokenCache`] hit, the per-request cost of a
//! repeated token), a forged token refused again from the cache's memory of refusals (the
//! per-request cost of pipelined copies of one forgery), and an API-key lookup in a set of
//! 1 000 keys.
//!
//! The tokens are fixed fixtures minted once with the test key pairs of
//! `engine/src/policy/jwt.rs` (`exp` in 2100); the claims carry `iss`, `sub`, `aud`, `iat`,
//! `exp` and two custom claims, and the verifier checks issuer and audience and maps `sub`
//! to `X-User-Id`, as a typical route would.
//!
//! Run: `cargo bench --bench jwt`. Figures are quoted in the module docs of
//! `engine/src/policy/jwt.rs` and `apikey.rs`.

use std::hint::black_box;

use coregate_engine::policy::apikey::ApiKeys;
use coregate_engine::policy::jwt::{
    Alg, Key, KeySet, TokenCache, Verifier, VerifierConfig, DEFAULT_CACHE_CAPACITY,
    DEFAULT_CACHE_MAX_AGE_SECONDS,
};
use criterion::{criterion_group, criterion_main, Criterion};

const NOW_UNIX: u64 = 1_800_000_000;

const HS256_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

const HS256_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbS8iLCJzdWIiOiJ1c2VyLTEyMzQ1Njc4OTAiLCJhdWQiOiJhcGkiLCJpYXQiOjE4MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwic2NvcGUiOiJvcmRlcnM6cmVhZCBvcmRlcnM6d3JpdGUiLCJ0ZW5hbnQiOiJhY21lIn0.r0UK0VKQ-ttFAVfW-PaTr-sS_hSBYB1kktYTU79ibbw";

const RS256_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbS8iLCJzdWIiOiJ1c2VyLTEyMzQ1Njc4OTAiLCJhdWQiOiJhcGkiLCJpYXQiOjE4MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwic2NvcGUiOiJvcmRlcnM6cmVhZCBvcmRlcnM6d3JpdGUiLCJ0ZW5hbnQiOiJhY21lIn0.JVYE-ABmtMd7EecknwEXcy1RZwrary7xifIg_sL8nn9fnapOS9j5rdbZZme-BXfwLUs4rrQVuP_NToXSoyWVBMd4VqFJZ-VWXOhb4Viga60KERrUyYwrQVcZwSIFL1VhzF607C6h5ur45d1fsRa7JNYH29oyQP4X4MnwgfCsLzwc4kCvgNQkl2Iwu5B1vbP92AyELXVB_kg9cd2psaVI5zOW8qEX4jpP0Mv9HQ3ZTjVm-OjgeqHoJUFw11LN8Fkr7aayf57WY8jUT0_6UjVcJenllEYVxcukOeNPeJk3ojS011i8YqxhHfCESYBL20Rb00acIc_NKeP3nkoAhZpo_w";

const ES256_TOKEN: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbS8iLCJzdWIiOiJ1c2VyLTEyMzQ1Njc4OTAiLCJhdWQiOiJhcGkiLCJpYXQiOjE4MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwic2NvcGUiOiJvcmRlcnM6cmVhZCBvcmRlcnM6d3JpdGUiLCJ0ZW5hbnQiOiJhY21lIn0.V8VrxJubgHg1OQVOYIDjnEaUFfCcPhkRcvnSitVAGTrvSc7PDyhW7WtCqnKs0d5anyVym0OHrB-PAzp99Pnq7Q";

const RSA_PUBLIC_PEM: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAreq+53RBHWh18ZhWlEWX
1y0uvNKEZioT7gnvhEwqn5qqjMtSBLkEEfbgODgToKiEClM9DY//JrEM3hfWGLqn
2AwQG4IBZ/9vPJXLTD8uSzv5Sdeu1h6SXBQxNtlztcX6vIN6YJgjfUjVKyLyF38/
ePASd7KhwL7ynJHBZlMqnvLGLdYZm/HDHrhnH/5RjAqMs0v2ynpeL++gRidR+GcO
8keCxuiWX6ycgU0Bw0HIzZRs+VidU28I/OKh+HelGuFGdC/YCTYxwgitKWvi0mtE
zqhA2MT/zOxAnXO7v2PyzGz0e2Fg58nSEobdMVsG+y/AgflKgz7Jl2Q9R0hMycSN
wwIDAQAB
-----END PUBLIC KEY-----";

const EC_PUBLIC_PEM: &str = r"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4gMUzBfK0mBBhuKNB/e9dyXCbiZ7
dAx6Dqx2iNy+tAibvjlk0Yjc91svqYLPUqbR8k5Ap/dsMGt6/yZdUYSwSQ==
-----END PUBLIC KEY-----";

fn verifier(alg: Alg, key: Key) -> Verifier {
    let mut keys = KeySet::new();
    keys.set_default(key).expect("one default key");
    let config = VerifierConfig {
        algorithms: vec![alg],
        issuer: Some("https://idp.example.com/".to_string()),
        audiences: vec!["api".to_string()],
        ..VerifierConfig::default()
    };
    Verifier::new(config, keys).expect("valid verifier")
}

fn jwt(c: &mut Criterion) {
    let cases = [
        (
            "hs256",
            verifier(Alg::Hs256, Key::hmac_secret(HS256_SECRET).expect("secret")),
            HS256_TOKEN,
        ),
        (
            "rs256",
            verifier(Alg::Rs256, Key::from_pem(RSA_PUBLIC_PEM).expect("rsa pem")),
            RS256_TOKEN,
        ),
        (
            "es256",
            verifier(Alg::Es256, Key::from_pem(EC_PUBLIC_PEM).expect("ec pem")),
            ES256_TOKEN,
        ),
    ];
    let mut group = c.benchmark_group("jwt");
    for (name, verifier, token) in &cases {
        let token = token.as_bytes();
        assert!(verifier.verify(token, NOW_UNIX).is_ok(), "{name} fixture");
        group.bench_function(format!("{name}_cold"), |b| {
            b.iter(|| verifier.verify(black_box(token), black_box(NOW_UNIX)))
        });
        let mut cache = TokenCache::new(DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_MAX_AGE_SECONDS);
        assert!(cache.verify(verifier, token, NOW_UNIX).is_ok());
        group.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| {
                cache
                    .verify(verifier, black_box(token), black_box(NOW_UNIX))
                    .map(|v| v.exp())
            })
        });
        // The same token with one character of its signature changed: refused once by a
        // signature check, then from the cache's memory of refusals (a SHA-256 of the token
        // and a probe of four slots), which is what pipelined copies of a forgery cost.
        let mut forged = token.to_vec();
        let at = forged.len() - 5;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        assert!(cache.verify(verifier, &forged, NOW_UNIX).is_err());
        group.bench_function(format!("{name}_forged_remembered"), |b| {
            b.iter(|| {
                cache
                    .verify(verifier, black_box(&forged), black_box(NOW_UNIX))
                    .is_err()
            })
        });
    }
    group.finish();
}

fn apikey(c: &mut Criterion) {
    // Stored hashes need not be real SHA-256 outputs for the lookup cost; one is, so the
    // bench measures a hit.
    let hit = b"k-0123456789abcdef0123456789abcd";
    let hit_hex = "b850b718bfc41d16acb6ffdf795649350ed3e852da9d7df649fba3df8f222a9a";
    let mut entries: Vec<(String, String)> = (0..999u32)
        .map(|i| {
            (
                format!("consumer-{i}"),
                format!("{:0>64x}", u64::from(i) * 0x9e37_79b9 + 1),
            )
        })
        .collect();
    entries.push(("hit".to_string(), hit_hex.to_string()));
    let keys = ApiKeys::new(&entries).expect("valid keys");
    assert_eq!(keys.lookup(hit), Some("hit"));
    let mut group = c.benchmark_group("apikey");
    group.bench_function("lookup_hit_1000", |b| {
        b.iter(|| keys.lookup(black_box(hit)))
    });
    group.bench_function("lookup_miss_1000", |b| {
        b.iter(|| keys.lookup(black_box(b"k-not-a-key-0123456789abcdef0123")))
    });
    group.finish();
}

criterion_group!(benches, jwt, apikey);
criterion_main!(benches);
