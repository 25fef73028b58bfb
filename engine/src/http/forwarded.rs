//! Who the client is: the peer's address, or, when the peer is a trusted proxy
//! (`server.trusted_proxies`), the address its X-Forwarded-For names.
//!
//! The walk is nginx's `real_ip_recursive on`: X-Forwarded-For elements from right to left
//! (later fields after earlier ones, RFC 9110 §5.3), skipping trusted addresses; the first
//! untrusted one is the client. An element that is not a bare IP address stops the walk and
//! the last good address stands, so a client can never put a forged address past a hop the
//! gateway could not read. Only X-Forwarded-For is consulted, never `Forwarded` or
//! `X-Real-IP`: one chain of custody, the one every proxy in common use appends to.
//!
//! Costs nothing when no proxy is trusted (the common case): the peer is the client and no
//! field is read. Never allocates; at most [`HOPS_MAX`] elements are examined.

use std::net::IpAddr;

use ipnet::IpNet;

use super::fields::trim_ows;
use super::request::{HeaderKind, RequestHead};

/// Most X-Forwarded-For elements examined from the right; past them the last good address
/// stands. Bounds the cost of a head full of trusted-looking hops.
pub const HOPS_MAX: usize = 32;

/// The client a request is from, as the gateway decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address: `${client_ip}`, rate-limit keys, hashing, the access log,
    /// `X-Real-IP`.
    pub ip: IpAddr,
    /// The address that connected to the gateway, appended to X-Forwarded-For.
    pub peer: IpAddr,
    /// The peer is in `trusted_proxies`: its forwarding fields are kept and its
    /// X-Forwarded-For is appended to rather than replaced.
    pub peer_trusted: bool,
}

impl ClientAddr {
    /// The peer itself, untrusted: what a request is from before its head is read.
    pub fn peer(peer: IpAddr) -> ClientAddr {
        let peer = peer.to_canonical();
        ClientAddr {
            ip: peer,
            peer,
            peer_trusted: false,
        }
    }

    /// Decides the client of `head` (parsed from `buf`), received from `peer`. IPv4-mapped
    /// IPv6 addresses (a dual-stack listener's IPv4 peers) are compared and reported as IPv4.
    pub fn resolve(trusted: &[IpNet], peer: IpAddr, head: &RequestHead, buf: &[u8]) -> ClientAddr {
        let peer = ClientAddr::peer(peer);
        if trusted.is_empty() || !is_trusted(trusted, peer.ip) {
            return peer;
        }
        let mut client = peer.ip;
        let mut hops = 0;
        let chain = head
            .headers
            .iter()
            .rev()
            .filter(|f| f.kind == HeaderKind::XForwardedFor)
            .flat_map(|f| f.value.get(buf).rsplit(|&b| b == b','))
            .map(trim_ows)
            .filter(|e| !e.is_empty()); // RFC 9110 §5.6.1: empty elements do not count
        for element in chain {
            hops += 1;
            let Some(ip) = parse_ip(element) else { break };
            client = ip;
            if !is_trusted(trusted, ip) || hops == HOPS_MAX {
                break;
            }
        }
        ClientAddr {
            ip: client,
            peer: peer.peer,
            peer_trusted: true,
        }
    }
}

fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// A bare IPv4 or IPv6 address (no port, no brackets), canonical (IPv4-mapped → IPv4).
fn parse_ip(element: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(element).ok()?;
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Limits;

    const LIMITS: Limits = Limits {
        request_line_bytes_max: 8192,
        header_bytes_max: 65536,
        header_count_max: 100,
    };

    fn client(trusted: &[&str], peer: &str, fields: &str) -> ClientAddr {
        let trusted: Vec<IpNet> = trusted.iter().map(|n| n.parse().unwrap()).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        let mut head = RequestHead::new();
        head.parse(raw.as_bytes(), &LIMITS).unwrap().unwrap();
        ClientAddr::resolve(&trusted, peer.parse().unwrap(), &head, raw.as_bytes())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client() {
        let xff = "X-Forwarded-For: 1.2.3.4\r\n";
        assert_eq!(
            client(&[], "203.0.113.1", xff),
            ClientAddr::peer(ip("203.0.113.1"))
        );
        let lan = ["10.0.0.0/8"];
        assert_eq!(
            client(&lan, "203.0.113.1", xff),
            ClientAddr::peer(ip("203.0.113.1"))
        );
        // A dual-stack listener's IPv4 peer is reported as IPv4.
        assert_eq!(client(&[], "::ffff:192.0.2.1", xff).ip, ip("192.0.2.1"));
    }

    #[test]
    fn a_trusted_peers_chain_is_walked_right_to_left() {
        let lan = ["10.0.0.0/8", "2001:db8::/32"];
        let walk = |fields: &str| client(&lan, "10.0.0.1", fields).ip;
        // The first untrusted address from the right, across fields in order.
        assert_eq!(
            walk("X-Forwarded-For: 6.6.6.6, 192.0.2.9\r\nX-Forwarded-For: 10.1.1.1,, 10.2.2.2\r\n"),
            ip("192.0.2.9")
        );
        assert_eq!(
            walk("x-forwarded-for: 2001:db8::5, 2001:db9::1\r\n"),
            ip("2001:db9::1")
        );
        // Only trusted hops: the leftmost is the client; no field at all: the peer.
        assert_eq!(
            walk("X-Forwarded-For: 10.3.3.3, 10.2.2.2\r\n"),
            ip("10.3.3.3")
        );
        assert_eq!(walk(""), ip("10.0.0.1"));
        // An unreadable element stops the walk at the last good address.
        assert_eq!(
            walk("X-Forwarded-For: 6.6.6.6, junk, 10.2.2.2\r\n"),
            ip("10.2.2.2")
        );
        assert_eq!(
            walk("X-Forwarded-For: 6.6.6.6, 1.2.3.4:80\r\n"),
            ip("10.0.0.1")
        );
        assert_eq!(
            walk("X-Forwarded-For: 6.6.6.6, [2001:db9::1]\r\n"),
            ip("10.0.0.1")
        );
        assert_eq!(
            walk("X-Forwarded-For: ::ffff:192.0.2.4\r\n"),
            ip("192.0.2.4")
        );
        assert!(client(&lan, "10.0.0.1", "").peer_trusted);
    }

    #[test]
    fn the_walk_is_bounded() {
        let lan = ["10.0.0.0/8"];
        let mut hops = vec!["6.6.6.6".to_owned()];
        hops.extend((0..HOPS_MAX + 5).map(|i| format!("10.0.0.{i}")));
        let fields = format!("X-Forwarded-For: {}\r\n", hops.join(", "));
        // HOPS_MAX trusted hops examined: the last one examined stands.
        let last = hops.len() - HOPS_MAX;
        assert_eq!(client(&lan, "10.0.0.1", &fields).ip, ip(&hops[last]));
    }
}
