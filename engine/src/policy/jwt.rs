//! JWT verification (RFC 7519 claims over RFC 7515 JWS compact serialisation) with ring,
//! and the per-worker cache of verified tokens.
//!
//! Owns: the algorithms HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA
//! (Ed25519); keys from a shared secret, a PEM public key (SubjectPublicKeyInfo or PKCS#1
//! `RSA PUBLIC KEY`, read by the minimal PEM/DER reader below) or a JWKS document, selected by
//! `kid`; the claim checks (`exp`, `nbf`, `iat`, `iss`, `aud`, required claims); the mapping of
//! claims to identity headers; token extraction from `Authorization: Bearer` and cookies; and
//! [`TokenCache`], the per-worker cache that makes a repeated token cost a lookup instead of
//! a signature check, and a repeated forgery (or expired token) cost a SHA-256 of its bytes
//! instead of another one: it also remembers recent lasting refusals, bounded. A verifier's
//! [`Verifier::fingerprint`] covers its keys and every check, so a worker keeps a policy's
//! cache across a reload that leaves the fingerprint alone.
//!
//! Never: accepts `alg: none` (in any spelling), lets an HMAC algorithm run with an asymmetric
//! key or the reverse (every [`Key`] carries its type), honours `crit` (we understand no
//! extension, so any `crit` is rejected), reads or fetches `jwk`/`jku`/`x5u`/`x5c` (ignored
//! entirely), uses `kid` as anything but a map key, logs or returns key material (errors carry
//! a static reason fit for a client, and `Key`'s `Debug` prints only its type), does I/O or
//! blocks. Fetching and refreshing a JWKS is the control thread's job; it hands the document to
//! [`KeySet::add_jwks`] and publishes a new [`Verifier`].
//!
//! Allocation: [`TokenCache::get`] / [`TokenCache::verify`] on a hit allocate nothing (hash
//! the token, compare it with the stored bytes, return a reference). A miss decodes the
//! header (up to 512 bytes) and signature into stack buffers and the payload into one
//! `Vec`, parses JSON in one pass without building a tree, and allocates the identity
//! header values it returns.
//!
//! Measured (`cargo bench --bench jwt`, 2-core dev VM shared with concurrent builds, load
//! 2–4, so runs spread up to 2×; 2026-11-28; tokens of 290–590 bytes with `iss`/`aud`
//! checked): cold verify HS256 2.2–2.9 µs, RS256-2048 28–54 µs, ES256 73–125 µs; a cache
//! hit 40–70 ns (HS256/ES256 tokens) and 110–210 ns (the longer RS256 token: hashing and
//! comparing the bytes). A repeated asymmetric token is ~300–800× cheaper through the cache.
//! A remembered refusal (a forged token sent again: miss, SHA-256, probe) costs 0.47–0.56 µs
//! for the 290-byte HS256/ES256 tokens and 1.0–1.3 µs for the RS256 one, against 51–64 µs
//! (RS256) and 103–109 µs (ES256) for the signature check it saves (same bench, 2026-12-06,
//! same machine and load, `*_forged_remembered` beside `*_cold`).

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;

use ring::{digest, hmac, signature};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Default clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 60;
/// Default upper bound on the length of a presented token, in bytes.
pub const DEFAULT_TOKEN_BYTES_MAX: usize = 8 * 1024;
/// Default number of entries in a worker's [`TokenCache`].
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// Default longest time a cached verification is trusted, in seconds, even when the
/// token's `exp` is later (bounds how long a key removed from the JWKS keeps working on a
/// worker that has not yet seen the new snapshot's verifier).
pub const DEFAULT_CACHE_MAX_AGE_SECONDS: u64 = 300;
/// Most required claims, and most claim → header mappings, one verifier may have.
pub const CLAIMS_MAX: usize = 16;
/// Longest claim value passed downstream as a header, in bytes; longer fails the token.
pub const CLAIM_VALUE_BYTES_MAX: usize = 1024;
/// Shortest accepted HMAC secret, in bytes (RFC 7518 §3.2: at least the hash size, so
/// HS384 and HS512 additionally need 48 and 64 bytes; a shorter secret is not used for them).
pub const HMAC_SECRET_BYTES_MIN: usize = 32;
/// Decoded JOSE headers up to this size are decoded on the stack (a real one is under 200
/// bytes); larger ones go to the heap.
const HEADER_JSON_BYTES_STACK: usize = 512;
/// Largest decoded signature, in bytes: an RSA-8192 signature.
const SIGNATURE_BYTES_MAX: usize = 1024;
/// RSA modulus sizes ring verifies (the `*_2048_8192_*` parameter sets).
const RSA_MODULUS_BITS_MIN: usize = 2048;
const RSA_MODULUS_BITS_MAX: usize = 8192;
/// Ways per set in [`TokenCache`]: eviction looks at this many slots, so it is O(1).
const CACHE_WAYS: usize = 4;
/// Most refused tokens a [`TokenCache`] remembers (at most its own capacity), so a token
/// sent again and again costs a SHA-256 of its bytes instead of a signature check. 56 bytes
/// a slot: 56 KiB per verifier per worker.
pub const FAILURE_CACHE_CAPACITY: usize = 1024;

// ---------------------------------------------------------------------------------------
// Algorithms and keys
// ---------------------------------------------------------------------------------------

/// A JWS algorithm we verify (RFC 7518 §3.1, RFC 8037 §3.1). `none` is not one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 12] = [
        Alg::Hs256,
        Alg::Hs384,
        Alg::Hs512,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
    ];

    /// The algorithm named exactly `name` (the JOSE `alg` value is case-sensitive, RFC 7515
    /// §4.1.1). `none` and anything unknown give `None`.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JOSE name, e.g. `"RS256"`.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The only key type this algorithm may run with.
    pub fn key_kind(self) -> KeyKind {
        match self {
            Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => KeyKind::Hmac,
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512 => {
                KeyKind::Rsa
            }
            Alg::Es256 => KeyKind::EcP256,
            Alg::Es384 => KeyKind::EcP384,
            Alg::EdDsa => KeyKind::Ed25519,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a [`Key`]; an algorithm runs only with keys of its own type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared secret (HS*).
    Hmac,
    /// An RSA public key, 2048 to 8192 bits (RS*, PS*).
    Rsa,
    /// A P-256 public key (ES256).
    EcP256,
    /// A P-384 public key (ES384).
    EcP384,
    /// An Ed25519 public key (EdDSA).
    Ed25519,
}

/// ring's precomputed HMAC states (inner and outer pads) per hash; HS384/HS512 only when
/// the secret is long enough for them.
struct HmacKeys {
    hs256: hmac::Key,
    hs384: Option<hmac::Key>,
    hs512: Option<hmac::Key>,
    /// SHA-256 of the secret, for [`Verifier::fingerprint`] (ring's keys do not give the
    /// secret back). Never printed.
    secret_sha256: [u8; 32],
}

enum Material {
    Hmac(Box<HmacKeys>),
    /// Modulus and exponent, big-endian without leading zeros (what ring wants).
    Rsa {
        n: Box<[u8]>,
        e: Box<[u8]>,
    },
    /// Uncompressed point `0x04 || x || y`.
    EcP256(Box<[u8]>),
    EcP384(Box<[u8]>),
    Ed25519([u8; 32]),
}

/// A verification key: its type travels with it, so algorithm/key confusion cannot happen.
/// Optionally pinned to one algorithm (a JWKS `alg`, or [`Key::with_alg`]).
pub struct Key {
    material: Material,
    alg: Option<Alg>,
}

impl fmt::Debug for Key {
    // Never prints key material, not even public keys: only the type and the pin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kind", &self.kind())
            .field("alg", &self.alg)
            .finish()
    }
}

impl Key {
    /// A shared secret for HS256 (and HS384/HS512 when it is at least 48/64 bytes long).
    pub fn hmac_secret(secret: &[u8]) -> Result<Key, String> {
        if secret.len() < HMAC_SECRET_BYTES_MIN {
            return Err(format!(
                "HMAC secret is {} bytes; at least {HMAC_SECRET_BYTES_MIN} are required (RFC 7518 §3.2)",
                secret.len()
            ));
        }
        let hs384 = (secret.len() >= 48).then(|| hmac::Key::new(hmac::HMAC_SHA384, secret));
        let hs512 = (secret.len() >= 64).then(|| hmac::Key::new(hmac::HMAC_SHA512, secret));
        Ok(Key {
            material: Material::Hmac(Box::new(HmacKeys {
                hs256: hmac::Key::new(hmac::HMAC_SHA256, secret),
                hs384,
                hs512,
                secret_sha256: sha256(secret),
            })),
            alg: None,
        })
    }

    /// A public key from PEM text: the first `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, EC
    /// P-256/P-384, Ed25519) or `RSA PUBLIC KEY` (PKCS#1) block. Private keys and
    /// certificates are refused.
    pub fn from_pem(pem: &str) -> Result<Key, String> {
        if let Some(der) = pem_decode(pem, "PUBLIC KEY") {
            return Key::from_spki_der(&der?);
        }
        if let Some(der) = pem_decode(pem, "RSA PUBLIC KEY") {
            return Key::from_pkcs1_der(&der?);
        }
        Err("no PUBLIC KEY or RSA PUBLIC KEY PEM block found (private keys and certificates are not accepted)".to_string())
    }

    /// A public key from a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7).
    pub fn from_spki_der(der: &[u8]) -> Result<Key, String> {
        let mut outer = Der(der);
        let spki = outer.read(TAG_SEQUENCE)?;
        outer.end()?;
        let mut spki = Der(spki);
        let algorithm = spki.read(TAG_SEQUENCE)?;
        let bits = spki.read(TAG_BIT_STRING)?;
        spki.end()?;
        let key = match bits.split_first() {
            Some((0, key)) => key,
            _ => return Err("public key BIT STRING has unused bits".to_string()),
        };
        let mut algorithm = Der(algorithm);
        let oid = algorithm.read(TAG_OID)?;
        match oid {
            OID_RSA_ENCRYPTION => {
                // Parameters must be NULL (RFC 3279 §2.3.1); tolerate their absence.
                if !algorithm.is_empty() && !algorithm.read(TAG_NULL)?.is_empty() {
                    return Err("rsaEncryption parameters must be NULL".to_string());
                }
                algorithm.end()?;
                Key::from_pkcs1_der(key)
            }
            OID_EC_PUBLIC_KEY => {
                let curve = algorithm.read(TAG_OID)?;
                algorithm.end()?;
                match curve {
                    OID_P256 => Key::ec_point(KeyKind::EcP256, key),
                    OID_P384 => Key::ec_point(KeyKind::EcP384, key),
                    _ => Err("unsupported EC curve (P-256 and P-384 are supported)".to_string()),
                }
            }
            OID_ED25519 => {
                algorithm.end()?;
                Key::ed25519(key)
            }
            _ => Err(
                "unsupported public key algorithm (RSA, EC P-256/P-384 and Ed25519 are supported)"
                    .to_string(),
            ),
        }
    }

    /// An RSA public key from a DER PKCS#1 `RSAPublicKey` (RFC 8017 §A.1.1).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Key, String> {
        let (n, e) = pkcs1_components(der)?;
        Key::rsa_components(n, e)
    }

    /// An RSA public key from its big-endian modulus and exponent (leading zeros allowed).
    /// The modulus must be 2048 to 8192 bits, the exponent odd, at least 3 and below 2^33.
    pub fn rsa_components(n: &[u8], e: &[u8]) -> Result<Key, String> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = match n.first() {
            Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        };
        if !(RSA_MODULUS_BITS_MIN..=RSA_MODULUS_BITS_MAX).contains(&bits) {
            return Err(format!(
                "RSA modulus is {bits} bits; {RSA_MODULUS_BITS_MIN} to {RSA_MODULUS_BITS_MAX} are supported"
            ));
        }
        let exponent = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if e.len() > 5 || !(3..1 << 33).contains(&exponent) || exponent % 2 == 0 {
            return Err("RSA public exponent must be odd, at least 3 and below 2^33".to_string());
        }
        Ok(Key {
            material: Material::Rsa {
                n: n.into(),
                e: e.into(),
            },
            alg: None,
        })
    }

    /// An EC public key from its uncompressed point `0x04 || x || y` (`kind` is
    /// [`KeyKind::EcP256`] or [`KeyKind::EcP384`]). ring checks the point is on the curve
    /// when it verifies.
    pub fn ec_point(kind: KeyKind, point: &[u8]) -> Result<Key, String> {
        let (material, len) = match kind {
            KeyKind::EcP256 => (Material::EcP256(point.into()), 65),
            KeyKind::EcP384 => (Material::EcP384(point.into()), 97),
            _ => return Err("ec_point needs an EC key kind".to_string()),
        };
        if point.len() != len || point[0] != 0x04 {
            return Err(format!(
                "EC public key must be an uncompressed point of {len} bytes"
            ));
        }
        Ok(Key {
            material,
            alg: None,
        })
    }

    /// An Ed25519 public key from its 32 raw bytes (RFC 8032 §5.1.5).
    pub fn ed25519(public_key: &[u8]) -> Result<Key, String> {
        let raw: [u8; 32] = public_key
            .try_into()
            .map_err(|_| "Ed25519 public key must be 32 bytes".to_string())?;
        Ok(Key {
            material: Material::Ed25519(raw),
            alg: None,
        })
    }

    /// Pins the key to one algorithm, which must suit its type.
    pub fn with_alg(mut self, alg: Alg) -> Result<Key, String> {
        if alg.key_kind() != self.kind() {
            return Err(format!(
                "algorithm {alg} cannot be used with a {:?} key",
                self.kind()
            ));
        }
        self.alg = Some(alg);
        Ok(self)
    }

    /// The key's type.
    pub fn kind(&self) -> KeyKind {
        match self.material {
            Material::Hmac(_) => KeyKind::Hmac,
            Material::Rsa { .. } => KeyKind::Rsa,
            Material::EcP256(_) => KeyKind::EcP256,
            Material::EcP384(_) => KeyKind::EcP384,
            Material::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// Whether a token signed with `alg` may be checked with this key.
    pub fn accepts(&self, alg: Alg) -> bool {
        if self.alg.is_some_and(|pinned| pinned != alg) || alg.key_kind() != self.kind() {
            return false;
        }
        match (&self.material, alg) {
            (Material::Hmac(keys), Alg::Hs384) => keys.hs384.is_some(),
            (Material::Hmac(keys), Alg::Hs512) => keys.hs512.is_some(),
            _ => true,
        }
    }

    /// Feeds what this key accepts to a fingerprint: its type, its algorithm pin and its
    /// material (an HMAC secret as its SHA-256).
    fn fingerprint_into(&self, into: &mut Fingerprint) {
        into.number(self.kind() as u64);
        into.number(self.alg.map_or(0, |alg| u64::from(alg.bit())));
        match &self.material {
            Material::Hmac(keys) => into.bytes(&keys.secret_sha256),
            Material::Rsa { n, e } => {
                into.bytes(n);
                into.bytes(e);
            }
            Material::EcP256(point) | Material::EcP384(point) => into.bytes(point),
            Material::Ed25519(raw) => into.bytes(raw),
        }
    }

    /// Checks `signature` over `message`. Callers check [`Key::accepts`] first; a mismatch
    /// here fails closed anyway.
    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> Result<(), ring::error::Unspecified> {
        use signature::{RsaPublicKeyComponents, UnparsedPublicKey};
        let rsa = |params: &'static signature::RsaParameters| match &self.material {
            Material::Rsa { n, e } => {
                RsaPublicKeyComponents { n: &**n, e: &**e }.verify(params, message, sig)
            }
            _ => Err(ring::error::Unspecified),
        };
        match (&self.material, alg) {
            (Material::Hmac(keys), Alg::Hs256) => hmac::verify(&keys.hs256, message, sig),
            (Material::Hmac(keys), Alg::Hs384) => match &keys.hs384 {
                Some(key) => hmac::verify(key, message, sig),
                None => Err(ring::error::Unspecified),
            },
            (Material::Hmac(keys), Alg::Hs512) => match &keys.hs512 {
                Some(key) => hmac::verify(key, message, sig),
                None => Err(ring::error::Unspecified),
            },
            (Material::Rsa { .. }, Alg::Rs256) => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
            (Material::Rsa { .. }, Alg::Rs384) => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
            (Material::Rsa { .. }, Alg::Rs512) => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
            (Material::Rsa { .. }, Alg::Ps256) => rsa(&signature::RSA_PSS_2048_8192_SHA256),
            (Material::Rsa { .. }, Alg::Ps384) => rsa(&signature::RSA_PSS_2048_8192_SHA384),
            (Material::Rsa { .. }, Alg::Ps512) => rsa(&signature::RSA_PSS_2048_8192_SHA512),
            (Material::EcP256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
            }
            (Material::EcP384(point), Alg::Es384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
            }
            (Material::Ed25519(raw), Alg::EdDsa) => {
                UnparsedPublicKey::new(&signature::ED25519, raw).verify(message, sig)
            }
            _ => Err(ring::error::Unspecified),
        }
    }
}

/// The keys a [`Verifier`] may use: by `kid`, plus a default for tokens without one.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<Box<str>, Key>,
    default: Option<Key>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Adds `key` under `kid`; a second key under the same `kid` is an error.
    pub fn insert(&mut self, kid: &str, key: Key) -> Result<(), String> {
        if self.by_kid.contains_key(kid) {
            return Err(format!("two keys have kid {kid:?}"));
        }
        self.by_kid.insert(kid.into(), key);
        Ok(())
    }

    /// Sets the key used for tokens without a `kid` (and for every token when no key has a
    /// `kid`). A second default is an error.
    pub fn set_default(&mut self, key: Key) -> Result<(), String> {
        if self.default.is_some() {
            return Err("more than one key without a kid".to_string());
        }
        self.default = Some(key);
        Ok(())
    }

    /// Adds the signature keys of a JWKS document (RFC 7517 §5): `kty` RSA (`n`, `e`), EC
    /// (`crv` P-256/P-384, `x`, `y`), OKP (`crv` Ed25519, `x`) and oct (`k`). A key with a
    /// `kid` is stored under it; one without becomes the default. Keys marked for encryption
    /// (`use` other than `sig`, `key_ops` without `verify`), with an unsupported `kty`/`crv`
    /// or an `alg` we do not verify are skipped; a malformed supported key is an error.
    /// `x5c`, `x5u` and other members are ignored. Returns how many keys were added.
    pub fn add_jwks(&mut self, jwks_json: &[u8]) -> Result<usize, String> {
        let jwks: Jwks =
            serde_json::from_slice(jwks_json).map_err(|e| format!("JWKS is not valid: {e}"))?;
        let mut added = 0;
        for (index, jwk) in jwks.keys.iter().enumerate() {
            let name = match &jwk.kid {
                Some(kid) => format!("JWKS key {index} (kid {kid:?})"),
                None => format!("JWKS key {index}"),
            };
            let key = match jwk_to_key(jwk) {
                Ok(Some(key)) => key,
                Ok(None) => continue,
                Err(e) => return Err(format!("{name}: {e}")),
            };
            match &jwk.kid {
                Some(kid) => self.insert(kid, key),
                None => self.set_default(key),
            }
            .map_err(|e| format!("{name}: {e}"))?;
            added += 1;
        }
        Ok(added)
    }

    /// A set holding the signature keys of a JWKS document; see [`KeySet::add_jwks`].
    pub fn from_jwks(jwks_json: &[u8]) -> Result<KeySet, String> {
        let mut set = KeySet::new();
        set.add_jwks(jwks_json)?;
        Ok(set)
    }

    /// Number of keys, the default included.
    pub fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.default.is_some())
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key for a token's `kid`. `kid` is only ever a map key. When no key has a `kid`,
    /// the token's `kid` is ignored and the default key is used.
    fn select(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) if !self.by_kid.is_empty() => self.by_kid.get(kid),
            _ => self.default.as_ref(),
        }
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        self.by_kid.values().chain(self.default.as_ref())
    }

    /// Feeds every key, with the `kid` it is selected by, in `kid` order.
    fn fingerprint_into(&self, into: &mut Fingerprint) {
        let mut kids: Vec<&Box<str>> = self.by_kid.keys().collect();
        kids.sort_unstable();
        into.number(kids.len() as u64);
        for kid in kids {
            into.bytes(kid.as_bytes());
            self.by_kid[kid].fingerprint_into(into);
        }
        match &self.default {
            Some(key) => {
                into.number(1);
                key.fingerprint_into(into);
            }
            None => into.number(0),
        }
    }
}

/// SHA-256 over an unambiguous encoding (every byte string and list is preceded by its
/// length) of what decides a verifier's answers.
struct Fingerprint(digest::Context);

impl Fingerprint {
    fn number(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.number(bytes.len() as u64);
        self.0.update(bytes);
    }

    fn list(&mut self, items: &[Box<str>]) {
        self.number(items.len() as u64);
        for item in items {
            self.bytes(item.as_bytes());
        }
    }
}

/// A verifier's fingerprint. Its `Debug` prints nothing of it: it is derived from secrets.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Sha256([u8; 32]);

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sha256(..)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

/// `Ok(None)` for a key that is not for us (encryption, unsupported type or curve).
fn jwk_to_key(jwk: &Jwk) -> Result<Option<Key>, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|op| op == "verify") {
            return Ok(None);
        }
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) if name.eq_ignore_ascii_case("none") => {
            return Err("alg \"none\" is never accepted".to_string())
        }
        Some(name) => match Alg::from_name(name) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
    };
    let field = |value: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let text = value
            .as_deref()
            .ok_or_else(|| format!("member {name:?} is missing"))?;
        // Tolerate trailing padding here: a JWKS is configuration, not a token.
        b64url_decode(text.trim_end_matches('=').as_bytes())
            .ok_or_else(|| format!("member {name:?} is not base64url"))
    };
    let key = match jwk.kty.as_str() {
        "RSA" => Key::rsa_components(&field(&jwk.n, "n")?, &field(&jwk.e, "e")?)?,
        "EC" => {
            let (kind, coordinate_len) = match jwk.crv.as_deref() {
                Some("P-256") => (KeyKind::EcP256, 32),
                Some("P-384") => (KeyKind::EcP384, 48),
                _ => return Ok(None),
            };
            let (x, y) = (field(&jwk.x, "x")?, field(&jwk.y, "y")?);
            if x.len() != coordinate_len || y.len() != coordinate_len {
                return Err(format!(
                    "EC coordinates must be {coordinate_len} bytes each"
                ));
            }
            let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Key::ec_point(kind, &point)?
        }
        "OKP" => match jwk.crv.as_deref() {
            Some("Ed25519") => Key::ed25519(&field(&jwk.x, "x")?)?,
            _ => return Ok(None),
        },
        "oct" => Key::hmac_secret(&field(&jwk.k, "k")?)?,
        _ => return Ok(None),
    };
    match alg {
        Some(alg) => key.with_alg(alg).map(Some),
        None => Ok(Some(key)),
    }
}

// ---------------------------------------------------------------------------------------
// Verifier
// ---------------------------------------------------------------------------------------

/// What a route asks of its tokens. Compiled into a [`Verifier`] once per configuration.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// Algorithms accepted on this route. Must not be empty. Default: none (must be set).
    pub algorithms: Vec<Alg>,
    /// Required `iss` (exact match). Default: not checked.
    pub issuer: Option<String>,
    /// Accepted audiences: the token's `aud` (string or array) must contain one of them.
    /// Default: empty, `aud` not checked.
    pub audiences: Vec<String>,
    /// Claims that must be present and not `null`. At most [`CLAIMS_MAX`]. Default: none.
    pub required_claims: Vec<String>,
    /// Whether a token without `exp` is refused. Default: true.
    pub require_exp: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. Default: 60.
    pub leeway_seconds: u64,
    /// Claims passed downstream, as (claim, header name). String values verbatim, numbers
    /// and booleans as their JSON text; objects, arrays and `null` are skipped. At most
    /// [`CLAIMS_MAX`]. Default: `sub` → `X-User-Id`.
    pub claim_headers: Vec<(String, String)>,
    /// Accepted `typ` header values (compared ignoring ASCII case); a token without `typ`
    /// is then refused. Default: empty, `typ` not checked.
    pub allowed_types: Vec<String>,
    /// Longest token accepted, in bytes. Default: 8192.
    pub token_bytes_max: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            algorithms: Vec::new(),
            issuer: None,
            audiences: Vec::new(),
            required_claims: Vec::new(),
            require_exp: true,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            claim_headers: vec![("sub".to_string(), "X-User-Id".to_string())],
            allowed_types: Vec::new(),
            token_bytes_max: DEFAULT_TOKEN_BYTES_MAX,
        }
    }
}

/// A compiled JWT policy: immutable, shared by all workers, built on the control thread.
#[derive(Debug)]
pub struct Verifier {
    /// Distinguishes verifiers in a [`TokenCache`], so that a token verified under other
    /// keys or checks is never a hit: the first 8 bytes of `fingerprint`. Two verifiers
    /// with the same keys and checks (the same policy before and after a reload) give every
    /// token the same answer, so they share it and a carried cache still hits. (A cache is
    /// only ever handed on between verifiers whose whole fingerprints are equal, so the
    /// truncation cannot make entries of different verifiers meet.)
    id: u64,
    /// SHA-256 over the keys and every check (see [`Verifier::fingerprint`]).
    fingerprint: Sha256,
    allowed: u16,
    keys: KeySet,
    issuer: Option<Box<str>>,
    audiences: Box<[Box<str>]>,
    required_claims: Box<[Box<str>]>,
    claim_headers: Box<[(Box<str>, Box<str>)]>,
    allowed_types: Box<[Box<str>]>,
    require_exp: bool,
    leeway_seconds: u64,
    token_bytes_max: usize,
}

/// Why a token was refused. [`JwtError::reason`] is safe to show the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    TokenTooLarge,
    Malformed,
    AlgorithmNotAllowed,
    TypeNotAllowed,
    UnsupportedCritical,
    UnknownKey,
    KeyAlgorithmMismatch,
    SignatureInvalid,
    InvalidClaims,
    MissingExpiry,
    Expired,
    NotYetValid,
    IssuedInFuture,
    IssuerNotAccepted,
    AudienceNotAccepted,
    MissingClaim,
}

impl JwtError {
    /// A short reason for the client (an `error_description`); never contains key material
    /// or token contents.
    pub fn reason(self) -> &'static str {
        match self {
            JwtError::TokenTooLarge => "token too large",
            JwtError::Malformed => "malformed token",
            JwtError::AlgorithmNotAllowed => "algorithm not allowed",
            JwtError::TypeNotAllowed => "token type not allowed",
            JwtError::UnsupportedCritical => "unsupported critical header",
            JwtError::UnknownKey => "unknown signing key",
            JwtError::KeyAlgorithmMismatch => "algorithm not allowed for key",
            JwtError::SignatureInvalid => "signature invalid",
            JwtError::InvalidClaims => "invalid claims",
            JwtError::MissingExpiry => "token has no expiry",
            JwtError::Expired => "token expired",
            JwtError::NotYetValid => "token not yet valid",
            JwtError::IssuedInFuture => "token issued in the future",
            JwtError::IssuerNotAccepted => "issuer not accepted",
            JwtError::AudienceNotAccepted => "audience not accepted",
            JwtError::MissingClaim => "required claim missing",
        }
    }
}

impl JwtError {
    /// Whether the same bytes are refused again by the same verifier at any later instant,
    /// so a [`TokenCache`] may remember the refusal: a bad signature, or claims that a valid
    /// signature vouched for and time cannot mend (`exp` only moves further into the past).
    /// Not `nbf` or `iat` in the future, which time cures, nor the checks made before the
    /// signature, which cost less than remembering them.
    fn is_lasting(self) -> bool {
        matches!(
            self,
            JwtError::SignatureInvalid
                | JwtError::InvalidClaims
                | JwtError::MissingExpiry
                | JwtError::Expired
                | JwtError::IssuerNotAccepted
                | JwtError::AudienceNotAccepted
                | JwtError::MissingClaim
        )
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for JwtError {}

/// A verified token: its expiry and the identity header values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    exp: Option<u64>,
    valid_until_unix: u64,
    /// Aligned with the verifier's `claim_headers`; `None` where the claim was absent or
    /// not a string, number or boolean.
    header_values: Box<[Option<Box<str>>]>,
}

impl Verified {
    /// The token's `exp` in Unix seconds (rounded down), if it had one.
    pub fn exp(&self) -> Option<u64> {
        self.exp
    }

    /// The first instant (Unix seconds) at which the token no longer verifies: `exp` plus
    /// the leeway, or `u64::MAX` without `exp`.
    pub fn valid_until_unix(&self) -> u64 {
        self.valid_until_unix
    }

    /// The value for the verifier's `index`-th claim header.
    pub fn header_value(&self, index: usize) -> Option<&str> {
        self.header_values.get(index).and_then(|v| v.as_deref())
    }
}

impl Verifier {
    /// Compiles a policy. Refuses an empty algorithm list, an empty key set, a key set in
    /// which no allowed algorithm has a key, invalid header names and too many claims.
    pub fn new(config: VerifierConfig, keys: KeySet) -> Result<Verifier, String> {
        if config.algorithms.is_empty() {
            return Err("no JWT algorithm allowed".to_string());
        }
        if keys.is_empty() {
            return Err("no JWT key configured".to_string());
        }
        let allowed = config
            .algorithms
            .iter()
            .fold(0u16, |bits, alg| bits | alg.bit());
        if !config
            .algorithms
            .iter()
            .any(|&alg| keys.keys().any(|key| key.accepts(alg)))
        {
            return Err(format!(
                "none of the allowed algorithms ({}) can be verified with the configured keys",
                config
                    .algorithms
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if config.required_claims.len() > CLAIMS_MAX || config.claim_headers.len() > CLAIMS_MAX {
            return Err(format!(
                "at most {CLAIMS_MAX} required claims and {CLAIMS_MAX} claim headers"
            ));
        }
        for (claim, header) in &config.claim_headers {
            if claim.is_empty() {
                return Err("claim header mapping with an empty claim name".to_string());
            }
            if header.is_empty() || !header.bytes().all(is_tchar) {
                return Err(format!("{header:?} is not a valid header name"));
            }
        }
        if config.token_bytes_max == 0 {
            return Err("token_bytes_max must be positive".to_string());
        }
        let boxed = |list: Vec<String>| list.into_iter().map(String::into_boxed_str).collect();
        let mut verifier = Verifier {
            id: 0,
            fingerprint: Sha256([0; 32]),
            allowed,
            keys,
            issuer: config.issuer.map(String::into_boxed_str),
            audiences: boxed(config.audiences),
            required_claims: boxed(config.required_claims),
            claim_headers: config
                .claim_headers
                .into_iter()
                .map(|(c, h)| (c.into_boxed_str(), h.into_boxed_str()))
                .collect(),
            allowed_types: boxed(config.allowed_types),
            require_exp: config.require_exp,
            leeway_seconds: config.leeway_seconds,
            token_bytes_max: config.token_bytes_max,
        };
        verifier.fingerprint = Sha256(verifier.compute_fingerprint());
        let mut id = [0; 8];
        id.copy_from_slice(&verifier.fingerprint.0[..8]);
        verifier.id = u64::from_le_bytes(id);
        Ok(verifier)
    }

    /// This verifier's identity within the process (cache key component), from its
    /// fingerprint.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A SHA-256 over everything that decides this verifier's answer to a token and the
    /// identity it passes on: the keys (with their `kid`s and algorithm pins), the allowed
    /// algorithms and `typ`s, issuer, audiences, required claims, the claim → header
    /// mapping, `require_exp`, the leeway and the size limit. Equal fingerprints mean a
    /// token verified by one is verified, with the same identity, by the other: what lets a
    /// worker keep its [`TokenCache`] of a policy across a reload.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint.0
    }

    fn compute_fingerprint(&self) -> [u8; 32] {
        let mut f = Fingerprint(digest::Context::new(&digest::SHA256));
        f.bytes(b"coregate jwt verifier v1");
        self.keys.fingerprint_into(&mut f);
        f.number(u64::from(self.allowed));
        match &self.issuer {
            Some(issuer) => {
                f.number(1);
                f.bytes(issuer.as_bytes());
            }
            None => f.number(0),
        }
        f.list(&self.audiences);
        f.list(&self.required_claims);
        f.number(self.claim_headers.len() as u64);
        for (claim, header) in &self.claim_headers {
            f.bytes(claim.as_bytes());
            f.bytes(header.as_bytes());
        }
        f.list(&self.allowed_types);
        f.number(u64::from(self.require_exp));
        f.number(self.leeway_seconds);
        f.number(self.token_bytes_max as u64);
        let mut out = [0; 32];
        out.copy_from_slice(f.0.finish().as_ref());
        out
    }

    /// The (claim, header name) pairs, in the order of [`Verified::header_value`].
    pub fn claim_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.claim_headers.iter().map(|(c, h)| (&**c, &**h))
    }

    /// The identity headers to add for a token this verifier accepted: (header name,
    /// value), skipping claims the token did not carry. The proxy must also drop any
    /// client-sent header of the same names.
    pub fn identity_headers<'a>(
        &'a self,
        verified: &'a Verified,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.claim_headers
            .iter()
            .zip(verified.header_values.iter())
            .filter_map(|((_, header), value)| Some((&**header, value.as_deref()?)))
    }

    /// Verifies a compact JWS token at `now_unix` (seconds): structure, header, algorithm,
    /// key, signature, then claims — claims are read only once the signature holds.
    pub fn verify(&self, token: &[u8], now_unix: u64) -> Result<Verified, JwtError> {
        if token.len() > self.token_bytes_max {
            return Err(JwtError::TokenTooLarge);
        }
        let mut dots = token
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'.')
            .map(|(i, _)| i);
        let (first_dot, second_dot) = match (dots.next(), dots.next(), dots.next()) {
            (Some(a), Some(b), None) => (a, b),
            _ => return Err(JwtError::Malformed),
        };
        let header_b64 = &token[..first_dot];
        let payload_b64 = &token[first_dot + 1..second_dot];
        let signature_b64 = &token[second_dot + 1..];
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(JwtError::Malformed);
        }

        // Real headers fit the stack buffer; one carrying, say, an `x5c` chain (which we
        // ignore) is decoded on the heap, bounded by `token_bytes_max`.
        let mut header_buf = [0u8; HEADER_JSON_BYTES_STACK];
        let header_heap;
        let header_json: &[u8] = if header_b64.len() / 4 * 3 < HEADER_JSON_BYTES_STACK - 2 {
            let len = b64url_decode_into(header_b64, &mut header_buf).ok_or(JwtError::Malformed)?;
            &header_buf[..len]
        } else {
            header_heap = b64url_decode(header_b64).ok_or(JwtError::Malformed)?;
            &header_heap
        };
        // A struct also deserializes from a JSON array; a JOSE header is an object only.
        if first_non_space(header_json) != Some(b'{') {
            return Err(JwtError::Malformed);
        }
        // RFC 7515 §5.2 step 4: UTF-8 JSON. serde_json skips the members we ignore without
        // checking their bytes, so a header that is not UTF-8 would otherwise pass.
        let header_json = std::str::from_utf8(header_json).map_err(|_| JwtError::Malformed)?;
        let header: JoseHeader<'_> =
            serde_json::from_str(header_json).map_err(|_| JwtError::Malformed)?;
        if header.alg.0.eq_ignore_ascii_case("none") {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let alg = Alg::from_name(&header.alg.0).ok_or(JwtError::AlgorithmNotAllowed)?;
        if self.allowed & alg.bit() == 0 {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must
        // reject the token; we understand none.
        if header.crit.0 {
            return Err(JwtError::UnsupportedCritical);
        }
        if !self.allowed_types.is_empty() {
            let typ = header.typ.as_ref().ok_or(JwtError::TypeNotAllowed)?;
            if !self
                .allowed_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&typ.0))
            {
                return Err(JwtError::TypeNotAllowed);
            }
        }
        let key = self
            .keys
            .select(header.kid.as_ref().map(|kid| &*kid.0))
            .ok_or(JwtError::UnknownKey)?;
        if !key.accepts(alg) {
            return Err(JwtError::KeyAlgorithmMismatch);
        }

        let mut signature_buf = [0u8; SIGNATURE_BYTES_MAX];
        if signature_b64.is_empty()
            || decoded_len(signature_b64.len()).is_none_or(|n| n > SIGNATURE_BYTES_MAX)
        {
            return Err(JwtError::SignatureInvalid);
        }
        let signature_len =
            b64url_decode_into(signature_b64, &mut signature_buf).ok_or(JwtError::Malformed)?;
        key.verify(alg, &token[..second_dot], &signature_buf[..signature_len])
            .map_err(|_| JwtError::SignatureInvalid)?;

        let payload = b64url_decode(payload_b64).ok_or(JwtError::Malformed)?;
        self.check_claims(&payload, now_unix)
    }

    fn check_claims(&self, payload: &[u8], now_unix: u64) -> Result<Verified, JwtError> {
        // RFC 7519 §7.2 step 10: the claims are UTF-8 JSON, ignored members included (found
        // by the `jwt` fuzz target: serde_json skips unread strings without checking them,
        // so a payload with, say, a 0xFF byte in an unread claim was accepted, and every
        // strict parser behind the gateway would refuse the token the gateway let through).
        let payload = std::str::from_utf8(payload).map_err(|_| JwtError::InvalidClaims)?;
        let mut de = serde_json::Deserializer::from_str(payload);
        let claims = ClaimsSeed { verifier: self }
            .deserialize(&mut de)
            .map_err(|_| JwtError::InvalidClaims)?;
        de.end().map_err(|_| JwtError::InvalidClaims)?;

        let leeway = self.leeway_seconds;
        let horizon = now_unix.saturating_add(leeway);
        // RFC 7519 §4.1.4: the current time must be before `exp`. NumericDate may carry a
        // fraction; round `exp` down and `nbf`/`iat` up, the strict direction for each.
        let exp = claims
            .exp
            .map(|raw| numeric_date(raw).map(f64::floor))
            .transpose()?;
        let exp = exp.map(|secs| secs as u64); // saturating: negative → 0, huge → u64::MAX
        let valid_until_unix = match exp {
            Some(exp) => {
                let until = exp.saturating_add(leeway);
                if now_unix >= until {
                    return Err(JwtError::Expired);
                }
                until
            }
            None if self.require_exp => return Err(JwtError::MissingExpiry),
            None => u64::MAX,
        };
        // RFC 7519 §4.1.5.
        if let Some(raw) = claims.nbf {
            if numeric_date(raw)?.ceil() as u64 > horizon {
                return Err(JwtError::NotYetValid);
            }
        }
        // RFC 7519 §4.1.6 does not forbid a future `iat`, but a token minted in the future
        // means a broken clock or a forgery; refuse it beyond the leeway.
        if let Some(raw) = claims.iat {
            if numeric_date(raw)?.ceil() as u64 > horizon {
                return Err(JwtError::IssuedInFuture);
            }
        }
        // RFC 7519 §4.1.1: case-sensitive string comparison.
        if let Some(issuer) = &self.issuer {
            let raw = claims.iss.ok_or(JwtError::IssuerNotAccepted)?;
            let iss: Str<'_> =
                serde_json::from_str(raw.get()).map_err(|_| JwtError::InvalidClaims)?;
            if *iss.0 != **issuer {
                return Err(JwtError::IssuerNotAccepted);
            }
        }
        // RFC 7519 §4.1.3: a string or an array of strings.
        if !self.audiences.is_empty() {
            let raw = claims.aud.ok_or(JwtError::AudienceNotAccepted)?;
            let mut de = serde_json::Deserializer::from_str(raw.get());
            let accepted = AudienceSeed {
                audiences: &self.audiences,
            }
            .deserialize(&mut de)
            .map_err(|_| JwtError::InvalidClaims)?;
            if !accepted {
                return Err(JwtError::AudienceNotAccepted);
            }
        }
        for slot in &claims.required[..self.required_claims.len()] {
            match slot {
                Some(raw) if raw.get() != "null" => {}
                _ => return Err(JwtError::MissingClaim),
            }
        }
        let header_values = claims.headers[..self.claim_headers.len()]
            .iter()
            .map(|slot| slot.map_or(Ok(None), header_value))
            .collect::<Result<_, _>>()?;
        Ok(Verified {
            exp,
            valid_until_unix,
            header_values,
        })
    }
}

/// RFC 9110 §5.6.2 token characters (header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn first_non_space(json: &[u8]) -> Option<u8> {
    json.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn numeric_date(raw: &RawValue) -> Result<f64, JwtError> {
    serde_json::from_str::<f64>(raw.get()).map_err(|_| JwtError::InvalidClaims)
}

/// A claim value as a header value: strings decoded, numbers and booleans as their JSON
/// text, the rest skipped. A value that could split or smuggle a header (control
/// characters, CR, LF) or is too long fails the token rather than reach the upstream.
fn header_value(raw: &RawValue) -> Result<Option<Box<str>>, JwtError> {
    let text = raw.get();
    let value = match text.as_bytes().first() {
        Some(b'"') => {
            serde_json::from_str::<Str<'_>>(text)
                .map_err(|_| JwtError::InvalidClaims)?
                .0
        }
        Some(b'{' | b'[' | b'n') | None => return Ok(None),
        Some(_) => Cow::Borrowed(text),
    };
    if value.len() > CLAIM_VALUE_BYTES_MAX || value.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(JwtError::InvalidClaims);
    }
    Ok(Some(value.into()))
}

/// The JOSE header members we read (RFC 7515 §4.1). Everything else — `jwk`, `jku`, `x5u`,
/// `x5c`, `x5t` — is skipped unread. A duplicated member fails parsing.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Str<'a>,
    #[serde(borrow, default)]
    kid: Option<Str<'a>>,
    #[serde(borrow, default)]
    typ: Option<Str<'a>>,
    #[serde(default)]
    crit: Present,
}

/// A JSON string, borrowed from the input unless it had escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Whether a member was present at all, whatever its value (`"crit": null` counts).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

/// The raw values of the claims a verifier looks at, collected in one pass over the
/// payload object without building a tree. A claim we look at that appears twice fails
/// the token (duplicate names are ambiguous, RFC 7519 §4).
struct Claims<'de> {
    exp: Option<&'de RawValue>,
    nbf: Option<&'de RawValue>,
    iat: Option<&'de RawValue>,
    iss: Option<&'de RawValue>,
    aud: Option<&'de RawValue>,
    required: [Option<&'de RawValue>; CLAIMS_MAX],
    headers: [Option<&'de RawValue>; CLAIMS_MAX],
}

struct ClaimsSeed<'v> {
    verifier: &'v Verifier,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let v = self.verifier;
        let mut claims = Claims {
            exp: None,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
            required: [None; CLAIMS_MAX],
            headers: [None; CLAIMS_MAX],
        };
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            let name = &*name;
            let registered = matches!(name, "exp" | "nbf" | "iat" | "iss" | "aud");
            let required = v.required_claims.iter().any(|c| **c == *name);
            let header = v.claim_headers.iter().any(|(c, _)| **c == *name);
            if !registered && !required && !header {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let raw: &'de RawValue = map.next_value()?;
            let store = |slot: &mut Option<&'de RawValue>| {
                if slot.replace(raw).is_some() {
                    return Err(de::Error::custom("duplicate claim"));
                }
                Ok(())
            };
            match name {
                "exp" => store(&mut claims.exp)?,
                "nbf" => store(&mut claims.nbf)?,
                "iat" => store(&mut claims.iat)?,
                "iss" => store(&mut claims.iss)?,
                "aud" => store(&mut claims.aud)?,
                _ => {}
            }
            for (slot, claim) in claims.required.iter_mut().zip(v.required_claims.iter()) {
                if **claim == *name {
                    store(slot)?;
                }
            }
            for (slot, (claim, _)) in claims.headers.iter_mut().zip(v.claim_headers.iter()) {
                if **claim == *name {
                    store(slot)?;
                }
            }
        }
        Ok(claims)
    }
}

/// Checks `aud` (a string, or an array of strings) against the accepted audiences without
/// collecting it.
struct AudienceSeed<'v> {
    audiences: &'v [Box<str>],
}

impl<'de> DeserializeSeed<'de> for AudienceSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AudienceSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(self.audiences.iter().any(|a| **a == *v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut accepted = false;
        while let Some(Str(aud)) = seq.next_element::<Str<'de>>()? {
            accepted |= self.audiences.iter().any(|a| **a == *aud);
        }
        Ok(accepted)
    }
}

// ---------------------------------------------------------------------------------------
// Token extraction
// ---------------------------------------------------------------------------------------

/// The token in an `Authorization` value: scheme `Bearer` in any case (RFC 6750 §2.1, RFC
/// 9110 §11.1), spaces trimmed. `None` for another scheme, an empty token or one with
/// spaces inside.
pub fn bearer_token(authorization_value: &[u8]) -> Option<&[u8]> {
    let value = trim_spaces(authorization_value);
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer")
        || !rest.first().is_some_and(|&b| b == b' ' || b == b'\t')
    {
        return None;
    }
    let token = trim_spaces(rest);
    if token.is_empty() || token.iter().any(|&b| b == b' ' || b == b'\t') {
        return None;
    }
    Some(token)
}

/// The value of cookie `name` in a `Cookie` header (RFC 6265 §4.2: `a=b; c=d`), the first
/// if repeated, without surrounding double quotes. Names compare case-sensitively.
pub fn cookie_value<'a>(cookie_header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookie_header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim_spaces(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        if trim_spaces(&pair[..eq]) != name.as_bytes() {
            return None;
        }
        let value = trim_spaces(&pair[eq + 1..]);
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        };
        (!value.is_empty()).then_some(value)
    })
}

/// How many `name=value` pairs in a `Cookie` header are named `name`, empty values included.
pub fn cookie_count(cookie_header: &[u8], name: &str) -> usize {
    cookie_header
        .split(|&b| b == b';')
        .filter(|pair| {
            let pair = trim_spaces(pair);
            pair.iter()
                .position(|&b| b == b'=')
                .is_some_and(|eq| trim_spaces(&pair[..eq]) == name.as_bytes())
        })
        .count()
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// Per-worker cache of verified tokens
// ---------------------------------------------------------------------------------------

/// A worker's cache of verified tokens, so a repeated token costs a hash and a compare
/// instead of a signature check. Not `Sync`: one per worker, used through `&mut self`.
///
/// Set-associative (sets of 4 slots chosen by a 64-bit hash of verifier id and token),
/// with CLOCK eviction inside a set: O(1) per operation, no allocation after construction
/// except growing a slot's token buffer. Each slot keeps the full token and the verifier id
/// and a hit compares both, so a hash collision is a miss, never a false hit. Entries
/// expire at the token's `exp` plus leeway, and at most `max_age_seconds` after insertion.
/// Only successfully verified tokens are inserted here.
///
/// Beside it, [`Failures`] remembers recently refused tokens (lasting refusals only, see
/// [`JwtError::is_lasting`]), keyed by the SHA-256 of the token bytes and the verifier id:
/// pipelined copies of one forged RS256/ES256 token then cost one signature check, not one
/// each. A refusal is never remembered longer than `max_age_seconds`, and a new snapshot
/// (a rotated JWKS, a changed policy) starts with a new verifier id and new caches.
pub struct TokenCache {
    slots: Box<[Slot]>,
    hands: Box<[u8]>,
    seed: u64,
    max_age_seconds: u64,
    len: usize,
    /// Holds a verification that could not be cached, so that [`TokenCache::verify`] can
    /// still hand out a reference.
    uncached: Option<Verified>,
    /// Lookups that found a valid entry, and those that did not, since the last
    /// [`TokenCache::take_lookups`].
    hits: u64,
    misses: u64,
    failures: Failures,
    /// Signature checks run (cache misses that reached [`Verifier::verify`]).
    #[cfg(test)]
    verifications: usize,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

/// Recently refused tokens: sets of [`CACHE_WAYS`] slots chosen by the digest, CLOCK
/// eviction within a set. A slot holds the token's SHA-256, never the token, so an attacker
/// choosing long tokens cannot make it grow, and two tokens share a slot only if SHA-256
/// collides.
struct Failures {
    slots: Box<[FailureSlot]>,
    hands: Box<[u8]>,
}

#[derive(Clone, Copy, Default)]
struct FailureSlot {
    digest: [u8; 32],
    verifier_id: u64,
    /// First instant (Unix seconds) the entry is no longer trusted; 0 when free.
    expires_unix: u64,
    error: Option<JwtError>,
    referenced: bool,
}

impl Failures {
    fn new(capacity: usize) -> Failures {
        let sets = capacity.div_ceil(CACHE_WAYS);
        Failures {
            slots: vec![FailureSlot::default(); sets * CACHE_WAYS].into_boxed_slice(),
            hands: vec![0; sets].into_boxed_slice(),
        }
    }

    fn ways(&self, digest: &[u8; 32]) -> std::ops::Range<usize> {
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let hash = u64::from_le_bytes(first);
        let set = ((u128::from(hash) * (self.hands.len() as u128)) >> 64) as usize;
        set * CACHE_WAYS..(set + 1) * CACHE_WAYS
    }

    fn get(&mut self, verifier_id: u64, digest: &[u8; 32], now_unix: u64) -> Option<JwtError> {
        let ways = self.ways(digest);
        let slot = self.slots[ways].iter_mut().find(|s| {
            s.expires_unix > now_unix && s.verifier_id == verifier_id && s.digest == *digest
        })?;
        slot.referenced = true;
        slot.error
    }

    fn insert(
        &mut self,
        verifier_id: u64,
        digest: [u8; 32],
        error: JwtError,
        expires_unix: u64,
        now_unix: u64,
    ) {
        let ways = self.ways(&digest);
        let base = ways.start;
        let set = base / CACHE_WAYS;
        let index = ways
            .clone()
            .find(|&i| self.slots[i].expires_unix <= now_unix)
            .unwrap_or_else(|| {
                let mut hand = usize::from(self.hands[set]);
                while self.slots[base + hand].referenced {
                    self.slots[base + hand].referenced = false;
                    hand = (hand + 1) % CACHE_WAYS;
                }
                self.hands[set] = ((hand + 1) % CACHE_WAYS) as u8;
                base + hand
            });
        self.slots[index] = FailureSlot {
            digest,
            verifier_id,
            expires_unix,
            error: Some(error),
            referenced: false,
        };
    }

    fn clear(&mut self) {
        self.slots.fill(FailureSlot::default());
    }

    fn is_off(&self) -> bool {
        self.slots.is_empty()
    }
}

#[derive(Default)]
struct Slot {
    hash: u64,
    verifier_id: u64,
    expires_unix: u64,
    referenced: bool,
    token: Vec<u8>,
    verified: Option<Verified>,
}

impl TokenCache {
    /// A cache of `capacity` entries (rounded up to a multiple of 4; 0 disables caching)
    /// trusting an entry at most `max_age_seconds`.
    pub fn new(capacity: usize, max_age_seconds: u64) -> TokenCache {
        let sets = capacity.div_ceil(CACHE_WAYS);
        TokenCache {
            slots: (0..sets * CACHE_WAYS).map(|_| Slot::default()).collect(),
            hands: vec![0; sets].into_boxed_slice(),
            seed: RandomState::new().hash_one(0x636f_7265_6761_7465_u64),
            max_age_seconds,
            len: 0,
            uncached: None,
            hits: 0,
            misses: 0,
            failures: Failures::new(capacity.min(FAILURE_CACHE_CAPACITY)),
            #[cfg(test)]
            verifications: 0,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Number of occupied slots (expired entries count until reused).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The (hits, misses) of [`TokenCache::get`] and [`TokenCache::verify`] since the last
    /// call, for the worker's stats.
    pub fn take_lookups(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.hits),
            std::mem::take(&mut self.misses),
        )
    }

    /// Drops every entry, remembered refusals included (keeps the memory).
    pub fn clear(&mut self) {
        for slot in self.slots.iter_mut() {
            slot.verified = None;
        }
        self.len = 0;
        self.failures.clear();
    }

    /// The cached verification of `token` by `verifier`, if still valid at `now_unix`.
    pub fn get(&mut self, verifier: &Verifier, token: &[u8], now_unix: u64) -> Option<&Verified> {
        let hash = self.hash(verifier.id, token);
        self.get_hashed(hash, verifier.id, token, now_unix)
    }

    /// Caches `verified`, the result of `verifier.verify(token, now_unix)`.
    pub fn insert(&mut self, verifier: &Verifier, token: &[u8], verified: Verified, now_unix: u64) {
        let hash = self.hash(verifier.id, token);
        // The verification is dropped if it cannot be cached; insert has no use for it.
        let _ = self.insert_hashed(hash, verifier.id, token, verified, now_unix);
    }

    /// `get`, or on a miss a remembered refusal, or `verifier.verify` and `insert` (or
    /// remembering its lasting refusal). The usual entry point.
    pub fn verify(
        &mut self,
        verifier: &Verifier,
        token: &[u8],
        now_unix: u64,
    ) -> Result<&Verified, JwtError> {
        let hash = self.hash(verifier.id, token);
        if let Some(index) = self.find(hash, verifier.id, token, now_unix) {
            let slot = &mut self.slots[index];
            slot.referenced = true;
            return slot.verified.as_ref().ok_or(JwtError::Malformed);
        }
        let digest = (!self.failures.is_off()).then(|| {
            let digest = ring::digest::digest(&ring::digest::SHA256, token);
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(digest.as_ref());
            bytes
        });
        if let Some(digest) = &digest {
            if let Some(error) = self.failures.get(verifier.id, digest, now_unix) {
                return Err(error);
            }
        }
        #[cfg(test)]
        {
            self.verifications += 1;
        }
        let verified = match verifier.verify(token, now_unix) {
            Ok(verified) => verified,
            Err(error) => {
                if let (Some(digest), true) = (digest, error.is_lasting()) {
                    let expires_unix = now_unix.saturating_add(self.max_age_seconds);
                    self.failures
                        .insert(verifier.id, digest, error, expires_unix, now_unix);
                }
                return Err(error);
            }
        };
        match self.insert_hashed(hash, verifier.id, token, verified, now_unix) {
            Ok(index) => self.slots[index]
                .verified
                .as_ref()
                .ok_or(JwtError::Malformed),
            Err(verified) => Ok(self.uncached.insert(verified)),
        }
    }

    fn get_hashed(
        &mut self,
        hash: u64,
        verifier_id: u64,
        token: &[u8],
        now_unix: u64,
    ) -> Option<&Verified> {
        let index = self.find(hash, verifier_id, token, now_unix)?;
        let slot = &mut self.slots[index];
        slot.referenced = true;
        slot.verified.as_ref()
    }

    fn set_of(&self, hash: u64) -> usize {
        // Multiply-shift range reduction: uniform over the sets without a modulo.
        ((u128::from(hash) * (self.hands.len() as u128)) >> 64) as usize
    }

    fn find(&mut self, hash: u64, verifier_id: u64, token: &[u8], now_unix: u64) -> Option<usize> {
        let found = self.find_slot(hash, verifier_id, token, now_unix);
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    fn find_slot(
        &mut self,
        hash: u64,
        verifier_id: u64,
        token: &[u8],
        now_unix: u64,
    ) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let base = self.set_of(hash) * CACHE_WAYS;
        for index in base..base + CACHE_WAYS {
            let slot = &mut self.slots[index];
            if slot.verified.is_none()
                || slot.hash != hash
                || slot.verifier_id != verifier_id
                || slot.token != token
            {
                continue;
            }
            if now_unix >= slot.expires_unix {
                slot.verified = None;
                self.len -= 1;
                return None;
            }
            return Some(index);
        }
        None
    }

    /// The slot index used, or the verification back when it cannot be cached (no
    /// capacity, or already expired).
    fn insert_hashed(
        &mut self,
        hash: u64,
        verifier_id: u64,
        token: &[u8],
        verified: Verified,
        now_unix: u64,
    ) -> Result<usize, Verified> {
        let expires_unix = verified
            .valid_until_unix
            .min(now_unix.saturating_add(self.max_age_seconds));
        if self.slots.is_empty() || expires_unix <= now_unix {
            return Err(verified);
        }
        let set = self.set_of(hash);
        let base = set * CACHE_WAYS;
        let ways = base..base + CACHE_WAYS;
        // Same token again, then a free or expired slot, then CLOCK: the first slot after
        // the hand not referenced since the hand last passed it.
        let index = ways
            .clone()
            .find(|&i| {
                let s = &self.slots[i];
                s.verified.is_some()
                    && s.hash == hash
                    && s.verifier_id == verifier_id
                    && s.token == token
            })
            .or_else(|| {
                ways.clone().find(|&i| {
                    self.slots[i].verified.is_none() || self.slots[i].expires_unix <= now_unix
                })
            })
            .unwrap_or_else(|| {
                let mut hand = usize::from(self.hands[set]);
                loop {
                    let slot = &mut self.slots[base + hand];
                    if !slot.referenced {
                        break;
                    }
                    slot.referenced = false;
                    hand = (hand + 1) % CACHE_WAYS;
                }
                self.hands[set] = ((hand + 1) % CACHE_WAYS) as u8;
                base + hand
            });
        let slot = &mut self.slots[index];
        if slot.verified.is_none() {
            self.len += 1;
        }
        slot.hash = hash;
        slot.verifier_id = verifier_id;
        slot.expires_unix = expires_unix;
        slot.referenced = false;
        slot.token.clear();
        slot.token.extend_from_slice(token);
        slot.verified = Some(verified);
        Ok(index)
    }

    /// A keyed 64-bit hash of (verifier id, token): four independent multiply-fold lanes
    /// over 32-byte blocks (a ~1 KB token hashes in ~150 cycles). Not a MAC: only verified
    /// tokens enter the cache and hits compare the full bytes, so collisions cost a miss.
    fn hash(&self, verifier_id: u64, token: &[u8]) -> u64 {
        const K: [u64; 4] = [
            0xa076_1d64_78bd_642f,
            0xe703_7ed1_a0b4_28db,
            0x8ebc_6af0_9c88_c6e3,
            0x5899_65cc_7537_4cc3,
        ];
        let fold = |a: u64, b: u64| {
            let m = u128::from(a) * u128::from(b);
            (m as u64) ^ ((m >> 64) as u64)
        };
        let word = |b: &[u8]| {
            let mut w = [0u8; 8];
            w[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(w)
        };
        let start = self.seed ^ fold(verifier_id ^ K[0], token.len() as u64 ^ K[1]);
        let mut lanes = [start, start ^ K[1], start ^ K[2], start ^ K[3]];
        let mut blocks = token.chunks_exact(32);
        for block in &mut blocks {
            for (lane, (chunk, k)) in lanes.iter_mut().zip(block.chunks_exact(8).zip(K)) {
                let w = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
                *lane = fold(*lane ^ w, k);
            }
        }
        let mut h = lanes.iter().fold(start, |h, &lane| fold(h ^ lane, K[0]));
        for chunk in blocks.remainder().chunks(8) {
            h = fold(h ^ word(chunk), K[2]);
        }
        // murmur3 fmix64 finaliser.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

// ---------------------------------------------------------------------------------------
// base64 (RFC 4648), PEM (RFC 7468) and the little DER we need (X.690)
// ---------------------------------------------------------------------------------------

const fn decode_table(alphabet: &[u8; 64]) -> [u8; 256] {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
}

static BASE64URL: [u8; 256] =
    decode_table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
static BASE64STD: [u8; 256] =
    decode_table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");

/// Decoded length of `n` unpadded base64 characters; `None` for an impossible length.
fn decoded_len(n: usize) -> Option<usize> {
    match n % 4 {
        0 => Some(n / 4 * 3),
        2 => Some(n / 4 * 3 + 1),
        3 => Some(n / 4 * 3 + 2),
        _ => None,
    }
}

/// Strict unpadded decoding into `out`: any character outside the alphabet (padding
/// included), an impossible length or non-zero trailing bits (a non-canonical encoding)
/// fails. Returns the decoded length.
fn decode_into(input: &[u8], table: &[u8; 256], out: &mut [u8]) -> Option<usize> {
    let len = decoded_len(input.len())?;
    let out = out.get_mut(..len)?;
    let mut chunks = input.chunks_exact(4);
    let mut written = out.chunks_exact_mut(3);
    for (chunk, dst) in (&mut chunks).zip(&mut written) {
        let [a, b, c, d] =
            [chunk[0], chunk[1], chunk[2], chunk[3]].map(|ch| table[usize::from(ch)]);
        if (a | b | c | d) & 0x80 != 0 {
            return None;
        }
        let v = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        dst.copy_from_slice(&v.to_be_bytes()[1..]);
    }
    let tail = written.into_remainder();
    match *chunks.remainder() {
        [] => {}
        [a, b] => {
            let [a, b] = [a, b].map(|ch| table[usize::from(ch)]);
            if (a | b) & 0x80 != 0 || b & 0x0f != 0 {
                return None;
            }
            tail[0] = a << 2 | b >> 4;
        }
        [a, b, c] => {
            let [a, b, c] = [a, b, c].map(|ch| table[usize::from(ch)]);
            if (a | b | c) & 0x80 != 0 || c & 0x03 != 0 {
                return None;
            }
            tail[0] = a << 2 | b >> 4;
            tail[1] = b << 4 | c >> 2;
        }
        _ => return None,
    }
    Some(len)
}

/// Base64url without padding (RFC 7515 §2): how tokens are written. The gateway only
/// decodes; this is for the demo's sample token and for tests that mint tokens.
pub fn base64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn b64url_decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    decode_into(input, &BASE64URL, out)
}

fn b64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0; decoded_len(input.len())?];
    decode_into(input, &BASE64URL, &mut out)?;
    Some(out)
}

/// The DER body of the first PEM block labelled exactly `label`, `None` when there is no
/// such block. Whitespace inside the body is ignored and padding is allowed; explanatory
/// headers (encrypted keys) are not.
fn pem_decode(pem: &str, label: &str) -> Option<Result<Vec<u8>, String>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let body = &pem[start..];
    let Some(stop) = body.find(&end) else {
        return Some(Err(format!("PEM block {label} has no END line")));
    };
    let mut text: Vec<u8> = body[..stop]
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.len() % 4 == 0 {
        for _ in 0..2 {
            if text.last() == Some(&b'=') {
                text.pop();
            }
        }
    }
    let decoded = decoded_len(text.len()).and_then(|len| {
        let mut out = vec![0; len];
        decode_into(&text, &BASE64STD, &mut out).map(|_| out)
    });
    Some(decoded.ok_or_else(|| format!("PEM block {label} is not valid base64")))
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
/// 1.2.840.113549.1.1.1
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.10045.2.1
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 (prime256v1)
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.3.132.0.34 (secp384r1)
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// 1.3.101.112 (RFC 8410)
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A cursor over DER: definite lengths only, in minimal form, up to 64 KiB.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn read(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let truncated = || "truncated DER".to_string();
        let (&found, rest) = self.0.split_first().ok_or_else(truncated)?;
        if found != tag {
            return Err(format!(
                "unexpected DER tag 0x{found:02x} (expected 0x{tag:02x})"
            ));
        }
        let (len, rest) = match rest {
            [short @ 0..=0x7f, rest @ ..] => (usize::from(*short), rest),
            [0x81, len @ 0x80..=0xff, rest @ ..] => (usize::from(*len), rest),
            [0x82, hi @ 0x01..=0xff, lo, rest @ ..] => {
                (usize::from(*hi) << 8 | usize::from(*lo), rest)
            }
            _ => return Err("unsupported or non-minimal DER length".to_string()),
        };
        let (value, rest) = rest.split_at_checked(len).ok_or_else(truncated)?;
        self.0 = rest;
        Ok(value)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("trailing data after DER value".to_string())
        }
    }
}

/// (n, e) of a PKCS#1 `RSAPublicKey`, as positive big-endian integers.
fn pkcs1_components(der: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let mut outer = Der(der);
    let body = outer.read(TAG_SEQUENCE)?;
    outer.end()?;
    let mut body = Der(body);
    let n = body.read(TAG_INTEGER)?;
    let e = body.read(TAG_INTEGER)?;
    body.end()?;
    for int in [n, e] {
        if int.first().is_none_or(|&b| b & 0x80 != 0) {
            return Err("RSA key integers must be positive".to_string());
        }
    }
    Ok((n, e))
}

fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

    const NOW: u64 = 1_800_000_000;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// Test-only RSA-2048 key pair (`openssl genrsa 2048`, then `openssl pkcs8 -topk8
    /// -nocrypt`, `openssl rsa -pubout` and `-RSAPublicKey_out`). Not used anywhere else.
    const RSA_PRIVATE_PKCS8_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCt6r7ndEEdaHXx
mFaURZfXLS680oRmKhPuCe+ETCqfmqqMy1IEuQQR9uA4OBOgqIQKUz0Nj/8msQze
F9YYuqfYDBAbggFn/288lctMPy5LO/lJ167WHpJcFDE22XO1xfq8g3pgmCN9SNUr
IvIXfz948BJ3sqHAvvKckcFmUyqe8sYt1hmb8cMeuGcf/lGMCoyzS/bKel4v76BG
J1H4Zw7yR4LG6JZfrJyBTQHDQcjNlGz5WJ1Tbwj84qH4d6Ua4UZ0L9gJNjHCCK0p
a+LSa0TOqEDYxP/M7ECdc7u/Y/LMbPR7YWDnydISht0xWwb7L8CB+UqDPsmXZD1H
SEzJxI3DAgMBAAECggEAG3y8i2xOVk2KRpLjLDALnZCgkGtdTaBc4gRj/K7lFbCm
P/ZqkiCDyisQqRID2CKKK++X+KrHkt/svrVZuzLVEEpnyVE007EFbbfnF7fsoytp
bQhPs7vFOhRe6uJXbWVLCbxl/RpOkaCPQHAXfys3Zu/am1x6QDJtud03ieqfE9vb
yVJJguW0DPimAa1JQdvqlUc+QjZNpal7AT8LF/u5RvTYA6qQ6dvEiypRF+mddl7w
RG4JyoFrMUYBq6LBe1s6hNW7x6V31zhomyCaMl0yfGRYYhpQIzV5lq6p0VEQgXSJ
ljiY8aheTq4peRqpQnoj65YJoovtKcoKFHeRXeTw0QKBgQDvM0ysRamRWX3Z3Poo
gjAq5rltQYD1zXNMK0GkD6BPst15ciBnOzgV5u0LqmuOYuQ9bl1VOpI9xyPdvnVk
Bj5c2CjxElzxMM5BKDOa2pDTQm74m01B5svzpAr1pkvfcBAPRXTULkOCSW/OCEzf
t5ZZtiCcqeyRERDIkvWi0awnNwKBgQC6Ia8SjbZ/5zg0VBZT3cgU9Grnz/FBVecI
QslMQkZLtkqTIWjRj2fclr7DLZSAT8nGXuHRy/fjnIfgHTrTC7iqPPdRAf0zZtw2
PGhYG6fnmQF0xAyrbHzQjdeu6mjyuVDO/2XStjrVEsd49aT03cmWG6DK5khkLcQ1
t7FgbhP71QKBgDEAv2pjcxOV09R4Er+NvDRtw/r/+l1g04f9LJthoCPzrq+ck8rS
NPE3t8Q2C4bF96AmJfS55Q/G5jAdPotZRBldJzYL3wKCTx7GD5xfvl+pMna3yiIA
GDQ3nQ8qHE0P9hpKzl5Rg/8C8GazCJykTabfStsNbKtjZZ7RjITok24NAoGANyyy
+/n8JlABLina8INmwyds5UiTyH1RXfaGO0/ODLV9x714l949uHsLE0pYoeyE8IPB
xvICinslH/8qJ9NqqzQlT+MaDnmoP3+KosuX6yRE9TsEUnB3U08op1YfRAxA8wts
QJj6OZ02ehm/C0MPdaq88EhxHxkd95p7Pw2CaP0CgYEA1LsJj1gKSoZI14k3YPCi
uKNYKuDJIOrpvoKTpermyu262o+xPGlXKODFcc1+dJkvx6lVJarnWha2VH6I/sGH
WnSQno6rQFjskc0kA2GZqIhtYADe2SbJjbR7GasSVvbkuJvPzAhCd4vwsyxux6ET
l7B02RURO2XfUFwTyAnza/w=
-----END PRIVATE KEY-----";
    const RSA_PUBLIC_SPKI_PEM: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAreq+53RBHWh18ZhWlEWX
1y0uvNKEZioT7gnvhEwqn5qqjMtSBLkEEfbgODgToKiEClM9DY//JrEM3hfWGLqn
2AwQG4IBZ/9vPJXLTD8uSzv5Sdeu1h6SXBQxNtlztcX6vIN6YJgjfUjVKyLyF38/
ePASd7KhwL7ynJHBZlMqnvLGLdYZm/HDHrhnH/5RjAqMs0v2ynpeL++gRidR+GcO
8keCxuiWX6ycgU0Bw0HIzZRs+VidU28I/OKh+HelGuFGdC/YCTYxwgitKWvi0mtE
zqhA2MT/zOxAnXO7v2PyzGz0e2Fg58nSEobdMVsG+y/AgflKgz7Jl2Q9R0hMycSN
wwIDAQAB
-----END PUBLIC KEY-----";
    const RSA_PUBLIC_PKCS1_PEM: &str = r"-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAreq+53RBHWh18ZhWlEWX1y0uvNKEZioT7gnvhEwqn5qqjMtSBLkE
EfbgODgToKiEClM9DY//JrEM3hfWGLqn2AwQG4IBZ/9vPJXLTD8uSzv5Sdeu1h6S
XBQxNtlztcX6vIN6YJgjfUjVKyLyF38/ePASd7KhwL7ynJHBZlMqnvLGLdYZm/HD
HrhnH/5RjAqMs0v2ynpeL++gRidR+GcO8keCxuiWX6ycgU0Bw0HIzZRs+VidU28I
/OKh+HelGuFGdC/YCTYxwgitKWvi0mtEzqhA2MT/zOxAnXO7v2PyzGz0e2Fg58nS
EobdMVsG+y/AgflKgz7Jl2Q9R0hMycSNwwIDAQAB
-----END RSA PUBLIC KEY-----";

    fn encode(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(alphabet[(v >> (18 - 6 * i) & 63) as usize] as char);
            }
            if pad {
                for _ in chunk.len()..3 {
                    out.push('=');
                }
            }
        }
        out
    }

    fn b64url(data: impl AsRef<[u8]>) -> String {
        encode(
            data.as_ref(),
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            false,
        )
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let body = encode(
            der,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            true,
        );
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn mint(header: &str, claims: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
        let input = format!("{}.{}", b64url(header), b64url(claims));
        let signature = sign(input.as_bytes());
        format!("{input}.{}", b64url(signature))
    }

    fn hmac_sign(alg: hmac::Algorithm, secret: &[u8]) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
        move |m| {
            hmac::sign(&hmac::Key::new(alg, secret), m)
                .as_ref()
                .to_vec()
        }
    }

    fn hs256() -> impl FnOnce(&[u8]) -> Vec<u8> {
        hmac_sign(hmac::HMAC_SHA256, SECRET)
    }

    fn rsa_pair() -> RsaKeyPair {
        let der = pem_decode(RSA_PRIVATE_PKCS8_PEM, "PRIVATE KEY")
            .unwrap()
            .unwrap();
        RsaKeyPair::from_pkcs8(&der).unwrap()
    }

    fn rsa_sign(padding: &'static dyn signature::RsaEncoding) -> impl FnOnce(&[u8]) -> Vec<u8> {
        move |m| {
            let pair = rsa_pair();
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &SystemRandom::new(), m, &mut sig)
                .unwrap();
            sig
        }
    }

    fn ec_pair(alg: &'static signature::EcdsaSigningAlgorithm) -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap()
    }

    fn ec_sign(pair: &EcdsaKeyPair) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
        move |m| {
            pair.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        }
    }

    fn ed_pair() -> Ed25519KeyPair {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
    }

    fn spki_p256(point: &[u8]) -> Vec<u8> {
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(point);
        der
    }

    fn spki_p384(point: &[u8]) -> Vec<u8> {
        let mut der = vec![
            0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
        ];
        der.extend_from_slice(point);
        der
    }

    fn spki_ed25519(raw: &[u8]) -> Vec<u8> {
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(raw);
        der
    }

    /// Standard claims valid at `NOW`, with `extra` members appended.
    fn claims(extra: &str) -> String {
        let exp = NOW + 3600;
        format!(r#"{{"sub":"alice","iat":{NOW},"exp":{exp}{extra}}}"#)
    }

    fn verifier_with(config: VerifierConfig, key: Key) -> Verifier {
        let mut keys = KeySet::new();
        keys.set_default(key).unwrap();
        Verifier::new(config, keys).unwrap()
    }

    fn config(algorithms: &[Alg]) -> VerifierConfig {
        VerifierConfig {
            algorithms: algorithms.to_vec(),
            ..VerifierConfig::default()
        }
    }

    fn hs_verifier() -> Verifier {
        verifier_with(config(&[Alg::Hs256]), Key::hmac_secret(SECRET).unwrap())
    }

    fn rs_verifier() -> Verifier {
        verifier_with(
            config(&[
                Alg::Rs256,
                Alg::Rs384,
                Alg::Rs512,
                Alg::Ps256,
                Alg::Ps384,
                Alg::Ps512,
            ]),
            Key::from_pem(RSA_PUBLIC_SPKI_PEM).unwrap(),
        )
    }

    const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    fn hs_token(claims_json: &str) -> String {
        mint(HS256, claims_json, hs256())
    }

    fn headers(v: &Verifier, verified: &Verified) -> Vec<(String, String)> {
        v.identity_headers(verified)
            .map(|(h, v)| (h.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hs256_verifies_and_maps_sub_to_x_user_id() {
        let v = hs_verifier();
        let verified = v.verify(hs_token(&claims("")).as_bytes(), NOW).unwrap();
        assert_eq!(verified.exp(), Some(NOW + 3600));
        assert_eq!(
            verified.valid_until_unix(),
            NOW + 3600 + DEFAULT_LEEWAY_SECONDS
        );
        assert_eq!(
            headers(&v, &verified),
            [("X-User-Id".into(), "alice".into())]
        );
    }

    /// RFC 7515 §5.2 and RFC 7519 §7.2: header and claims are UTF-8, also in members the
    /// verifier does not read (a `jwt` fuzz target finding).
    #[test]
    fn header_or_claims_not_utf8_are_refused() {
        let v = hs_verifier();
        let token = |header: &[u8], claims: &[u8]| {
            let input = format!("{}.{}", b64url(header), b64url(claims));
            let signature = hs256()(input.as_bytes());
            format!("{input}.{}", b64url(signature))
        };
        let good = claims("");
        let bad = [&good.as_bytes()[..good.len() - 1], b",\"note\":\"a\xffb\"}"].concat();
        assert!(v
            .verify(token(HS256.as_bytes(), good.as_bytes()).as_bytes(), NOW)
            .is_ok());
        assert_eq!(
            v.verify(token(HS256.as_bytes(), &bad).as_bytes(), NOW),
            Err(JwtError::InvalidClaims)
        );
        let bad_header = b"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"x\":\"\xc0\xaf\"}";
        assert_eq!(
            v.verify(token(bad_header, good.as_bytes()).as_bytes(), NOW),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn hs384_and_hs512_need_long_enough_secrets() {
        let long = [7u8; 64];
        let v = verifier_with(
            config(&[Alg::Hs384, Alg::Hs512]),
            Key::hmac_secret(&long).unwrap(),
        );
        let t384 = mint(
            r#"{"alg":"HS384"}"#,
            &claims(""),
            hmac_sign(hmac::HMAC_SHA384, &long),
        );
        let t512 = mint(
            r#"{"alg":"HS512"}"#,
            &claims(""),
            hmac_sign(hmac::HMAC_SHA512, &long),
        );
        assert!(v.verify(t384.as_bytes(), NOW).is_ok());
        assert!(v.verify(t512.as_bytes(), NOW).is_ok());

        assert!(Key::hmac_secret(&[1u8; 31]).is_err());
        let short = Key::hmac_secret(SECRET).unwrap();
        assert!(
            short.accepts(Alg::Hs256) && !short.accepts(Alg::Hs384) && !short.accepts(Alg::Hs512)
        );
        let mut keys = KeySet::new();
        keys.set_default(Key::hmac_secret(SECRET).unwrap()).unwrap();
        assert!(Verifier::new(config(&[Alg::Hs512]), keys).is_err());
        let v = verifier_with(
            config(&[Alg::Hs256, Alg::Hs512]),
            Key::hmac_secret(SECRET).unwrap(),
        );
        let t512 = mint(
            r#"{"alg":"HS512"}"#,
            &claims(""),
            hmac_sign(hmac::HMAC_SHA512, SECRET),
        );
        assert_eq!(
            v.verify(t512.as_bytes(), NOW),
            Err(JwtError::KeyAlgorithmMismatch)
        );
    }

    #[test]
    fn rsa_pkcs1_and_pss_verify_with_spki_and_pkcs1_pem() {
        let pkcs1 = verifier_with(
            config(&[Alg::Rs256, Alg::Ps256]),
            Key::from_pem(RSA_PUBLIC_PKCS1_PEM).unwrap(),
        );
        let spki = rs_verifier();
        let cases: [(&str, &'static dyn signature::RsaEncoding); 6] = [
            ("RS256", &signature::RSA_PKCS1_SHA256),
            ("RS384", &signature::RSA_PKCS1_SHA384),
            ("RS512", &signature::RSA_PKCS1_SHA512),
            ("PS256", &signature::RSA_PSS_SHA256),
            ("PS384", &signature::RSA_PSS_SHA384),
            ("PS512", &signature::RSA_PSS_SHA512),
        ];
        for (alg, padding) in cases {
            let token = mint(
                &format!(r#"{{"alg":"{alg}"}}"#),
                &claims(""),
                rsa_sign(padding),
            );
            assert!(spki.verify(token.as_bytes(), NOW).is_ok(), "{alg}");
            if alg == "RS256" || alg == "PS256" {
                assert!(pkcs1.verify(token.as_bytes(), NOW).is_ok(), "{alg} pkcs1");
            }
        }
        // A PKCS#1 v1.5 signature presented as PSS (and vice versa) fails.
        let token = mint(
            r#"{"alg":"PS256"}"#,
            &claims(""),
            rsa_sign(&signature::RSA_PKCS1_SHA256),
        );
        assert_eq!(
            spki.verify(token.as_bytes(), NOW),
            Err(JwtError::SignatureInvalid)
        );
    }

    #[test]
    fn es256_es384_and_eddsa_verify_with_spki_pem() {
        let p256 = ec_pair(&signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let v = verifier_with(
            config(&[Alg::Es256]),
            Key::from_pem(&pem("PUBLIC KEY", &spki_p256(p256.public_key().as_ref()))).unwrap(),
        );
        let token = mint(r#"{"alg":"ES256"}"#, &claims(""), ec_sign(&p256));
        assert!(v.verify(token.as_bytes(), NOW).is_ok());

        let p384 = ec_pair(&signature::ECDSA_P384_SHA384_FIXED_SIGNING);
        let v = verifier_with(
            config(&[Alg::Es384]),
            Key::from_pem(&pem("PUBLIC KEY", &spki_p384(p384.public_key().as_ref()))).unwrap(),
        );
        let token = mint(r#"{"alg":"ES384"}"#, &claims(""), ec_sign(&p384));
        assert!(v.verify(token.as_bytes(), NOW).is_ok());

        let ed = ed_pair();
        let key =
            Key::from_pem(&pem("PUBLIC KEY", &spki_ed25519(ed.public_key().as_ref()))).unwrap();
        assert_eq!(key.kind(), KeyKind::Ed25519);
        let v = verifier_with(config(&[Alg::EdDsa]), key);
        let token = mint(r#"{"alg":"EdDSA"}"#, &claims(""), |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert!(v.verify(token.as_bytes(), NOW).is_ok());
    }

    #[test]
    fn alg_none_in_any_spelling_is_refused() {
        let v = hs_verifier();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = b64url(format!(r#"{{"alg":"{alg}"}}"#));
            let body = b64url(claims(""));
            for token in [format!("{header}.{body}."), format!("{header}.{body}.c2ln")] {
                assert_eq!(
                    v.verify(token.as_bytes(), NOW),
                    Err(JwtError::AlgorithmNotAllowed),
                    "{alg}"
                );
            }
        }
        // Even listed nowhere, it cannot be named: from_name knows no "none".
        assert_eq!(Alg::from_name("none"), None);
        assert_eq!(Alg::from_name("hs256"), None);
    }

    #[test]
    fn algorithm_outside_the_route_list_is_refused() {
        let long = [9u8; 64];
        let v = verifier_with(config(&[Alg::Hs256]), Key::hmac_secret(&long).unwrap());
        let token = mint(
            r#"{"alg":"HS512"}"#,
            &claims(""),
            hmac_sign(hmac::HMAC_SHA512, &long),
        );
        assert_eq!(
            v.verify(token.as_bytes(), NOW),
            Err(JwtError::AlgorithmNotAllowed)
        );
        let token = mint(r#"{"alg":"XS256"}"#, &claims(""), hs256());
        assert_eq!(
            v.verify(token.as_bytes(), NOW),
            Err(JwtError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn hs256_signed_with_the_rsa_public_key_as_secret_is_refused() {
        // The classic key-confusion attack: the attacker knows the public key and uses its
        // PEM text as an HMAC secret. Even a route that (wrongly) allows HS256 as well never
        // runs HMAC with an RSA key.
        let attack = |pem: &str| {
            mint(
                r#"{"alg":"HS256"}"#,
                &claims(""),
                hmac_sign(hmac::HMAC_SHA256, pem.as_bytes()),
            )
        };
        let rs_only = rs_verifier();
        let both = verifier_with(
            config(&[Alg::Rs256, Alg::Hs256]),
            Key::from_pem(RSA_PUBLIC_SPKI_PEM).unwrap(),
        );
        for pem in [RSA_PUBLIC_SPKI_PEM, RSA_PUBLIC_PKCS1_PEM] {
            let token = attack(pem);
            assert_eq!(
                rs_only.verify(token.as_bytes(), NOW),
                Err(JwtError::AlgorithmNotAllowed)
            );
            assert_eq!(
                both.verify(token.as_bytes(), NOW),
                Err(JwtError::KeyAlgorithmMismatch)
            );
        }
        // And the reverse: an RS256 token against an HMAC key.
        let v = verifier_with(
            config(&[Alg::Hs256, Alg::Rs256]),
            Key::hmac_secret(SECRET).unwrap(),
        );
        let token = mint(
            r#"{"alg":"RS256"}"#,
            &claims(""),
            rsa_sign(&signature::RSA_PKCS1_SHA256),
        );
        assert_eq!(
            v.verify(token.as_bytes(), NOW),
            Err(JwtError::KeyAlgorithmMismatch)
        );
    }

    #[test]
    fn tampered_payload_or_header_is_refused() {
        let v = hs_verifier();
        let token = hs_token(&claims(""));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url(claims(r#","admin":true"#)),
            parts[2]
        );
        assert_eq!(
            v.verify(forged.as_bytes(), NOW),
            Err(JwtError::SignatureInvalid)
        );
        let forged = format!("{}.{}.{}", b64url(r#"{"alg":"HS256"}"#), parts[1], parts[2]);
        assert_eq!(
            v.verify(forged.as_bytes(), NOW),
            Err(JwtError::SignatureInvalid)
        );
        let wrong_secret = mint(
            HS256,
            &claims(""),
            hmac_sign(hmac::HMAC_SHA256, b"an entirely different 32-byte key!"),
        );
        assert_eq!(
            v.verify(wrong_secret.as_bytes(), NOW),
            Err(JwtError::SignatureInvalid)
        );
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let v = hs_verifier();
        let at = |exp: u64| hs_token(&format!(r#"{{"sub":"a","exp":{exp}}}"#));
        assert!(v.verify(at(NOW - 30).as_bytes(), NOW).is_ok());
        assert!(v.verify(at(NOW - 59).as_bytes(), NOW).is_ok());
        assert_eq!(
            v.verify(at(NOW - 60).as_bytes(), NOW),
            Err(JwtError::Expired)
        );
        assert_eq!(
            v.verify(at(NOW - 3600).as_bytes(), NOW),
            Err(JwtError::Expired)
        );
        let zero_leeway = verifier_with(
            VerifierConfig {
                leeway_seconds: 0,
                ..config(&[Alg::Hs256])
            },
            Key::hmac_secret(SECRET).unwrap(),
        );
        assert_eq!(
            zero_leeway.verify(at(NOW).as_bytes(), NOW),
            Err(JwtError::Expired)
        );
        assert!(zero_leeway.verify(at(NOW + 1).as_bytes(), NOW).is_ok());
        // Fractional and negative NumericDates; a string is not a date.
        let frac = hs_token(&format!(r#"{{"exp":{}.9}}"#, NOW - 60));
        assert_eq!(v.verify(frac.as_bytes(), NOW), Err(JwtError::Expired));
        assert_eq!(
            v.verify(hs_token(r#"{"exp":-5}"#).as_bytes(), NOW),
            Err(JwtError::Expired)
        );
        let text = hs_token(&format!(r#"{{"exp":"{}"}}"#, NOW + 10));
        assert_eq!(v.verify(text.as_bytes(), NOW), Err(JwtError::InvalidClaims));
    }

    #[test]
    fn missing_exp_is_refused_unless_configured() {
        let token = hs_token(r#"{"sub":"a"}"#);
        assert_eq!(
            hs_verifier().verify(token.as_bytes(), NOW),
            Err(JwtError::MissingExpiry)
        );
        let lax = verifier_with(
            VerifierConfig {
                require_exp: false,
                ..config(&[Alg::Hs256])
            },
            Key::hmac_secret(SECRET).unwrap(),
        );
        let verified = lax.verify(token.as_bytes(), NOW).unwrap();
        assert_eq!(
            (verified.exp(), verified.valid_until_unix()),
            (None, u64::MAX)
        );
    }

    #[test]
    fn not_yet_valid_and_issued_in_the_future_are_refused() {
        let v = hs_verifier();
        let nbf = |t: u64| hs_token(&claims(&format!(r#","nbf":{t}"#)));
        assert!(v.verify(nbf(NOW + 60).as_bytes(), NOW).is_ok());
        assert_eq!(
            v.verify(nbf(NOW + 61).as_bytes(), NOW),
            Err(JwtError::NotYetValid)
        );
        let iat = |t: u64| hs_token(&format!(r#"{{"iat":{t},"exp":{}}}"#, NOW + 3600));
        assert!(v.verify(iat(NOW + 60).as_bytes(), NOW).is_ok());
        assert_eq!(
            v.verify(iat(NOW + 120).as_bytes(), NOW),
            Err(JwtError::IssuedInFuture)
        );
    }

    #[test]
    fn issuer_and_audience_are_checked() {
        let v = verifier_with(
            VerifierConfig {
                issuer: Some("https://idp.example.com/".into()),
                audiences: vec!["api".into(), "gateway".into()],
                ..config(&[Alg::Hs256])
            },
            Key::hmac_secret(SECRET).unwrap(),
        );
        let check = |extra: &str| {
            v.verify(hs_token(&claims(extra)).as_bytes(), NOW)
                .map(|_| ())
        };
        let iss = r#","iss":"https://idp.example.com/""#;
        assert_eq!(check(&format!(r#"{iss},"aud":"api""#)), Ok(()));
        assert_eq!(
            check(&format!(r#"{iss},"aud":["other","gateway"]"#)),
            Ok(())
        );
        // Escaped but equal strings compare equal after decoding.
        assert_eq!(
            check(r#","iss":"https:\/\/idp.example.com\/","aud":"api""#),
            Ok(())
        );
        assert_eq!(
            check(r#","iss":"https://evil.example.com/","aud":"api""#),
            Err(JwtError::IssuerNotAccepted)
        );
        assert_eq!(
            check(r#","iss":"HTTPS://IDP.EXAMPLE.COM/","aud":"api""#),
            Err(JwtError::IssuerNotAccepted)
        );
        assert_eq!(check(r#","aud":"api""#), Err(JwtError::IssuerNotAccepted));
        assert_eq!(
            check(&format!(r#"{iss},"aud":"web""#)),
            Err(JwtError::AudienceNotAccepted)
        );
        assert_eq!(
            check(&format!(r#"{iss},"aud":["web","mobile"]"#)),
            Err(JwtError::AudienceNotAccepted)
        );
        assert_eq!(
            check(&format!(r#"{iss},"aud":[]"#)),
            Err(JwtError::AudienceNotAccepted)
        );
        assert_eq!(check(iss), Err(JwtError::AudienceNotAccepted));
        assert_eq!(
            check(&format!(r#"{iss},"aud":["api",7]"#)),
            Err(JwtError::InvalidClaims)
        );
        assert_eq!(
            check(&format!(r#"{iss},"aud":5"#)),
            Err(JwtError::InvalidClaims)
        );
        assert_eq!(
            check(r#","iss":5,"aud":"api""#),
            Err(JwtError::InvalidClaims)
        );
    }

    #[test]
    fn required_claims_must_be_present_and_not_null() {
        let v = verifier_with(
            VerifierConfig {
                required_claims: vec!["tenant".into(), "scope".into()],
                ..config(&[Alg::Hs256])
            },
            Key::hmac_secret(SECRET).unwrap(),
        );
        let check = |extra: &str| {
            v.verify(hs_token(&claims(extra)).as_bytes(), NOW)
                .map(|_| ())
        };
        assert_eq!(check(r#","tenant":"t1","scope":["read"]"#), Ok(()));
        assert_eq!(check(r#","tenant":"t1""#), Err(JwtError::MissingClaim));
        assert_eq!(
            check(r#","tenant":null,"scope":"x""#),
            Err(JwtError::MissingClaim)
        );
        assert_eq!(
            check(r#","tenant":"a","scope":"x","tenant":"b""#),
            Err(JwtError::InvalidClaims)
        );
    }

    #[test]
    fn duplicate_registered_claims_and_header_members_are_refused() {
        let v = hs_verifier();
        let dup = hs_token(&format!(r#"{{"exp":{},"exp":{}}}"#, NOW - 9999, NOW + 3600));
        assert_eq!(v.verify(dup.as_bytes(), NOW), Err(JwtError::InvalidClaims));
        let dup = mint(r#"{"alg":"HS256","alg":"HS256"}"#, &claims(""), hs256());
        assert_eq!(v.verify(dup.as_bytes(), NOW), Err(JwtError::Malformed));
        // Unknown duplicated claims are ignored: we never read them.
        assert!(v
            .verify(hs_token(&claims(r#","x":1,"x":2"#)).as_bytes(), NOW)
            .is_ok());
        // Claims must be an object; so must the header.
        assert_eq!(
            v.verify(hs_token("[1,2]").as_bytes(), NOW),
            Err(JwtError::InvalidClaims)
        );
        let arr = mint(r#"["HS256"]"#, &claims(""), hs256());
        assert_eq!(v.verify(arr.as_bytes(), NOW), Err(JwtError::Malformed));
        let trailing = hs_token(&format!("{} x", claims("")));
        assert_eq!(
            v.verify(trailing.as_bytes(), NOW),
            Err(JwtError::InvalidClaims)
        );
    }

    #[test]
    fn a_large_header_is_decoded_on_the_heap() {
        let v = hs_verifier();
        let chain = "A".repeat(3000);
        let header = format!(r#"{{"alg":"HS256","x5c":["{chain}"]}}"#);
        let token = mint(&header, &claims(""), hs256());
        assert!(v.verify(token.as_bytes(), NOW).is_ok());
        for len in 500..530 {
            let header = format!(r#"{{"alg":"HS256","pad":"{}"}}"#, "p".repeat(len));
            let token = mint(&header, &claims(""), hs256());
            assert!(v.verify(token.as_bytes(), NOW).is_ok(), "{len}");
        }
    }

    #[test]
    fn any_crit_header_is_refused() {
        let v = hs_verifier();
        for crit in [r#"["exp"]"#, r#"["b64"]"#, "[]", "null"] {
            let header = format!(r#"{{"alg":"HS256","crit":{crit},"b64":false,"exp":1}}"#);
            let token = mint(&header, &claims(""), hs256());
            assert_eq!(
                v.verify(token.as_bytes(), NOW),
                Err(JwtError::UnsupportedCritical),
                "{crit}"
            );
        }
    }

    #[test]
    fn embedded_jwk_jku_x5u_x5c_are_ignored() {
        // The attacker signs with their own key and offers it in the header: never trusted.
        let attacker = ed_pair();
        let x = b64url(attacker.public_key().as_ref());
        let header = format!(
            r#"{{"alg":"EdDSA","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{x}"}},"jku":"https://evil.example/jwks","x5u":"https://evil.example/c","x5c":["AAAA"]}}"#
        );
        let ours = ed_pair();
        let v = verifier_with(
            config(&[Alg::EdDsa]),
            Key::ed25519(ours.public_key().as_ref()).unwrap(),
        );
        let token = mint(&header, &claims(""), |m| attacker.sign(m).as_ref().to_vec());
        assert_eq!(
            v.verify(token.as_bytes(), NOW),
            Err(JwtError::SignatureInvalid)
        );
        // Our own token with those members present still verifies: they are simply skipped.
        let token = mint(&header, &claims(""), |m| ours.sign(m).as_ref().to_vec());
        assert!(v.verify(token.as_bytes(), NOW).is_ok());
    }

    fn jwks_fixture() -> (String, EcdsaKeyPair, Ed25519KeyPair) {
        let rsa = rsa_pair();
        let (n, e) = pkcs1_components(rsa.public().as_ref()).unwrap();
        let ec = ec_pair(&signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let point = ec.public_key().as_ref();
        let ed = ed_pair();
        let jwks = format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"rsa-1","use":"sig","alg":"RS256","n":"{}","e":"{}","x5c":["ignored"]}},
                {{"kty":"EC","kid":"ec-1","crv":"P-256","x":"{}","y":"{}"}},
                {{"kty":"OKP","kid":"ed-1","crv":"Ed25519","x":"{}"}},
                {{"kty":"oct","kid":"hmac-1","k":"{}"}},
                {{"kty":"RSA","kid":"enc-1","use":"enc","n":"AQAB","e":"AQAB"}},
                {{"kty":"OKP","kid":"x-1","crv":"X25519","x":"AAAA"}},
                {{"kty":"EC","kid":"p521","crv":"P-521","x":"AA","y":"AA"}}
            ]}}"#,
            b64url(n),
            b64url(e),
            b64url(&point[1..33]),
            b64url(&point[33..]),
            b64url(ed.public_key().as_ref()),
            b64url(SECRET),
        );
        (jwks, ec, ed)
    }

    #[test]
    fn jwks_keys_are_selected_by_kid() {
        let (jwks, ec, ed) = jwks_fixture();
        let keys = KeySet::from_jwks(jwks.as_bytes()).unwrap();
        assert_eq!(keys.len(), 4);
        let v = Verifier::new(
            config(&[Alg::Rs256, Alg::Ps256, Alg::Es256, Alg::EdDsa, Alg::Hs256]),
            keys,
        )
        .unwrap();
        let rs = mint(
            r#"{"alg":"RS256","kid":"rsa-1"}"#,
            &claims(""),
            rsa_sign(&signature::RSA_PKCS1_SHA256),
        );
        let es = mint(r#"{"alg":"ES256","kid":"ec-1"}"#, &claims(""), ec_sign(&ec));
        let ed_token = mint(r#"{"alg":"EdDSA","kid":"ed-1"}"#, &claims(""), |m| {
            ed.sign(m).as_ref().to_vec()
        });
        let hs = mint(r#"{"alg":"HS256","kid":"hmac-1"}"#, &claims(""), hs256());
        for token in [&rs, &es, &ed_token, &hs] {
            assert!(v.verify(token.as_bytes(), NOW).is_ok(), "{token}");
        }
        // The right signature under the wrong kid, and kid/alg mismatches.
        let swapped = mint(r#"{"alg":"ES256","kid":"ed-1"}"#, &claims(""), ec_sign(&ec));
        assert_eq!(
            v.verify(swapped.as_bytes(), NOW),
            Err(JwtError::KeyAlgorithmMismatch)
        );
        // The JWKS pins rsa-1 to RS256: a PS256 token under that kid is refused.
        let pss = mint(
            r#"{"alg":"PS256","kid":"rsa-1"}"#,
            &claims(""),
            rsa_sign(&signature::RSA_PSS_SHA256),
        );
        assert_eq!(
            v.verify(pss.as_bytes(), NOW),
            Err(JwtError::KeyAlgorithmMismatch)
        );
        // HS256 under the RSA kid, signed with the RSA key's JWK `n` as secret.
        let confused = mint(r#"{"alg":"HS256","kid":"rsa-1"}"#, &claims(""), hs256());
        assert_eq!(
            v.verify(confused.as_bytes(), NOW),
            Err(JwtError::KeyAlgorithmMismatch)
        );
        // Skipped keys are unknown; no kid and no default is unknown too.
        for kid in ["enc-1", "x-1", "p521", "nope", ""] {
            let token = mint(
                &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
                &claims(""),
                hs256(),
            );
            assert_eq!(
                v.verify(token.as_bytes(), NOW),
                Err(JwtError::UnknownKey),
                "{kid}"
            );
        }
        assert_eq!(
            v.verify(hs_token(&claims("")).as_bytes(), NOW),
            Err(JwtError::UnknownKey)
        );
    }

    #[test]
    fn kid_with_path_or_injection_tricks_is_just_an_unknown_key() {
        let (jwks, ..) = jwks_fixture();
        let v = Verifier::new(
            config(&[Alg::Hs256]),
            KeySet::from_jwks(jwks.as_bytes()).unwrap(),
        )
        .unwrap();
        for kid in [
            "../../etc/passwd",
            "/dev/null",
            "hmac-1' OR '1'='1",
            "hmac-1\u{0}",
            "HMAC-1",
            "|cat /etc/shadow",
        ] {
            let header = format!(
                r#"{{"alg":"HS256","kid":{}}}"#,
                serde_json::to_string(kid).unwrap()
            );
            let token = mint(&header, &claims(""), hs256());
            assert_eq!(
                v.verify(token.as_bytes(), NOW),
                Err(JwtError::UnknownKey),
                "{kid}"
            );
        }
        let token = mint(r#"{"alg":"HS256","kid":7}"#, &claims(""), hs256());
        assert_eq!(v.verify(token.as_bytes(), NOW), Err(JwtError::Malformed));
    }

    #[test]
    fn kid_is_ignored_when_no_key_has_one() {
        let v = hs_verifier();
        let token = mint(r#"{"alg":"HS256","kid":"whatever"}"#, &claims(""), hs256());
        assert!(v.verify(token.as_bytes(), NOW).is_ok());
    }

    #[test]
    fn jwks_errors_are_reported_without_key_material() {
        let dup = br#"{"keys":[{"kty":"oct","kid":"a","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"},{"kty":"oct","kid":"a","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}"#;
        assert!(KeySet::from_jwks(dup).unwrap_err().contains("kid \"a\""));
        let short = br#"{"keys":[{"kty":"oct","kid":"s","k":"c2hvcnQ"}]}"#;
        let err = KeySet::from_jwks(short).unwrap_err();
        assert!(
            err.contains("at least 32") && !err.contains("c2hvcnQ"),
            "{err}"
        );
        let bad_ec = br#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}"#;
        assert!(KeySet::from_jwks(bad_ec).is_err());
        let none = br#"{"keys":[{"kty":"oct","alg":"none","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}"#;
        assert!(KeySet::from_jwks(none).is_err());
        assert!(KeySet::from_jwks(b"{}").is_err());
        let only_enc = br#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#;
        assert!(KeySet::from_jwks(only_enc).unwrap().is_empty());
        assert!(Verifier::new(config(&[Alg::Rs256]), KeySet::new()).is_err());
    }

    #[test]
    fn ecdsa_all_zero_and_wrong_length_signatures_are_refused() {
        let pair = ec_pair(&signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let v = verifier_with(
            config(&[Alg::Es256]),
            Key::ec_point(KeyKind::EcP256, pair.public_key().as_ref()).unwrap(),
        );
        for sig in [
            vec![0u8; 64],
            vec![0u8; 63],
            vec![0u8; 65],
            vec![0xffu8; 64],
        ] {
            let token = mint(r#"{"alg":"ES256"}"#, &claims(""), |_| sig);
            assert_eq!(
                v.verify(token.as_bytes(), NOW),
                Err(JwtError::SignatureInvalid)
            );
        }
        // A DER (ASN.1) ECDSA signature is not the JOSE form.
        let der_pair = {
            let rng = SystemRandom::new();
            let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
            let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap()
        };
        let v = verifier_with(
            config(&[Alg::Es256]),
            Key::ec_point(KeyKind::EcP256, der_pair.public_key().as_ref()).unwrap(),
        );
        let token = mint(r#"{"alg":"ES256"}"#, &claims(""), ec_sign(&der_pair));
        assert_eq!(
            v.verify(token.as_bytes(), NOW),
            Err(JwtError::SignatureInvalid)
        );
    }

    #[test]
    fn truncated_signature_and_wrong_segment_counts_are_refused() {
        let v = rs_verifier();
        let token = mint(
            r#"{"alg":"RS256"}"#,
            &claims(""),
            rsa_sign(&signature::RSA_PKCS1_SHA256),
        );
        assert!(v.verify(token.as_bytes(), NOW).is_ok());
        // A signature one byte short, properly encoded, fails the check; a textual cut fails
        // either as bad base64 or as a bad signature.
        let short = mint(r#"{"alg":"RS256"}"#, &claims(""), |m| {
            let mut sig = rsa_sign(&signature::RSA_PKCS1_SHA256)(m);
            sig.pop();
            sig
        });
        assert_eq!(
            v.verify(short.as_bytes(), NOW),
            Err(JwtError::SignatureInvalid)
        );
        for cut in 1..=8 {
            let result = v.verify(&token.as_bytes()[..token.len() - cut], NOW);
            assert!(
                matches!(
                    result,
                    Err(JwtError::Malformed | JwtError::SignatureInvalid)
                ),
                "{cut}: {result:?}"
            );
        }
        let no_sig = &token[..=token.rfind('.').unwrap()];
        assert_eq!(
            v.verify(no_sig.as_bytes(), NOW),
            Err(JwtError::SignatureInvalid)
        );
        let extra = format!("{token}.AAAA");
        assert_eq!(v.verify(extra.as_bytes(), NOW), Err(JwtError::Malformed));
        let two = &token[..token.rfind('.').unwrap()];
        assert_eq!(v.verify(two.as_bytes(), NOW), Err(JwtError::Malformed));
        for junk in ["", ".", "..", "a.b.c", "...."] {
            assert!(v.verify(junk.as_bytes(), NOW).is_err(), "{junk}");
        }
        let huge = "a".repeat(DEFAULT_TOKEN_BYTES_MAX + 1);
        assert_eq!(v.verify(huge.as_bytes(), NOW), Err(JwtError::TokenTooLarge));
    }

    #[test]
    fn padding_and_non_base64url_characters_are_refused() {
        let v = hs_verifier();
        let token = hs_token(&claims(""));
        let parts: Vec<&str> = token.split('.').collect();
        let cases = [
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", parts[0].replace('-', "+"), parts[1], parts[2]) + "+",
            format!("{}.{} .{}", parts[0], parts[1], parts[2]),
            format!(
                "{}.{}.{}/",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() - 1]
            ),
        ];
        for case in &cases {
            let result = v.verify(case.as_bytes(), NOW);
            assert!(
                matches!(
                    result,
                    Err(JwtError::Malformed | JwtError::SignatureInvalid)
                ),
                "{case}: {result:?}"
            );
        }
        // Non-canonical trailing bits: "QR" decodes like "QQ" in a lax decoder.
        let mut out = [0u8; 4];
        assert_eq!(b64url_decode_into(b"QQ", &mut out), Some(1));
        assert_eq!(b64url_decode_into(b"QR", &mut out), None);
        assert_eq!(b64url_decode_into(b"QUI", &mut out), Some(2));
        assert_eq!(b64url_decode_into(b"QUJ", &mut out), None);
        assert_eq!(b64url_decode_into(b"Q", &mut out), None);
        assert_eq!(
            b64url_decode(b"aGVsbG8_-w").as_deref(),
            Some(&b"hello?\xfb"[..])
        );
    }

    #[test]
    fn typ_is_checked_only_when_configured() {
        let v = verifier_with(
            VerifierConfig {
                allowed_types: vec!["JWT".into(), "at+jwt".into()],
                ..config(&[Alg::Hs256])
            },
            Key::hmac_secret(SECRET).unwrap(),
        );
        let with = |typ: &str| mint(&format!(r#"{{"alg":"HS256"{typ}}}"#), &claims(""), hs256());
        assert!(v.verify(with(r#","typ":"jwt""#).as_bytes(), NOW).is_ok());
        assert!(v.verify(with(r#","typ":"AT+JWT""#).as_bytes(), NOW).is_ok());
        assert_eq!(
            v.verify(with(r#","typ":"logout+jwt""#).as_bytes(), NOW),
            Err(JwtError::TypeNotAllowed)
        );
        assert_eq!(
            v.verify(with("").as_bytes(), NOW),
            Err(JwtError::TypeNotAllowed)
        );
        assert!(hs_verifier()
            .verify(with(r#","typ":"anything""#).as_bytes(), NOW)
            .is_ok());
    }

    #[test]
    fn claims_map_to_identity_headers() {
        let v = verifier_with(
            VerifierConfig {
                claim_headers: vec![
                    ("sub".into(), "X-User-Id".into()),
                    ("tenant".into(), "X-Tenant".into()),
                    ("level".into(), "X-Level".into()),
                    ("admin".into(), "X-Admin".into()),
                    ("roles".into(), "X-Roles".into()),
                    ("profile".into(), "X-Profile".into()),
                    ("gone".into(), "X-Gone".into()),
                    ("nothing".into(), "X-Nothing".into()),
                    ("sub".into(), "X-Subject".into()),
                ],
                ..config(&[Alg::Hs256])
            },
            Key::hmac_secret(SECRET).unwrap(),
        );
        let token = hs_token(&claims(
            r#","tenant":"caf\u00e9 \"t\"","level":1.5e3,"admin":false,"roles":["a"],"profile":{"x":1},"nothing":null"#,
        ));
        let verified = v.verify(token.as_bytes(), NOW).unwrap();
        let expected: Vec<(String, String)> = [
            ("X-User-Id", "alice"),
            ("X-Tenant", "café \"t\""),
            ("X-Level", "1.5e3"),
            ("X-Admin", "false"),
            ("X-Subject", "alice"),
        ]
        .iter()
        .map(|(h, v)| (h.to_string(), v.to_string()))
        .collect();
        assert_eq!(headers(&v, &verified), expected);
        assert_eq!(verified.header_value(1), Some("café \"t\""));
        assert_eq!(verified.header_value(4), None);
        assert_eq!(v.claim_headers().nth(2), Some(("level", "X-Level")));

        // A claim value that would split or smuggle a header fails the token.
        for evil in [r#"alice\r\nX-Admin: true"#, r#"a\u0000b"#, r#"tab\there"#] {
            let token = hs_token(&format!(r#"{{"sub":"{evil}","exp":{}}}"#, NOW + 60));
            assert_eq!(
                v.verify(token.as_bytes(), NOW),
                Err(JwtError::InvalidClaims),
                "{evil}"
            );
        }
        let long = "x".repeat(CLAIM_VALUE_BYTES_MAX + 1);
        let token = hs_token(&format!(r#"{{"sub":"{long}","exp":{}}}"#, NOW + 60));
        assert_eq!(
            v.verify(token.as_bytes(), NOW),
            Err(JwtError::InvalidClaims)
        );
    }

    #[test]
    fn verifier_config_is_validated() {
        let key = || Key::hmac_secret(SECRET).unwrap();
        let build = |config: VerifierConfig| {
            let mut keys = KeySet::new();
            keys.set_default(key()).unwrap();
            Verifier::new(config, keys)
        };
        assert!(build(config(&[])).is_err());
        assert!(build(config(&[Alg::Rs256])).is_err());
        let bad_header = VerifierConfig {
            claim_headers: vec![("sub".into(), "X User".into())],
            ..config(&[Alg::Hs256])
        };
        assert!(build(bad_header).is_err());
        let too_many = VerifierConfig {
            required_claims: (0..=CLAIMS_MAX).map(|i| format!("c{i}")).collect(),
            ..config(&[Alg::Hs256])
        };
        assert!(build(too_many).is_err());
        let mut keys = KeySet::new();
        keys.set_default(key()).unwrap();
        assert!(keys.set_default(key()).is_err());
        keys.insert("a", key()).unwrap();
        assert!(keys.insert("a", key()).is_err());
    }

    #[test]
    fn pem_and_der_reader_accepts_public_keys_only() {
        let private = Key::from_pem(RSA_PRIVATE_PKCS8_PEM).unwrap_err();
        assert!(private.contains("no PUBLIC KEY"), "{private}");
        assert!(!private.contains("MII"));
        assert!(
            Key::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(Key::from_pem("-----BEGIN PUBLIC KEY-----\nMIIB").is_err());
        assert!(
            Key::from_pem("-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----")
                .is_err()
        );
        let trailing = RSA_PUBLIC_SPKI_PEM.replace("IDAQAB", "IDAQABAA");
        assert!(Key::from_pem(&trailing).is_err());
        // A weak RSA key (1024 bits) and a bad exponent are refused at build time.
        let n1024 = [0xc3u8; 128];
        assert!(Key::rsa_components(&n1024, &[1, 0, 1]).is_err());
        let n2048 = [0xc3u8; 256];
        assert!(Key::rsa_components(&n2048, &[1, 0, 1]).is_ok());
        assert!(Key::rsa_components(&n2048, &[1]).is_err());
        assert!(Key::rsa_components(&n2048, &[1, 0, 0]).is_err());
        // EC: compressed points and wrong curves are refused.
        let pair = ec_pair(&signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let mut compressed = pair.public_key().as_ref()[..33].to_vec();
        compressed[0] = 0x02;
        assert!(Key::ec_point(KeyKind::EcP256, &compressed).is_err());
        assert!(Key::ec_point(KeyKind::EcP384, pair.public_key().as_ref()).is_err());
        assert!(Key::ec_point(KeyKind::Rsa, pair.public_key().as_ref()).is_err());
        // Truncated and overlong DER.
        let der = spki_p256(pair.public_key().as_ref());
        assert!(Key::from_spki_der(&der[..der.len() - 1]).is_err());
        let mut long = der.clone();
        long.push(0);
        assert!(Key::from_spki_der(&long).is_err());
        assert!(Key::from_spki_der(&[]).is_err());
        assert!(Key::from_spki_der(&[0x30, 0x80, 0, 0]).is_err());
        // Pins must match the key type.
        assert!(Key::hmac_secret(SECRET)
            .unwrap()
            .with_alg(Alg::Rs256)
            .is_err());
    }

    #[test]
    fn verifiers_are_shareable_and_caches_stay_on_their_worker() {
        fn shared<T: Send + Sync>() {}
        fn movable<T: Send>() {}
        shared::<Verifier>();
        shared::<Verified>();
        movable::<TokenCache>();
    }

    #[test]
    fn key_debug_never_prints_material() {
        let text = format!("{:?}", Key::hmac_secret(SECRET).unwrap());
        assert_eq!(text, "Key { kind: Hmac, alg: None }");
        let text = format!("{:?}", rs_verifier());
        assert!(
            !text.contains("0123456789") && text.contains("Rsa"),
            "{text}"
        );
    }

    #[test]
    fn bearer_tokens_are_extracted() {
        assert_eq!(
            bearer_token(b"Bearer abc.def.ghi"),
            Some(&b"abc.def.ghi"[..])
        );
        assert_eq!(bearer_token(b"  bEaReR    abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER\tabc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
        assert_eq!(bearer_token(b"Bearer a b"), None);
        assert_eq!(bearer_token(b""), None);
    }

    #[test]
    fn cookies_are_extracted() {
        let header = b"theme=dark; session=abc.def.ghi;  quoted=\"q.r.s\" ;empty=; x=1";
        assert_eq!(cookie_value(header, "session"), Some(&b"abc.def.ghi"[..]));
        assert_eq!(cookie_value(header, "quoted"), Some(&b"q.r.s"[..]));
        assert_eq!(cookie_value(header, "theme"), Some(&b"dark"[..]));
        assert_eq!(cookie_value(header, "x"), Some(&b"1"[..]));
        assert_eq!(cookie_value(header, "empty"), None);
        assert_eq!(cookie_value(header, "Session"), None);
        assert_eq!(cookie_value(header, "sess"), None);
        assert_eq!(cookie_value(b"a=1; a=2", "a"), Some(&b"1"[..]));
        assert_eq!(cookie_value(b"", "a"), None);
        assert_eq!(cookie_value(b"novalue", "novalue"), None);
        assert_eq!(cookie_count(b"a=1; a=2", "a"), 2);
        assert_eq!(cookie_count(b"a=; b=1;a =2", "a"), 2);
        assert_eq!(cookie_count(b"ab=1; a; ba=2", "a"), 0);
    }

    #[test]
    fn cache_hits_without_verifying_again() {
        let v = rs_verifier();
        let mut cache = TokenCache::new(64, DEFAULT_CACHE_MAX_AGE_SECONDS);
        let token = mint(
            r#"{"alg":"RS256"}"#,
            &claims(""),
            rsa_sign(&signature::RSA_PKCS1_SHA256),
        );
        assert!(cache.get(&v, token.as_bytes(), NOW).is_none());
        let first = cache.verify(&v, token.as_bytes(), NOW).unwrap().clone();
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&v, token.as_bytes(), NOW + 1), Some(&first));
        assert_eq!(cache.verify(&v, token.as_bytes(), NOW + 2), Ok(&first));
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.take_lookups(),
            (2, 2),
            "get, verify: misses; get, verify: hits"
        );
        assert_eq!(cache.take_lookups(), (0, 0));
        // Prove a hit does no verification: an entry inserted by hand for a token that
        // would not verify is returned as is.
        let bogus = b"not.a.token";
        cache.insert(&v, bogus, first.clone(), NOW);
        assert_eq!(cache.verify(&v, bogus, NOW), Ok(&first));
        // A verifier with other checks never hits; one with the same keys and checks (the
        // same policy in the next snapshot) does, as it would accept the same tokens.
        let other = verifier_with(
            VerifierConfig {
                issuer: Some("https://other.test".to_string()),
                ..config(&[Alg::Rs256])
            },
            Key::from_pem(RSA_PUBLIC_SPKI_PEM).unwrap(),
        );
        assert!(cache.get(&other, token.as_bytes(), NOW).is_none());
        assert_eq!(
            cache.get(&rs_verifier(), token.as_bytes(), NOW),
            Some(&first)
        );
        assert_eq!(cache.verify(&other, bogus, NOW), Err(JwtError::Malformed));
        // Failures are not cached.
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_fingerprint_covers_the_keys_and_every_check() {
        let base = || VerifierConfig {
            issuer: Some("https://issuer.test".to_string()),
            audiences: vec!["api".to_string()],
            required_claims: vec!["sub".to_string()],
            ..config(&[Alg::Hs256])
        };
        let secret = || Key::hmac_secret(SECRET).unwrap();
        let fingerprint = |config: VerifierConfig, key: Key| {
            let v = verifier_with(config, key);
            (*v.fingerprint(), v.id())
        };
        let same = fingerprint(base(), secret());
        assert_eq!(same, fingerprint(base(), secret()), "same keys and checks");
        let changed = [
            fingerprint(
                base(),
                Key::hmac_secret(b"another-secret-of-at-least-32-bytes").unwrap(),
            ),
            fingerprint(base(), secret().with_alg(Alg::Hs256).unwrap()),
            fingerprint(
                VerifierConfig {
                    algorithms: vec![Alg::Hs256, Alg::Hs384],
                    ..base()
                },
                secret(),
            ),
            fingerprint(
                VerifierConfig {
                    issuer: None,
                    ..base()
                },
                secret(),
            ),
            fingerprint(
                VerifierConfig {
                    audiences: vec!["api2".to_string()],
                    ..base()
                },
                secret(),
            ),
            fingerprint(
                VerifierConfig {
                    required_claims: vec![],
                    ..base()
                },
                secret(),
            ),
            fingerprint(
                VerifierConfig {
                    claim_headers: vec![("sub".to_string(), "X-Subject".to_string())],
                    ..base()
                },
                secret(),
            ),
            fingerprint(
                VerifierConfig {
                    allowed_types: vec!["JWT".to_string()],
                    ..base()
                },
                secret(),
            ),
            fingerprint(
                VerifierConfig {
                    require_exp: false,
                    ..base()
                },
                secret(),
            ),
            fingerprint(
                VerifierConfig {
                    leeway_seconds: 0,
                    ..base()
                },
                secret(),
            ),
            fingerprint(
                VerifierConfig {
                    token_bytes_max: 1024,
                    ..base()
                },
                secret(),
            ),
        ];
        for (i, other) in changed.iter().enumerate() {
            assert_ne!(&same, other, "change {i} kept the fingerprint");
        }
        // The same key under a kid is another key set.
        let mut by_kid = KeySet::new();
        by_kid.insert("k1", secret()).unwrap();
        let v = Verifier::new(base(), by_kid).unwrap();
        assert_ne!(*v.fingerprint(), same.0);
        // Debug shows nothing derived from the secret.
        assert!(format!("{v:?}").contains("Sha256(..)"));
    }

    #[test]
    fn lasting_refusals_are_remembered_so_a_repeated_forgery_costs_one_signature_check() {
        let v = rs_verifier();
        let mut cache = TokenCache::new(64, 100);
        let rs256 = || rsa_sign(&signature::RSA_PKCS1_SHA256);
        let good = mint(r#"{"alg":"RS256"}"#, &claims(""), rs256());
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url(claims(r#","admin":true"#)),
            parts[2]
        );
        for at in NOW..NOW + 10 {
            assert_eq!(
                cache.verify(&v, forged.as_bytes(), at),
                Err(JwtError::SignatureInvalid)
            );
        }
        assert_eq!(cache.verifications, 1, "one signature check for ten copies");
        // A verifier with other checks has its own verdicts (an identical one shares them:
        // its cache id is its fingerprint's).
        let other = verifier_with(
            VerifierConfig {
                leeway_seconds: 7,
                ..config(&[Alg::Rs256])
            },
            Key::from_pem(RSA_PUBLIC_SPKI_PEM).unwrap(),
        );
        assert!(cache.verify(&other, forged.as_bytes(), NOW).is_err());
        assert_eq!(cache.verifications, 2);
        // Remembered at most max_age_seconds.
        assert!(cache.verify(&v, forged.as_bytes(), NOW + 100).is_err());
        assert_eq!(cache.verifications, 3);
        // The real token is unaffected by its forgery's verdict.
        assert!(cache.verify(&v, good.as_bytes(), NOW).is_ok());

        // A token that is not valid yet is refused each time it is checked, never from
        // memory: time cures it.
        let early = mint(
            r#"{"alg":"RS256"}"#,
            &format!(r#"{{"sub":"a","exp":{},"nbf":{}}}"#, NOW + 3600, NOW + 600),
            rs256(),
        );
        let before = cache.verifications;
        for _ in 0..2 {
            assert_eq!(
                cache.verify(&v, early.as_bytes(), NOW),
                Err(JwtError::NotYetValid)
            );
        }
        assert_eq!(cache.verifications, before + 2);
        assert!(cache.verify(&v, early.as_bytes(), NOW + 600).is_ok());
        // An expired one stays expired: remembered.
        let late = mint(
            r#"{"alg":"RS256"}"#,
            &format!(r#"{{"sub":"a","exp":{}}}"#, NOW - 3600),
            rs256(),
        );
        let before = cache.verifications;
        for _ in 0..3 {
            assert_eq!(
                cache.verify(&v, late.as_bytes(), NOW),
                Err(JwtError::Expired)
            );
        }
        assert_eq!(cache.verifications, before + 1);

        // Bounded: a stream of distinct forgeries fills at most the slots it has.
        for i in 0..300u32 {
            let mut sig = vec![0u8; 256];
            sig[..4].copy_from_slice(&i.to_le_bytes());
            let t = format!("{}.{}.{}", parts[0], parts[1], b64url(&sig));
            assert!(cache.verify(&v, t.as_bytes(), NOW).is_err());
        }
        assert_eq!(cache.failures.slots.len(), 64);
        cache.clear();
        assert!(cache.failures.slots.iter().all(|s| s.expires_unix == 0));
        // Off with the cache.
        assert!(TokenCache::new(0, 100).failures.is_off());
    }

    #[test]
    fn cache_entries_expire_at_exp_and_max_age() {
        let v = hs_verifier();
        let mut cache = TokenCache::new(16, 100);
        let short = hs_token(&format!(r#"{{"sub":"a","exp":{}}}"#, NOW + 10));
        cache.verify(&v, short.as_bytes(), NOW).unwrap();
        let until = NOW + 10 + DEFAULT_LEEWAY_SECONDS;
        assert!(cache.get(&v, short.as_bytes(), until - 1).is_some());
        assert!(cache.get(&v, short.as_bytes(), until).is_none());
        assert_eq!(cache.len(), 0);
        let long = hs_token(&claims(""));
        cache.verify(&v, long.as_bytes(), NOW).unwrap();
        assert!(cache.get(&v, long.as_bytes(), NOW + 99).is_some());
        assert!(cache.get(&v, long.as_bytes(), NOW + 100).is_none());
        // A token past its exp (within leeway when verified) is still served once but
        // never cached beyond its validity.
        let expiring = hs_token(&format!(r#"{{"exp":{}}}"#, NOW - 59));
        assert!(cache.verify(&v, expiring.as_bytes(), NOW).is_ok());
        assert!(cache.get(&v, expiring.as_bytes(), NOW + 1).is_none());
    }

    #[test]
    fn cache_is_bounded() {
        let v = verifier_with(
            VerifierConfig {
                require_exp: false,
                ..config(&[Alg::Hs256])
            },
            Key::hmac_secret(SECRET).unwrap(),
        );
        let mut cache = TokenCache::new(10, 1000);
        assert_eq!(cache.capacity(), 12);
        let tokens: Vec<String> = (0..200)
            .map(|i| hs_token(&format!(r#"{{"sub":"u{i}"}}"#)))
            .collect();
        for token in &tokens {
            let verified = cache.verify(&v, token.as_bytes(), NOW).unwrap();
            assert!(verified.header_value(0).is_some());
            assert!(cache.len() <= cache.capacity());
        }
        assert!(!cache.is_empty());
        let hits = tokens
            .iter()
            .filter(|t| cache.get(&v, t.as_bytes(), NOW).is_some())
            .count();
        assert!(hits <= cache.capacity() && hits > 0, "{hits}");
        // A hot (referenced) token survives a stream of one-off tokens in its set more
        // often than not; at minimum it is still servable after re-verification.
        let disabled = &mut TokenCache::new(0, 1000);
        assert_eq!(disabled.capacity(), 0);
        assert!(disabled.verify(&v, tokens[0].as_bytes(), NOW).is_ok());
        assert!(disabled.get(&v, tokens[0].as_bytes(), NOW).is_none());
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn cache_never_gives_a_false_hit_on_a_hash_collision() {
        let v = hs_verifier();
        let mut cache = TokenCache::new(8, 1000);
        let a = hs_token(&claims(r#","n":1"#));
        let b = hs_token(&claims(r#","n":2"#));
        let verified = v.verify(a.as_bytes(), NOW).unwrap();
        let forced = 0x1234_5678_9abc_def0;
        assert!(cache
            .insert_hashed(forced, v.id(), a.as_bytes(), verified, NOW)
            .is_ok());
        assert!(cache
            .get_hashed(forced, v.id(), b.as_bytes(), NOW)
            .is_none());
        assert!(cache
            .get_hashed(forced, v.id() + 1, a.as_bytes(), NOW)
            .is_none());
        assert!(cache
            .get_hashed(forced, v.id(), a.as_bytes(), NOW)
            .is_some());
        // A token that is a prefix of the cached one does not hit either.
        assert!(cache
            .get_hashed(forced, v.id(), &a.as_bytes()[..a.len() - 1], NOW)
            .is_none());
    }

    #[test]
    fn cache_clock_keeps_a_referenced_entry() {
        let v = verifier_with(
            VerifierConfig {
                require_exp: false,
                ..config(&[Alg::Hs256])
            },
            Key::hmac_secret(SECRET).unwrap(),
        );
        // One set of four ways: force every token into it.
        let mut cache = TokenCache::new(4, 1000);
        let tokens: Vec<String> = (0..12)
            .map(|i| hs_token(&format!(r#"{{"sub":"u{i}"}}"#)))
            .collect();
        let verified = |t: &str| v.verify(t.as_bytes(), NOW).unwrap();
        for (i, t) in tokens.iter().take(4).enumerate() {
            assert!(cache
                .insert_hashed(i as u64, v.id(), t.as_bytes(), verified(t), NOW)
                .is_ok());
        }
        assert_eq!(cache.len(), 4);
        for (i, t) in tokens.iter().enumerate().skip(4) {
            // Touch the hot token before every insertion.
            assert!(cache
                .get_hashed(0, v.id(), tokens[0].as_bytes(), NOW)
                .is_some());
            assert!(cache
                .insert_hashed(i as u64, v.id(), t.as_bytes(), verified(t), NOW)
                .is_ok());
            assert_eq!(cache.len(), 4);
        }
        assert!(cache
            .get_hashed(0, v.id(), tokens[0].as_bytes(), NOW)
            .is_some());
    }

    #[test]
    fn cache_hash_spreads_tokens() {
        let cache = TokenCache::new(1024, 1000);
        let mut sets = std::collections::HashSet::new();
        for i in 0..1000 {
            let token = format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1{i}In0.sig");
            sets.insert(cache.set_of(cache.hash(1, token.as_bytes())));
        }
        // 1000 tokens over 256 sets should touch nearly all of them.
        assert!(sets.len() > 240, "{}", sets.len());
        assert_ne!(cache.hash(1, b"x"), cache.hash(2, b"x"));
    }
}
