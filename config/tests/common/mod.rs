//! What the config test files share: checking that a load failed at the right place.

use coregate_config::{Config, ConfigError};

/// 1-based line and column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = 1 + before.matches('\n').count();
    let column = 1 + before[before.rfind('\n').map_or(0, |nl| nl + 1)..]
        .chars()
        .count();
    (line, column)
}

/// `loaded` (the load of `text` from `file`) must have failed at the start of the `nth` (from
/// 0) occurrence of `needle`, about `field`, with a hint; returns the error.
#[track_caller]
pub fn failed_at(
    loaded: Result<Config, ConfigError>,
    text: &str,
    file: &str,
    needle: &str,
    nth: usize,
    field: &str,
) -> ConfigError {
    let error = match loaded {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error,
    };
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in test text"))
        .0;
    let (line, column) = position(text, offset);
    assert_eq!(
        (error.line, error.column, error.field.as_str()),
        (line, column, field),
        "wrong place for: {error}\n--- text:\n{text}"
    );
    assert!(error.hint.is_some(), "no hint: {error}");
    assert_eq!(error.file, file);
    error
}
