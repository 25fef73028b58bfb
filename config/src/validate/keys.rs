//! What a JWT key file must hold: a PEM public key whose type suits every listed algorithm,
//! or a JWKS with at least one public signature key that suits a listed algorithm.
//!
//! The engine parses the keys themselves when it compiles a snapshot; these checks read just
//! enough (the PEM label and the SubjectPublicKeyInfo algorithm, the JWK `kty`, `crv`, `use`,
//! `key_ops` and `alg` members) that `coregate check` refuses a file the gateway could never
//! verify a token with, located at its key. Never prints key material.

use std::path::Path;

use serde_json::Value;

use super::fail;
use crate::locate::{Document, FieldPath, Target};
use crate::ConfigError;

/// The public key types the engine verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::EcP256 => "EC P-256",
            KeyKind::EcP384 => "EC P-384",
            KeyKind::Ed25519 => "Ed25519",
        }
    }

    /// The JOSE algorithms that run with this key type (RFC 7518 §3.1, RFC 8037 §3.1).
    fn algorithms(self) -> &'static [&'static str] {
        match self {
            KeyKind::Rsa => &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
            KeyKind::EcP256 => &["ES256"],
            KeyKind::EcP384 => &["ES384"],
            KeyKind::Ed25519 => &["EdDSA"],
        }
    }

    fn suits(self, alg: &str) -> bool {
        self.algorithms().contains(&alg)
    }
}

/// DER of the OIDs that name a SubjectPublicKeyInfo's algorithm (RFC 3279 §2.3.1, RFC 5480
/// §2.1.1 and §2.1.1.1, RFC 8410 §3), tag and length included.
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const OID_EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// The algorithm identifier sits in the first bytes of a SubjectPublicKeyInfo (two SEQUENCE
/// headers, then the OIDs); looking no further keeps key bits from matching by chance.
const SPKI_HEAD_BYTES: usize = 32;

/// A public key in PEM: a `PUBLIC KEY` or `RSA PUBLIC KEY` block, no private key, of a type
/// that suits every listed algorithm (a single key cannot verify the others).
pub(super) fn check_pem(
    doc: &Document<'_>,
    at: &FieldPath,
    path: &Path,
    pem: &str,
    algorithms: &[String],
) -> Result<(), ConfigError> {
    let file = path.display();
    if !pem.contains("-----BEGIN") {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{file} is not PEM (no -----BEGIN line)"),
            "write the public key in PEM, e.g. from `openssl pkey -in private.pem -pubout`",
        );
    }
    if pem.contains("PRIVATE KEY-----") {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{file} holds a private key"),
            "the gateway only verifies, so give it the public key \
             (`openssl pkey -in private.pem -pubout -out public.pem`) and keep the private \
             key off this machine",
        );
    }
    let kind = match pem_block(pem, "PUBLIC KEY") {
        Some(body) => spki_kind(body),
        None => match pem_block(pem, "RSA PUBLIC KEY") {
            // PKCS#1 (RFC 8017 §A.1.1) holds nothing but an RSA key.
            Some(body) => base64_decode(body).map(|_| KeyKind::Rsa),
            None => {
                return fail(
                    doc,
                    at,
                    Target::Value,
                    format!("{file} holds no PUBLIC KEY or RSA PUBLIC KEY block"),
                    "for a certificate, extract its key with \
                     `openssl x509 -in cert.pem -pubkey -noout > public.pem`",
                )
            }
        },
    };
    let kind = match kind {
        Ok(kind) => kind,
        Err(problem) => {
            return fail(
                doc,
                at,
                Target::Value,
                format!("{file}: {problem}"),
                "the gateway verifies RSA (2048 to 8192 bits), EC P-256, EC P-384 and Ed25519 \
                 keys; write the key as `openssl pkey -pubout` prints it",
            )
        }
    };
    if let Some(alg) = algorithms.iter().find(|alg| !kind.suits(alg)) {
        return fail(
            doc,
            at,
            Target::Value,
            format!(
                "{file} holds an {} key, which cannot verify {alg}",
                kind.name()
            ),
            &format!(
                "list only what this key verifies: {}; for several key types use jwks_file",
                kind.algorithms().join(", ")
            ),
        );
    }
    Ok(())
}

/// A JWKS (RFC 7517 §5): an object whose `keys` array holds key objects with a `kty`, none of
/// them private (`d` is the private part, RFC 7518 §6.2.2.1 and §6.3.2.1), and at least one
/// signature key that suits one of the listed algorithms. Other algorithms may find their keys
/// after a rotation, so they are not required to have one now.
pub(super) fn check_jwks(
    doc: &Document<'_>,
    at: &FieldPath,
    path: &Path,
    json: &str,
    algorithms: &[String],
) -> Result<(), ConfigError> {
    let file = path.display();
    let shape_hint = "a JWKS is {\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"...\", \
                      \"y\": \"...\", \"kid\": \"...\"}]}, as served at the issuer's jwks_uri";
    let document: Value = match serde_json::from_str(json) {
        Ok(document) => document,
        Err(error) => {
            return fail(
                doc,
                at,
                Target::Value,
                format!("{file} is not JSON: {error}"),
                shape_hint,
            )
        }
    };
    let Some(keys) = document.get("keys").and_then(Value::as_array) else {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{file} is not a JWKS: no \"keys\" array"),
            shape_hint,
        );
    };
    if keys.is_empty() {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{file} has no keys"),
            "a verifier without keys refuses every token; add the issuer's signing keys",
        );
    }
    let mut found: Vec<String> = Vec::new();
    for (j, key) in keys.iter().enumerate() {
        let Some(kty) = key.get("kty").and_then(Value::as_str) else {
            return fail(
                doc,
                at,
                Target::Value,
                format!("{file}: keys[{j}] is not a JWK (no \"kty\" string)"),
                shape_hint,
            );
        };
        if key.get("d").is_some() {
            return fail(
                doc,
                at,
                Target::Value,
                format!("{file}: keys[{j}] is a private key (it has \"d\")"),
                "the gateway only verifies: publish the public keys alone and keep private \
                 keys off this machine",
            );
        }
        let pinned = key.get("alg").and_then(Value::as_str);
        if pinned.is_some_and(|alg| alg.eq_ignore_ascii_case("none")) {
            return fail(
                doc,
                at,
                Target::Value,
                format!("{file}: keys[{j}] has \"alg\": \"none\""),
                "`none` accepts unsigned tokens (RFC 8725 §3.1); remove the key or its alg",
            );
        }
        // What the engine skips (RFC 7517 §4.2, §4.3): keys for encryption only.
        let signs = key
            .get("use")
            .and_then(Value::as_str)
            .is_none_or(|u| u == "sig")
            && key
                .get("key_ops")
                .and_then(Value::as_array)
                .is_none_or(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        let crv = key.get("crv").and_then(Value::as_str);
        let kind = match (kty, crv) {
            ("RSA", _) => Some(KeyKind::Rsa),
            ("EC", Some("P-256")) => Some(KeyKind::EcP256),
            ("EC", Some("P-384")) => Some(KeyKind::EcP384),
            ("OKP", Some("Ed25519")) => Some(KeyKind::Ed25519),
            _ => None,
        };
        let Some(kind) = kind.filter(|_| signs) else {
            continue;
        };
        let suits = |alg: &String| kind.suits(alg) && pinned.is_none_or(|pin| pin == alg);
        if algorithms.iter().any(suits) {
            return Ok(());
        }
        found.push(match pinned {
            Some(pin) => format!("{} ({pin})", kind.name()),
            None => kind.name().to_owned(),
        });
    }
    let found = if found.is_empty() {
        "no usable signature key".to_owned()
    } else {
        found.join(", ")
    };
    fail(
        doc,
        at,
        Target::Value,
        format!(
            "no key in {file} can verify {} (it has {found})",
            algorithms.join(" or ")
        ),
        "list the algorithms the issuer signs with, or point jwks_file at its current key set",
    )
}

/// The base64 body of the first `-----BEGIN {label}-----` block, if there is one.
fn pem_block<'p>(pem: &'p str, label: &str) -> Option<&'p str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let len = pem[start..].find(&end)?;
    Some(&pem[start..start + len])
}

/// The key type named by a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), from its base64 text.
fn spki_kind(body: &str) -> Result<KeyKind, String> {
    let der = base64_decode(body)?;
    let head = &der[..der.len().min(SPKI_HEAD_BYTES)];
    let has = |oid: &[u8]| head.windows(oid.len()).any(|window| window == oid);
    if has(OID_RSA) {
        Ok(KeyKind::Rsa)
    } else if has(OID_EC) {
        if has(OID_P256) {
            Ok(KeyKind::EcP256)
        } else if has(OID_P384) {
            Ok(KeyKind::EcP384)
        } else {
            Err("an EC key on a curve other than P-256 and P-384".to_owned())
        }
    } else if has(OID_ED25519) {
        Ok(KeyKind::Ed25519)
    } else {
        Err("a public key of a type the gateway does not verify".to_owned())
    }
}

/// Standard base64 (RFC 4648 §4) as PEM writes it: whitespace ignored, `=` padding at the end.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    let mut padding = false;
    for byte in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            _ => return Err("the PEM body is not base64".to_owned()),
        };
        if padding {
            return Err("the PEM body has data after its `=` padding".to_owned());
        }
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    if out.is_empty() {
        return Err("the PEM block is empty".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_pem_bodies() {
        assert_eq!(base64_decode("TWFu"), Ok(b"Man".to_vec()));
        assert_eq!(base64_decode("TW\nE=\n"), Ok(b"Ma".to_vec()));
        assert_eq!(base64_decode("TQ=="), Ok(b"M".to_vec()));
        assert!(base64_decode("TW!u").is_err());
        assert!(base64_decode("TQ==TQ").is_err());
        assert!(base64_decode("\n").is_err());
    }

    #[test]
    fn spki_kinds_are_read_from_the_algorithm_identifier() {
        // `openssl pkey -pubout` output for each type (the Ed25519 key is RFC 8410 §10.1's).
        let p256 = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEASBJwnPOqr7p/qxlq+UjBgL52F76\
                    rnGAiPyqnfQFUUwTelTuzO+01CFxdZ2JDNii64+3c54WlEmkrMnAj4TsqA==";
        assert_eq!(spki_kind(p256), Ok(KeyKind::EcP256));
        let ed25519 = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
        assert_eq!(spki_kind(ed25519), Ok(KeyKind::Ed25519));
        // SEQUENCE { SEQUENCE { rsaEncryption, NULL } ... } (head only).
        let rsa_head = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A";
        assert_eq!(spki_kind(rsa_head), Ok(KeyKind::Rsa));
        // SEQUENCE { SEQUENCE { id-ecPublicKey, secp384r1 } ... } (head only).
        let p384_head = "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE";
        assert_eq!(spki_kind(p384_head), Ok(KeyKind::EcP384));
        // X25519 (RFC 8410 §3: 1.3.101.110) is not a signature key.
        assert!(spki_kind("MCowBQYDK2VuAyEA").is_err());
    }
}
