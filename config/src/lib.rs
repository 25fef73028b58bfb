//! coregate-config: the one place that reads `gateway.toml`.
//!
//! Owns the schema ([`schema`], serde with `deny_unknown_fields`), the named defaults
//! ([`defaults`]), validation with errors that name file, line, column, field and a hint
//! ([`ConfigError`]), the validated [`Config`] the engine compiles into its snapshot, and the
//! summary `coregate check` prints ([`Config::summary`]). Never touches a socket and never
//! runs on a worker thread.
//!
//! Inside: `parse` turns text into the schema (syntax and shape errors), `validate` checks
//! values and builds the model, `locate` maps field paths and byte offsets to lines.

pub mod defaults;
mod error;
mod locate;
mod model;
mod parse;
pub mod schema;
mod summary;
mod validate;

pub use error::ConfigError;
pub use model::*;

use std::path::Path;

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    validate::load_file(path)
}

/// Parses and validates config text. `display_name` is what errors call the source
/// (a path, or e.g. `<demo>`).
pub fn load_str(text: &str, display_name: &str) -> Result<Config, ConfigError> {
    validate::load_str(text, display_name, None)
}
