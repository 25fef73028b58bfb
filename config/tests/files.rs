//! Loading from files: the annotated example loads, and unreadable or non-UTF-8 files give
//! located errors.

use std::path::{Path, PathBuf};

use coregate_config::load_file;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml")
}

/// A file in the temp dir, unique to this test process, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("coregate-config-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_annotated_example_loads() {
    let path = example();
    let config = match load_file(&path) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(config.source.path.as_deref(), Some(path.as_path()));
    assert_eq!(config.source.display_name, path.display().to_string());
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(config.upstreams.len(), 4);
    assert_eq!(config.routes.len(), 6);
    assert_eq!(config.routes[5].name, "route-5");
    let summary = config.summary();
    assert!(
        summary.contains("sessions balancer=consistent_hash(header:x-session-id)"),
        "{summary}"
    );
}

#[test]
fn the_example_sets_every_schema_key() {
    // Every field the schema declares (`pub NAME: TYPE,`) is written in the example, so the
    // example stays a complete reference as fields are added.
    let text = std::fs::read_to_string(example()).expect("example readable");
    let keys: Vec<&str> = include_str!("../src/schema.rs")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub "))
        .filter_map(|rest| rest.split_once(':').map(|(name, _)| name))
        .filter(|name| !name.contains(' '))
        .map(|name| match name {
            // Renamed in TOML to read naturally as [[listener]] / [[route]] tables.
            "listeners" => "listener",
            "routes" => "route",
            other => other,
        })
        .collect();
    assert!(keys.len() > 25, "schema scan found only {keys:?}");
    for key in keys {
        let written = text.lines().any(|line| {
            let line = line.trim_start_matches([' ', '[']);
            [format!("{key} ="), format!("{key}."), format!("{key}]")]
                .iter()
                .any(|start| line.starts_with(start.as_str()))
                || line.contains(&format!("{{ {key} ="))
                || line.contains(&format!(", {key} ="))
                // A nested table: [upstreams.users.health_check].
                || line.contains(&format!(".{key}]"))
        });
        assert!(written, "the example does not set `{key}`");
    }
}

#[test]
fn an_unreadable_file_has_no_line() {
    let path = Path::new("/nonexistent/coregate/gateway.toml");
    let error = match load_file(path) {
        Ok(_) => panic!("loaded a missing file"),
        Err(error) => error,
    };
    assert_eq!((error.line, error.column), (0, 0));
    assert_eq!(error.file, path.display().to_string());
    assert!(
        error.message.starts_with("cannot read the config file: "),
        "{error}"
    );
    assert!(error
        .to_string()
        .starts_with("/nonexistent/coregate/gateway.toml: cannot read"));
}

#[test]
fn a_file_that_is_not_utf8_is_located() {
    let file = TempFile::new("latin1.toml", b"[server]\nworkers = 1 # caf\xe9\n");
    let error = match load_file(&file.0) {
        Ok(_) => panic!("loaded invalid UTF-8"),
        Err(error) => error,
    };
    assert_eq!((error.line, error.column), (2, 18), "{error}");
}

#[test]
fn file_errors_name_the_path_and_line() {
    let file = TempFile::new("broken.toml", b"[[listener]]\naddress = \"nope\"\n");
    let error = match load_file(&file.0) {
        Ok(_) => panic!("loaded a bad address"),
        Err(error) => error,
    };
    let first_line = error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        first_line,
        format!(
            "{}:2:11: listener[0].address: `nope` is not an IP:port address",
            file.0.display()
        )
    );
}
