//! Path normaliser ([`normalize`], RFC 3986 §6.2.2 and §5.2.4) on arbitrary bytes, under
//! every combination of the `[server]` path options (the input's first byte picks them).
//!
//! Properties, for every input:
//! - never panics; the in-place and the `Vec` forms agree on the verdict and the bytes;
//! - the normal form is never longer than the input, starts with `/`, and is a fixed point:
//!   normalising it again changes nothing;
//! - it holds no `.` or `..` segment, no `\`, no `%00`, no escape in lower-case hex, no
//!   escape of an unreserved character, no `%2F`/`%5C` unless encoded slashes are allowed,
//!   and no `//` when slashes merge: so a `{param}` captured from it never holds `/`, `.`
//!   or `..`;
//! - allowing encoded slashes only ever accepts more: a path accepted without it is accepted
//!   with it, in the same normal form.
#![cfg_attr(fuzzing, no_main)]

use coregate_engine::http::{normalize, normalize_in_place, PathOptions};

pub fn check(data: &[u8]) {
    let Some((&flags, raw)) = data.split_first() else {
        return;
    };
    let options = PathOptions {
        merge_slashes: flags & 1 != 0,
        allow_encoded_slashes: flags & 2 != 0,
    };
    let mut out = Vec::new();
    let verdict = normalize(raw, options, &mut out);
    let mut in_place = raw.to_vec();
    match (normalize_in_place(&mut in_place, options), verdict) {
        (Ok(len), Ok(())) => assert_eq!(&in_place[..len], &out[..], "in place and Vec differ"),
        (Err(a), Err(b)) => assert_eq!(a, b, "in place and Vec give different errors"),
        (a, b) => panic!("in place {a:?}, Vec {b:?}"),
    }
    if verdict.is_err() {
        return;
    }
    assert!(out.len() <= raw.len(), "the normal form grew");
    assert_eq!(out.first(), Some(&b'/'), "the normal form is not absolute");
    let mut again = Vec::new();
    assert_eq!(
        normalize(&out, options, &mut again),
        Ok(()),
        "normal form refused"
    );
    assert_eq!(again, out, "not a fixed point");
    for segment in out[1..].split(|&b| b == b'/') {
        assert!(segment != b"." && segment != b"..", "dot-segment left");
    }
    if options.merge_slashes {
        assert!(!out.windows(2).any(|w| w == b"//"), "// left while merging");
    }
    assert!(!out.contains(&b'\\'), "backslash left");
    for (i, _) in out.iter().enumerate().filter(|(_, &b)| b == b'%') {
        let escape = out.get(i + 1..i + 3).expect("a cut escape left");
        assert!(
            escape
                .iter()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
            "escape not in upper-case hex"
        );
        let byte = u8::from_str_radix(std::str::from_utf8(escape).unwrap(), 16).unwrap();
        let unreserved = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
        assert!(!unreserved, "escaped unreserved character left");
        assert_ne!(byte, 0, "%00 left");
        if byte == b'/' || byte == b'\\' {
            assert!(options.allow_encoded_slashes, "encoded slash left");
        }
    }
    if !options.allow_encoded_slashes {
        let allowing = PathOptions {
            allow_encoded_slashes: true,
            ..options
        };
        let mut more = Vec::new();
        assert_eq!(
            normalize(raw, allowing, &mut more),
            Ok(()),
            "allowing refused"
        );
        assert_eq!(more, out, "allowing changed the normal form");
    }
}

coregate_fuzz::fuzz_target!(check);
