//! Host normalisation for routing: the request's raw `Host` value and the config's host
//! names are brought to one form — lower-case, no port, no trailing dot, IPv6 literals in
//! brackets — so the host tables are plain map lookups.
//!
//! Never allocates for a request: the lower-cased host is written into a stack buffer of
//! [`HOST_BYTES_MAX`] bytes. A longer value cannot be a DNS name (RFC 1035 §2.3.4: 253
//! characters) and only reaches the any-host table.

/// Longest normalised host the host-specific tables are searched with.
pub(super) const HOST_BYTES_MAX: usize = 255;

/// Normalises a raw `Host` field value (RFC 9110 §7.2: `uri-host [ ":" port ]`) into
/// `buf`. Returns `None` when no host-specific route can match: empty or over-long hosts.
/// The port is not checked here; the codec rejects malformed Host fields.
pub(super) fn normalize_request_host<'b>(
    raw: &[u8],
    buf: &'b mut [u8; HOST_BYTES_MAX],
) -> Option<&'b [u8]> {
    let raw = raw.trim_ascii();
    let host = if raw.first() == Some(&b'[') {
        // An IP-literal (RFC 3986 §3.2.2): keep the brackets, drop what follows `]`.
        let close = raw.iter().position(|&b| b == b']')?;
        &raw[..=close]
    } else {
        match raw.iter().position(|&b| b == b':') {
            Some(colon) => &raw[..colon],
            None => raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > HOST_BYTES_MAX {
        return None;
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host);
    out.make_ascii_lowercase();
    Some(out)
}

/// Normalises a configured exact host or wildcard suffix the same way, once, at build time.
/// A bare IPv6 address (`::1`) gets the brackets a `Host` field carries.
pub(super) fn normalize_config_host(host: &str) -> Box<[u8]> {
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]").into_bytes().into_boxed_slice()
    } else {
        host.as_bytes().into()
    }
}

/// The suffixes of `host` that start at a dot with at least one byte before it, longest
/// first: `a.b.example.com` gives `.b.example.com`, `.example.com`, `.com`. A wildcard
/// `*.example.com` is stored as `.example.com`, so this finds the most specific wildcard in
/// as many map lookups as the host has labels.
pub(super) fn dot_suffixes(host: &[u8]) -> impl Iterator<Item = &[u8]> {
    host.iter()
        .enumerate()
        .skip(1)
        .filter(|&(_, &b)| b == b'.')
        .map(move |(i, _)| &host[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Option<String> {
        let mut buf = [0; HOST_BYTES_MAX];
        normalize_request_host(raw.as_bytes(), &mut buf)
            .map(|h| String::from_utf8(h.to_vec()).unwrap())
    }

    #[test]
    fn request_hosts() {
        assert_eq!(norm("API.Example.COM").as_deref(), Some("api.example.com"));
        assert_eq!(
            norm("api.example.com:8443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(norm("api.example.com.").as_deref(), Some("api.example.com"));
        assert_eq!(
            norm("api.example.com.:80").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(norm(" a.b ").as_deref(), Some("a.b"));
        assert_eq!(norm("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(norm("[FE80::1]").as_deref(), Some("[fe80::1]"));
        assert_eq!(norm("[::1").as_deref(), None);
        assert_eq!(norm("").as_deref(), None);
        assert_eq!(norm(":80").as_deref(), None);
        assert_eq!(norm(&"a".repeat(HOST_BYTES_MAX + 1)), None);
        assert_eq!(
            norm(&"a".repeat(HOST_BYTES_MAX)).map(|h| h.len()),
            Some(255)
        );
    }

    #[test]
    fn config_hosts() {
        assert_eq!(&*normalize_config_host("Example.com."), b"example.com");
        assert_eq!(&*normalize_config_host(".example.com"), b".example.com");
        assert_eq!(&*normalize_config_host("::1"), b"[::1]");
        assert_eq!(&*normalize_config_host("[::1]"), b"[::1]");
    }

    #[test]
    fn suffixes_longest_first() {
        let all: Vec<&[u8]> = dot_suffixes(b"a.b.example.com").collect();
        assert_eq!(all, [&b".b.example.com"[..], b".example.com", b".com"]);
        assert_eq!(dot_suffixes(b".example.com").count(), 1);
        assert_eq!(dot_suffixes(b"localhost").count(), 0);
    }
}
