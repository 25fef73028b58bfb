//! HTTP/1.1 codec: request and response heads parsed with httparse into header offset ranges
//! of the read buffer, RFC 9112 framing rules, chunked bodies validated as they stream, and
//! the heads the gateway writes (forwarded requests, relayed responses, its own errors).
//! Never allocates per header; never accepts an ambiguous message.
//!
//! - [`request`]: [`RequestHead::parse`], limits (414/431), framing and Host rules.
//! - [`path`]: the path's normal form (RFC 3986 dot-segments and escapes), [`normalize`],
//!   applied to a parsed head by [`normalize_head`] before anything routes on it.
//! - [`response`]: [`ResponseHead::parse`] and response framing (RFC 9112 §6.3).
//! - [`chunked`]: [`ChunkedDecoder`], a resumable validating decoder for chunked bodies.
//! - [`encode`]: forwarded request heads, relayed response heads, JSON error responses.
//! - [`forwarded`]: [`ClientAddr`], the client address behind trusted proxies.
//!
//! The codec is pure: no I/O, no async, no clock. The proxy loop reads into a buffer, calls
//! `parse` until it returns a head, routes on the spans, and writes what `encode` produces.
//!
//! # Fuzz contract
//!
//! The contract a cargo-fuzz target (outside the workspace, to come) checks for
//! [`RequestHead::parse`], [`ResponseHead::parse`] and [`ChunkedDecoder::advance`] on
//! arbitrary bytes and arbitrary splits:
//!
//! - **Never panic**, whatever the input, limits or split points.
//! - **Never ambiguous**: a head is accepted only if its framing has a single reading under
//!   RFC 9112 (one Content-Length value or exactly `chunked`, never both, CRLF line endings
//!   only, no obs-fold, no bare CR, no NUL); everything else is an error, never a guess.
//! - **Prefix-stable**: parsing a prefix of an accepted head returns `Ok(None)` (or a limit
//!   error), never a different head; feeding a chunked body in any split yields the same
//!   payload, the same consumed total and the same error as feeding it whole.
//! - **Spans in bounds**: every [`Span`] of an accepted head lies within `buf[..head_len]`;
//!   every [`Step`] range lies within the consumed bytes.
//! - **Normal paths**: [`normalize`] never panics; a path it accepts comes out no longer than
//!   it went in, starting with `/`, with no `.` or `..` segment, and normalising it again
//!   changes nothing.
//! - **Round trip**: a head produced by [`encode_request_head`] or [`encode_response_head`]
//!   parses back to the same method, target, framing and forwarded fields.

pub mod chunked;
pub mod encode;
mod fields;
pub mod forwarded;
pub mod path;
pub mod request;
pub mod response;

pub use chunked::{ChunkError, ChunkedDecoder, Step};
pub use encode::{
    encode_request_head, encode_response_head, error_response, reason_phrase, relays_verbatim,
    FieldEdits, Forward,
};
pub use fields::CONNECTION_OPTIONS_MAX;
pub(crate) use fields::{fold_name, fold_name_byte, same_folded_name};
pub use forwarded::ClientAddr;
pub use path::{normalize, normalize_head, normalize_in_place, PathError, PathOptions};
pub use request::{
    BodyFraming, HeaderField, HeaderKind, Limits, Method, RequestError, RequestHead, Span,
    HEADER_COUNT_LIMIT,
};
pub use response::{ResponseBody, ResponseError, ResponseHead};
