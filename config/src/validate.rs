//! Validation: schema → [`crate::Config`], with errors located in the text.

use std::path::Path;

use crate::{Config, ConfigError};

pub(crate) fn load_file(path: &Path) -> Result<Config, ConfigError> {
    todo!()
}

pub(crate) fn load_str(
    text: &str,
    display_name: &str,
    path: Option<&Path>,
) -> Result<Config, ConfigError> {
    todo!()
}
