//! coregate-config: the one place that reads `gateway.toml`.
//!
//! Owns the schema ([`schema`], serde with `deny_unknown_fields`), the named defaults
//! ([`defaults`]), validation with errors that name file, line, column, field and a hint
//! ([`ConfigError`]), and the validated [`Config`] the engine compiles into its snapshot.
//! Never touches a socket and never runs on a worker thread.

pub mod defaults;
mod error;
mod model;
pub mod schema;
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
