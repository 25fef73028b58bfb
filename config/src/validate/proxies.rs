//! `server.trusted_proxies` → the parsed CIDR list the engine checks peers and
//! X-Forwarded-For hops against. Each entry is a CIDR in its network form or a bare address
//! (a single host); anything else is rejected at its line. Runs on the control side only.

use ipnet::IpNet;
use std::net::IpAddr;

use super::fail;
use crate::defaults::TRUSTED_PROXIES_MAX;
use crate::locate::{Document, FieldPath, Target};
use crate::ConfigError;

/// Validates `server.trusted_proxies`.
pub(super) fn check_trusted_proxies(
    doc: &Document<'_>,
    written: &[String],
) -> Result<Vec<IpNet>, ConfigError> {
    let at = FieldPath::root().key("server").key("trusted_proxies");
    if written.len() > TRUSTED_PROXIES_MAX {
        return fail(
            doc,
            &at,
            Target::Value,
            format!(
                "trusted_proxies has {} entries, more than {TRUSTED_PROXIES_MAX}",
                written.len()
            ),
            "name the proxies' networks rather than each address, e.g. \"10.0.0.0/8\"",
        );
    }
    let mut nets = Vec::with_capacity(written.len());
    for (i, text) in written.iter().enumerate() {
        let net = match (text.parse::<IpNet>(), text.parse::<IpAddr>()) {
            (Ok(net), _) => net,
            (_, Ok(addr)) => IpNet::from(addr),
            (Err(_), Err(_)) => {
                return fail(
                    doc,
                    &at.index(i),
                    Target::Value,
                    format!("{text:?} is not a CIDR or an IP address"),
                    "write a network such as \"10.0.0.0/8\" or \"2001:db8::/32\", or one \
                     address such as \"192.0.2.10\"",
                );
            }
        };
        if net.trunc() != net {
            return fail(
                doc,
                &at.index(i),
                Target::Value,
                format!(
                    "{text:?} has bits set past its /{} prefix",
                    net.prefix_len()
                ),
                &format!(
                    "write the network, {:?}, or the single address with /{}",
                    net.trunc().to_string(),
                    net.max_prefix_len()
                ),
            );
        }
        if let IpNet::V6(v6) = net {
            if v6.prefix_len() >= 96 && v6.network().to_ipv4_mapped().is_some() {
                return fail(
                    doc,
                    &at.index(i),
                    Target::Value,
                    format!("{text:?} is an IPv4-mapped IPv6 network"),
                    "the gateway compares IPv4-mapped peers as IPv4: write the IPv4 network",
                );
            }
        }
        nets.push(net);
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use crate::load_str;

    fn server(list: &str) -> String {
        format!(
            "[server]\ntrusted_proxies = {list}\n\n[[listener]]\naddress = \"127.0.0.1:8080\"\n\n\
             [upstreams.u]\nendpoints = [{{ address = \"127.0.0.1:9000\" }}]\n\n\
             [[route]]\nname = \"r\"\npath = \"/\"\nupstream = \"u\"\n"
        )
    }

    #[test]
    fn networks_and_addresses_are_accepted() {
        let config = load_str(
            &server(r#"["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]"#),
            "t.toml",
        )
        .unwrap();
        let text: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "::1/128"]
        );
        assert!(load_str(&server("[]"), "t.toml")
            .unwrap()
            .trusted_proxies
            .is_empty());
    }

    #[test]
    fn bad_entries_are_rejected_at_their_line() {
        for (entry, says) in [
            ("10.0.0.0/33", "not a CIDR"),
            ("10.0.0/8", "not a CIDR"),
            ("example.com", "not a CIDR"),
            ("", "not a CIDR"),
            ("10.0.0.1/8", "bits set past its /8"),
            ("::ffff:10.0.0.0/104", "IPv4-mapped"),
        ] {
            let text = server(&format!("[\n  \"127.0.0.0/8\",\n  \"{entry}\",\n]"));
            let err = load_str(&text, "t.toml").unwrap_err();
            assert_eq!(
                (err.file.as_str(), err.line),
                ("t.toml", 4),
                "{entry}: {err}"
            );
            assert!(err.message.contains(says), "{entry}: {err}");
        }
    }
}
