//! Request and response transformation: a route's header edits (remove, rename, set, add
//! with variables) and its request id, compiled once per snapshot and expanded per request
//! into `Name: value\r\n` lines. Path templates are the router's (`rewrite_path`).
//!
//! Never allocates per request beyond the lines it writes into the connection's reused
//! buffers; a variable whose value could break a head (CR, LF, NUL) is left empty.

use std::cell::Cell;
use std::io::Write as _;
use std::net::IpAddr;

use coregate_config::{AuthRef, HeaderEdits, Route, TemplatePart, Variable};

use crate::http::{fold_name, FieldEdits};
use crate::router::Params;

/// The request-id field, set upstream and returned to the client.
pub const REQUEST_ID: &str = "X-Request-Id";

/// A header name and its value template.
pub type Line = (Box<str>, Box<[TemplatePart]>);

/// One direction's compiled edits.
#[derive(Debug, Default)]
pub struct Edits {
    /// Names dropped from the received head, folded ([`fold_name`]: any case, `_` for `-`):
    /// removed and `set` fields (and, for requests, identity headers, a consumed API-key
    /// header, `add` fields whose value comes from a claim and the request id the gateway
    /// sets; for responses the request id when the route returns its own).
    pub drop: Box<[Box<str>]>,
    pub rename: Box<[(Box<str>, Box<str>)]>,
    /// `set` and `add` lines, in that order.
    pub lines: Box<[Line]>,
}

impl Edits {
    /// Compiles `edits`, dropping also `also_drop`.
    pub fn new(edits: &HeaderEdits, also_drop: impl IntoIterator<Item = String>) -> Edits {
        let mut drop: Vec<Box<str>> = also_drop.into_iter().map(|n| fold_name(&n)).collect();
        drop.extend(edits.remove.iter().map(|n| fold_name(n)));
        drop.extend(edits.set.iter().map(|(n, _)| fold_name(n)));
        drop.sort();
        drop.dedup();
        Edits {
            drop: drop.into(),
            rename: edits
                .rename
                .iter()
                .map(|(from, to)| (from.as_str().into(), to.as_str().into()))
                .collect(),
            lines: edits
                .set
                .iter()
                .chain(&edits.add)
                .map(|(name, value)| (name.as_str().into(), value.clone().into()))
                .collect(),
        }
    }

    /// The edits for the encoder, with `extra` the lines already expanded.
    pub fn field_edits<'a>(&'a self, extra: &'a [u8]) -> FieldEdits<'a> {
        FieldEdits {
            drop: &self.drop,
            rename: &self.rename,
            extra,
        }
    }
}

/// A route's transformation.
#[derive(Debug)]
pub struct Transform {
    pub request: Edits,
    pub response: Edits,
    /// Whether the route passes and returns `X-Request-Id`.
    pub request_id: bool,
    /// For `${claim.NAME}`: the identity header each mapped claim travels in (by the index
    /// in the route's verifier's `claims_to_headers`).
    pub claim_headers: Box<[Box<str>]>,
}

impl Transform {
    /// Compiles a route's edits. `request_drop` are the identity headers and the consumed
    /// API-key header; `claim_headers` the route's verifier's identity header names.
    ///
    /// Every client copy of a header the gateway fills from the identity is dropped, not only
    /// the identity headers: an `add` line carrying a claim, and with `request_id` the
    /// request id (the gateway writes the one it returns, received or generated).
    pub fn new(route: &Route, mut request_drop: Vec<String>, claim_headers: Vec<Box<str>>) -> Self {
        let mut response_drop = Vec::new();
        if route.request_id {
            response_drop.push(REQUEST_ID.to_ascii_lowercase());
            request_drop.push(REQUEST_ID.to_ascii_lowercase());
        }
        let from_claim = |parts: &[TemplatePart]| {
            parts
                .iter()
                .any(|p| matches!(p, TemplatePart::Var(Variable::Claim(_))))
        };
        request_drop.extend(
            route
                .request_headers
                .add
                .iter()
                .filter(|(_, parts)| from_claim(parts))
                .map(|(name, _)| name.clone()),
        );
        Transform {
            request: Edits::new(&route.request_headers, request_drop),
            response: Edits::new(&route.response_headers, response_drop),
            request_id: route.request_id,
            claim_headers: claim_headers.into(),
        }
    }
}

/// What variables expand to for one request.
pub struct Vars<'a> {
    pub client_ip: IpAddr,
    pub route: &'a str,
    pub request_id: &'a [u8],
    /// The request path the parameters index into.
    pub path: &'a [u8],
    pub params: &'a Params,
    /// The identity lines the authentication step wrote (claims come from there).
    pub identity: &'a [u8],
    pub claim_headers: &'a [Box<str>],
}

/// Appends `Name: value\r\n` for each line, its value expanded.
pub fn expand(lines: &[Line], vars: &Vars<'_>, out: &mut Vec<u8>) {
    for (name, parts) in lines {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        for part in parts.iter() {
            match part {
                TemplatePart::Literal(text) => out.extend_from_slice(text.as_bytes()),
                TemplatePart::Var(var) => push_safe(out, &value(var, vars)),
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn value<'a>(var: &Variable, vars: &'a Vars<'a>) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    match var {
        Variable::ClientIp => Cow::Owned(vars.client_ip.to_string().into_bytes()),
        Variable::Route => Cow::Borrowed(vars.route.as_bytes()),
        Variable::RequestId => Cow::Borrowed(vars.request_id),
        Variable::Param(i) => Cow::Borrowed(
            vars.params
                .get(*i)
                .and_then(|r| vars.path.get(r))
                .unwrap_or_default(),
        ),
        Variable::Claim(i) => Cow::Borrowed(
            vars.claim_headers
                .get(*i)
                .and_then(|header| identity_value(vars.identity, Some(header)))
                .unwrap_or_default(),
        ),
    }
}

/// Appends `value` unless a byte of it could end the field early.
fn push_safe(out: &mut Vec<u8>, value: &[u8]) {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        out.extend_from_slice(value);
    }
}

/// The value of the identity line for `header` (or of the first line) in `lines`.
pub fn identity_value<'a>(lines: &'a [u8], header: Option<&str>) -> Option<&'a [u8]> {
    lines
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r")?;
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], line[colon + 1..].trim_ascii_start()))
        })
        .find(|(name, _)| header.is_none_or(|h| h.as_bytes().eq_ignore_ascii_case(name)))
        .map(|(_, value)| value)
}

/// Generates request ids: a random per-worker prefix and a counter, 24 hex digits.
pub struct RequestIds {
    prefix: u64,
    next: Cell<u32>,
}

impl RequestIds {
    pub fn new(prefix: u64) -> RequestIds {
        RequestIds {
            prefix,
            next: Cell::new(0),
        }
    }

    /// Writes a fresh id into `out` (cleared first).
    pub fn generate(&self, out: &mut Vec<u8>) {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        out.clear();
        let _ = write!(out, "{:016x}{n:08x}", self.prefix);
    }
}

/// The claim → identity-header names of a route's JWT verifier, for `${claim.NAME}`.
pub fn route_claim_headers(route: &Route, config: &coregate_config::Config) -> Vec<Box<str>> {
    match route.auth {
        Some(AuthRef::Jwt(i)) => config.jwt[i]
            .claims_to_headers
            .iter()
            .map(|(_, header)| header.as_str().into())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_and_unsafe_values_are_left_out() {
        let params = Params::default();
        let vars = Vars {
            client_ip: "192.0.2.9".parse().unwrap(),
            route: "users",
            request_id: b"abc",
            path: b"/x",
            params: &params,
            identity: b"X-User-Id: alice\r\nX-Evil: a\rb\r\n",
            claim_headers: &["X-User-Id".into(), "X-Evil".into()],
        };
        let lines: Vec<Line> = vec![
            (
                "X-Who".into(),
                vec![
                    TemplatePart::Var(Variable::Claim(0)),
                    TemplatePart::Literal("@".into()),
                    TemplatePart::Var(Variable::ClientIp),
                ]
                .into(),
            ),
            (
                "X-Route".into(),
                vec![TemplatePart::Var(Variable::Route)].into(),
            ),
            (
                "X-Bad".into(),
                vec![TemplatePart::Var(Variable::Claim(1))].into(),
            ),
        ];
        let mut out = Vec::new();
        expand(&lines, &vars, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-Who: alice@192.0.2.9\r\nX-Route: users\r\nX-Bad: \r\n"
        );
    }

    #[test]
    fn request_ids_are_distinct() {
        let ids = RequestIds::new(0xfeed);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ids.generate(&mut a);
        ids.generate(&mut b);
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
    }
}
