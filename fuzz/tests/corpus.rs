//! Every target's properties over its checked-in corpus, without libFuzzer: runs each
//! `fuzz_targets/<name>.rs` binary (built by plain cargo it replays `corpus/<name>/`). This is
//! what `.ci/run` falls back to where cargo-fuzz cannot build, and a quick check that a new
//! seed or a changed property still holds.

use std::path::Path;
use std::process::Command;

#[test]
fn every_target_holds_over_its_corpus() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The test runs from target/<profile>/deps/; the binaries are one level up.
    let exe = std::env::current_exe().expect("test path");
    let bin_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let mut targets: Vec<String> = std::fs::read_dir(manifest.join("fuzz_targets"))
        .expect("fuzz_targets/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    targets.sort();
    assert!(!targets.is_empty());
    let mut failed = Vec::new();
    for target in &targets {
        assert!(
            manifest.join("corpus").join(target).is_dir(),
            "{target}: no corpus/{target}/ folder"
        );
        let bin = bin_dir.join(target);
        let output = Command::new(&bin)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (is it a [[bin]] in Cargo.toml?)", bin.display()));
        print!("{}", String::from_utf8_lossy(&output.stdout));
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            failed.push(target.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "properties fail over the corpus of {failed:?}"
    );
}
