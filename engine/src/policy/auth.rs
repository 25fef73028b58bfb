//! The authentication step of a request: find the credential the route's policy names
//! (bearer token, header, cookie, API key in a header or query parameter), refuse it when
//! sent twice (400: the upstream could read the copy the gateway did not check), check it,
//! and write the identity headers for the upstream. Runs on a worker; reads no file, takes no
//! lock, and allocates nothing on the cached-token path beyond the identity lines it writes.

use std::cell::RefCell;

use coregate_config::{AuthRef, Config, KeySource, TokenSource};

use super::jwt::{self, TokenCache};
use super::{apikey, Policies};
use crate::http::{fold_name_byte, RequestHead};

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
    /// The credential the policy reads came twice: two of its header (in any spelling a
    /// CGI-style upstream merges), its cookie named twice in `Cookie`, or its query parameter
    /// given twice. Refused (400) rather than guessed: the gateway would check one copy while
    /// the upstream might read the other.
    DuplicateCredential,
}

impl Denial {
    /// The JSON error message.
    pub fn reason(self) -> &'static str {
        match self {
            Denial::MissingToken => "missing bearer token",
            Denial::InvalidToken(reason) => reason,
            Denial::MissingApiKey => "missing API key",
            Denial::InvalidApiKey => "invalid API key",
            Denial::DuplicateCredential => "credential sent more than once",
        }
    }

    /// The status to answer: 401, or 400 for a malformed request.
    pub fn status(self) -> u16 {
        match self {
            Denial::DuplicateCredential => 400,
            _ => 401,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401.
    pub fn challenge(self) -> Option<String> {
        Some(match self {
            Denial::MissingToken => "Bearer".to_owned(),
            Denial::InvalidToken(reason) => {
                format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"")
            }
            Denial::MissingApiKey | Denial::InvalidApiKey => "ApiKey".to_owned(),
            Denial::DuplicateCredential => return None,
        })
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
                // The parser lets through one Authorization field at most.
                TokenSource::Bearer => head
                    .header(buf, "authorization")
                    .and_then(jwt::bearer_token),
                TokenSource::Header(name) => single_header(head, buf, name)?,
                TokenSource::Cookie(name) => single_cookie(head, buf, name)?,
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
                KeySource::Header(name) => (single_header(head, buf, name)?, None),
                KeySource::Query(name) => {
                    let query = head.query.map(|q| q.get(buf)).unwrap_or_default();
                    if apikey::query_param_count(query, name) > 1 {
                        return Err(Denial::DuplicateCredential);
                    }
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

/// The value of the header `lower_name` carrying a credential, refusing a second field of
/// that name in any spelling a CGI-style upstream would merge with it (`X_Api_Key` beside
/// `X-Api-Key`): that copy would reach the upstream unchecked.
fn single_header<'b>(
    head: &RequestHead,
    buf: &'b [u8],
    lower_name: &str,
) -> Result<Option<&'b [u8]>, Denial> {
    let name = lower_name.as_bytes();
    let same = |field: &[u8]| {
        field.len() == name.len()
            && field
                .iter()
                .zip(name)
                .all(|(&a, &b)| fold_name_byte(a) == fold_name_byte(b))
    };
    let mut copies = head.headers.iter().filter(|f| same(f.name.get(buf)));
    if copies.nth(1).is_some() {
        return Err(Denial::DuplicateCredential);
    }
    Ok(head.header(buf, lower_name))
}

/// The value of cookie `name`, looked for in every `Cookie` field (an HTTP/2 client splits
/// its cookies over several, RFC 9113 §8.2.3), refusing the name given twice. Only the
/// policy's own cookie is checked: browsers send one name twice when cookies of different
/// paths or domains share it (RFC 6265 §5.4), which is normal traffic for other cookies.
fn single_cookie<'b>(
    head: &RequestHead,
    buf: &'b [u8],
    name: &str,
) -> Result<Option<&'b [u8]>, Denial> {
    let mut value = None;
    let mut copies = 0;
    for field in &head.headers {
        if !field.name.get(buf).eq_ignore_ascii_case(b"cookie") {
            continue;
        }
        let cookies = field.value.get(buf);
        copies += jwt::cookie_count(cookies, name);
        value = value.or_else(|| jwt::cookie_value(cookies, name));
    }
    if copies > 1 {
        return Err(Denial::DuplicateCredential);
    }
    Ok(value)
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
        assert_eq!(Denial::MissingToken.challenge().as_deref(), Some("Bearer"));
        assert_eq!(
            Denial::InvalidToken("token expired").challenge().as_deref(),
            Some("Bearer error=\"invalid_token\", error_description=\"token expired\"")
        );
        assert_eq!(Denial::DuplicateCredential.status(), 400);
        assert_eq!(Denial::DuplicateCredential.challenge(), None);
    }

    fn head(raw: &[u8]) -> RequestHead {
        let mut head = RequestHead::new();
        let limits = crate::http::Limits {
            request_line_bytes_max: 8192,
            header_bytes_max: 8192,
            header_count_max: 64,
        };
        head.parse(raw, &limits).unwrap().unwrap();
        head
    }

    #[test]
    fn a_credential_header_counts_in_every_spelling() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: a\r\n\r\n";
        assert_eq!(
            single_header(&head(raw), raw, "x-api-key"),
            Ok(Some(&b"a"[..]))
        );
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: a\r\nx-api-key: b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: a\r\nX_Api_Key: b\r\n\r\n",
        ] {
            assert_eq!(
                single_header(&head(raw), raw, "x-api-key"),
                Err(Denial::DuplicateCredential)
            );
        }
    }

    #[test]
    fn the_credential_cookie_counts_across_cookie_fields() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; a=2\r\nCookie: s=t\r\n\r\n";
        // A repeated other cookie is normal traffic; the credential cookie is found in the
        // second field.
        assert_eq!(single_cookie(&head(raw), raw, "s"), Ok(Some(&b"t"[..])));
        assert_eq!(
            single_cookie(&head(raw), raw, "a"),
            Err(Denial::DuplicateCredential)
        );
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nCookie: s=t\r\nCookie: x=1; s=u\r\n\r\n";
        assert_eq!(
            single_cookie(&head(raw), raw, "s"),
            Err(Denial::DuplicateCredential)
        );
    }
}
