//! The authentication step of a request: find the credential the route's policy names
//! (bearer token, header, cookie, API key in a header or query parameter), check it, and
//! write the identity headers for the upstream. Runs on a worker; reads no file, takes no
//! lock, and allocates nothing on the cached-token path beyond the identity lines it writes.

use std::cell::RefCell;

use coregate_config::{AuthRef, Config, KeySource, TokenSource};

use super::jwt::{self, TokenCache};
use super::{apikey, Policies};
use crate::http::RequestHead;

/// Why a request was refused, and how to say so (RFC 6750 §3 for bearer tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No token where the route expects one: `WWW-Authenticate: Bearer` without an error
    /// code (RFC 6750 §3.1).
    MissingToken,
    /// A token that failed verification, with a reason safe to show.
    InvalidToken(&'static str),
    MissingApiKey,
    InvalidApiKey,
}

impl Denial {
    /// The JSON error message.
    pub fn reason(self) -> &'static str {
        match self {
            Denial::MissingToken => "missing bearer token",
            Denial::InvalidToken(reason) => reason,
            Denial::MissingApiKey => "missing API key",
            Denial::InvalidApiKey => "invalid API key",
        }
    }

    /// The `WWW-Authenticate` challenge.
    pub fn challenge(self) -> String {
        match self {
            Denial::MissingToken => "Bearer".to_owned(),
            Denial::InvalidToken(reason) => {
                format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"")
            }
            Denial::MissingApiKey | Denial::InvalidApiKey => "ApiKey".to_owned(),
        }
    }
}

/// What a passed check established.
#[derive(Debug, Default)]
pub struct Identity {
    /// The query with an API key taken from it removed, when the key came from the query.
    pub query_without_key: Option<Vec<u8>>,
}

/// Checks the credential `auth` asks for and appends `Name: value\r\n` identity lines to
/// `identity`.
#[allow(clippy::too_many_arguments)]
pub fn authenticate(
    policies: &Policies,
    config: &Config,
    token_caches: &[RefCell<TokenCache>],
    auth: AuthRef,
    head: &RequestHead,
    buf: &[u8],
    now_unix: u64,
    identity: &mut Vec<u8>,
) -> Result<Identity, Denial> {
    match auth {
        AuthRef::Jwt(i) => {
            let verifier = &policies.jwt[i];
            let token = match &config.jwt[i].token_source {
                TokenSource::Bearer => head
                    .header(buf, "authorization")
                    .and_then(jwt::bearer_token),
                TokenSource::Header(name) => head.header(buf, name),
                TokenSource::Cookie(name) => head
                    .header(buf, "cookie")
                    .and_then(|c| jwt::cookie_value(c, name)),
            }
            .filter(|t| !t.is_empty())
            .ok_or(Denial::MissingToken)?;
            let mut cache = token_caches[i].borrow_mut();
            let verified = cache
                .verify(verifier, token, now_unix)
                .map_err(|e| Denial::InvalidToken(e.reason()))?;
            for (name, value) in verifier.identity_headers(verified) {
                push_identity(identity, name, value.as_bytes());
            }
            Ok(Identity::default())
        }
        AuthRef::ApiKey(i) => {
            let set = &config.api_keys[i];
            let (key, query_without_key) = match &set.source {
                KeySource::Header(name) => (head.header(buf, name), None),
                KeySource::Query(name) => {
                    let query = head.query.map(|q| q.get(buf)).unwrap_or_default();
                    let key = apikey::query_param(query, name);
                    let mut rest = Vec::with_capacity(query.len());
                    apikey::strip_query_param(query, name, &mut rest);
                    (key, Some(rest))
                }
            };
            let key = key.filter(|k| !k.is_empty()).ok_or(Denial::MissingApiKey)?;
            let consumer = policies.api_keys[i]
                .lookup(key)
                .ok_or(Denial::InvalidApiKey)?;
            push_identity(identity, &set.consumer_header, consumer.as_bytes());
            Ok(Identity { query_without_key })
        }
    }
}

/// Appends one identity line, unless the value could break the head (CR, LF, NUL or other
/// control bytes from a claim): such a claim is not passed on.
fn push_identity(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_values_that_could_split_the_head_are_dropped() {
        let mut out = Vec::new();
        push_identity(&mut out, "X-User-Id", b"alice");
        push_identity(&mut out, "X-User-Id", b"eve\r\nX-Admin: 1");
        assert_eq!(out, b"X-User-Id: alice\r\n");
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(Denial::MissingToken.challenge(), "Bearer");
        assert_eq!(
            Denial::InvalidToken("token expired").challenge(),
            "Bearer error=\"invalid_token\", error_description=\"token expired\""
        );
    }
}
