//! `[route.fallback]` → [`Fallback`]: a fixed response the engine can send as written — a
//! final status, a `Content-Type` that is one valid header value, and a bounded body that the
//! status allows — and stale answers per identity only where there is a verified identity to
//! key them by. Runs on the control side only.

use super::{fail, is_token};
use crate::defaults::{FALLBACK_BODY_BYTES_MAX, FALLBACK_CONTENT_TYPE};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::FallbackConfig;
use crate::{AuthRef, ConfigError, Fallback, JwtAuth, StaticResponse};

/// Validates the fallback table at `at` (`route[N].fallback`) of a route with `auth` (the
/// verifiers in `jwt`); `None` (no table) is the default: no stale answers, 503 JSON.
pub(super) fn check_fallback(
    doc: &Document<'_>,
    at: &FieldPath,
    config: Option<&FallbackConfig>,
    auth: Option<AuthRef>,
    jwt: &[JwtAuth],
) -> Result<Fallback, ConfigError> {
    let Some(config) = config else {
        return Ok(Fallback {
            stale: false,
            stale_per_identity: false,
            static_response: None,
        });
    };
    if config.stale_per_identity {
        check_stale_per_identity(doc, at, config, auth, jwt)?;
    }
    let Some(status) = config.status else {
        // Without a status there is no fixed response for these to shape.
        for (key, written) in [
            ("content_type", config.content_type.is_some()),
            ("body", config.body.is_some()),
        ] {
            if written {
                return fail(
                    doc,
                    &at.key(key),
                    Target::Key,
                    format!("{key} is only used with status"),
                    &format!(
                        "add status = 503 (or another 200..=599) for a fixed response, or \
                         remove {key}: without status the fallback is 503 with a JSON body"
                    ),
                );
            }
        }
        return Ok(Fallback {
            stale: config.stale,
            stale_per_identity: config.stale_per_identity,
            static_response: None,
        });
    };
    if !(200..=599).contains(&status) {
        return fail(
            doc,
            &at.key("status"),
            Target::Value,
            format!("status = {status} is outside 200..=599"),
            "a fallback is a final response: 503 (Service Unavailable) is usual, 200 serves \
             a placeholder",
        );
    }
    let content_type = match &config.content_type {
        None => FALLBACK_CONTENT_TYPE.to_owned(),
        Some(content_type) => {
            check_content_type(doc, &at.key("content_type"), content_type)?;
            content_type.clone()
        }
    };
    let body = config.body.clone().unwrap_or_default();
    if body.len() > FALLBACK_BODY_BYTES_MAX {
        return fail(
            doc,
            &at.key("body"),
            Target::Value,
            format!(
                "body is {} bytes, more than {FALLBACK_BODY_BYTES_MAX} (64 KiB)",
                body.len()
            ),
            "every worker keeps the body in memory for this route; keep a short message \
             and link to a page for more",
        );
    }
    // RFC 9110 §15.3.5, §15.3.6, §15.4.5: these responses end at the head.
    if !body.is_empty() && matches!(status, 204 | 205 | 304) {
        return fail(
            doc,
            &at.key("body"),
            Target::Value,
            format!("status {status} never carries a body"),
            "remove body, or pick a status that has one, e.g. 503",
        );
    }
    Ok(Fallback {
        stale: config.stale,
        stale_per_identity: config.stale_per_identity,
        static_response: Some(StaticResponse {
            status,
            content_type,
            body,
        }),
    })
}

/// `stale_per_identity = true` keys stale answers by the verified identity, so it needs
/// `stale`, a route `auth`, and for a JWT verifier a `sub` claim passed on in a header (the
/// identity the engine reads): without one, users would share answers.
fn check_stale_per_identity(
    doc: &Document<'_>,
    at: &FieldPath,
    config: &FallbackConfig,
    auth: Option<AuthRef>,
    jwt: &[JwtAuth],
) -> Result<(), ConfigError> {
    let at = at.key("stale_per_identity");
    if !config.stale {
        return fail(
            doc,
            &at,
            Target::Value,
            "stale_per_identity is only used with stale = true".to_owned(),
            "add stale = true, or remove stale_per_identity",
        );
    }
    match auth {
        None => fail(
            doc,
            &at,
            Target::Value,
            "stale_per_identity needs the route's auth, to key answers by identity".to_owned(),
            "add auth = \"NAME\" to the route, or remove stale_per_identity: a route without \
             auth keeps stale answers for requests without credentials only",
        ),
        Some(AuthRef::Jwt(i)) if !jwt[i].claims_to_headers.iter().any(|(c, _)| c == "sub") => fail(
            doc,
            &at,
            Target::Value,
            format!(
                "stale_per_identity keys by the JWT `sub`, which auth.jwt.{} does not pass \
                     on",
                jwt[i].name
            ),
            "add sub = \"X-User-Id\" to the verifier's claims_to_headers",
        ),
        Some(_) => Ok(()),
    }
}

/// A `Content-Type` value: one header field value (RFC 9110 §5.5: visible ASCII, spaces and
/// tabs inside, never CR, LF or NUL) that starts with a `type/subtype` media type (§8.3.1).
fn check_content_type(
    doc: &Document<'_>,
    at: &FieldPath,
    content_type: &str,
) -> Result<(), ConfigError> {
    let example = "write a media type, e.g. \"application/json\" or \"text/html; charset=utf-8\"";
    if let Some(c) = content_type
        .chars()
        .find(|&c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))
    {
        return fail(
            doc,
            at,
            Target::Value,
            format!("content_type {content_type:?} contains {c:?}, which a header value cannot"),
            &format!("{example}; a header value is visible ASCII on one line"),
        );
    }
    if content_type.starts_with([' ', '\t']) || content_type.ends_with([' ', '\t']) {
        return fail(
            doc,
            at,
            Target::Value,
            format!("content_type {content_type:?} starts or ends with whitespace"),
            "remove it: HTTP strips whitespace around header values (RFC 9110 §5.5)",
        );
    }
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_end();
    match media_type.split_once('/') {
        Some((kind, subtype)) if is_token(kind) && is_token(subtype) => Ok(()),
        _ => fail(
            doc,
            at,
            Target::Value,
            format!("content_type {content_type:?} is not a type/subtype media type"),
            example,
        ),
    }
}
