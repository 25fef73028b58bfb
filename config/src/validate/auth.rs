//! `[auth.jwt.NAME]` and `[auth.api_keys.NAME]` → [`JwtAuth`] and [`ApiKeyAuth`], and the
//! identity headers they set.
//!
//! Owns the rules that keep a verifier safe to compile: known, case-exact JOSE algorithm
//! names (never `none`, never HMAC mixed with public-key algorithms, RFC 8725 §2.1 and §3.1),
//! exactly one key source of the matching kind, HMAC secrets at least as long as the hash
//! (RFC 7518 §3.2), key files that hold what they claim to, and identity headers that cannot
//! disturb framing, forwarding or credentials. Reads the key files once per load, on the
//! control side; no error message ever contains a secret, a key or a key hash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{check_table_name, fail, is_token, keys, read_named_file};
use crate::defaults::{
    JWT_CACHE_ENTRIES, JWT_CACHE_ENTRIES_MAX, JWT_CLAIMS_MAX, JWT_HMAC_SECRET_BYTES_MIN,
    JWT_LEEWAY_SECONDS, JWT_LEEWAY_SECONDS_MAX, KEY_FILE_BYTES_MAX,
};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::{ApiKeysConfig, AuthConfig, JwtConfig};
use crate::{ApiKeyAuth, ConfigError, JwtAuth, JwtKeys, KeySource, TokenSource};

/// The JOSE `alg` names a verifier may list, as RFC 7518 §3.1 and RFC 8037 §3.1 spell them.
const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Headers that can never carry an identity, with the reason. Identity headers are removed
/// from every client request, so naming one of these would break framing (RFC 9112 §6),
/// hop-by-hop handling (RFC 9110 §7.6.1), the gateway's own forwarding headers, or every
/// client's credentials.
const RESERVED_HEADERS: [(&str, &str); 16] = [
    ("connection", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("keep-alive", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("proxy-connection", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("te", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("trailer", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("upgrade", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("transfer-encoding", "it frames the message (RFC 9112 §6.1)"),
    ("content-length", "it frames the message (RFC 9112 §6.2)"),
    (
        "host",
        "it names the target and selects the route (RFC 9110 §7.2)",
    ),
    ("expect", "the gateway answers it itself (RFC 9110 §10.1.1)"),
    ("x-forwarded-for", "the gateway sets it when forwarding"),
    ("x-forwarded-proto", "the gateway sets it when forwarding"),
    ("x-forwarded-host", "the gateway sets it when forwarding"),
    ("authorization", "it carries clients' credentials"),
    ("proxy-authorization", "it carries clients' credentials"),
    ("cookie", "it carries clients' credentials"),
];

/// The validated `[auth]` section.
pub(super) struct Auth {
    pub(super) jwt: Vec<JwtAuth>,
    pub(super) api_keys: Vec<ApiKeyAuth>,
    /// Lower-case, sorted, deduplicated.
    pub(super) identity_headers: Vec<String>,
}

/// An identity header and where it was written, for the checks that need every scheme.
struct IdentityHeader {
    lower: String,
    at: FieldPath,
}

/// Validates `[auth]`. Relative key-file paths are joined to `base_dir`.
pub(super) fn check_auth(
    doc: &Document<'_>,
    auth: &AuthConfig,
    base_dir: &Path,
) -> Result<Auth, ConfigError> {
    let table = FieldPath::root().key("auth");
    let mut identity = Vec::new();
    // Headers that carry credentials: an identity header of the same name would strip them.
    let mut credentials: Vec<(String, FieldPath)> = Vec::new();

    let mut jwt = Vec::with_capacity(auth.jwt.len());
    for (name, config) in &auth.jwt {
        let at = table.key("jwt").key(name);
        check_table_name(doc, &at, "auth", "[auth.jwt.NAME]", name)?;
        let verifier = check_jwt(doc, &at, name, config, base_dir, &mut identity)?;
        if let TokenSource::Header(header) = &verifier.token_source {
            credentials.push((header.clone(), at.key("token")));
        }
        jwt.push(verifier);
    }

    let mut api_keys = Vec::with_capacity(auth.api_keys.len());
    for (name, config) in &auth.api_keys {
        let at = table.key("api_keys").key(name);
        check_table_name(doc, &at, "auth", "[auth.api_keys.NAME]", name)?;
        if auth.jwt.contains_key(name) {
            return fail(
                doc,
                &at,
                Target::Key,
                format!(
                    "auth name `{name}` is used by both [auth.jwt.{name}] and \
                     [auth.api_keys.{name}]"
                ),
                "a route names its authentication with auth = \"NAME\", so names are unique \
                 across jwt and api_keys; rename one",
            );
        }
        let set = check_api_keys(doc, &at, name, config, &mut identity)?;
        if let KeySource::Header(header) = &set.source {
            credentials.push((header.clone(), at.key("from")));
        }
        api_keys.push(set);
    }

    for header in &identity {
        if let Some((_, source)) = credentials
            .iter()
            .find(|(c, _)| cgi_name(c) == cgi_name(&header.lower))
        {
            return fail(
                doc,
                &header.at,
                Target::Value,
                format!(
                    "identity header {} is also where {source} reads credentials",
                    header.lower
                ),
                "identity headers are removed from every client request, which would remove \
                 the credentials too; pick another header name",
            );
        }
    }
    let mut identity_headers: Vec<String> = identity.into_iter().map(|h| h.lower).collect();
    identity_headers.sort();
    identity_headers.dedup();
    Ok(Auth {
        jwt,
        api_keys,
        identity_headers,
    })
}

fn check_jwt(
    doc: &Document<'_>,
    at: &FieldPath,
    name: &str,
    config: &JwtConfig,
    base_dir: &Path,
    identity: &mut Vec<IdentityHeader>,
) -> Result<JwtAuth, ConfigError> {
    let algorithms = check_algorithms(doc, &at.key("algorithms"), &config.algorithms)?;
    let hmac = algorithms[0].starts_with("HS");
    let keys = check_jwt_keys(doc, at, config, &algorithms, hmac, base_dir)?;
    let issuer = match &config.issuer {
        Some(issuer) if issuer.is_empty() => {
            return fail(
                doc,
                &at.key("issuer"),
                Target::Value,
                "issuer is empty".to_owned(),
                "write the exact `iss` your tokens carry, e.g. \"https://issuer.example\", or \
                 remove the key to accept any issuer",
            )
        }
        issuer => issuer.clone(),
    };
    let audiences = check_names(
        doc,
        &at.key("audiences"),
        "audience",
        &config.audiences,
        usize::MAX,
    )?;
    let required_claims = check_names(
        doc,
        &at.key("required_claims"),
        "claim",
        &config.required_claims,
        JWT_CLAIMS_MAX,
    )?;
    if config.leeway_seconds > JWT_LEEWAY_SECONDS_MAX {
        return fail(
            doc,
            &at.key("leeway_seconds"),
            Target::Value,
            format!(
                "leeway_seconds = {} is more than {JWT_LEEWAY_SECONDS_MAX}",
                config.leeway_seconds
            ),
            &format!(
                "leeway absorbs clock skew between issuer and gateway; fix the clocks (NTP) \
                 rather than accept expired tokens; the default is {JWT_LEEWAY_SECONDS}"
            ),
        );
    }
    let token_source = parse_token_source(doc, &at.key("token"), &config.token)?;
    let claims_at = at.key("claims_to_headers");
    if config.claims_to_headers.len() > JWT_CLAIMS_MAX {
        return fail(
            doc,
            &claims_at,
            Target::Value,
            format!(
                "claims_to_headers has {} entries, more than {JWT_CLAIMS_MAX}",
                config.claims_to_headers.len()
            ),
            "pass upstream only the claims it needs",
        );
    }
    let mut claims_to_headers: Vec<(String, String)> = Vec::new();
    for (claim, header) in &config.claims_to_headers {
        let entry_at = claims_at.key(claim);
        if claim.is_empty() {
            return fail(
                doc,
                &entry_at,
                Target::Key,
                "the claim name is empty".to_owned(),
                "write claims_to_headers = { sub = \"X-User-Id\" }",
            );
        }
        let lower = check_identity_header(doc, &entry_at, header)?;
        if let Some((other, _)) = claims_to_headers
            .iter()
            .find(|(_, h)| h.eq_ignore_ascii_case(header))
        {
            return fail(
                doc,
                &entry_at,
                Target::Value,
                format!("claims {other} and {claim} both go to header {header}"),
                "give each claim its own header (names are case-insensitive)",
            );
        }
        identity.push(IdentityHeader {
            lower,
            at: entry_at,
        });
        claims_to_headers.push((claim.clone(), header.clone()));
    }
    if config.cache_entries > JWT_CACHE_ENTRIES_MAX {
        return fail(
            doc,
            &at.key("cache_entries"),
            Target::Value,
            format!(
                "cache_entries = {} is more than {JWT_CACHE_ENTRIES_MAX}",
                config.cache_entries
            ),
            &format!(
                "the cache is per worker; the default, {JWT_CACHE_ENTRIES}, holds the tokens of \
                 that many active clients; 0 turns it off"
            ),
        );
    }
    Ok(JwtAuth {
        name: name.to_owned(),
        algorithms,
        keys,
        issuer,
        audiences,
        required_claims,
        leeway_seconds: config.leeway_seconds,
        require_exp: config.require_exp,
        token_source,
        claims_to_headers,
        cache_entries: config.cache_entries,
    })
}

/// Known, case-exact, listed once, never `none`, and all HMAC or all public-key.
fn check_algorithms(
    doc: &Document<'_>,
    at: &FieldPath,
    written: &[String],
) -> Result<Vec<String>, ConfigError> {
    if written.is_empty() {
        return fail(
            doc,
            at,
            Target::Value,
            "algorithms is empty".to_owned(),
            "list the algorithms your issuer signs with, e.g. [\"RS256\"] or [\"HS256\"]",
        );
    }
    let mut algorithms: Vec<String> = Vec::with_capacity(written.len());
    for (j, alg) in written.iter().enumerate() {
        let alg_at = at.index(j);
        if alg.eq_ignore_ascii_case("none") {
            return fail(
                doc,
                &alg_at,
                Target::Value,
                format!("algorithm {alg:?} accepts unsigned tokens"),
                "with `none` anyone can forge a token (RFC 8725 §3.1), so it is never \
                 accepted; list the algorithm your issuer signs with, e.g. \"RS256\"",
            );
        }
        if !ALGORITHMS.contains(&alg.as_str()) {
            let hint = match ALGORITHMS
                .iter()
                .find(|known| known.eq_ignore_ascii_case(alg))
            {
                Some(known) => format!(
                    "algorithm names are case-sensitive (RFC 7515 §4.1.1): write \"{known}\""
                ),
                None => format!("known algorithms: {}", ALGORITHMS.join(", ")),
            };
            return fail(
                doc,
                &alg_at,
                Target::Value,
                format!("{alg:?} is not a JWS algorithm the gateway verifies"),
                &hint,
            );
        }
        if algorithms.contains(alg) {
            return fail(
                doc,
                &alg_at,
                Target::Value,
                format!("algorithm {alg} is listed twice"),
                "list each algorithm once",
            );
        }
        if let Some(first) = algorithms.first() {
            if first.starts_with("HS") != alg.starts_with("HS") {
                return fail(
                    doc,
                    &alg_at,
                    Target::Value,
                    format!("algorithms mix HMAC and public-key algorithms ({first} and {alg})"),
                    "a verifier has one kind of key: a shared secret for HS*, a public key or \
                     JWKS for the others; mixing them invites algorithm confusion (RFC 8725 \
                     §2.1), so define a second [auth.jwt.NAME] instead",
                );
            }
        }
        algorithms.push(alg.clone());
    }
    Ok(algorithms)
}

/// Exactly one of the four key sources, of the kind the algorithms need, read and checked.
fn check_jwt_keys(
    doc: &Document<'_>,
    at: &FieldPath,
    config: &JwtConfig,
    algorithms: &[String],
    hmac: bool,
    base_dir: &Path,
) -> Result<JwtKeys, ConfigError> {
    let sources = [
        ("secret", &config.secret),
        ("secret_file", &config.secret_file),
        ("public_key_file", &config.public_key_file),
        ("jwks_file", &config.jwks_file),
    ];
    let mut present = sources
        .iter()
        .filter_map(|(key, value)| value.as_deref().map(|value| (*key, value)));
    let Some((key, value)) = present.next() else {
        let hint = if hmac {
            "add secret = \"...\" (at least 32 bytes) or secret_file = \"PATH\""
        } else {
            "add public_key_file = \"PATH\" (PEM) or jwks_file = \"PATH\" (JWKS)"
        };
        return fail(
            doc,
            at,
            Target::Value,
            "no key: none of secret, secret_file, public_key_file, jwks_file is set".to_owned(),
            hint,
        );
    };
    if let Some((second, _)) = present.next() {
        return fail(
            doc,
            &at.key(second),
            Target::Key,
            format!("{key} and {second} are both set"),
            "keep exactly one of secret, secret_file, public_key_file and jwks_file",
        );
    }
    let key_at = at.key(key);
    let secret_key = key.starts_with("secret");
    if secret_key != hmac {
        let (message, hint) = if secret_key {
            (
                format!(
                    "{key} is an HMAC key, but algorithms lists {}",
                    algorithms[0]
                ),
                "use public_key_file or jwks_file for public-key algorithms, or list HS256, \
                 HS384 or HS512",
            )
        } else {
            (
                format!(
                    "{key} holds a public key, but algorithms lists {}",
                    algorithms[0]
                ),
                "HS* algorithms verify with a shared secret: use secret or secret_file, or \
                 list the public-key algorithm the issuer signs with, e.g. \"RS256\"",
            )
        };
        return fail(doc, &key_at, Target::Key, message, hint);
    }
    match key {
        "secret" => check_secret(doc, &key_at, key, value.as_bytes().to_vec(), algorithms),
        "secret_file" => {
            let (_, mut bytes) = read_key_file(doc, &key_at, base_dir, value)?;
            // A file written by `echo` or an editor ends in a line break that is not meant
            // as part of the secret.
            while bytes.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                bytes.pop();
            }
            check_secret(doc, &key_at, key, bytes, algorithms)
        }
        "public_key_file" => {
            let (path, bytes) = read_key_file(doc, &key_at, base_dir, value)?;
            let pem = key_file_text(doc, &key_at, &path, bytes)?;
            keys::check_pem(doc, &key_at, &path, &pem, algorithms)?;
            Ok(JwtKeys::PublicKeyPem { path, pem })
        }
        _ => {
            let (path, bytes) = read_key_file(doc, &key_at, base_dir, value)?;
            let json = key_file_text(doc, &key_at, &path, bytes)?;
            keys::check_jwks(doc, &key_at, &path, &json, algorithms)?;
            Ok(JwtKeys::Jwks { path, json })
        }
    }
}

/// RFC 7518 §3.2: an HMAC key at least as long as the hash output.
fn check_secret(
    doc: &Document<'_>,
    at: &FieldPath,
    key: &str,
    secret: Vec<u8>,
    algorithms: &[String],
) -> Result<JwtKeys, ConfigError> {
    let (needed, alg) = algorithms
        .iter()
        .map(|alg| match alg.as_str() {
            "HS384" => (48, alg.as_str()),
            "HS512" => (64, alg.as_str()),
            _ => (JWT_HMAC_SECRET_BYTES_MIN, alg.as_str()),
        })
        .max_by_key(|(needed, _)| *needed)
        .unwrap_or((JWT_HMAC_SECRET_BYTES_MIN, "HS256"));
    if secret.len() < needed {
        return fail(
            doc,
            at,
            Target::Value,
            format!(
                "the {key} is {} bytes; {alg} needs at least {needed}",
                secret.len()
            ),
            "RFC 7518 §3.2 requires an HMAC key at least as long as the hash; a short one can \
             be brute-forced from a single token; use e.g. the 64 characters of \
             `openssl rand -hex 32`",
        );
    }
    Ok(JwtKeys::Secret(secret))
}

/// Reads a key file (relative paths from `base_dir`), at most [`KEY_FILE_BYTES_MAX`] bytes.
fn read_key_file(
    doc: &Document<'_>,
    at: &FieldPath,
    base_dir: &Path,
    written: &str,
) -> Result<(PathBuf, Vec<u8>), ConfigError> {
    read_named_file(doc, at, base_dir, written, "key file", KEY_FILE_BYTES_MAX)
}

fn key_file_text(
    doc: &Document<'_>,
    at: &FieldPath,
    path: &Path,
    bytes: Vec<u8>,
) -> Result<String, ConfigError> {
    String::from_utf8(bytes).or_else(|_| {
        fail(
            doc,
            at,
            Target::Value,
            format!("{} is not text", path.display()),
            "give the key as text: PEM for public_key_file, JSON for jwks_file (DER is \
             converted with `openssl pkey -pubin -inform DER -in key.der -out key.pem`)",
        )
    })
}

/// Non-empty strings, each once, at most `max`.
fn check_names(
    doc: &Document<'_>,
    at: &FieldPath,
    what: &str,
    names: &[String],
    max: usize,
) -> Result<Vec<String>, ConfigError> {
    let field = at.last_key().unwrap_or(what);
    if names.len() > max {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{field} has {} entries, more than {max}", names.len()),
            "require only the claims the upstream relies on",
        );
    }
    for (j, name) in names.iter().enumerate() {
        if name.is_empty() {
            return fail(
                doc,
                &at.index(j),
                Target::Value,
                format!("{what} is empty"),
                &format!("remove the empty entry from {field}"),
            );
        }
        if names[..j].contains(name) {
            return fail(
                doc,
                &at.index(j),
                Target::Value,
                format!("{what} {name:?} is listed twice"),
                "list each once",
            );
        }
    }
    Ok(names.to_vec())
}

fn parse_token_source(
    doc: &Document<'_>,
    at: &FieldPath,
    token: &str,
) -> Result<TokenSource, ConfigError> {
    if token == "bearer" {
        return Ok(TokenSource::Bearer);
    }
    if let Some(name) = token.strip_prefix("header:") {
        if is_token(name) {
            let lower = name.to_ascii_lowercase();
            if lower == "authorization" {
                return fail(
                    doc,
                    at,
                    Target::Value,
                    format!("token = {token:?} would read the whole Authorization value"),
                    "for `Authorization: Bearer TOKEN` write token = \"bearer\"",
                );
            }
            return Ok(TokenSource::Header(lower));
        }
    }
    if let Some(name) = token.strip_prefix("cookie:") {
        // RFC 6265 §4.1.1: cookie-name is a token.
        if is_token(name) {
            return Ok(TokenSource::Cookie(name.to_owned()));
        }
    }
    fail(
        doc,
        at,
        Target::Value,
        format!("token {token:?} is not \"bearer\", \"header:NAME\" or \"cookie:NAME\""),
        "write \"bearer\" for Authorization: Bearer, or e.g. \"header:X-Token\" or \
         \"cookie:session\" (NAME a header or cookie name)",
    )
}

/// A header the gateway sets from an identity: a token (RFC 9110 §5.1) that is not reserved.
/// Returns it lower-case.
fn check_identity_header(
    doc: &Document<'_>,
    at: &FieldPath,
    name: &str,
) -> Result<String, ConfigError> {
    if !is_token(name) {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{name:?} is not a valid header name"),
            "header names use letters, digits and !#$%&'*+-.^_`|~, e.g. \"X-User-Id\"",
        );
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, reason)) = RESERVED_HEADERS
        .iter()
        .find(|(h, _)| *h == cgi_name(&lower))
    {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{name} cannot carry an identity: {reason}"),
            "identity headers are removed from every client request and set by the gateway; \
             use a header of your own, e.g. \"X-User-Id\"",
        );
    }
    Ok(lower)
}

/// A header name as CGI-style upstreams file it (lower case, every byte other than a
/// letter or digit as `-`): the engine drops client copies of identity headers in every such
/// spelling, so identity and credential headers are compared this way.
pub(super) fn cgi_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b.to_ascii_lowercase())
            } else {
                '-'
            }
        })
        .collect()
}

fn check_api_keys(
    doc: &Document<'_>,
    at: &FieldPath,
    name: &str,
    config: &ApiKeysConfig,
    identity: &mut Vec<IdentityHeader>,
) -> Result<ApiKeyAuth, ConfigError> {
    let keys_at = at.key("keys");
    if config.keys.is_empty() {
        return fail(
            doc,
            &keys_at,
            Target::Value,
            format!("api key set `{name}` has no keys"),
            "add keys = [{ consumer = \"acme\", sha256 = \"...\" }], the sha256 from \
             `printf %s KEY | sha256sum`",
        );
    }
    let mut keys: Vec<(String, String)> = Vec::with_capacity(config.keys.len());
    let mut by_hash: HashMap<String, usize> = HashMap::new();
    for (j, key) in config.keys.iter().enumerate() {
        let key_at = keys_at.index(j);
        let consumer = &key.consumer;
        if consumer.is_empty()
            || consumer.chars().any(|c| c.is_control())
            || consumer.starts_with([' ', '\t'])
            || consumer.ends_with([' ', '\t'])
        {
            return fail(
                doc,
                &key_at.key("consumer"),
                Target::Value,
                format!(
                    "consumer {consumer:?} is empty, has a control character or surrounding \
                     whitespace"
                ),
                "the consumer goes upstream as a header value: write a name such as \"acme\"",
            );
        }
        // Never echo the value: an operator who pasted the key itself here must not see it in
        // a log.
        let hash = &key.sha256;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return fail(
                doc,
                &key_at.key("sha256"),
                Target::Value,
                format!(
                    "sha256 is not 64 hex digits ({} characters)",
                    hash.chars().count()
                ),
                "write the SHA-256 of the key, not the key: `printf %s KEY | sha256sum`",
            );
        }
        let hash = hash.to_ascii_lowercase();
        if let Some(first) = by_hash.insert(hash.clone(), j) {
            return fail(
                doc,
                &key_at.key("sha256"),
                Target::Value,
                format!("keys[{j}] has the same sha256 as keys[{first}]"),
                "each key belongs to one consumer; list it once",
            );
        }
        keys.push((consumer.clone(), hash));
    }
    let source = parse_key_source(doc, &at.key("from"), &config.from)?;
    let header_at = at.key("consumer_header");
    let lower = check_identity_header(doc, &header_at, &config.consumer_header)?;
    identity.push(IdentityHeader {
        lower,
        at: header_at,
    });
    Ok(ApiKeyAuth {
        name: name.to_owned(),
        keys,
        source,
        consumer_header: config.consumer_header.clone(),
    })
}

fn parse_key_source(
    doc: &Document<'_>,
    at: &FieldPath,
    from: &str,
) -> Result<KeySource, ConfigError> {
    if let Some(name) = from.strip_prefix("header:") {
        if is_token(name) {
            return Ok(KeySource::Header(name.to_ascii_lowercase()));
        }
    }
    if let Some(name) = from.strip_prefix("query:") {
        // Unreserved characters only (RFC 3986 §2.3), so the name needs no encoding and
        // matches the target byte for byte.
        let unreserved =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if !name.is_empty() && name.bytes().all(unreserved) {
            return Ok(KeySource::Query(name.to_owned()));
        }
    }
    fail(
        doc,
        at,
        Target::Value,
        format!("from {from:?} is neither \"header:NAME\" nor \"query:NAME\""),
        "write e.g. \"header:x-api-key\" or \"query:api_key\" (a query name uses letters, \
         digits, `-`, `.`, `_` and `~`)",
    )
}
