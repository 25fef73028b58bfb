//! A route's `[[route.aggregate]]` parts → [`AggregatePart`]s.
//!
//! Owns the rules that let the engine fan one request out to several upstreams without
//! checking anything under traffic: every part names an upstream by index, every `{name}` in a
//! part's target is resolved to a parameter of the route's pattern, every literal is bytes a
//! request target allows, keys are unique and plain enough to write into JSON unescaped, the
//! number of parts and each call's time are bounded, and the route carries nothing that only
//! makes sense when forwarding (prefix rewrites, `rewrite_path`, retries, a JSON response
//! filter) or a method other than GET and HEAD. Runs on the control side only.

use super::transform::{split_param_template, ParamTemplate};
use super::{fail, resolve_upstream};
use crate::defaults::{
    AGGREGATE_ERRORS_KEY, AGGREGATE_METHODS, AGGREGATE_PARTS_MAX, AGGREGATE_TIMEOUT_MS,
    AGGREGATE_TIMEOUT_MS_MAX,
};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::{AggregatePartConfig, RouteConfig};
use crate::{AggregatePart, ConfigError, PathPattern, TemplatePart, Upstream};

/// The route at `at`'s parts: empty for a route that forwards, otherwise 1..=
/// [`AGGREGATE_PARTS_MAX`] checked parts. `methods` are the route's, already upper-cased.
pub(super) fn check_aggregate(
    doc: &Document<'_>,
    at: &FieldPath,
    route: &RouteConfig,
    methods: &[String],
    path: &PathPattern,
    upstreams: &[Upstream],
) -> Result<Vec<AggregatePart>, ConfigError> {
    let table = at.key("aggregate");
    if route.aggregate.is_empty() {
        if doc.contains(&table) {
            return fail(
                doc,
                &table,
                Target::Value,
                "aggregate = [] has no parts".to_owned(),
                "an aggregate route calls at least one upstream: add [[route.aggregate]] with \
                 key, upstream and path, or remove aggregate = [] to forward to `upstream`",
            );
        }
        return Ok(Vec::new());
    }
    check_forwarding_keys(doc, at, route)?;
    check_methods(doc, &at.key("methods"), methods)?;
    if route.aggregate.len() > AGGREGATE_PARTS_MAX {
        return fail(
            doc,
            &table.index(AGGREGATE_PARTS_MAX),
            Target::Value,
            format!(
                "the route has {} aggregate parts, more than {AGGREGATE_PARTS_MAX}",
                route.aggregate.len()
            ),
            "each part is one more upstream call on every request; have an upstream serve \
             several parts in one answer, or split the route",
        );
    }
    let mut parts: Vec<AggregatePart> = Vec::with_capacity(route.aggregate.len());
    for (j, config) in route.aggregate.iter().enumerate() {
        let part = check_part(doc, &table.index(j), config, &parts, path, upstreams)?;
        parts.push(part);
    }
    Ok(parts)
}

/// Keys that shape how a request is forwarded mean nothing to a route that builds its own
/// calls; reported at whichever of the pair was written later, the one added to a working
/// route.
fn check_forwarding_keys(
    doc: &Document<'_>,
    at: &FieldPath,
    route: &RouteConfig,
) -> Result<(), ConfigError> {
    let paths = "an aggregate route builds its own calls: each part's path is the target sent, \
                 e.g. path = \"/users/{id}\" with the route's {id}";
    let written = [
        (route.strip_prefix, "strip_prefix", "strip_prefix", paths),
        (
            route.replace_prefix.is_some(),
            "replace_prefix",
            "replace_prefix",
            paths,
        ),
        (
            route.rewrite_path.is_some(),
            "rewrite_path",
            "rewrite_path",
            paths,
        ),
        (
            route.retry.is_some(),
            "retry",
            "[route.retry]",
            "an aggregate route builds its own calls and does not retry them; bound each call \
             with its timeout_ms, and mark a part required = false when the answer can do \
             without it",
        ),
        (
            route.json_filter.is_some(),
            "json_filter",
            "[route.json_filter]",
            "a JSON filter rewrites a forwarded response; an aggregate route builds its own \
             answer from its parts' bodies, which are not filtered",
        ),
    ];
    let position = |path: &FieldPath| doc.span_of(path, Target::Key).map_or(0, |span| span.start);
    let Some((key, shown, hint)) = written
        .iter()
        .filter(|(set, ..)| *set)
        .map(|&(_, key, shown, hint)| (key, shown, hint))
        .min_by_key(|(key, ..)| position(&at.key(key)))
    else {
        return Ok(());
    };
    let key_at = at.key(key);
    let aggregate_at = at.key("aggregate");
    let hint = format!("{hint}; remove {shown}");
    if position(&aggregate_at) > position(&key_at) {
        fail(
            doc,
            &aggregate_at,
            Target::Key,
            format!("aggregate parts on a route with {shown}"),
            &hint,
        )
    } else {
        fail(
            doc,
            &key_at,
            Target::Key,
            format!("{shown} is not allowed on an aggregate route"),
            &hint,
        )
    }
}

/// An aggregate route only reads, so it answers [`AGGREGATE_METHODS`]; no `methods` means
/// those.
fn check_methods(
    doc: &Document<'_>,
    at: &FieldPath,
    methods: &[String],
) -> Result<(), ConfigError> {
    let Some((j, method)) = methods
        .iter()
        .enumerate()
        .find(|(_, method)| !AGGREGATE_METHODS.contains(&method.as_str()))
    else {
        return Ok(());
    };
    fail(
        doc,
        &at.index(j),
        Target::Value,
        format!(
            "an aggregate route answers {} only, not {method}",
            AGGREGATE_METHODS.join(" and ")
        ),
        &format!(
            "its calls are reads without a body; write methods = [\"GET\", \"HEAD\"] or remove \
             `methods`, and send {method} through a route of its own"
        ),
    )
}

fn check_part(
    doc: &Document<'_>,
    at: &FieldPath,
    config: &AggregatePartConfig,
    earlier: &[AggregatePart],
    path: &PathPattern,
    upstreams: &[Upstream],
) -> Result<AggregatePart, ConfigError> {
    check_key(doc, &at.key("key"), &config.key, earlier)?;
    let upstream = resolve_upstream(doc, &at.key("upstream"), &config.upstream, upstreams)?;
    let target = parse_target(doc, &at.key("path"), &config.path, path)?;
    if !(1..=AGGREGATE_TIMEOUT_MS_MAX).contains(&config.timeout_ms) {
        return fail(
            doc,
            &at.key("timeout_ms"),
            Target::Value,
            format!(
                "timeout_ms = {} is outside 1..={AGGREGATE_TIMEOUT_MS_MAX}",
                config.timeout_ms
            ),
            &format!(
                "the time for this call, connect to last body byte, in milliseconds; the client \
                 waits for the slowest required part; the default is {AGGREGATE_TIMEOUT_MS}"
            ),
        );
    }
    Ok(AggregatePart {
        key: config.key.clone(),
        upstream,
        path: target,
        required: config.required,
        timeout_ms: config.timeout_ms,
    })
}

/// A part's `key`: the engine writes it into the merged JSON object as it is, so it needs no
/// escaping, and two parts (or a part and `errors`) never share one.
fn check_key(
    doc: &Document<'_>,
    at: &FieldPath,
    key: &str,
    earlier: &[AggregatePart],
) -> Result<(), ConfigError> {
    let bad = |message: String, hint: &str| fail(doc, at, Target::Value, message, hint);
    if key.is_empty() {
        return bad(
            "the aggregate key is empty".to_owned(),
            "write the JSON key this part's answer goes under, e.g. key = \"profile\"",
        );
    }
    if let Some(c) = key
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return bad(
            format!("aggregate key {key:?} contains {c:?}"),
            "keys use letters, digits, `_`, `.` and `-`, e.g. \"profile\" or \"recent-orders\"",
        );
    }
    if key == AGGREGATE_ERRORS_KEY {
        return bad(
            format!("aggregate key {key:?} is reserved"),
            &format!(
                "the merged answer lists the failed optional parts under \
                 \"{AGGREGATE_ERRORS_KEY}\"; pick another key"
            ),
        );
    }
    if let Some(first) = earlier.iter().position(|part| part.key == key) {
        return bad(
            format!("aggregate key `{key}` is already used by aggregate[{first}]"),
            "each part's answer needs its own key in the merged object",
        );
    }
    Ok(())
}

/// A part's `path` → parts: literals and `{name}` parameters of the route's pattern. The
/// result is sent as the request target of a GET (RFC 9112 §3.2): visible ASCII, with a query
/// if written, never a fragment.
fn parse_target(
    doc: &Document<'_>,
    at: &FieldPath,
    template: &str,
    path: &PathPattern,
) -> Result<Vec<TemplatePart>, ConfigError> {
    let bad = |message: String, hint: &str| fail(doc, at, Target::Value, message, hint);
    if !template.starts_with('/') {
        return bad(
            format!("aggregate path {template:?} does not start with `/`"),
            &format!("write \"/{template}\": the path (and query) sent to the part's upstream"),
        );
    }
    if let Some(c) = template
        .chars()
        .find(|&c| !c.is_ascii_graphic() || c == '#')
    {
        let hint = match c {
            '#' => "a fragment is never sent to a server",
            _ if c.is_whitespace() => "a request target has no whitespace; encode a space as %20",
            _ => "percent-encode the character, e.g. é as %C3%A9",
        };
        return bad(format!("aggregate path {template:?} contains {c:?}"), hint);
    }
    split_param_template(
        template,
        path,
        &ParamTemplate {
            field: "aggregate path",
            example: "/orders?user={id}",
            pattern: "the route's path",
        },
    )
    .or_else(|(message, hint)| bad(message, &hint))
}
