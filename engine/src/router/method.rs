//! Method sets of routes: a bitset over the nine methods of RFC 9110 §9 and PATCH
//! (RFC 5789), plus a short list for extension methods.
//!
//! Methods are compared case-sensitively (RFC 9110 §9.1: "The method token is
//! case-sensitive"); the config upper-cases what it accepts, so a request for `get` matches
//! no route that names `GET`. Matching never allocates; only [`MethodSet::names`] feeds the
//! `Allow` list of a 405, which is built outside the hot path.

/// The methods with a bit of their own, in bit order.
const KNOWN: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A request method, classified once per lookup.
#[derive(Debug, Clone, Copy)]
pub(super) enum Method<'a> {
    /// One of [`KNOWN`], as its bit.
    Known(u16),
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    pub(super) fn parse(token: &'a [u8]) -> Self {
        let index = match token {
            b"GET" => 0,
            b"HEAD" => 1,
            b"POST" => 2,
            b"PUT" => 3,
            b"DELETE" => 4,
            b"CONNECT" => 5,
            b"OPTIONS" => 6,
            b"TRACE" => 7,
            b"PATCH" => 8,
            _ => return Method::Other(token),
        };
        Method::Known(1 << index)
    }
}

/// The methods a route accepts. Empty means any method.
#[derive(Debug)]
pub(super) struct MethodSet {
    known: u16,
    other: Box<[Box<str>]>,
}

impl MethodSet {
    pub(super) fn new(methods: &[String]) -> Self {
        let mut known = 0;
        let mut other: Vec<Box<str>> = Vec::new();
        for method in methods {
            match Method::parse(method.as_bytes()) {
                Method::Known(bit) => known |= bit,
                Method::Other(_) => {
                    if !other.iter().any(|o| **o == **method) {
                        other.push(method.as_str().into());
                    }
                }
            }
        }
        MethodSet {
            known,
            other: other.into_boxed_slice(),
        }
    }

    /// Whether the route names any method at all (a constraint for specificity).
    pub(super) fn is_constrained(&self) -> bool {
        self.known != 0 || !self.other.is_empty()
    }

    pub(super) fn allows(&self, method: Method<'_>) -> bool {
        if !self.is_constrained() {
            return true;
        }
        match method {
            Method::Known(bit) => self.known & bit != 0,
            Method::Other(token) => self.other.iter().any(|o| o.as_bytes() == token),
        }
    }

    /// The configured method names, for an `Allow` field.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        KNOWN
            .iter()
            .enumerate()
            .filter(|&(bit, _)| self.known & (1 << bit) != 0)
            .map(|(_, name)| *name)
            .chain(self.other.iter().map(|o| &**o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(methods: &[&str]) -> MethodSet {
        MethodSet::new(&methods.iter().map(|m| m.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn empty_set_allows_everything() {
        let any = set(&[]);
        assert!(!any.is_constrained());
        assert!(any.allows(Method::parse(b"GET")));
        assert!(any.allows(Method::parse(b"PURGE")));
    }

    #[test]
    fn known_and_extension_methods() {
        let s = set(&["GET", "PURGE", "PATCH"]);
        assert!(s.allows(Method::parse(b"GET")));
        assert!(s.allows(Method::parse(b"PATCH")));
        assert!(s.allows(Method::parse(b"PURGE")));
        assert!(!s.allows(Method::parse(b"POST")));
        assert!(!s.allows(Method::parse(b"LINK")));
        // RFC 9110 §9.1: method tokens are case-sensitive.
        assert!(!s.allows(Method::parse(b"get")));
        let names: Vec<&str> = s.names().collect();
        assert_eq!(names, ["GET", "PATCH", "PURGE"]);
    }
}
