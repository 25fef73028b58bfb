//! coregate-fuzz: property checks for the parsers and verifiers that read hostile bytes, run
//! by libFuzzer (cargo-fuzz) and, without it, over the checked-in corpus.
//!
//! Each file in `fuzz_targets/` is one target: a `check(data: &[u8])` that panics when a
//! property fails, then [`fuzz_target!`]`(check)`. Built by `cargo fuzz` (which sets
//! `--cfg fuzzing`) the binary is a libFuzzer target; built by plain cargo it is a replayer
//! that runs every file of `corpus/<target>/` (and any paths given as arguments) through the
//! same `check` — the fallback `.ci/run` uses where cargo-fuzz cannot build, and what
//! `tests/corpus.rs` runs. The properties therefore live in one place for both.
//!
//! Never: reads the network, writes files, or sleeps. A check is deterministic: the same
//! input always gives the same verdict.

use std::path::{Path, PathBuf};

use coregate_engine::http::HeaderField;

#[doc(hidden)]
pub use libfuzzer_sys;

/// Turns the target file's `check` into the binary's entry point: a libFuzzer target under
/// `cargo fuzz`, else a corpus replayer ([`replay`]).
#[macro_export]
macro_rules! fuzz_target {
    ($check:path) => {
        #[cfg(fuzzing)]
        $crate::libfuzzer_sys::fuzz_target!(|data: &[u8]| $check(data));

        #[cfg(not(fuzzing))]
        fn main() {
            $crate::replay(env!("CARGO_BIN_NAME"), $check);
        }
    };
}

/// The seed corpus folder of a target.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Runs `check` over every file in `corpus/<target>/`, or over the files and folders named
/// on the command line when there are any. A failing property panics (non-zero exit) after
/// printing which file it was.
pub fn replay(target: &str, check: fn(&[u8])) {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let roots = if args.is_empty() {
        vec![corpus_dir(target)]
    } else {
        args
    };
    let mut files = Vec::new();
    for root in &roots {
        if root.is_dir() {
            let entries = std::fs::read_dir(root)
                .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
                .map(|entry| entry.expect("corpus entry").path());
            files.extend(entries.filter(|p| p.is_file()));
        } else {
            files.push(root.clone());
        }
    }
    files.sort();
    assert!(!files.is_empty(), "{target}: no corpus files in {roots:?}");
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        eprintln!("{target}: {}", file.display());
        check(&data);
    }
    println!(
        "{target}: {} corpus inputs hold every property",
        files.len()
    );
}

/// A tiny deterministic generator (xorshift64) for split points and sampling, seeded from
/// the input so that a verdict depends on the input alone.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `data` (FNV-1a), never zero.
    pub fn from_input(data: &[u8]) -> Rng {
        let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Rng(hash | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `1..=max` (`max` ≥ 1).
    pub fn size(&mut self, max: usize) -> usize {
        (self.next_u64() % max as u64) as usize + 1
    }
}

/// Cut points to test an input's prefixes at: every one for short inputs, a sample of at
/// most `SAMPLED_CUTS` (always including the last byte) for long ones, so a check stays
/// linear enough for the fuzzer to run fast.
pub fn cut_points(len: usize, rng: &mut Rng) -> Vec<usize> {
    const EXHAUSTIVE_BELOW: usize = 512;
    const SAMPLED_CUTS: usize = 64;
    if len < EXHAUSTIVE_BELOW {
        return (0..len).collect();
    }
    let mut cuts: Vec<usize> = (0..SAMPLED_CUTS).map(|_| rng.size(len) - 1).collect();
    cuts.push(len - 1);
    cuts
}

/// The values of the fields in `headers` named `name` (any case); the head targets share it.
pub fn values<'a>(
    raw: &'a [u8],
    headers: &'a [HeaderField],
    name: &'static str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |f| f.name.get(raw).eq_ignore_ascii_case(name.as_bytes()))
        .map(move |f| f.value.get(raw))
}

/// `v` without its leading and trailing spaces and tabs.
pub fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// The elements of the comma-separated lists in the fields named `name` (any case), each
/// trimmed, empty ones kept.
pub fn list_elements<'a>(
    raw: &'a [u8],
    headers: &'a [HeaderField],
    name: &'static str,
) -> Vec<&'a [u8]> {
    values(raw, headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .collect()
}

/// Panics unless an accepted head `raw` has no NUL byte and every CR and LF in it stands in
/// a CRLF pair.
pub fn assert_no_nul_and_crlf_only(raw: &[u8]) {
    for (i, &b) in raw.iter().enumerate() {
        assert_ne!(b, 0, "NUL in an accepted head");
        if b == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
}
