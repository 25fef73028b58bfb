//! Config errors that point at the place in the file.

/// A config that cannot be used, and where it goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<demo>`).
    pub file: String,
    /// 1-based line, 0 when the error is not about a place in the text (e.g. unreadable file).
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// Dotted path of the field, e.g. `route[2].upstream`; empty when not about one field.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!("helper: file:line:column: field: message, then hint")
    }
}

impl std::error::Error for ConfigError {}
