//! Config errors that point at the place in the file.
//!
//! One type for everything that can be wrong with a config: unreadable file, TOML syntax,
//! schema mismatch (unknown key, wrong type, missing field) and rejected values. Its
//! `Display` is what `coregate check` prints:
//!
//! ```text
//! gateway.toml:12:12: route[1].upstream: no upstream named `user`
//!   hint: defined upstreams: static, users
//! ```
//!
//! The first line alone is a complete summary (file, line, column, field, message), so a log
//! that keeps one line per error still says where to look. Line and column are omitted when 0
//! (not about a place in the text), the field when empty.

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
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    fn error(line: usize, column: usize, field: &str, hint: Option<&str>) -> ConfigError {
        ConfigError {
            file: "gateway.toml".to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: "bad".to_owned(),
            hint: hint.map(str::to_owned),
        }
    }

    #[test]
    fn display_has_location_field_message_and_hint() {
        assert_eq!(
            error(12, 5, "route[1].upstream", Some("fix it")).to_string(),
            "gateway.toml:12:5: route[1].upstream: bad\n  hint: fix it"
        );
    }

    #[test]
    fn display_omits_unknown_parts() {
        assert_eq!(error(0, 0, "", None).to_string(), "gateway.toml: bad");
        assert_eq!(error(3, 0, "", None).to_string(), "gateway.toml:3: bad");
        assert_eq!(
            error(0, 0, "listener", None).to_string(),
            "gateway.toml: listener: bad"
        );
    }
}
