//! Config loader ([`coregate_config::load_str`], what `coregate check` and every reload run)
//! on arbitrary text.
//!
//! Properties, for every input:
//! - never panics, whatever the TOML;
//! - deterministic: loading the same text twice gives the same error, or configs with the
//!   same summary;
//! - an error points into the text: it names the file, its line is at most one past the
//!   last line (0 only for errors not about a place, and then without a column), its column
//!   at most one past its line's length, and its message is not empty;
//! - an accepted config keeps the model's invariants: at least one listener and one route,
//!   every route's upstream and policies resolved to existing entries.
//!
//! Inputs naming files under `/dev`, `/proc` or `/sys` are skipped: the loader reads the key
//! and certificate files a config names (bounded in size), and a device or FIFO would only
//! stall the fuzzer.
#![cfg_attr(fuzzing, no_main)]

use coregate_config::{load_str, AuthRef};

const FILE: &str = "fuzz.toml";

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let first = load_str(text, FILE);
    let second = load_str(text, FILE);
    match (&first, &second) {
        (Err(a), Err(b)) => assert_eq!(a, b, "errors differ between loads"),
        (Ok(a), Ok(b)) => assert_eq!(a.summary(), b.summary(), "configs differ"),
        _ => panic!("one load failed, the other did not"),
    }
    match first {
        Err(error) => {
            assert_eq!(error.file, FILE);
            assert!(!error.message.is_empty(), "empty message");
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                error.line <= lines.len() + 1,
                "line {} of {} lines: {error}",
                error.line,
                lines.len()
            );
            if error.line == 0 {
                assert_eq!(error.column, 0, "column without a line: {error}");
            } else if let Some(line) = lines.get(error.line - 1) {
                assert!(
                    error.column <= line.chars().count() + 1,
                    "column {} of a {}-character line: {error}",
                    error.column,
                    line.chars().count()
                );
            }
            assert!(error.to_string().starts_with(FILE));
        }
        Ok(config) => {
            assert!(!config.listeners.is_empty(), "no listener");
            assert!(!config.routes.is_empty(), "no route");
            let summary = config.summary();
            assert!(summary.starts_with("config fuzz.toml"));
            for route in &config.routes {
                assert!(route.upstream < config.upstreams.len(), "dangling upstream");
                match route.auth {
                    Some(AuthRef::Jwt(i)) => assert!(i < config.jwt.len(), "dangling jwt"),
                    Some(AuthRef::ApiKey(i)) => assert!(i < config.api_keys.len(), "dangling keys"),
                    None => {}
                }
                if let Some(limit) = route.rate_limit {
                    assert!(limit < config.rate_limits.len(), "dangling rate limit");
                }
            }
        }
    }
}

coregate_fuzz::fuzz_target!(check);
