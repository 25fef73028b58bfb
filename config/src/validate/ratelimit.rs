//! `[rate_limits.NAME]` → [`RateLimit`]: a finite positive rate, a burst of at least one
//! token (the rate rounded up when not written), a key the engine can extract and a bounded
//! key table. Runs on the control side only.

use super::{check_table_name, fail, is_token};
use crate::defaults::{RATE_LIMIT_KEYS_MAX, RATE_LIMIT_KEYS_MAX_CEILING, RATE_PER_SECOND_MAX};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::RateLimitConfig;
use crate::{ConfigError, RateKey, RateLimit};

/// Validates every `[rate_limits.NAME]`, in name order.
pub(super) fn check_rate_limits<'c>(
    doc: &Document<'_>,
    limits: impl IntoIterator<Item = (&'c String, &'c RateLimitConfig)>,
) -> Result<Vec<RateLimit>, ConfigError> {
    let table = FieldPath::root().key("rate_limits");
    limits
        .into_iter()
        .map(|(name, config)| check_rate_limit(doc, &table.key(name), name, config))
        .collect()
}

fn check_rate_limit(
    doc: &Document<'_>,
    at: &FieldPath,
    name: &str,
    config: &RateLimitConfig,
) -> Result<RateLimit, ConfigError> {
    check_table_name(doc, at, "rate limit", "[rate_limits.NAME]", name)?;
    let rate = config.rate_per_second;
    // TOML has `nan`, which no comparison catches.
    if rate.is_nan() || rate <= 0.0 {
        return fail(
            doc,
            &at.key("rate_per_second"),
            Target::Value,
            format!("rate_per_second = {rate} is not more than 0"),
            "write requests per second per key, e.g. 10 or 0.5 (one every two seconds); to \
             refuse a route's traffic, remove the route",
        );
    }
    if rate > RATE_PER_SECOND_MAX {
        return fail(
            doc,
            &at.key("rate_per_second"),
            Target::Value,
            format!("rate_per_second = {rate} is more than {RATE_PER_SECOND_MAX}"),
            "a limit that high limits nothing; remove rate_limit from the route instead",
        );
    }
    let burst = match config.burst {
        Some(0) => {
            return fail(
                doc,
                &at.key("burst"),
                Target::Value,
                "burst = 0 would refuse every request".to_owned(),
                "burst is how many requests may arrive at once, at least 1; remove it for the \
                 rate rounded up",
            )
        }
        Some(burst) => burst,
        // rate ≤ RATE_PER_SECOND_MAX, so the cast cannot truncate.
        None => (rate.ceil() as u32).max(1),
    };
    let key = parse_rate_key(doc, &at.key("key"), &config.key)?;
    if !(1..=RATE_LIMIT_KEYS_MAX_CEILING).contains(&config.keys_max) {
        return fail(
            doc,
            &at.key("keys_max"),
            Target::Value,
            format!(
                "keys_max = {} is outside 1..={RATE_LIMIT_KEYS_MAX_CEILING}",
                config.keys_max
            ),
            &format!(
                "each worker keeps a table of this many keys; the default is \
                 {RATE_LIMIT_KEYS_MAX}"
            ),
        );
    }
    Ok(RateLimit {
        name: name.to_owned(),
        rate_per_second: rate,
        burst,
        key,
        keys_max: config.keys_max,
    })
}

fn parse_rate_key(doc: &Document<'_>, at: &FieldPath, key: &str) -> Result<RateKey, ConfigError> {
    match key {
        "client_ip" => return Ok(RateKey::ClientIp),
        "consumer" => return Ok(RateKey::Consumer),
        _ => {}
    }
    if let Some(claim) = key.strip_prefix("claim:") {
        if !claim.is_empty() && !claim.chars().any(char::is_control) {
            return Ok(RateKey::Claim(claim.to_owned()));
        }
    }
    if let Some(header) = key.strip_prefix("header:") {
        if is_token(header) {
            return Ok(RateKey::Header(header.to_ascii_lowercase()));
        }
    }
    fail(
        doc,
        at,
        Target::Value,
        format!(
            "key {key:?} is not \"client_ip\", \"consumer\", \"claim:NAME\" or \"header:NAME\""
        ),
        "write e.g. \"client_ip\", \"consumer\", \"claim:tenant\" or \"header:x-tenant\"",
    )
}
