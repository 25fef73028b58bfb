//! Validating chunked-body decoder (RFC 9112 §7.1), for request and response bodies alike,
//! and the few encoding helpers the proxy needs to re-frame a close-delimited body as chunked.
//!
//! A byte-at-a-time state machine over the framing and a bulk step over chunk data: the
//! decoder never copies or buffers, it tells the caller which bytes of its input were
//! consumed and which of those were payload. The proxy then forwards either the exact
//! consumed bytes (pass-through to an HTTP/1.1 peer) or only the payload ranges (decoding for
//! an HTTP/1.0 client). State is a few integers; input may be split at any byte boundary.
//! Never allocates, never panics on input.
//!
//! Stricter than the RFC grammar where leniency has been used for smuggling:
//! - chunk sizes are 1 to 16 hex digits and at most 2^60; no whitespace around them (the
//!   grammar's BWS before `;` is refused too: pass-through forwards our reading of the size
//!   line verbatim, so only a form no parser can misread is accepted);
//! - every line ends in CRLF: a bare LF or bare CR anywhere in the framing is an error;
//! - chunk extensions are opaque but limited to [`CHUNK_EXT_BYTES_MAX`] bytes of
//!   `HTAB / SP / VCHAR / obs-text`;
//! - trailer fields must be well-formed `name: value` lines (no obs-fold, no whitespace
//!   before the colon) and the trailer section at most [`TRAILER_BYTES_MAX`] bytes;
//! - chunk data must be followed by CRLF.

use std::fmt;
use std::ops::Range;

use super::fields::{is_field_value_byte, is_tchar};

/// Largest chunk size accepted, in bytes (2^60): far beyond any real chunk, far below
/// overflow when sizes are summed.
pub const CHUNK_SIZE_MAX: u64 = 1 << 60;
/// Most hex digits in a chunk size (leading zeros included).
pub const CHUNK_SIZE_DIGITS_MAX: u8 = 16;
/// Longest chunk extension accepted, in bytes, from the `;` to the CR.
pub const CHUNK_EXT_BYTES_MAX: usize = 4 * 1024;
/// Longest trailer section accepted, in bytes, from after the last-chunk line through the
/// final CRLF.
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;

/// Where the decoder is in the chunked grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// Inside a chunk extension, after `;`.
    Extension,
    /// After the CR ending a size line.
    SizeLf,
    /// Inside chunk data; `remaining` bytes to go.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line or the final empty line.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// After the CR ending a trailer field line.
    TrailerLf,
    /// After the CR of the final empty line.
    FinalLf,
    /// The body is complete.
    Done,
}

/// Incremental chunked decoder. Create one per body; feed it with [`ChunkedDecoder::advance`].
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Chunk size being read (in `Size`) or data bytes left in the chunk (in `Data`).
    remaining: u64,
    /// Hex digits read of the current size.
    digits: u8,
    /// Bytes of the current chunk extension.
    ext_bytes: usize,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    /// Payload bytes decoded so far.
    payload_bytes: u64,
}

/// The outcome of one [`ChunkedDecoder::advance`] call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input consumed; the caller drops or forwards exactly these.
    pub consumed: usize,
    /// The payload bytes within `input[..consumed]` (one contiguous range, maybe empty).
    pub data: Range<usize>,
    /// The last chunk, the trailers and the final CRLF have been consumed: the body is
    /// complete and `input[consumed..]` belongs to the next message.
    pub done: bool,
}

/// A framing error in a chunked body. Request side: answer 400 and close. Response side:
/// the response is broken; close both connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkError {
    /// What was wrong, in a few words.
    pub reason: &'static str,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid chunked body: {}", self.reason)
    }
}

impl std::error::Error for ChunkError {}

const fn error(reason: &'static str) -> ChunkError {
    ChunkError { reason }
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            remaining: 0,
            digits: 0,
            ext_bytes: 0,
            trailer_bytes: 0,
            payload_bytes: 0,
        }
    }

    /// Total payload bytes decoded so far (for body size limits).
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Consumes as much of `input` as possible, stopping early only where a second data
    /// range would begin (one range per call) or when the body is complete. Call again with
    /// `input[consumed..]` while `consumed < input.len()` and not `done`; with non-empty
    /// input and the body not complete, at least one byte is consumed.
    ///
    /// After an error the decoder must not be used again (it will not panic, but its
    /// answers mean nothing).
    pub fn advance(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut pos = 0;
        let mut data = 0..0;
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::Data => {
                    if !data.is_empty() {
                        break;
                    }
                    let available = (input.len() - pos) as u64;
                    let take = self.remaining.min(available) as usize;
                    debug_assert!(take > 0, "in Data with bytes left to read");
                    data = pos..pos + take;
                    pos += take;
                    self.remaining -= take as u64;
                    self.payload_bytes = self.payload_bytes.saturating_add(take as u64);
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                _ => {}
            }
            let b = input[pos];
            pos += 1;
            self.state = self.framing_byte(b)?;
        }
        Ok(Step {
            consumed: pos,
            data,
            done: self.state == State::Done,
        })
    }

    /// One byte of framing (anything but chunk data); returns the next state.
    fn framing_byte(&mut self, b: u8) -> Result<State, ChunkError> {
        if matches!(
            self.state,
            State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::FinalLf
        ) {
            self.trailer_bytes += 1;
            if self.trailer_bytes > TRAILER_BYTES_MAX {
                return Err(error("trailer section too large"));
            }
        }
        Ok(match self.state {
            State::SizeStart => {
                let digit = hex_value(b).ok_or(error("missing chunk size"))?;
                self.remaining = u64::from(digit);
                self.digits = 1;
                State::Size
            }
            State::Size => match b {
                b';' => {
                    self.ext_bytes = 0;
                    State::Extension
                }
                b'\r' => State::SizeLf,
                _ => {
                    let digit = hex_value(b).ok_or(error("invalid chunk size"))?;
                    self.digits += 1;
                    if self.digits > CHUNK_SIZE_DIGITS_MAX {
                        return Err(error("chunk size has too many digits"));
                    }
                    // At most 15 digits were read before this one, so no overflow.
                    self.remaining = self.remaining << 4 | u64::from(digit);
                    if self.remaining > CHUNK_SIZE_MAX {
                        return Err(error("chunk size too large"));
                    }
                    State::Size
                }
            },
            State::Extension => {
                if b == b'\r' {
                    State::SizeLf
                } else if is_field_value_byte(b) {
                    self.ext_bytes += 1;
                    if self.ext_bytes > CHUNK_EXT_BYTES_MAX {
                        return Err(error("chunk extension too long"));
                    }
                    State::Extension
                } else {
                    return Err(error("invalid byte in chunk extension"));
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(error("bare CR in chunk size line"));
                }
                if self.remaining == 0 {
                    self.trailer_bytes = 0;
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::SizeStart,
            State::DataCr | State::DataLf => return Err(error("missing CRLF after chunk data")),
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                _ if is_tchar(b) => State::TrailerName,
                _ => return Err(error("invalid trailer field")),
            },
            State::TrailerName => match b {
                b':' => State::TrailerValue,
                _ if is_tchar(b) => State::TrailerName,
                _ => return Err(error("invalid trailer field name")),
            },
            State::TrailerValue => match b {
                b'\r' => State::TrailerLf,
                _ if is_field_value_byte(b) => State::TrailerValue,
                _ => return Err(error("invalid trailer field value")),
            },
            State::TrailerLf if b == b'\n' => State::TrailerStart,
            State::FinalLf if b == b'\n' => State::Done,
            State::TrailerLf | State::FinalLf => return Err(error("bare CR in trailer section")),
            State::Data | State::Done => {
                debug_assert!(false, "advance handles {:?} itself", self.state);
                return Err(error("decoder misuse"));
            }
        })
    }
}

/// The last chunk with an empty trailer section: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The longest chunk-size line [`chunk_size_line`] writes: the hex digits of a `usize`, CRLF.
pub const CHUNK_SIZE_LINE_BYTES_MAX: usize = 2 * std::mem::size_of::<usize>() + 2;

/// Writes the chunk-size line of an `n`-byte chunk (`n` in lower-case hex, no leading zeros,
/// CRLF) at the end of `room`, so that chunk data placed right after `room` follows it
/// without a copy; returns where in `room` the line starts. `room` holds at least
/// [`CHUNK_SIZE_LINE_BYTES_MAX`] bytes.
pub fn chunk_size_line(room: &mut [u8], n: usize) -> usize {
    debug_assert!(
        room.len() >= CHUNK_SIZE_LINE_BYTES_MAX,
        "room for a chunk-size line"
    );
    let mut at = room.len() - 2;
    room[at..].copy_from_slice(b"\r\n");
    let mut rest = n;
    loop {
        at -= 1;
        room[at] = b"0123456789abcdef"[rest & 15];
        rest >>= 4;
        if rest == 0 {
            return at;
        }
    }
}

/// Appends `data` to `out` as one chunk (nothing when `data` is empty, which would read as
/// the last chunk).
pub fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut line = [0u8; CHUNK_SIZE_LINE_BYTES_MAX];
    let start = chunk_size_line(&mut line, data.len());
    out.extend_from_slice(&line[start..]);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_framed_chunks_decode_to_the_data_and_end_only_with_the_last_chunk() {
        let mut room = [0u8; CHUNK_SIZE_LINE_BYTES_MAX];
        for (n, line) in [
            (1usize, &b"1\r\n"[..]),
            (15, b"f\r\n"),
            (16, b"10\r\n"),
            (32 * 1024, b"8000\r\n"),
            (usize::MAX, b"ffffffffffffffff\r\n"),
        ] {
            let start = chunk_size_line(&mut room, n);
            assert_eq!(&room[start..], line, "{n}");
        }
        let mut body = Vec::new();
        push_chunk(&mut body, b"hello ");
        push_chunk(&mut body, b"");
        push_chunk(&mut body, &[b'x'; 300]);
        let mut decoder = ChunkedDecoder::new();
        let mut at = 0;
        while at < body.len() {
            let step = decoder.advance(&body[at..]).unwrap();
            assert!(!step.done, "ended without the last chunk");
            at += step.consumed;
        }
        body.extend_from_slice(LAST_CHUNK);
        let (payload, consumed) = decode_split(&body, &mut || 7).unwrap();
        assert_eq!(consumed, body.len());
        assert_eq!(payload.len(), 306);
        assert!(payload.starts_with(b"hello x"));
    }

    /// Feeds `input` in pieces of the given sizes (cycled); returns the decoded payload and
    /// the bytes consumed when the body completed.
    fn decode_split(
        input: &[u8],
        sizes: &mut dyn FnMut() -> usize,
    ) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut payload = Vec::new();
        let mut at = 0;
        // Bytes delivered so far but not yet consumed (the proxy keeps them in its buffer).
        let mut end = 0;
        while end < input.len() || at < end {
            end = (end + sizes()).min(input.len());
            while at < end {
                let step = decoder.advance(&input[at..end])?;
                assert!(step.data.end <= step.consumed);
                payload.extend_from_slice(&input[at..end][step.data.clone()]);
                at += step.consumed;
                if step.done {
                    assert_eq!(payload.len() as u64, decoder.payload_bytes());
                    return Ok((payload, at));
                }
                assert!(step.consumed > 0, "no progress");
            }
        }
        Err(error(INCOMPLETE))
    }

    const INCOMPLETE: &str = "test input ended before the body";

    fn decode(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        decode_split(input, &mut || usize::MAX / 2)
    }

    const BODY: &[u8] = b"5\r\nhello\r\n1A;name=value;q=\"x\"\r\nabcdefghijklmnopqrstuvwxyz\r\n\
        000\r\nExpires: never\r\nX-Checksum: abc\r\n\r\nNEXT";

    const PAYLOAD: &[u8] = b"helloabcdefghijklmnopqrstuvwxyz";

    #[test]
    fn whole_input() {
        let (payload, consumed) = decode(BODY).unwrap();
        assert_eq!(payload, PAYLOAD);
        assert_eq!(&BODY[consumed..], b"NEXT");
    }

    #[test]
    fn one_data_range_per_call() {
        let mut decoder = ChunkedDecoder::new();
        let step = decoder.advance(BODY).unwrap();
        assert_eq!(
            step,
            Step {
                consumed: 31,
                data: 3..8,
                done: false
            }
        );
        // The CRLF and the next size line were consumed with the first range.
        assert_eq!(
            &BODY[..step.consumed],
            b"5\r\nhello\r\n1A;name=value;q=\"x\"\r\n"
        );
        let step = decoder.advance(&BODY[31..]).unwrap();
        assert_eq!(step.data, 0..26);
        assert_eq!(&BODY[31 + step.consumed..], b"NEXT");
        assert!(step.done);
    }

    #[test]
    fn byte_at_a_time() {
        let (payload, consumed) = decode_split(BODY, &mut || 1).unwrap();
        assert_eq!(payload, PAYLOAD);
        assert_eq!(&BODY[consumed..], b"NEXT");
    }

    #[test]
    fn random_splits() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // A longer body: many chunks of varied sizes.
        let mut body = Vec::new();
        let mut expected = Vec::new();
        for i in 0..50usize {
            let len = (next() % 300) as usize + 1;
            let chunk: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            body.extend_from_slice(format!("{len:x}\r\n").as_bytes());
            body.extend_from_slice(&chunk);
            body.extend_from_slice(b"\r\n");
            expected.extend_from_slice(&chunk);
        }
        body.extend_from_slice(b"0\r\nT: v\r\n\r\n");
        for _ in 0..200 {
            let (payload, consumed) =
                decode_split(&body, &mut || (next() % 17) as usize + 1).unwrap();
            assert_eq!(payload, expected);
            assert_eq!(consumed, body.len());
        }
    }

    #[test]
    fn minimal_and_uppercase() {
        assert_eq!(decode(b"0\r\n\r\n").unwrap(), (vec![], 5));
        let (payload, _) = decode(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!(payload, b"0123456789");
        let (payload, _) = decode(b"00000000000000a\r\n0123456789\r\n0;end\r\n\r\n").unwrap();
        assert_eq!(payload, b"0123456789");
    }

    #[test]
    fn done_is_sticky() {
        let mut decoder = ChunkedDecoder::new();
        let step = decoder.advance(b"0\r\n\r\nGET").unwrap();
        assert_eq!(
            step,
            Step {
                consumed: 5,
                data: 0..0,
                done: true
            }
        );
        let step = decoder.advance(b"GET").unwrap();
        assert_eq!(
            step,
            Step {
                consumed: 0,
                data: 0..0,
                done: true
            }
        );
    }

    #[test]
    fn size_limits() {
        // 16 digits up to 2^60 are fine as far as the size line goes.
        let mut decoder = ChunkedDecoder::new();
        assert!(decoder.advance(b"1000000000000000\r\nab").is_ok());
        assert_eq!(decoder.payload_bytes(), 2);
        assert!(ChunkedDecoder::new()
            .advance(b"1000000000000001\r\n")
            .is_err());
        assert!(ChunkedDecoder::new()
            .advance(b"ffffffffffffffffff\r\n")
            .is_err());
        assert!(ChunkedDecoder::new()
            .advance(b"00000000000000001\r\n")
            .is_err());
    }

    #[test]
    fn extension_limit() {
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'x', CHUNK_EXT_BYTES_MAX - 1));
        body.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert!(decode(&body).is_ok());
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'x', CHUNK_EXT_BYTES_MAX + 1));
        body.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert!(decode(&body).is_err());
    }

    #[test]
    fn trailer_limit() {
        let line = b"X-Pad: 0123456789012345678901234567890123456789012345678901234\r\n";
        let mut ok = b"0\r\n".to_vec();
        for _ in 0..(TRAILER_BYTES_MAX - 2) / line.len() {
            ok.extend_from_slice(line);
        }
        ok.extend_from_slice(b"\r\n");
        assert!(decode(&ok).is_ok());
        let mut too_big = b"0\r\n".to_vec();
        for _ in 0..TRAILER_BYTES_MAX / line.len() + 1 {
            too_big.extend_from_slice(line);
        }
        too_big.extend_from_slice(b"\r\n");
        assert!(decode(&too_big).is_err());
    }

    #[test]
    fn errors() {
        for bad in [
            &b"\r\n"[..],                    // empty size
            b";ext\r\n",                     // empty size before extension
            b"g\r\n",                        // non-hex
            b"-1\r\n",                       // sign
            b"0x5\r\n",                      // prefix
            b"5 \r\nhello\r\n0\r\n\r\n",     // whitespace after size
            b" 5\r\nhello\r\n0\r\n\r\n",     // whitespace before size
            b"5 ;a\r\nhello\r\n0\r\n\r\n",   // BWS before extension
            b"5\nhello\r\n0\r\n\r\n",        // bare LF in size line
            b"5\rhello\r\n0\r\n\r\n",        // bare CR in size line
            b"5;a\nb\r\nhello\r\n0\r\n\r\n", // bare LF in extension
            b"5;a\0\r\nhello\r\n0\r\n\r\n",  // NUL in extension
            b"5\r\nhelloX\r\n0\r\n\r\n",     // data longer than size
            b"5\r\nhello\n0\r\n\r\n",        // bare LF after data
            b"5\r\nhello\r0\r\n\r\n",        // bare CR after data
            b"5\r\nhello0\r\n\r\n",          // no CRLF after data
            b"0\r\n\n",                      // bare LF ending trailers
            b"0\r\n\r0",                     // bare CR ending trailers
            b"0\r\nX: a\n\r\n",              // bare LF in trailer
            b"0\r\nX: a\rb\r\n\r\n",         // bare CR in trailer
            b"0\r\nX : a\r\n\r\n",           // whitespace before colon
            b"0\r\n X: a\r\n\r\n",           // obs-fold / leading space
            b"0\r\nX: a\r\n b\r\n\r\n",      // obs-fold continuation
            b"0\r\nX\r\n\r\n",               // no colon
            b"0\r\n: a\r\n\r\n",             // empty name
            b"0\r\nX: a\x01\r\n\r\n",        // control byte in value
        ] {
            let whole = decode(bad).unwrap_err();
            assert_ne!(
                whole.reason,
                INCOMPLETE,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            let split = decode_split(bad, &mut || 1).unwrap_err();
            assert_eq!(split, whole, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut seed: u64 = 42;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"0123456789abcdefABCDEF;=\r\n \t:xX\0\x7f\x80";
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut decoder = ChunkedDecoder::new();
            let mut at = 0;
            while at < input.len() {
                match decoder.advance(&input[at..]) {
                    Ok(step) if step.done => break,
                    Ok(step) => {
                        assert!(step.consumed > 0);
                        at += step.consumed;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
