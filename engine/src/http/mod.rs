//! HTTP/1.1 codec: request and response heads parsed with httparse into header offset ranges
//! of the read buffer, RFC 9112 framing rules, chunked bodies validated as they stream, and
//! the heads the gateway writes (forwarded requests, relayed responses, its own errors).
//! Never allocates per header; never accepts an ambiguous message.
