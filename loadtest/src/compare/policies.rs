//! What the coregate-only scenarios add to coregate's generated configuration, and the tokens
//! their load sends:
//!
//! - `coregate+policies`: the route requires an HS256 JWT (`[auth.jwt.bench]`, an inline
//!   secret) and applies a rate limit per client IP (`[rate_limits.bench]`) so high that
//!   nothing is refused, yet every request pays the token check and the bucket take;
//! - `coregate+es256`: the same with an ES256 verifier, its P-256 public key in a JWKS file
//!   (`kid` "k") generated for the run;
//! - `coregate+access-log`: no policy, `[access_log]` writing to a file in the proxy's
//!   temporary directory.
//!
//! Every token is the same on every request and expires a day after the run starts.

use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// The HS256 secret of `coregate+policies` (at least 32 bytes, as RFC 7518 §3.2 asks).
pub const HS256_SECRET: &str = "loadtest-compare-hs256-secret-0123456789abcdef";
/// Requests per second and burst of the rate limit: the highest coregate accepts, far above
/// what one client IP sends here, so that nothing is refused.
pub const RATE_LIMIT: u32 = 1_000_000;
/// Lifetime of the tokens.
pub const TOKEN_LIFETIME_SECS: u64 = 24 * 60 * 60;
/// The access log's file name in the proxy's temporary directory.
pub const ACCESS_LOG_FILE: &str = "access.log";

/// What a coregate variant adds: keys of its `[[route]]`, tables after it, and header fields
/// the load sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoregateExtra {
    /// Lines inside the `[[route]]` table.
    pub route: String,
    /// Tables written after the route.
    pub tables: String,
    pub headers: Vec<(String, String)>,
}

/// The JWT verifier of a policies variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jwt {
    Hs256,
    Es256,
}

/// Route keys and tables for a JWT verifier plus the rate limit, with the token to send;
/// an ES256 key's JWKS is written into `dir`.
pub fn policies(jwt: Jwt, dir: &Path) -> io::Result<CoregateExtra> {
    let now = unix_now();
    let (verifier, token) = match jwt {
        Jwt::Hs256 => (
            format!("algorithms = [\"HS256\"]\nsecret = \"{HS256_SECRET}\"\n"),
            hs256_token(HS256_SECRET.as_bytes(), now),
        ),
        Jwt::Es256 => {
            let key = Es256Key::generate()?;
            let jwks = dir.join("jwks.json");
            std::fs::write(&jwks, key.jwks())?;
            (
                format!(
                    "algorithms = [\"ES256\"]\njwks_file = \"{}\"\n",
                    jwks.display()
                ),
                key.token(now)?,
            )
        }
    };
    Ok(CoregateExtra {
        route: "auth = \"bench\"\nrate_limit = \"bench\"\n".to_owned(),
        tables: format!(
            "\n[auth.jwt.bench]\n{verifier}\n[rate_limits.bench]\nrate_per_second = \
             {RATE_LIMIT}\nburst = {RATE_LIMIT}\nkey = \"client_ip\"\n"
        ),
        headers: vec![("Authorization".to_owned(), format!("Bearer {token}"))],
    })
}

/// The `[access_log]` table writing to [`ACCESS_LOG_FILE`] in `dir`.
pub fn access_log(dir: &Path) -> CoregateExtra {
    CoregateExtra {
        tables: format!(
            "\n[access_log]\npath = \"{}\"\n",
            dir.join(ACCESS_LOG_FILE).display()
        ),
        ..CoregateExtra::default()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn claims(now: u64) -> String {
    format!(
        "{{\"sub\":\"bench\",\"iat\":{now},\"exp\":{}}}",
        now + TOKEN_LIFETIME_SECS
    )
}

/// `header.claims` of a JWS compact serialization, ready to sign.
fn signing_input(header: &str, now: u64) -> String {
    format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims(now).as_bytes())
    )
}

/// An HS256 token for `secret`, issued at `now`.
pub fn hs256_token(secret: &[u8], now: u64) -> String {
    let input = signing_input("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", now);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

/// A P-256 key pair generated for the run.
pub struct Es256Key {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Es256Key {
    pub fn generate() -> io::Result<Es256Key> {
        let rng = SystemRandom::new();
        let failed = |what| io::Error::other(format!("ES256 key: {what} failed"));
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| failed("generation"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| failed("parsing"))?;
        Ok(Es256Key { pair, rng })
    }

    /// The public key as a JWKS document, `kid` "k": the uncompressed point is 0x04, then
    /// the 32-byte x and y.
    pub fn jwks(&self) -> String {
        let point = self.pair.public_key().as_ref();
        format!(
            "{{\"keys\":[{{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k\",\"x\":\"{}\",\"y\":\"{}\"}}]}}",
            b64url(&point[1..33]),
            b64url(&point[33..65])
        )
    }

    /// An ES256 token (the signature as r ‖ s, RFC 7518 §3.4), issued at `now`.
    pub fn token(&self, now: u64) -> io::Result<String> {
        let input = signing_input("{\"alg\":\"ES256\",\"kid\":\"k\",\"typ\":\"JWT\"}", now);
        let signature = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| io::Error::other("ES256 signing failed"))?;
        Ok(format!("{input}.{}", b64url(signature.as_ref())))
    }
}

/// Base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn base64url_without_padding() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foob"), "Zm9vYg");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn tokens_verify() {
        let token = hs256_token(b"0123456789abcdef0123456789abcdef", 1000);
        let (input, tag) = token.rsplit_once('.').unwrap();
        assert!(input.starts_with("eyJhbGciOiJIUzI1NiIs"));
        let key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            b64url(ring::hmac::sign(&key, input.as_bytes()).as_ref()),
            tag
        );

        let key = Es256Key::generate().unwrap();
        let token = key.token(1000).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(signature.len(), 86, "64 bytes");
        let jwks: serde_json::Value = serde_json::from_str(&key.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], "k");
        assert_eq!(jwks["keys"][0]["x"].as_str().unwrap().len(), 43, "32 bytes");
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.pair.public_key());
        let mut raw = Vec::new();
        // Decode the signature back through the alphabet.
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            _ => 63,
        };
        let mut bits = 0u32;
        let mut count = 0;
        for c in signature.bytes() {
            bits = (bits << 6) | u32::from(value(c));
            count += 6;
            if count >= 8 {
                count -= 8;
                raw.push((bits >> count) as u8);
            }
        }
        assert!(public.verify(input.as_bytes(), &raw).is_ok());
    }

    /// What an ES256 signature check costs on this machine, that is what the worker's
    /// verified-token cache saves on every repeat of a token (perf.md quotes it):
    /// `cargo test --release -p coregate-loadtest es256_verify_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing, not a check"]
    fn es256_verify_cost() {
        let key = Es256Key::generate().unwrap();
        let token = key.token(unix_now()).unwrap();
        let (input, _) = token.rsplit_once('.').unwrap();
        let signature = key.pair.sign(&key.rng, input.as_bytes()).unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.pair.public_key());
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HS256_SECRET.as_bytes());
        let rounds = 2000;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            assert!(public.verify(input.as_bytes(), signature.as_ref()).is_ok());
        }
        let es256 = start.elapsed() / rounds;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(ring::hmac::sign(&hmac, input.as_bytes()));
        }
        let hs256 = start.elapsed() / rounds;
        println!("ES256 verify: {es256:?} per token; HS256 tag: {hs256:?} per token");
    }

    #[test]
    fn extras_name_the_policies() {
        let dir =
            std::env::temp_dir().join(format!("coregate-policies-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hs = policies(Jwt::Hs256, &dir).unwrap();
        assert!(hs.route.contains("auth = \"bench\""));
        assert!(hs.tables.contains("algorithms = [\"HS256\"]"));
        assert!(hs.tables.contains("rate_per_second = 1000000"));
        assert!(hs.headers[0].1.starts_with("Bearer ey"));
        let es = policies(Jwt::Es256, &dir).unwrap();
        assert!(es.tables.contains("jwks_file = "));
        assert!(dir.join("jwks.json").is_file());
        let log = access_log(&dir);
        assert!(log.route.is_empty() && log.headers.is_empty());
        assert!(log.tables.contains("access.log"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
