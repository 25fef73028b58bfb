//! Per-route policies, each a plain function over the parsed request head and the route's
//! compiled policy: authentication ([`jwt`], [`apikey`]), rate limiting ([`ratelimit`]) and
//! the per-endpoint circuit breaker ([`breaker`]). Policies keep their state per worker and
//! never lock.
//!
//! [`Policies`] is the part compiled into a snapshot (on the control side): verifiers with
//! their keys, API-key sets, and per route the header names that must never come from the
//! client.

pub mod apikey;
pub mod auth;
pub mod breaker;
pub mod jwt;
pub mod ratelimit;

use coregate_config::{AuthRef, Config, JwtKeys, KeySource, RateKey};

use crate::http::{fold_name, same_folded_name};
use crate::transform::{route_claim_headers, Transform};

/// The compiled authentication of one snapshot.
pub struct Policies {
    /// Same index as `Config::jwt`.
    pub jwt: Vec<jwt::Verifier>,
    /// Same index as `Config::api_keys`.
    pub api_keys: Vec<apikey::ApiKeys>,
    /// Per route: its header edits. The request side also drops every identity header the
    /// gateway sets (on every route, authenticated or not, so a client can never spoof one)
    /// and the route's API-key header.
    pub transforms: Vec<Transform>,
    /// Same index as `Config::rate_limits`: the rule and its key zone (a hash of the rule's
    /// name, so buckets survive a reload that reorders rules).
    pub rate_rules: Vec<(ratelimit::Rule, u32)>,
    /// The largest `keys_max` of any rule (0 without rate limits): what a worker's limiter
    /// is sized for.
    pub rate_keys_max: usize,
    /// Same index as `Config::rate_limits`: whether the rule's key is known before
    /// authentication (the client IP, or a header the gateway never sets from an identity),
    /// so the rule is taken first and an unauthenticated flood costs no signature checks.
    pub rate_before_auth: Vec<bool>,
    /// Every identity header, folded ([`fold_name`]).
    identity_headers: Box<[Box<str>]>,
}

impl Policies {
    /// Compiles the policies of a validated config. Fails on key material that does not
    /// parse (a PEM that is not a public key, a JWKS without a usable key).
    pub fn compile(config: &Config) -> Result<Policies, String> {
        let jwt = config
            .jwt
            .iter()
            .map(|auth| compile_verifier(auth).map_err(|e| format!("auth.jwt.{}: {e}", auth.name)))
            .collect::<Result<Vec<_>, _>>()?;
        let api_keys = config
            .api_keys
            .iter()
            .map(|auth| {
                apikey::ApiKeys::new(&auth.keys)
                    .map_err(|e| format!("auth.api_keys.{}: {e}", auth.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let transforms = config
            .routes
            .iter()
            .map(|route| {
                let mut drop = config.identity_headers.clone();
                if let Some(AuthRef::ApiKey(i)) = route.auth {
                    if let KeySource::Header(name) = &config.api_keys[i].source {
                        drop.push(name.clone());
                    }
                }
                Transform::new(route, drop, route_claim_headers(route, config))
            })
            .collect();
        let rate_rules = config
            .rate_limits
            .iter()
            .map(|limit| {
                let rule =
                    ratelimit::Rule::new(limit.rate_per_second, limit.burst).ok_or_else(|| {
                        format!("rate_limits.{}: rate or burst out of range", limit.name)
                    })?;
                Ok((rule, zone_of(&limit.name)))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let rate_keys_max = config
            .rate_limits
            .iter()
            .map(|l| l.keys_max)
            .max()
            .unwrap_or(0);
        let identity_headers: Box<[Box<str>]> = config
            .identity_headers
            .iter()
            .map(|h| fold_name(h))
            .collect();
        let rate_before_auth = config
            .rate_limits
            .iter()
            .map(|limit| match &limit.key {
                RateKey::ClientIp => true,
                RateKey::Header(name) => !is_folded_in(&identity_headers, name),
                RateKey::Consumer | RateKey::Claim(_) => false,
            })
            .collect();
        Ok(Policies {
            jwt,
            api_keys,
            transforms,
            rate_rules,
            rate_keys_max,
            rate_before_auth,
            identity_headers,
        })
    }

    /// Whether the gateway sets header `name` from an identity (any spelling a CGI-style
    /// upstream merges with it).
    pub fn is_identity_header(&self, name: &str) -> bool {
        is_folded_in(&self.identity_headers, name)
    }
}

fn is_folded_in(folded: &[Box<str>], name: &str) -> bool {
    folded
        .iter()
        .any(|f| same_folded_name(name.as_bytes(), f.as_bytes()))
}

/// FNV-1a 32 of a rule's name.
fn zone_of(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn compile_verifier(auth: &coregate_config::JwtAuth) -> Result<jwt::Verifier, String> {
    let algorithms = auth
        .algorithms
        .iter()
        .map(|name| jwt::Alg::from_name(name).ok_or_else(|| format!("unknown algorithm {name}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut keys = jwt::KeySet::new();
    match &auth.keys {
        JwtKeys::Secret(secret) => keys.set_default(jwt::Key::hmac_secret(secret)?)?,
        JwtKeys::PublicKeyPem { path, pem } => keys.set_default(
            jwt::Key::from_pem(pem).map_err(|e| format!("{}: {e}", path.display()))?,
        )?,
        JwtKeys::Jwks { path, json } => {
            keys.add_jwks(json.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let config = jwt::VerifierConfig {
        algorithms,
        issuer: auth.issuer.clone(),
        audiences: auth.audiences.clone(),
        required_claims: auth.required_claims.clone(),
        require_exp: auth.require_exp,
        leeway_seconds: auth.leeway_seconds,
        claim_headers: auth.claims_to_headers.clone(),
        ..jwt::VerifierConfig::default()
    };
    jwt::Verifier::new(config, keys)
}
