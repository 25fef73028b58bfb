//! Streaming decoder for the HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), shared by the
//! fixture origin (request bodies) and the load generator (response bodies).
//!
//! It works on whatever slice of input is at hand and hands back the ranges of chunk data found
//! inside it, so a body of any size passes through a fixed read buffer. It never buffers body
//! data, never allocates, and bounds everything that is not data: chunk-size digits, the
//! chunk-size line with its extensions, and the trailer section.

use std::fmt;
use std::ops::Range;

/// Longest chunk-size line accepted, extensions included (bytes).
pub const CHUNK_LINE_BYTES_MAX: usize = 4096;
/// Longest trailer section accepted (bytes).
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;
/// Most hex digits in a chunk size: 16 digits fill a `u64`.
const CHUNK_SIZE_DIGITS_MAX: u32 = 16;

/// Where the decoder stands in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size,
    /// After the digits: whitespace and chunk extensions, up to the CR.
    Extension,
    /// Expecting the LF that ends a chunk-size line.
    SizeLf,
    /// Inside chunk data, with this many bytes left.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer field line or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line, up to the CR.
    Trailer,
    /// Expecting the LF that ends a trailer field line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The whole body, trailers included, has been read.
    Done,
}

/// Incremental decoder of one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    size_digits: u32,
    line_bytes: usize,
    trailer_bytes: usize,
}

/// The outcome of one [`ChunkedDecoder::decode`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Input bytes consumed (framing and data alike); the caller drops them.
    pub consumed: usize,
    /// Chunk data found, as a range of the input; empty when none was found.
    pub data: Range<usize>,
}

/// A chunked body that breaks the grammar or one of the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedError(&'static str);

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkedError {}

impl From<ChunkedError> for std::io::Error {
    fn from(e: ChunkedError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            size_digits: 0,
            line_bytes: 0,
            trailer_bytes: 0,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input` until it finds a run of chunk data, reaches the end of the body, or runs
    /// out of input. Returns early with the data it found, so call it again on the rest
    /// (`&input[step.consumed..]`) until the input is consumed or the body is done.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match self.state {
                State::Size => {
                    if let Some(digit) = hex_value(byte) {
                        if self.size_digits == CHUNK_SIZE_DIGITS_MAX {
                            return Err(ChunkedError("chunk size too large"));
                        }
                        self.size = (self.size << 4) | u64::from(digit);
                        self.size_digits += 1;
                    } else if self.size_digits == 0 {
                        return Err(ChunkedError("chunk size missing"));
                    } else if byte == b'\r' {
                        self.state = State::SizeLf;
                    } else if byte == b';' || byte == b' ' || byte == b'\t' {
                        self.state = State::Extension;
                    } else {
                        return Err(ChunkedError("bad byte in chunk size"));
                    }
                    self.count_line_byte()?;
                }
                State::Extension => {
                    match byte {
                        b'\r' => self.state = State::SizeLf,
                        b'\n' => return Err(ChunkedError("bare LF in chunk-size line")),
                        _ => {}
                    }
                    self.count_line_byte()?;
                }
                State::SizeLf => {
                    if byte != b'\n' {
                        return Err(ChunkedError("chunk-size line not ended by CRLF"));
                    }
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data(self.size)
                    };
                    self.size = 0;
                    self.size_digits = 0;
                    self.line_bytes = 0;
                }
                State::Data(left) => {
                    let available = (input.len() - i) as u64;
                    let take = left.min(available);
                    self.state = if take == left {
                        State::DataCr
                    } else {
                        State::Data(left - take)
                    };
                    // `take` fits in usize: it is at most the input length.
                    let end = i + take as usize;
                    return Ok(Step {
                        consumed: end,
                        data: i..end,
                    });
                }
                State::DataCr => {
                    if byte != b'\r' {
                        return Err(ChunkedError("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if byte != b'\n' {
                        return Err(ChunkedError("chunk data not followed by CRLF"));
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => {
                    match byte {
                        b'\r' => self.state = State::EndLf,
                        b'\n' => return Err(ChunkedError("bare LF in trailer section")),
                        _ => self.state = State::Trailer,
                    }
                    self.count_trailer_byte()?;
                }
                State::Trailer => {
                    match byte {
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' => return Err(ChunkedError("bare LF in trailer section")),
                        _ => {}
                    }
                    self.count_trailer_byte()?;
                }
                State::TrailerLf => {
                    if byte != b'\n' {
                        return Err(ChunkedError("trailer line not ended by CRLF"));
                    }
                    self.state = State::TrailerStart;
                    self.count_trailer_byte()?;
                }
                State::EndLf => {
                    if byte != b'\n' {
                        return Err(ChunkedError("chunked body not ended by CRLF"));
                    }
                    self.state = State::Done;
                    return Ok(Step {
                        consumed: i + 1,
                        data: i + 1..i + 1,
                    });
                }
                State::Done => {
                    return Ok(Step {
                        consumed: i,
                        data: i..i,
                    })
                }
            }
            i += 1;
        }
        Ok(Step {
            consumed: i,
            data: i..i,
        })
    }

    fn count_line_byte(&mut self) -> Result<(), ChunkedError> {
        self.line_bytes += 1;
        if self.line_bytes > CHUNK_LINE_BYTES_MAX {
            return Err(ChunkedError("chunk-size line too long"));
        }
        Ok(())
    }

    fn count_trailer_byte(&mut self) -> Result<(), ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(ChunkedError("trailer section too long"));
        }
        Ok(())
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes and collects the decoded body.
    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut offset = 0;
        while offset < input.len() && !decoder.is_done() {
            let end = (offset + piece).min(input.len());
            let mut window = &input[offset..end];
            while !window.is_empty() && !decoder.is_done() {
                let step = decoder.decode(window)?;
                body.extend_from_slice(&window[step.data.clone()]);
                window = &window[step.consumed..];
                offset += step.consumed;
            }
        }
        assert!(decoder.is_done(), "body not finished");
        Ok((body, offset))
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers_in_any_split() {
        let input = b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";
        for piece in 1..input.len() {
            let (body, used) = decode_in_pieces(input, piece).unwrap();
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
            assert_eq!(&input[used..], b"NEXT", "piece {piece}");
        }
    }

    #[test]
    fn stops_at_end_of_body() {
        let mut decoder = ChunkedDecoder::new();
        let step = decoder.decode(b"0\r\n\r\nGET / HTTP/1.1").unwrap();
        assert_eq!(step.consumed, 5);
        assert!(decoder.is_done());
        assert_eq!(decoder.decode(b"more").unwrap().consumed, 0);
    }

    #[test]
    fn rejects_malformed_framing() {
        for bad in [
            &b"\r\n"[..],
            b"zz\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nbad\ntrailer\r\n\r\n",
        ] {
            assert!(decode_in_pieces(bad, 64).is_err(), "{:?}", bad);
        }
    }

    #[test]
    fn bounds_size_lines_and_trailers() {
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'x', CHUNK_LINE_BYTES_MAX));
        assert!(ChunkedDecoder::new().decode(&long_ext).is_err());

        let mut long_trailer = b"0\r\nX: ".to_vec();
        long_trailer.extend(std::iter::repeat_n(b'x', TRAILER_BYTES_MAX));
        assert!(ChunkedDecoder::new().decode(&long_trailer).is_err());
    }
}
