//! JSON response filter ([`json_filter::apply`]) on arbitrary bodies and paths.
//!
//! Input: the first line is the filter, `k` (keep) or `r` (remove) then comma-separated
//! dotted paths (`r user.ssn,items.cost`); the rest is the response body.
//!
//! Properties, for every input:
//! - never panics (however deep the body nests);
//! - filters exactly the JSON bodies: `Some` if and only if the body is JSON, and what it
//!   returns is JSON;
//! - idempotent: filtering the output again changes nothing;
//! - remove: no listed path is left in the output (inside arrays too), and only listed
//!   fields go: removing paths the body does not have returns the body's value unchanged;
//! - keep: every field left in the output lies on a listed path; a listed field present in
//!   the body is present in the output with the same value.
#![cfg_attr(fuzzing, no_main)]

use coregate_config::{JsonFilter, JsonFilterMode};
use coregate_engine::json_filter;
use serde_json::Value;

/// What `[route.json_filter]` allows (`config::defaults::JSON_FILTER_PATHS_MAX`).
const PATHS_MAX: usize = 16;

pub fn check(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (spec, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let filter = parse_spec(spec);

    let input: Option<Value> = serde_json::from_slice(body).ok();
    let out = json_filter::apply(&filter, body);
    assert_eq!(
        out.is_some(),
        input.is_some(),
        "filtered a non-JSON body or refused JSON"
    );
    let (Some(input), Some(out)) = (input, out) else {
        return;
    };
    let output: Value = serde_json::from_slice(&out).expect("output is JSON");
    let again = json_filter::apply(&filter, &out).expect("output filters");
    assert_eq!(
        serde_json::from_slice::<Value>(&again).unwrap(),
        output,
        "not idempotent"
    );

    match filter.mode {
        JsonFilterMode::Remove => {
            for path in &filter.paths {
                assert!(!reaches(&output, path), "{path:?} left in the output");
            }
            if filter.paths.iter().all(|p| !reaches(&input, p)) {
                assert_eq!(output, input, "changed a body without the removed paths");
            }
        }
        JsonFilterMode::Keep => {
            assert!(
                only_listed(&output, &filter.paths, 0),
                "kept an unlisted field"
            );
            for path in &filter.paths {
                if let Some(want) = lookup(&input, path) {
                    assert_eq!(lookup(&output, path), Some(want), "lost kept {path:?}");
                }
            }
        }
    }
}

fn parse_spec(spec: &[u8]) -> JsonFilter {
    let mode = match spec.first() {
        Some(b'k') => JsonFilterMode::Keep,
        _ => JsonFilterMode::Remove,
    };
    let text = String::from_utf8_lossy(spec.get(1..).unwrap_or_default());
    let paths: Vec<Vec<String>> = text
        .trim()
        .split(',')
        .map(|p| p.split('.').map(str::to_owned).collect::<Vec<_>>())
        .filter(|p| !p.is_empty() && p.iter().all(|s| !s.is_empty()))
        .take(PATHS_MAX)
        .collect();
    JsonFilter {
        mode,
        paths,
        body_bytes_max: 1 << 20,
    }
}

/// Whether `path` names something in `value` (an array applies the path to each element).
fn reaches(value: &Value, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    match value {
        Value::Object(map) => map.get(first).is_some_and(|inner| reaches(inner, rest)),
        Value::Array(items) => items.iter().any(|item| reaches(item, path)),
        _ => false,
    }
}

/// Whether every object member in `value` lies on a prefix of some path, or below a path's
/// end (`depth` segments of each path are already matched).
fn only_listed(value: &Value, paths: &[Vec<String>], depth: usize) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|item| only_listed(item, paths, depth)),
        Value::Object(map) => map.iter().all(|(key, inner)| {
            let tails: Vec<Vec<String>> = paths
                .iter()
                .filter(|p| p.get(depth) == Some(key))
                .cloned()
                .collect();
            if tails.is_empty() {
                return false;
            }
            tails.iter().any(|p| p.len() == depth + 1) || only_listed(inner, &tails, depth + 1)
        }),
        _ => true,
    }
}

/// The value at `path` through objects only.
fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object().and_then(|m| m.get(key)))
}

coregate_fuzz::fuzz_target!(check);
