//! JSON response filtering: a route's responses keep only, or lose, listed fields (dotted
//! paths; a path crossing an array applies to each element). Bodies up to the route's bound
//! are read whole, filtered and re-framed; larger ones, and bodies that are not JSON, pass
//! unchanged and are counted (`coregate_json_filter_skipped_total`).

use coregate_config::{JsonFilter, JsonFilterMode};
use serde_json::{Map, Value};

/// The filtered body, or None when `body` is not JSON.
pub fn apply(filter: &JsonFilter, body: &[u8]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    match filter.mode {
        JsonFilterMode::Remove => {
            for path in &filter.paths {
                remove(&mut value, path);
            }
        }
        JsonFilterMode::Keep => {
            let paths: Vec<&[String]> = filter.paths.iter().map(Vec::as_slice).collect();
            value = keep(&value, &paths);
        }
    }
    serde_json::to_vec(&value).ok()
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match value {
        Value::Object(map) if rest.is_empty() => {
            map.remove(first);
        }
        Value::Object(map) => {
            if let Some(inner) = map.get_mut(first) {
                remove(inner, rest);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| remove(item, path)),
        _ => {}
    }
}

/// `value` with only the fields named by `paths` (each relative to `value`).
fn keep(value: &Value, paths: &[&[String]]) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|item| keep(item, paths)).collect()),
        Value::Object(map) => {
            let mut kept = Map::new();
            for (key, inner) in map {
                let tails: Vec<&[String]> = paths
                    .iter()
                    .filter_map(|p| p.split_first())
                    .filter(|(first, _)| *first == key)
                    .map(|(_, rest)| rest)
                    .collect();
                if tails.is_empty() {
                    continue;
                }
                if tails.iter().any(|rest| rest.is_empty()) {
                    kept.insert(key.clone(), inner.clone());
                } else {
                    kept.insert(key.clone(), keep(inner, &tails));
                }
            }
            Value::Object(kept)
        }
        // A path that goes below a scalar keeps nothing of it.
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(mode: JsonFilterMode, paths: &[&str]) -> JsonFilter {
        JsonFilter {
            mode,
            paths: paths
                .iter()
                .map(|p| p.split('.').map(str::to_owned).collect())
                .collect(),
            body_bytes_max: 1 << 20,
        }
    }

    const BODY: &[u8] = br#"{"id":1,"user":{"name":"a","ssn":"x"},"items":[{"sku":"k1","cost":3},{"sku":"k2","cost":4}],"internal":true}"#;

    #[test]
    fn remove_drops_fields_also_inside_arrays() {
        let out = apply(
            &filter(
                JsonFilterMode::Remove,
                &["internal", "user.ssn", "items.cost"],
            ),
            BODY,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":1,"user":{"name":"a"},"items":[{"sku":"k1"},{"sku":"k2"}]})
        );
    }

    #[test]
    fn keep_keeps_only_the_listed_fields() {
        let out = apply(
            &filter(JsonFilterMode::Keep, &["id", "items.sku", "user.name"]),
            BODY,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":1,"user":{"name":"a"},"items":[{"sku":"k1"},{"sku":"k2"}]})
        );
    }

    /// A number the filter does not touch keeps its value. serde_json's default float parser
    /// is not correctly rounded, so `0.17801246309558322749` came back as the neighbouring
    /// double `0.17801246309558325` (found by the `json_filter` fuzz target); the workspace
    /// enables serde_json's `float_roundtrip`. std's parser is correctly rounded.
    #[test]
    fn untouched_numbers_keep_their_value() {
        let number = "0.17801246309558322749";
        let body = format!(r#"{{"f":{number},"x":1}}"#);
        let out = apply(&filter(JsonFilterMode::Remove, &["x"]), body.as_bytes()).unwrap();
        let out = String::from_utf8(out).unwrap();
        let written = out
            .strip_prefix(r#"{"f":"#)
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap();
        assert_eq!(
            written.parse::<f64>().unwrap(),
            number.parse::<f64>().unwrap(),
            "{out}"
        );
    }

    #[test]
    fn not_json_is_left_alone() {
        assert!(apply(&filter(JsonFilterMode::Remove, &["a"]), b"<html>").is_none());
    }
}
