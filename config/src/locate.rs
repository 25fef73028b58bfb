//! Where things are in the config text: field paths such as `route[2].upstream`, the span of
//! a field in the parsed document, the field at a byte offset, and byte offsets as 1-based
//! line and column.
//!
//! Only error reporting uses this; it runs once per load on the control side and never on a
//! worker. The spanned tree is `toml`'s own [`DeTable`], so a span here is exactly the span
//! the deserializer reports.

use std::fmt;
use std::ops::Range;

use toml::de::{DeArray, DeTable, DeValue};

use crate::ConfigError;

/// A path to a field, shown dotted: `upstreams.users.endpoints[0].address`. Keys that are not
/// bare TOML keys are shown quoted (`upstreams."a b"`), so a name containing `.` stays one
/// step of the path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl FieldPath {
    /// The document itself.
    pub(crate) fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    /// This path followed by table key `key`.
    pub(crate) fn key(&self, key: &str) -> FieldPath {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.to_owned()));
        FieldPath(steps)
    }

    /// This path followed by array index `index`.
    pub(crate) fn index(&self, index: usize) -> FieldPath {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        FieldPath(steps)
    }

    /// The last key of the path, if it ends in a key.
    pub(crate) fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Step::Key(key)) => Some(key),
            _ => None,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(index) => write!(f, "[{index}]")?,
                Step::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Which half of a `key = value` pair an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The key itself, e.g. a bad upstream name or header name.
    Key,
    /// The value (for a table: its `[header]`).
    Value,
}

/// The config text with its spanned parse tree, and what errors call it.
pub(crate) struct Document<'a> {
    file: &'a str,
    text: &'a str,
    root: DeTable<'a>,
}

impl<'a> Document<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str, root: DeTable<'a>) -> Document<'a> {
        Document { file, text, root }
    }

    /// An error about `path`, located at its key or value (or at its deepest present
    /// ancestor when it is defaulted).
    pub(crate) fn error(
        &self,
        path: &FieldPath,
        target: Target,
        message: String,
        hint: Option<String>,
    ) -> ConfigError {
        let offset = self.span_of(path, target).map(|span| span.start);
        self.error_at(offset, path.to_string(), message, hint)
    }

    /// An error at byte `offset` (none: not about a place in the text).
    pub(crate) fn error_at(
        &self,
        offset: Option<usize>,
        field: String,
        message: String,
        hint: Option<String>,
    ) -> ConfigError {
        let (line, column) = offset.map_or((0, 0), |offset| self.line_column(offset));
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field,
            message,
            hint,
        }
    }

    /// The span of `path` in the text. When the path is only partly present (a defaulted
    /// field), the span of its deepest present ancestor; `None` when not even the first step
    /// is in the text.
    pub(crate) fn span_of(&self, path: &FieldPath, target: Target) -> Option<Range<usize>> {
        let reach = self.walk(path);
        let value_span = reach.value_span?;
        match reach.key_span {
            Some(key_span) if target == Target::Key && reach.steps == path.0.len() => {
                Some(key_span)
            }
            _ => Some(value_span),
        }
    }

    /// Whether `path` is written in the text (rather than defaulted).
    pub(crate) fn contains(&self, path: &FieldPath) -> bool {
        self.walk(path).steps == path.0.len()
    }

    /// Follows `path` as far as the text has it.
    fn walk(&self, path: &FieldPath) -> Reach {
        let mut table = Some(&self.root);
        let mut array = None;
        let mut reach = Reach {
            steps: 0,
            key_span: None,
            value_span: None,
        };
        for step in &path.0 {
            let (key_span, value) = match step {
                Step::Key(key) => {
                    let entry =
                        table.and_then(|t| t.iter().find(|(k, _)| k.get_ref().as_ref() == key));
                    match entry {
                        Some((k, v)) => (Some(k.span()), v),
                        None => break,
                    }
                }
                Step::Index(index) => match array.and_then(|a: &DeArray<'a>| a.get(*index)) {
                    Some(v) => (None, v),
                    None => break,
                },
            };
            reach = Reach {
                steps: reach.steps + 1,
                key_span,
                value_span: Some(value.span()),
            };
            table = value.get_ref().as_table();
            array = value.get_ref().as_array();
        }
        reach
    }

    /// The deepest field whose key or value covers byte `offset`; the root when none does.
    pub(crate) fn path_at(&self, offset: usize) -> FieldPath {
        let mut path = Vec::new();
        let mut best = Vec::new();
        search_table(&self.root, offset, &mut path, &mut best);
        FieldPath(best)
    }

    /// 1-based line and column of byte `offset`.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(self.text.as_bytes(), offset)
    }
}

/// How far a path reaches into the document: the number of steps found and, for the last step
/// found, its key span (when it is a key) and its value span.
struct Reach {
    steps: usize,
    key_span: Option<Range<usize>>,
    value_span: Option<Range<usize>>,
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn search_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<Step>, best: &mut Vec<Step>) {
    for (key, value) in table.iter() {
        path.push(Step::Key(key.get_ref().to_string()));
        if covers(&key.span(), offset) || covers(&value.span(), offset) {
            note_match(path, best);
        }
        search_value(value.get_ref(), offset, path, best);
        path.pop();
    }
}

fn search_value(value: &DeValue<'_>, offset: usize, path: &mut Vec<Step>, best: &mut Vec<Step>) {
    match value {
        DeValue::Table(table) => search_table(table, offset, path, best),
        DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                path.push(Step::Index(index));
                if covers(&item.span(), offset) {
                    note_match(path, best);
                }
                search_value(item.get_ref(), offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn note_match(path: &[Step], best: &mut Vec<Step>) {
    if path.len() > best.len() {
        *best = path.to_vec();
    }
}

/// 1-based line and column (in characters) of byte `offset` in `bytes`; an offset past the
/// end counts as the end.
pub(crate) fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let column = 1 + before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count();
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document<'_> {
        let root = DeTable::parse(text).expect("test text parses").into_inner();
        Document::new("t.toml", text, root)
    }

    #[test]
    fn path_display_quotes_keys_that_are_not_bare() {
        let path = FieldPath::root()
            .key("upstreams")
            .key("svc.v2")
            .key("endpoints")
            .index(0)
            .key("address");
        assert_eq!(
            path.to_string(),
            r#"upstreams."svc.v2".endpoints[0].address"#
        );
        assert_eq!(
            FieldPath::root().key("route").index(2).to_string(),
            "route[2]"
        );
    }

    #[test]
    fn line_column_counts_from_one_in_characters() {
        assert_eq!(line_column(b"abc", 0), (1, 1));
        assert_eq!(line_column(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é = 1\nx".as_bytes(), 3), (1, 3));
        assert_eq!(line_column(b"ab", 99), (1, 3));
    }

    #[test]
    fn span_of_finds_keys_values_and_array_tables() {
        let text = "[[route]]\nupstream = \"a\"\n\n[[route]]\nname = \"x\"\nupstream = \"b\"\n";
        let d = doc(text);
        let route1 = FieldPath::root().key("route").index(1);
        let value = d
            .span_of(&route1.key("upstream"), Target::Value)
            .expect("present");
        assert_eq!(&text[value.clone()], "\"b\"");
        assert_eq!(d.line_column(value.start), (6, 12));
        let key = d
            .span_of(&route1.key("upstream"), Target::Key)
            .expect("present");
        assert_eq!(d.line_column(key.start), (6, 1));
        // A defaulted field falls back to its table's header.
        let header = d
            .span_of(&route1.key("host"), Target::Value)
            .expect("ancestor");
        assert_eq!(d.line_column(header.start), (4, 1));
        assert!(d.contains(&route1.key("name")));
        assert!(!d.contains(&route1.key("host")));
        assert_eq!(
            d.span_of(&FieldPath::root().key("listener"), Target::Value),
            None
        );
    }

    #[test]
    fn path_at_finds_the_deepest_field() {
        let text = "[upstreams.users]\nendpoints = [{ address = \"x\" }]\n";
        let d = doc(text);
        let offset = text.find("\"x\"").expect("in text");
        assert_eq!(
            d.path_at(offset).to_string(),
            "upstreams.users.endpoints[0].address"
        );
        assert_eq!(d.path_at(0).to_string(), "upstreams.users");
    }
}
