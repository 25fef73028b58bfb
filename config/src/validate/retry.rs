//! `[route.retry]` → [`Retry`] and a route's `timeout_ms`: attempts and budget inside the
//! bounds the engine's retry loop is built for, retried statuses that are server errors, each
//! once, retries only where the upstream has another endpoint to go to, and a route timeout
//! that neither fires at once nor waits for hours. Runs on the control side only.

use super::fail;
use crate::defaults::{
    RETRY_ATTEMPTS, RETRY_ATTEMPTS_MAX, RETRY_BUDGET_PERCENT, RETRY_BUDGET_PERCENT_MAX,
    ROUTE_TIMEOUT_MS_MAX,
};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::RetryConfig;
use crate::{ConfigError, Retry, Upstream};

/// Validates the retry table at `at` (`route[N].retry`) of a route served by `upstream`.
pub(super) fn check_retry(
    doc: &Document<'_>,
    at: &FieldPath,
    config: &RetryConfig,
    upstream: &Upstream,
) -> Result<Retry, ConfigError> {
    let attempts = config.attempts;
    if !(1..=RETRY_ATTEMPTS_MAX).contains(&attempts) {
        return fail(
            doc,
            &at.key("attempts"),
            Target::Value,
            format!("attempts = {attempts} is outside 1..={RETRY_ATTEMPTS_MAX}"),
            &format!(
                "attempts counts the tries after the first, each on another endpoint; the \
                 default is {RETRY_ATTEMPTS}; remove [route.retry] for no retries"
            ),
        );
    }
    let statuses_at = at.key("on_statuses");
    for (j, &status) in config.on_statuses.iter().enumerate() {
        if !(500..=599).contains(&status) {
            return fail(
                doc,
                &statuses_at.index(j),
                Target::Value,
                format!("retry status {status} is not a server error (5xx)"),
                "only 500..=599 say the endpoint failed; another endpoint would give a 4xx \
                 the same answer",
            );
        }
        if let Some(first) = config.on_statuses[..j].iter().position(|&s| s == status) {
            return fail(
                doc,
                &statuses_at.index(j),
                Target::Value,
                format!("retry status {status} is listed twice (also on_statuses[{first}])"),
                "list each status once",
            );
        }
    }
    let budget = config.budget_percent;
    if !(1..=RETRY_BUDGET_PERCENT_MAX).contains(&budget) {
        return fail(
            doc,
            &at.key("budget_percent"),
            Target::Value,
            format!("budget_percent = {budget} is outside 1..={RETRY_BUDGET_PERCENT_MAX}"),
            &format!(
                "retries may add at most this percentage of the route's requests as extra \
                 load; the default is {RETRY_BUDGET_PERCENT}; remove [route.retry] for no \
                 retries"
            ),
        );
    }
    // The engine retries only on an endpoint not tried yet, so with one endpoint a retry
    // could never be sent: the table would promise something that never happens.
    if let [only] = upstream.endpoints.as_slice() {
        return fail(
            doc,
            at,
            Target::Value,
            format!(
                "upstream `{}` has a single endpoint ({}), so no retry could ever be sent",
                upstream.name, only.address
            ),
            "retries go to another endpoint; the upstream has only one: add endpoints to it, \
             or remove [route.retry]",
        );
    }
    Ok(Retry {
        attempts,
        on_statuses: config.on_statuses.clone(),
        budget_percent: budget,
    })
}

/// Validates a route's `timeout_ms` at `at` (`route[N].timeout_ms`).
pub(super) fn check_route_timeout(
    doc: &Document<'_>,
    at: &FieldPath,
    timeout_ms: Option<u64>,
) -> Result<Option<u64>, ConfigError> {
    match timeout_ms {
        Some(ms) if !(1..=ROUTE_TIMEOUT_MS_MAX).contains(&ms) => fail(
            doc,
            at,
            Target::Value,
            format!("timeout_ms = {ms} is outside 1..={ROUTE_TIMEOUT_MS_MAX}"),
            "the longest a request may take from its head to the upstream's response head, \
             retries included, in milliseconds (an hour at most); remove the key for no route \
             bound",
        ),
        _ => Ok(timeout_ms),
    }
}
