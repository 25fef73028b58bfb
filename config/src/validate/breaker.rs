//! `[upstreams.NAME.breaker]` → [`BreakerSettings`]: at least one trigger on, every count,
//! window and cool-down inside the bounds the engine's breaker is built for, and failure
//! statuses that are server errors, each once. Runs on the control side only.

use super::fail;
use crate::defaults::{
    BREAKER_CONSECUTIVE_FAILURES, BREAKER_CONSECUTIVE_FAILURES_MAX, BREAKER_COOLDOWN_MAX_MS,
    BREAKER_COOLDOWN_MAX_MS_CEILING, BREAKER_COOLDOWN_MS, BREAKER_COOLDOWN_MS_MAX,
    BREAKER_COOLDOWN_MULTIPLIER, BREAKER_COOLDOWN_MULTIPLIER_MAX, BREAKER_HALF_OPEN_PROBES,
    BREAKER_HALF_OPEN_PROBES_MAX, BREAKER_MINIMUM_REQUESTS, BREAKER_MINIMUM_REQUESTS_MAX,
    BREAKER_WINDOW_MS, BREAKER_WINDOW_MS_CEILING, BREAKER_WINDOW_MS_FLOOR,
};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::BreakerConfig;
use crate::{BreakerSettings, ConfigError};

/// Validates the breaker table at `at` (`upstreams.NAME.breaker`).
pub(super) fn check_breaker(
    doc: &Document<'_>,
    at: &FieldPath,
    config: &BreakerConfig,
) -> Result<BreakerSettings, ConfigError> {
    let consecutive = config.consecutive_failures;
    if consecutive > BREAKER_CONSECUTIVE_FAILURES_MAX {
        return fail(
            doc,
            &at.key("consecutive_failures"),
            Target::Value,
            format!("consecutive_failures = {consecutive} is more than {BREAKER_CONSECUTIVE_FAILURES_MAX}"),
            &format!(
                "a breaker that waits that long never protects anything; 0 turns this trigger \
                 off; the default is {BREAKER_CONSECUTIVE_FAILURES}"
            ),
        );
    }
    let ratio = config.failure_ratio;
    // TOML has `nan`, which no comparison accepts, and `inf`.
    if !(ratio == 0.0 || (ratio > 0.0 && ratio <= 1.0)) {
        return fail(
            doc,
            &at.key("failure_ratio"),
            Target::Value,
            format!("failure_ratio = {ratio} is neither 0 nor in (0, 1]"),
            "write the share of failed requests that opens the breaker, e.g. 0.5 for half; 0 \
             turns this trigger off",
        );
    }
    if consecutive == 0 && ratio == 0.0 {
        return fail(
            doc,
            &at.key("failure_ratio"),
            Target::Value,
            "consecutive_failures = 0 and failure_ratio = 0 turn off both triggers, so the \
             breaker could never open"
                .to_owned(),
            "turn one on, e.g. consecutive_failures = 5 or failure_ratio = 0.5; to have no \
             breaker, remove the [upstreams.NAME.breaker] table",
        );
    }
    let window = config.window_ms;
    if !(BREAKER_WINDOW_MS_FLOOR..=BREAKER_WINDOW_MS_CEILING).contains(&window) {
        return fail(
            doc,
            &at.key("window_ms"),
            Target::Value,
            format!(
                "window_ms = {window} is outside \
                 {BREAKER_WINDOW_MS_FLOOR}..={BREAKER_WINDOW_MS_CEILING}"
            ),
            &format!(
                "the failure ratio is counted over this many milliseconds, in 10 buckets of a \
                 tenth each; the default is {BREAKER_WINDOW_MS}"
            ),
        );
    }
    let minimum = config.minimum_requests;
    if !(1..=BREAKER_MINIMUM_REQUESTS_MAX).contains(&minimum) {
        return fail(
            doc,
            &at.key("minimum_requests"),
            Target::Value,
            format!("minimum_requests = {minimum} is outside 1..={BREAKER_MINIMUM_REQUESTS_MAX}"),
            &format!(
                "the ratio only counts once the window holds this many outcomes, so a single \
                 failure cannot open the breaker; the default is {BREAKER_MINIMUM_REQUESTS}"
            ),
        );
    }
    let cooldown = config.cooldown_ms;
    if !(1..=BREAKER_COOLDOWN_MS_MAX).contains(&cooldown) {
        return fail(
            doc,
            &at.key("cooldown_ms"),
            Target::Value,
            format!("cooldown_ms = {cooldown} is outside 1..={BREAKER_COOLDOWN_MS_MAX}"),
            &format!(
                "how long an open breaker refuses before probing, in milliseconds; the \
                 default is {BREAKER_COOLDOWN_MS}"
            ),
        );
    }
    let multiplier = config.cooldown_multiplier;
    if !(1.0..=BREAKER_COOLDOWN_MULTIPLIER_MAX).contains(&multiplier) {
        return fail(
            doc,
            &at.key("cooldown_multiplier"),
            Target::Value,
            format!(
                "cooldown_multiplier = {multiplier} is outside \
                 1..={BREAKER_COOLDOWN_MULTIPLIER_MAX}"
            ),
            &format!(
                "the cool-down grows by this factor on each repeated trip; 1 keeps it \
                 constant; the default is {BREAKER_COOLDOWN_MULTIPLIER}"
            ),
        );
    }
    let cooldown_max = config.cooldown_max_ms;
    if cooldown_max < cooldown {
        // Point at whichever of the two the operator wrote; the other is a default.
        let max_at = at.key("cooldown_max_ms");
        if doc.contains(&max_at) {
            return fail(
                doc,
                &max_at,
                Target::Value,
                format!("cooldown_max_ms = {cooldown_max} is less than cooldown_ms = {cooldown}"),
                "cooldown_max_ms caps a growing cool-down, so it is at least cooldown_ms",
            );
        }
        return fail(
            doc,
            &at.key("cooldown_ms"),
            Target::Value,
            format!(
                "cooldown_ms = {cooldown} is more than cooldown_max_ms = {cooldown_max} (its \
                 default)"
            ),
            &format!(
                "raise cooldown_max_ms too (it caps a growing cool-down), or keep cooldown_ms \
                 at most {BREAKER_COOLDOWN_MAX_MS}"
            ),
        );
    }
    if cooldown_max > BREAKER_COOLDOWN_MAX_MS_CEILING {
        return fail(
            doc,
            &at.key("cooldown_max_ms"),
            Target::Value,
            format!(
                "cooldown_max_ms = {cooldown_max} is more than \
                 {BREAKER_COOLDOWN_MAX_MS_CEILING} (a day)"
            ),
            &format!(
                "an endpoint shut out that long is better removed from the group; the default \
                 is {BREAKER_COOLDOWN_MAX_MS}"
            ),
        );
    }
    let probes = config.half_open_probes;
    if !(1..=BREAKER_HALF_OPEN_PROBES_MAX).contains(&probes) {
        return fail(
            doc,
            &at.key("half_open_probes"),
            Target::Value,
            format!("half_open_probes = {probes} is outside 1..={BREAKER_HALF_OPEN_PROBES_MAX}"),
            &format!(
                "this many requests test a recovering endpoint before it takes full traffic; \
                 the default is {BREAKER_HALF_OPEN_PROBES}"
            ),
        );
    }
    let statuses_at = at.key("failure_statuses");
    for (j, &status) in config.failure_statuses.iter().enumerate() {
        if !(500..=599).contains(&status) {
            return fail(
                doc,
                &statuses_at.index(j),
                Target::Value,
                format!("failure status {status} is not a server error (5xx)"),
                "only 500..=599 can count as the endpoint failing; a 4xx is the client's fault",
            );
        }
        if let Some(first) = config.failure_statuses[..j]
            .iter()
            .position(|&s| s == status)
        {
            return fail(
                doc,
                &statuses_at.index(j),
                Target::Value,
                format!("failure status {status} is listed twice (also failure_statuses[{first}])"),
                "list each status once",
            );
        }
    }
    Ok(BreakerSettings {
        consecutive_failures: consecutive,
        // -0.0 is written as 0 too; the model holds the plain zero.
        failure_ratio: if ratio == 0.0 { 0.0 } else { ratio },
        window_ms: window,
        minimum_requests: minimum,
        cooldown_ms: cooldown,
        cooldown_multiplier: multiplier,
        cooldown_max_ms: cooldown_max,
        half_open_probes: probes,
        failure_statuses: config.failure_statuses.clone(),
    })
}
