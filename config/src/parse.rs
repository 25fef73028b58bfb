//! TOML text → [`ConfigFile`], with syntax and schema errors turned into located
//! [`ConfigError`]s: line and column from the error's span, the field path from the spanned
//! tree, and a hint (valid keys for an unknown key, the expected form for a wrong type).
//!
//! Checks shape only; values are checked by [`crate::validate`].

use serde::Deserialize;
use toml::de::{DeTable, Deserializer};

use crate::locate::{Document, FieldPath};
use crate::schema::ConfigFile;
use crate::ConfigError;

/// Parses `text` into the spanned document (kept for locating later errors) and the schema.
pub(crate) fn parse<'a>(
    text: &'a str,
    display_name: &'a str,
) -> Result<(Document<'a>, ConfigFile), ConfigError> {
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => return Err(syntax_error(text, display_name, &error)),
    };
    let file = ConfigFile::deserialize(Deserializer::from(root.clone()));
    let doc = Document::new(display_name, text, root.into_inner());
    match file {
        Ok(file) => Ok((doc, file)),
        Err(error) => Err(schema_error(&doc, &error)),
    }
}

fn syntax_error(text: &str, display_name: &str, error: &toml::de::Error) -> ConfigError {
    // The partial tree from a recovering parse still names the table the error is in.
    let (partial, _) = DeTable::parse_recoverable(text);
    let doc = Document::new(display_name, text, partial.into_inner());
    let span = error.span();
    let offset = span.as_ref().map(|span| span.start);
    let field = offset
        .map(|o| doc.path_at(o).to_string())
        .unwrap_or_default();
    let what = error.message().trim_end();
    let message = match span.and_then(|span| text.get(span)) {
        Some(key) if what == "duplicate key" => format!("TOML syntax: duplicate key `{key}`"),
        _ => format!("TOML syntax: {what}"),
    };
    let hint = syntax_hint(what, text, offset.unwrap_or(0));
    doc.error_at(offset, field, message, Some(hint))
}

fn syntax_hint(message: &str, text: &str, offset: usize) -> String {
    if message.contains("duplicate key") {
        return "each key may appear once per table; for several listeners or routes repeat \
                [[listener]] / [[route]]"
            .to_owned();
    }
    // The commonest slip is an unquoted text value (`address = 0.0.0.0:8080`): a value that
    // is not a number, boolean, string, array or inline table.
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |nl| nl + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if let Some((key, value)) = line.split_once('=') {
        // Drop a trailing comment: `address = 0.0.0.0:8080  # public`.
        let value = value.split(" #").next().unwrap_or(value);
        let (key, value) = (key.trim(), value.trim());
        let structured = value.starts_with(['"', '\'', '[', '{']);
        let number_or_bool = value == "true"
            || value == "false"
            || value.bytes().all(|b| {
                b.is_ascii_digit() || matches!(b, b'_' | b'+' | b'-' | b'.' | b'e' | b'E')
            });
        if !key.is_empty() && !value.is_empty() && !structured && !number_or_bool {
            return format!("text values need double quotes: {key} = \"{value}\"");
        }
    }
    "see https://toml.io/en/v1.0.0 for the syntax: key = value, [table], [[array-table]]".to_owned()
}

fn schema_error(doc: &Document<'_>, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim_end();
    let offset = error.span().map(|span| span.start);
    let at = offset.map_or_else(FieldPath::root, |o| doc.path_at(o));
    if let Some(missing) = between(message, "missing field `", "`") {
        let hint = missing_field_hint(missing);
        let field = at.key(missing).to_string();
        return doc.error_at(offset, field, message.to_owned(), Some(hint));
    }
    let hint = if let Some(unknown) = between(message, "unknown field `", "`") {
        Some(choices_hint(unknown, message, "valid keys here"))
    } else if let Some(unknown) = between(message, "unknown variant `", "`") {
        Some(choices_hint(unknown, message, "valid values"))
    } else {
        wrong_type_hint(message)
    };
    doc.error_at(offset, at.to_string(), message.to_owned(), hint)
}

/// The text between the first `start` and the next `end` after it.
fn between<'m>(message: &'m str, start: &str, end: &str) -> Option<&'m str> {
    let from = message.find(start)? + start.len();
    let len = message[from..].find(end)?;
    Some(&message[from..from + len])
}

pub(crate) fn missing_field_hint(field: &str) -> String {
    match field {
        "address" => "add address = \"IP:port\", e.g. address = \"10.0.0.1:8080\"".to_owned(),
        "endpoints" => "add endpoints = [{ address = \"10.0.0.1:8080\" }]".to_owned(),
        "upstream" => {
            "add upstream = \"NAME\", naming one of the [upstreams.NAME] tables".to_owned()
        }
        "algorithms" => {
            "add algorithms = [\"RS256\"] (the algorithms your issuer signs with)".to_owned()
        }
        "keys" => "add keys = [{ consumer = \"acme\", sha256 = \"...\" }], the sha256 from \
             `printf %s KEY | sha256sum`"
            .to_owned(),
        "key" => {
            "add key = \"NAME\": the JSON key of this part's answer in the merged object".to_owned()
        }
        "consumer" => "add consumer = \"NAME\": who the key belongs to".to_owned(),
        "sha256" => "add sha256 = \"...\" from `printf %s KEY | sha256sum`".to_owned(),
        "rate_per_second" => {
            "add rate_per_second = N, requests per second per key, e.g. 10".to_owned()
        }
        other => format!("add {other} = ... to this table"),
    }
}

/// For an unknown key or variant: the closest valid name and the full list. serde writes the
/// valid names after "expected" in backticks ("expected one of `a`, `b`", "expected `a` or
/// `b`", "there are no fields").
fn choices_hint(unknown: &str, message: &str, what: &str) -> String {
    let choices: Vec<&str> = match message.find("expected") {
        Some(at) => message[at..].split('`').skip(1).step_by(2).collect(),
        None => Vec::new(),
    };
    if choices.is_empty() {
        return "this table takes no keys".to_owned();
    }
    let list = choices.join(", ");
    match closest(unknown, &choices) {
        Some(best) => format!("did you mean `{best}`? {what}: {list}"),
        None => format!("{what}: {list}"),
    }
}

/// The choice within edit distance 2 (or a third of the name) of `word`, if any.
fn closest<'c>(word: &str, choices: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(2);
    choices
        .iter()
        .map(|choice| (edit_distance(word, choice), *choice))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, choice)| choice)
}

/// Levenshtein distance over characters, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// For "invalid type"/"invalid value" errors, the form the field takes.
fn wrong_type_hint(message: &str) -> Option<String> {
    let expected = message.rsplit("expected ").next()?;
    let hint = if ["u8", "u16", "u32", "u64", "usize"].contains(&expected) {
        "write a whole number of zero or more, without quotes, e.g. 8080"
    } else if expected == "f64" {
        "write a number without quotes, e.g. 10 or 2.5"
    } else if expected.contains("string") {
        "write text in double quotes, e.g. \"0.0.0.0:8080\""
    } else if expected.contains("bool") {
        "write true or false, without quotes"
    } else if expected.contains("sequence") {
        "write a list in brackets, e.g. [\"GET\", \"HEAD\"]"
    } else if expected.contains("struct") || expected.contains("map") {
        "write a table: a [section] or an inline { key = value }"
    } else {
        return None;
    };
    Some(hint.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let choices = ["name", "address"];
        assert_eq!(closest("adress", &choices), Some("address"));
        assert_eq!(closest("Name", &choices), Some("name"));
        assert_eq!(closest("port", &choices), None);
    }

    #[test]
    fn choices_hint_reads_serde_lists() {
        assert_eq!(
            choices_hint(
                "adress",
                "unknown field `adress`, expected `name` or `address`",
                "k"
            ),
            "did you mean `address`? k: name, address"
        );
        assert_eq!(
            choices_hint("x", "unknown field `x`, there are no fields", "k"),
            "this table takes no keys"
        );
    }
}
