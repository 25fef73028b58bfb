//! `[route.json_filter]` → [`JsonFilter`]: one mode (`keep` or `remove`), 1..=
//! [`JSON_FILTER_PATHS_MAX`] dotted paths that the engine can match byte for byte against a
//! body's keys, none listed twice or lying inside another, and a bounded body size. That an
//! aggregate route has no filter is checked with its parts (`validate/aggregate.rs`). Runs on
//! the control side only.

use super::fail;
use crate::defaults::{
    JSON_FILTER_BODY_BYTES_MAX, JSON_FILTER_BODY_BYTES_MAX_CEILING, JSON_FILTER_PATHS_MAX,
};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::JsonFilterConfig;
use crate::{ConfigError, JsonFilter, JsonFilterMode};

/// Validates the filter table at `at` (`route[N].json_filter`); `None` (no table) is no filter.
pub(super) fn check_json_filter(
    doc: &Document<'_>,
    at: &FieldPath,
    config: Option<&JsonFilterConfig>,
) -> Result<Option<JsonFilter>, ConfigError> {
    let Some(config) = config else {
        return Ok(None);
    };
    let (mode, key, paths) = match (&config.remove, &config.keep) {
        (Some(remove), None) => (JsonFilterMode::Remove, "remove", remove),
        (None, Some(keep)) => (JsonFilterMode::Keep, "keep", keep),
        (None, None) => {
            return fail(
                doc,
                at,
                Target::Value,
                "[route.json_filter] has neither remove nor keep".to_owned(),
                "add remove = [\"internal\"] to take fields out, or keep = [\"id\", \"name\"] \
                 to send only those; remove the table to pass responses unchanged",
            )
        }
        (Some(_), Some(_)) => {
            // Report the key written later: the one added to a working filter.
            let position = |key: &str| {
                doc.span_of(&at.key(key), Target::Key)
                    .map_or(0, |span| span.start)
            };
            let later = if position("keep") > position("remove") {
                "keep"
            } else {
                "remove"
            };
            return fail(
                doc,
                &at.key(later),
                Target::Key,
                "remove and keep are both set".to_owned(),
                "keep one: remove lists the fields taken out of a response, keep the only \
                 fields sent on",
            );
        }
    };
    let list_at = at.key(key);
    if paths.is_empty() {
        return fail(
            doc,
            &list_at,
            Target::Value,
            format!("{key} = [] lists no paths"),
            &format!(
                "list at least one dotted path, e.g. {key} = [\"user.email\"]; remove \
                 [route.json_filter] to pass responses unchanged"
            ),
        );
    }
    if paths.len() > JSON_FILTER_PATHS_MAX {
        return fail(
            doc,
            &list_at.index(JSON_FILTER_PATHS_MAX),
            Target::Value,
            format!(
                "{key} lists {} paths, more than {JSON_FILTER_PATHS_MAX}",
                paths.len()
            ),
            "each path is matched against the keys of every filtered body; list a whole \
             object by its path rather than each of its fields",
        );
    }
    let mut split: Vec<Vec<String>> = Vec::with_capacity(paths.len());
    for (j, path) in paths.iter().enumerate() {
        let path_at = list_at.index(j);
        let segments = parse_path(path)
            .or_else(|(message, hint)| fail(doc, &path_at, Target::Value, message, &hint))?;
        check_overlap(doc, &path_at, key, mode, &segments, &split)?;
        split.push(segments);
    }
    let body_bytes_max = config.body_bytes_max;
    if !(1..=JSON_FILTER_BODY_BYTES_MAX_CEILING).contains(&body_bytes_max) {
        return fail(
            doc,
            &at.key("body_bytes_max"),
            Target::Value,
            format!(
                "body_bytes_max = {body_bytes_max} is outside \
                 1..={JSON_FILTER_BODY_BYTES_MAX_CEILING} (16 MiB)"
            ),
            &format!(
                "the largest response body filtered, in bytes; a larger one passes unchanged; \
                 the default is {JSON_FILTER_BODY_BYTES_MAX} (1 MiB)"
            ),
        );
    }
    Ok(Some(JsonFilter {
        mode,
        paths: split,
        body_bytes_max,
    }))
}

/// A dotted path → its segments. Errors are `(message, hint)`.
///
/// The engine compares each segment with a body's keys as raw bytes, without undoing JSON
/// escapes (RFC 8259 §7), so a segment is printable ASCII without `"` or `\`: a key holding
/// those, a control character or non-ASCII text may arrive escaped and could never match.
fn parse_path(path: &str) -> Result<Vec<String>, (String, String)> {
    let example = "write the keys joined by single dots, e.g. \"user.address.city\"";
    if path.is_empty() {
        return Err(("the path is empty".to_owned(), example.to_owned()));
    }
    if let Some(c) = path
        .chars()
        .find(|&c| !c.is_ascii_graphic() || c == '"' || c == '\\')
    {
        let hint = if c.is_whitespace() {
            "a path has no whitespace; a key with a space cannot be filtered".to_owned()
        } else if c.is_ascii() {
            "keys are compared byte for byte, without undoing JSON escapes, so a key with `\"`, \
             `\\` or a control character cannot be matched"
                .to_owned()
        } else {
            "paths are printable ASCII: keys are compared byte for byte, and a body may write \
             other characters as \\u escapes"
                .to_owned()
        };
        return Err((format!("path {path:?} contains {c:?}"), hint));
    }
    if path.split('.').any(str::is_empty) {
        return Err((
            format!("path {path:?} has an empty segment (a leading, trailing or doubled `.`)"),
            example.to_owned(),
        ));
    }
    Ok(path.split('.').map(str::to_owned).collect())
}

/// A path listed twice, or one inside another (`user` and `user.ssn`), says the same thing
/// twice at best and contradicts itself at worst; reported at the later of the two.
fn check_overlap(
    doc: &Document<'_>,
    at: &FieldPath,
    key: &str,
    mode: JsonFilterMode,
    segments: &[String],
    earlier: &[Vec<String>],
) -> Result<(), ConfigError> {
    let shown = segments.join(".");
    for (i, other) in earlier.iter().enumerate() {
        let other_shown = other.join(".");
        if other.as_slice() == segments {
            return fail(
                doc,
                at,
                Target::Value,
                format!("path `{shown}` is listed twice (also {key}[{i}])"),
                "list each path once",
            );
        }
        let (message, outer, inner) = if segments.starts_with(other) {
            (
                format!("path `{shown}` lies inside `{other_shown}` ({key}[{i}])"),
                &other_shown,
                &shown,
            )
        } else if other.starts_with(segments) {
            (
                format!("path `{shown}` contains `{other_shown}` ({key}[{i}])"),
                &shown,
                &other_shown,
            )
        } else {
            continue;
        };
        let hint = match mode {
            JsonFilterMode::Remove => format!(
                "removing `{outer}` removes `{inner}` with it: list `{outer}` alone, or \
                 `{inner}` alone to keep the rest of `{outer}`"
            ),
            JsonFilterMode::Keep => format!(
                "keeping `{outer}` keeps `{inner}` with it: list `{outer}` alone, or `{inner}` \
                 alone to keep only that part of `{outer}`"
            ),
        };
        return fail(doc, at, Target::Value, message, &hint);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_path;

    #[test]
    fn paths_split_at_dots() {
        assert_eq!(parse_path("id"), Ok(vec!["id".to_owned()]));
        assert_eq!(
            parse_path("user.address.city"),
            Ok(vec![
                "user".to_owned(),
                "address".to_owned(),
                "city".to_owned()
            ])
        );
        // Any printable ASCII but `.`, `"` and `\` is part of a segment.
        assert_eq!(
            parse_path("@type.$ref-2_x"),
            Ok(vec!["@type".to_owned(), "$ref-2_x".to_owned()])
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in [
            "", ".a", "a.", "a..b", ".", "a b", "a\tb", "a\"b", "a\\b", "a\u{1}b", "é",
        ] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
    }
}
