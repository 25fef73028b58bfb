//! Chunked body decoder ([`ChunkedDecoder::advance`]) on arbitrary bytes and splits.
//!
//! Properties, for every input:
//! - never panics; every call with input left and the body not done makes progress;
//! - each step's payload range lies within its consumed bytes, and the consumed bytes never
//!   exceed the input: payload ≤ consumed ≤ input, and a complete body has at least the
//!   5 bytes of `0\r\n\r\n` more framing than payload;
//! - split-invariant: whole, byte at a time and in random pieces, the same payload, the same
//!   consumed total, the same completion and the same error;
//! - agrees with a plain reference decoder written here from RFC 9112 §7.1 and the decoder's
//!   documented stricter rules (complete, incomplete or invalid, and the same payload);
//! - round trip: a complete body's payload, re-chunked, decodes to the same payload.
#![cfg_attr(fuzzing, no_main)]

use coregate_engine::http::chunked::{
    CHUNK_EXT_BYTES_MAX, CHUNK_SIZE_DIGITS_MAX, CHUNK_SIZE_MAX, TRAILER_BYTES_MAX,
};
use coregate_engine::http::{ChunkError, ChunkedDecoder};
use coregate_fuzz::Rng;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The body ended after `consumed` bytes.
    Done {
        payload: Vec<u8>,
        consumed: usize,
    },
    /// All the input was consumed and more is needed.
    Incomplete {
        payload: Vec<u8>,
    },
    Invalid(ChunkError),
}

pub fn check(data: &[u8]) {
    let whole = decode(data, &mut || usize::MAX);
    let mut rng = Rng::from_input(data);
    assert_eq!(decode(data, &mut || 1), whole, "byte at a time");
    for _ in 0..2 {
        let max = rng.size(64);
        let mut sizes: Vec<usize> = (0..32).map(|_| rng.size(max)).collect();
        let mut next = move || {
            sizes.rotate_left(1);
            sizes[0]
        };
        assert_eq!(decode(data, &mut next), whole, "random split");
    }

    match (&whole, reference(data)) {
        (Outcome::Invalid(_), Reference::Invalid) => {}
        (
            Outcome::Done { payload, consumed },
            Reference::Done {
                payload: p,
                consumed: c,
            },
        ) => assert_eq!((payload, *consumed), (&p, c)),
        (Outcome::Incomplete { payload }, Reference::Incomplete { payload: p }) => {
            assert_eq!(payload, &p)
        }
        (got, want) => panic!("decoder says {got:?}, reference says {want:?}"),
    }

    if let Outcome::Done { payload, consumed } = &whole {
        assert!(*consumed <= data.len());
        assert!(payload.len() + 5 <= *consumed, "too little framing");
        let mut body = format!("{:x}\r\n", payload.len()).into_bytes();
        if payload.is_empty() {
            body.clear();
        } else {
            body.extend_from_slice(payload);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            decode(&body, &mut || usize::MAX),
            Outcome::Done {
                payload: payload.clone(),
                consumed: body.len()
            }
        );
    }
}

/// Feeds `input` to a fresh decoder in pieces of the sizes `sizes` gives, the way the proxy
/// does: bytes delivered but not consumed are offered again with the next piece.
fn decode(input: &[u8], sizes: &mut dyn FnMut() -> usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut at = 0;
    let mut end = 0;
    while end < input.len() {
        end = end.saturating_add(sizes()).min(input.len());
        while at < end {
            let window = &input[at..end];
            let step = match decoder.advance(window) {
                Ok(step) => step,
                Err(e) => return Outcome::Invalid(e),
            };
            assert!(step.consumed <= window.len(), "consumed more than given");
            assert!(
                step.data.start <= step.data.end && step.data.end <= step.consumed,
                "payload outside the consumed bytes: {step:?}"
            );
            payload.extend_from_slice(&window[step.data.clone()]);
            at += step.consumed;
            assert_eq!(payload.len() as u64, decoder.payload_bytes());
            assert!(payload.len() <= at);
            if step.done {
                return Outcome::Done {
                    payload,
                    consumed: at,
                };
            }
            assert!(step.consumed > 0, "no progress with {} bytes", window.len());
        }
    }
    Outcome::Incomplete { payload }
}

#[derive(Debug)]
enum Reference {
    Done { payload: Vec<u8>, consumed: usize },
    Incomplete { payload: Vec<u8> },
    Invalid,
}

/// RFC 9112 §7.1 with the decoder's documented restrictions, as plainly as possible:
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = 1*16HEXDIG (value ≤ 2^60) [ ";" ≤4096 field-value bytes ] CRLF data CRLF
/// last-chunk   = 1*16"0" [ ";" ext ] CRLF
/// trailer      = *( 1*tchar ":" *field-value-byte CRLF ), ≤ 16384 bytes with the final CRLF
/// ```
fn reference(input: &[u8]) -> Reference {
    let mut payload = Vec::new();
    let mut at = 0;
    // `None` from a helper: the input ended. `Some(Err)`: invalid.
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(Ok(v)) => v,
                Some(Err(())) => return Reference::Invalid,
                None => return Reference::Incomplete { payload },
            }
        };
    }
    loop {
        // Size: hex digits, then `;` extension or CR.
        let mut size: u64 = 0;
        let mut digits = 0u8;
        let after_size = loop {
            let Some(&b) = input.get(at) else {
                return Reference::Incomplete { payload };
            };
            match (b as char).to_digit(16) {
                Some(d) => {
                    digits += 1;
                    size = size.saturating_mul(16).saturating_add(u64::from(d));
                    if digits > CHUNK_SIZE_DIGITS_MAX || size > CHUNK_SIZE_MAX {
                        return Reference::Invalid;
                    }
                    at += 1;
                }
                None if digits == 0 => return Reference::Invalid,
                None => break b,
            }
        };
        if after_size == b';' {
            at += 1;
            let mut ext = 0;
            loop {
                let Some(&b) = input.get(at) else {
                    return Reference::Incomplete { payload };
                };
                if b == b'\r' {
                    break;
                }
                ext += 1;
                if !is_field_value_byte(b) || ext > CHUNK_EXT_BYTES_MAX {
                    return Reference::Invalid;
                }
                at += 1;
            }
        }
        need!(crlf(input, &mut at));
        if size == 0 {
            break;
        }
        let size = size as usize;
        let available = input.len() - at;
        if available < size {
            payload.extend_from_slice(&input[at..]);
            return Reference::Incomplete { payload };
        }
        payload.extend_from_slice(&input[at..at + size]);
        at += size;
        need!(crlf(input, &mut at));
    }
    // Trailer section, counted from here through the final CRLF.
    let start = at;
    let too_long = |at: usize| at - start > TRAILER_BYTES_MAX;
    loop {
        let Some(&b) = input.get(at) else {
            return Reference::Incomplete { payload };
        };
        if b == b'\r' {
            if too_long(at + 1) {
                return Reference::Invalid;
            }
            need!(crlf(input, &mut at));
            if too_long(at) {
                return Reference::Invalid;
            }
            return Reference::Done {
                payload,
                consumed: at,
            };
        }
        let mut name = 0;
        loop {
            let Some(&b) = input.get(at) else {
                return Reference::Incomplete { payload };
            };
            if too_long(at + 1) {
                return Reference::Invalid;
            }
            if b == b':' && name > 0 {
                at += 1;
                break;
            }
            if !is_tchar(b) {
                return Reference::Invalid;
            }
            name += 1;
            at += 1;
        }
        loop {
            let Some(&b) = input.get(at) else {
                return Reference::Incomplete { payload };
            };
            if too_long(at + 1) {
                return Reference::Invalid;
            }
            if b == b'\r' {
                break;
            }
            if !is_field_value_byte(b) {
                return Reference::Invalid;
            }
            at += 1;
        }
        at += 1;
        match input.get(at) {
            None => return Reference::Incomplete { payload },
            Some(_) if too_long(at + 1) => return Reference::Invalid,
            Some(b'\n') => at += 1,
            Some(_) => return Reference::Invalid,
        }
    }
}

/// CR LF at `at`: `None` when the input ends first.
fn crlf(input: &[u8], at: &mut usize) -> Option<Result<(), ()>> {
    for want in [b'\r', b'\n'] {
        match input.get(*at) {
            None => return None,
            Some(&b) if b == want => *at += 1,
            Some(_) => return Some(Err(())),
        }
    }
    Some(Ok(()))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

coregate_fuzz::fuzz_target!(check);
