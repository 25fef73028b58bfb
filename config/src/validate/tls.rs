//! `[listener.tls]`, `[listener.redirect_https]` and `[upstreams.NAME.tls]` → [`ListenerTls`],
//! [`RedirectHttps`] and [`UpstreamTls`].
//!
//! Owns the rules that keep a TLS setup loadable: certificate, key and CA files that are
//! readable PEM holding the blocks they should (at least one `CERTIFICATE`; exactly one
//! unencrypted private key of a kind the engine loads), SNI names that a client can actually
//! send (DNS names, RFC 6066 §3; one leading wildcard label, RFC 6125 §6.4.3) and that pick
//! one certificate each, one default certificate, known protocol versions, and redirects that
//! cannot loop through a TLS listener. Reads the files once per load, on the control side.
//!
//! Never parses DER: whether a key matches its certificate, and whether a chain parses, is
//! judged when the engine compiles its snapshot. The PEM scanner here reads label lines and
//! checks that bodies are base64 text, no more. No message ever contains key material: files
//! are named by path, blocks by label and line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::{check_timeouts, fail, read_named_file};
use crate::defaults::{
    REDIRECT_EXCEPT_PREFIXES_MAX, REDIRECT_HTTPS_STATUSES, TLS_FILE_BYTES_MAX, TLS_VERSIONS,
};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::{CertificateConfig, ListenerTlsConfig, RedirectHttpsConfig, UpstreamTlsConfig};
use crate::{Certificate, ConfigError, ListenerTls, RedirectHttps, TlsVersion, UpstreamTls};

/// The private key blocks the engine loads: PKCS#8 (RFC 5958), PKCS#1 RSA (RFC 8017 §A.1.2)
/// and SEC1 EC (RFC 5915).
const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];
/// A DNS name's longest text form (RFC 1035 §2.3.4, without the trailing dot).
const DNS_NAME_BYTES_MAX: usize = 253;
/// A DNS label's longest form (RFC 1035 §2.3.4).
const DNS_LABEL_BYTES_MAX: usize = 63;

/// Validates a listener's `[listener.tls]` at `at`, reading its files (relative to
/// `base_dir`).
pub(super) fn check_listener_tls(
    doc: &Document<'_>,
    at: &FieldPath,
    tls: &ListenerTlsConfig,
    base_dir: &Path,
) -> Result<ListenerTls, ConfigError> {
    let versions = check_versions(doc, &at.key("versions"), &tls.versions)?;
    check_timeouts(
        doc,
        at,
        &[("handshake_timeout_ms", tls.handshake_timeout_ms)],
    )?;
    let certificates_at = at.key("certificate");
    if tls.certificates.is_empty() {
        return fail(
            doc,
            at,
            Target::Value,
            "[listener.tls] has no [[listener.tls.certificate]]".to_owned(),
            "add [[listener.tls.certificate]] with cert_file = \"PATH\" (PEM chain, leaf first) \
             and key_file = \"PATH\" (PEM private key) after [listener.tls]",
        );
    }
    let mut certificates = Vec::with_capacity(tls.certificates.len());
    let mut default_certificate: Option<usize> = None;
    // Lower-case name → index of the certificate that lists it.
    let mut owners: HashMap<String, usize> = HashMap::new();
    for (j, config) in tls.certificates.iter().enumerate() {
        let cert_at = certificates_at.index(j);
        if config.default {
            if let Some(first) = default_certificate {
                return fail(
                    doc,
                    &cert_at.key("default"),
                    Target::Value,
                    format!("certificate[{j}] and certificate[{first}] both say default = true"),
                    "the default certificate is the one served without a matching SNI name, so \
                     a listener has one; keep default = true on one of them",
                );
            }
            default_certificate = Some(j);
        }
        let names = check_certificate_names(doc, &cert_at, j, config, &mut owners)?;
        certificates.push(check_certificate(doc, &cert_at, config, names, base_dir)?);
    }
    Ok(ListenerTls {
        certificates,
        default_certificate: default_certificate.unwrap_or(0),
        versions,
        session_tickets: tls.session_tickets,
        handshake_timeout_ms: tls.handshake_timeout_ms,
    })
}

/// Known versions, each once, at least one; returned in ascending order.
fn check_versions(
    doc: &Document<'_>,
    at: &FieldPath,
    written: &[String],
) -> Result<Vec<TlsVersion>, ConfigError> {
    if written.is_empty() {
        return fail(
            doc,
            at,
            Target::Value,
            "versions is empty".to_owned(),
            &format!(
                "offer at least one version, e.g. [\"1.3\"]; remove the key for the default, \
                 [\"{}\"]",
                TLS_VERSIONS.join("\", \"")
            ),
        );
    }
    let mut seen: Vec<&str> = Vec::with_capacity(written.len());
    for (j, version) in written.iter().enumerate() {
        let version_at = at.index(j);
        if !TLS_VERSIONS.contains(&version.as_str()) {
            let bare = version
                .to_ascii_lowercase()
                .trim_start_matches("tls")
                .trim_start_matches(['v', ' '])
                .to_owned();
            let hint = if TLS_VERSIONS.contains(&bare.as_str()) {
                format!("write the bare number: \"{bare}\"")
            } else if bare == "1.0" || bare == "1.1" || bare == "1" {
                "TLS 1.0 and 1.1 are deprecated (RFC 8996) and never offered; use \"1.2\" and \
                 \"1.3\""
                    .to_owned()
            } else {
                format!("versions are \"{}\"", TLS_VERSIONS.join("\" and \""))
            };
            return fail(
                doc,
                &version_at,
                Target::Value,
                format!("{version:?} is not a TLS version the gateway offers"),
                &hint,
            );
        }
        if seen.contains(&version.as_str()) {
            return fail(
                doc,
                &version_at,
                Target::Value,
                format!("version {version} is listed twice"),
                "list each version once",
            );
        }
        seen.push(version);
    }
    let mut versions = Vec::with_capacity(seen.len());
    if seen.contains(&"1.2") {
        versions.push(TlsVersion::Tls12);
    }
    if seen.contains(&"1.3") {
        versions.push(TlsVersion::Tls13);
    }
    Ok(versions)
}

/// A certificate's `names`, lower-cased, none listed before by this or another certificate of
/// the listener (`owners` maps each name to the certificate that lists it).
fn check_certificate_names(
    doc: &Document<'_>,
    cert_at: &FieldPath,
    index: usize,
    config: &CertificateConfig,
    owners: &mut HashMap<String, usize>,
) -> Result<Vec<String>, ConfigError> {
    let names_at = cert_at.key("names");
    let mut names = Vec::with_capacity(config.names.len());
    for (k, name) in config.names.iter().enumerate() {
        let name_at = names_at.index(k);
        let lower = match check_sni_name(name) {
            Ok(lower) => lower,
            Err((message, hint)) => return fail(doc, &name_at, Target::Value, message, &hint),
        };
        if let Some(&first) = owners.get(&lower) {
            let (message, hint) = if first == index {
                (
                    format!("name {lower} is listed twice (names are case-insensitive)"),
                    "list each name once",
                )
            } else {
                (
                    format!("certificate[{index}] and certificate[{first}] both list {lower}"),
                    "an SNI name selects one certificate; remove it from one of them",
                )
            };
            return fail(doc, &name_at, Target::Value, message, hint);
        }
        owners.insert(lower.clone(), index);
        names.push(lower);
    }
    Ok(names)
}

/// Reads and checks one certificate's chain and key files.
fn check_certificate(
    doc: &Document<'_>,
    cert_at: &FieldPath,
    config: &CertificateConfig,
    names: Vec<String>,
    base_dir: &Path,
) -> Result<Certificate, ConfigError> {
    let chain_at = cert_at.key("cert_file");
    let (cert_path, cert_pem) = read_named_file(
        doc,
        &chain_at,
        base_dir,
        &config.cert_file,
        "certificate file",
        TLS_FILE_BYTES_MAX,
    )?;
    check_certificates_pem(doc, &chain_at, &cert_path, &cert_pem, PemRole::Chain)?;
    let key_at = cert_at.key("key_file");
    let (key_path, key_pem) = read_named_file(
        doc,
        &key_at,
        base_dir,
        &config.key_file,
        "key file",
        TLS_FILE_BYTES_MAX,
    )?;
    check_key_pem(doc, &key_at, &key_path, &key_pem)?;
    Ok(Certificate {
        cert_path,
        cert_pem,
        key_path,
        key_pem,
        names,
    })
}

/// Validates a plain listener's `[listener.redirect_https]` at `at`.
pub(super) fn check_redirect_https(
    doc: &Document<'_>,
    at: &FieldPath,
    redirect: &RedirectHttpsConfig,
) -> Result<RedirectHttps, ConfigError> {
    if redirect.port == 0 {
        return fail(
            doc,
            &at.key("port"),
            Target::Value,
            "port = 0 is not a port a client can connect to".to_owned(),
            "write the port clients reach HTTPS on, 1..=65535, usually 443",
        );
    }
    if !REDIRECT_HTTPS_STATUSES.contains(&redirect.status) {
        return fail(
            doc,
            &at.key("status"),
            Target::Value,
            format!("status = {} is not a redirect status", redirect.status),
            "use 308 (the default: keeps the method and body, RFC 9110 §15.4.9), 307, or 301 \
             / 302 (which let clients turn a POST into a GET)",
        );
    }
    let prefixes_at = at.key("except_prefixes");
    if redirect.except_prefixes.len() > REDIRECT_EXCEPT_PREFIXES_MAX {
        return fail(
            doc,
            &prefixes_at,
            Target::Value,
            format!(
                "except_prefixes has {} entries, more than {REDIRECT_EXCEPT_PREFIXES_MAX}",
                redirect.except_prefixes.len()
            ),
            "every request's path is compared with each prefix; list only the paths that \
             must stay plain HTTP, e.g. \"/.well-known/acme-challenge/\"",
        );
    }
    for (j, prefix) in redirect.except_prefixes.iter().enumerate() {
        let prefix_at = prefixes_at.index(j);
        if !prefix.starts_with('/') {
            return fail(
                doc,
                &prefix_at,
                Target::Value,
                format!("prefix {prefix:?} does not start with `/`"),
                &format!("prefixes are matched against the request path: write \"/{prefix}\""),
            );
        }
        if let Some(c) = prefix
            .chars()
            .find(|&c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
        {
            return fail(
                doc,
                &prefix_at,
                Target::Value,
                format!("prefix {prefix:?} contains {c:?}"),
                "a prefix is matched against the path alone, which never has a query, a \
                 fragment or whitespace (RFC 9112 §3.2)",
            );
        }
        if redirect.except_prefixes[..j].contains(prefix) {
            return fail(
                doc,
                &prefix_at,
                Target::Value,
                format!("prefix {prefix} is listed twice"),
                "list each prefix once",
            );
        }
    }
    Ok(RedirectHttps {
        port: redirect.port,
        status: redirect.status,
        except_prefixes: redirect.except_prefixes.clone(),
    })
}

/// Validates an upstream's `[upstreams.NAME.tls]` at `at`, reading its CA file (relative to
/// `base_dir`).
pub(super) fn check_upstream_tls(
    doc: &Document<'_>,
    at: &FieldPath,
    tls: &UpstreamTlsConfig,
    base_dir: &Path,
) -> Result<UpstreamTls, ConfigError> {
    let server_name = match &tls.server_name {
        None => None,
        Some(name) => match check_server_name(name) {
            Ok(name) => Some(name),
            Err((message, hint)) => {
                return fail(doc, &at.key("server_name"), Target::Value, message, &hint)
            }
        },
    };
    let ca = match &tls.ca_file {
        None => None,
        Some(written) => {
            let ca_at = at.key("ca_file");
            let (path, pem) = read_named_file(
                doc,
                &ca_at,
                base_dir,
                written,
                "CA file",
                TLS_FILE_BYTES_MAX,
            )?;
            check_certificates_pem(doc, &ca_at, &path, &pem, PemRole::Anchors)?;
            Some((path, pem))
        }
    };
    Ok(UpstreamTls { server_name, ca })
}

/// An upstream's `server_name`: a DNS name (lower-cased) or an IP address (in its canonical
/// form). Errors are `(message, hint)`.
fn check_server_name(name: &str) -> Result<String, (String, String)> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if let Some(ip) = name
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
    {
        return Err((
            format!("server_name {name:?} is a bracketed IPv6 address"),
            format!("write the address without brackets: \"{ip}\""),
        ));
    }
    if name.contains('*') {
        return Err((
            format!("server_name {name:?} has a wildcard"),
            "server_name is the one host name the upstream's certificate is checked against, \
             e.g. \"api.internal\""
                .to_owned(),
        ));
    }
    if let Some((host, port)) = name.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err((
                format!("server_name {name:?} includes a port"),
                format!("the port comes from the endpoint's address; write \"{host}\""),
            ));
        }
    }
    check_dns_name(name, "server_name", "\"api.internal\"")
}

/// A certificate's SNI name: a DNS name or `*.` followed by a DNS name of at least two labels.
/// Returns it lower-case. Errors are `(message, hint)`.
fn check_sni_name(name: &str) -> Result<String, (String, String)> {
    if name.parse::<IpAddr>().is_ok() {
        return Err((
            format!("name {name:?} is an IP address"),
            "clients never send an IP address as SNI (RFC 6066 §3); one that connects by \
             address gets the default certificate"
                .to_owned(),
        ));
    }
    let example = "\"api.example.com\" or \"*.example.com\"";
    let Some(base) = name.strip_prefix("*.") else {
        if name.contains('*') {
            return Err((
                format!("name {name:?} has a `*` that is not a whole leading `*.` label"),
                "a wildcard is the whole first label, followed by at least two labels, e.g. \
                 \"*.example.com\" (RFC 6125 §6.4.3)"
                    .to_owned(),
            ));
        }
        return check_dns_name(name, "name", example);
    };
    if base.contains('*') {
        return Err((
            format!("name {name:?} has more than one `*`"),
            "a wildcard is only the whole first label, e.g. \"*.example.com\"".to_owned(),
        ));
    }
    let base = check_dns_name(base, "name", example).map_err(|(message, hint)| {
        // Report the name as written, not just the part after `*.`.
        (format!("{message} (in {name:?})"), hint)
    })?;
    if !base.contains('.') {
        return Err((
            format!("name {name:?} would cover every name under .{base}"),
            "a wildcard needs at least two labels after `*.`, e.g. \"*.example.com\"".to_owned(),
        ));
    }
    if name.len() > DNS_NAME_BYTES_MAX {
        return Err((
            format!("name {name:?} is longer than {DNS_NAME_BYTES_MAX} characters"),
            "a DNS name is at most 253 characters (RFC 1035 §2.3.4)".to_owned(),
        ));
    }
    Ok(format!("*.{base}"))
}

/// A DNS host name (RFC 1123 §2.1): dot-separated labels of letters, digits and `-`, 1..=63
/// characters each, not starting or ending with `-`, at most 253 in all. Returns it
/// lower-case. `field` and `example` word the errors, which are `(message, hint)`.
fn check_dns_name(name: &str, field: &str, example: &str) -> Result<String, (String, String)> {
    if name.is_empty() {
        return Err((
            format!("{field} is empty"),
            format!("write a host name, e.g. {example}"),
        ));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii()) {
        return Err((
            format!("{field} {name:?} contains {c:?}, which is not ASCII"),
            "write an internationalised name in its A-label (punycode) form, e.g. \
             \"xn--bcher-kva.example\""
                .to_owned(),
        ));
    }
    if name.len() > DNS_NAME_BYTES_MAX {
        return Err((
            format!("{field} {name:?} is longer than {DNS_NAME_BYTES_MAX} characters"),
            "a DNS name is at most 253 characters (RFC 1035 §2.3.4)".to_owned(),
        ));
    }
    if name.ends_with('.') {
        return Err((
            format!("{field} {name:?} ends with `.`"),
            format!(
                "write it without the trailing dot, \"{}\": SNI names carry none (RFC 6066 §3)",
                name.trim_end_matches('.')
            ),
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err((
                format!("{field} {name:?} has an empty label (a leading or doubled `.`)"),
                format!("write the name without the extra `.`, e.g. {example}"),
            ));
        }
        if label.len() > DNS_LABEL_BYTES_MAX {
            return Err((
                format!(
                    "{field} {name:?} has a label longer than {DNS_LABEL_BYTES_MAX} characters"
                ),
                "each dot-separated label is 1 to 63 characters (RFC 1035 §2.3.4)".to_owned(),
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err((
                format!("{field} {name:?} contains {c:?}, which is not allowed in a host name"),
                "host names use letters, digits, `-` and `.` (RFC 1123 §2.1)".to_owned(),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err((
                format!("{field} {name:?} has a label that starts or ends with `-`"),
                "a label starts and ends with a letter or digit (RFC 1123 §2.1)".to_owned(),
            ));
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// What a file of certificates is for, which words its errors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PemRole {
    /// A listener's `cert_file`: the chain served, leaf first. Other blocks are ignored, so a
    /// combined certificate-and-key file may be named by both keys.
    Chain,
    /// An upstream's `ca_file`: trust anchors, and nothing secret.
    Anchors,
}

/// At least one `CERTIFICATE` block; for trust anchors, no private key.
fn check_certificates_pem(
    doc: &Document<'_>,
    at: &FieldPath,
    path: &Path,
    bytes: &[u8],
    role: PemRole,
) -> Result<(), ConfigError> {
    let file = path.display();
    let der_hint = "convert a DER (binary) certificate with \
                    `openssl x509 -inform DER -in cert.der -out cert.pem`";
    let blocks = read_pem(doc, at, path, bytes, der_hint)?;
    if role == PemRole::Anchors {
        if let Some(key) = blocks.iter().find(|b| b.label.ends_with("PRIVATE KEY")) {
            return fail(
                doc,
                at,
                Target::Value,
                format!(
                    "{file} holds a private key ({} at line {})",
                    key.label, key.line
                ),
                "a CA file holds only the certificates trusted to sign the upstream's \
                 certificate; remove the key from it (and check the file is the one you meant)",
            );
        }
    }
    if blocks.iter().any(|b| b.label == "CERTIFICATE") {
        return Ok(());
    }
    let hint = if blocks.iter().any(|b| b.label == "TRUSTED CERTIFICATE") {
        "write plain CERTIFICATE blocks: `openssl x509 -in trusted.pem -out cert.pem`"
    } else if role == PemRole::Chain && blocks.iter().any(|b| b.label.ends_with("PRIVATE KEY")) {
        "this looks like the private key: cert_file names the certificate chain (leaf first), \
         key_file its key"
    } else if blocks.is_empty() {
        der_hint
    } else if role == PemRole::Chain {
        "cert_file holds the certificate chain as `-----BEGIN CERTIFICATE-----` blocks, leaf \
         first"
    } else {
        "ca_file holds the trusted CA certificates as `-----BEGIN CERTIFICATE-----` blocks"
    };
    let found = if blocks.is_empty() {
        "no PEM block".to_owned()
    } else {
        let labels: Vec<&str> = blocks.iter().map(|b| b.label).collect();
        format!("only {}", labels.join(", "))
    };
    fail(
        doc,
        at,
        Target::Value,
        format!("{file} holds no CERTIFICATE block ({found})"),
        hint,
    )
}

/// Exactly one private key block, of a kind the engine loads, and unencrypted. Other blocks
/// (e.g. `EC PARAMETERS` from `openssl ecparam -genkey`, or the certificate of a combined
/// file) are ignored.
fn check_key_pem(
    doc: &Document<'_>,
    at: &FieldPath,
    path: &Path,
    bytes: &[u8],
) -> Result<(), ConfigError> {
    let file = path.display();
    let der_hint = "convert a DER (binary) key with \
                    `openssl pkey -inform DER -in key.der -out key.pem`";
    let blocks = read_pem(doc, at, path, bytes, der_hint)?;
    let keys: Vec<&PemBlock<'_>> = blocks
        .iter()
        .filter(|b| b.label.ends_with("PRIVATE KEY"))
        .collect();
    if let Some(key) = keys
        .iter()
        .find(|b| b.encrypted || b.label == "ENCRYPTED PRIVATE KEY")
    {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{file} holds an encrypted private key (line {})", key.line),
            "coregate does not decrypt keys (it would need the passphrase at every start and \
             reload); write it unencrypted with `openssl pkey -in encrypted.pem -out key.pem` \
             and make the file readable only by the gateway's user",
        );
    }
    if let Some(key) = keys.iter().find(|b| !KEY_LABELS.contains(&b.label)) {
        return fail(
            doc,
            at,
            Target::Value,
            format!(
                "{file} holds a {} block (line {}), a key the gateway cannot load",
                key.label, key.line
            ),
            "the gateway loads PRIVATE KEY (PKCS#8), RSA PRIVATE KEY and EC PRIVATE KEY blocks; \
             convert with `openssl pkey -in key.pem -out key-pkcs8.pem`",
        );
    }
    match keys.as_slice() {
        [_] => Ok(()),
        [] => {
            let hint = if blocks.iter().any(|b| b.label == "CERTIFICATE") {
                "this looks like a certificate: key_file names the private key of cert_file"
            } else if blocks.is_empty() {
                der_hint
            } else {
                "key_file holds one `-----BEGIN PRIVATE KEY-----` (or RSA PRIVATE KEY, EC \
                 PRIVATE KEY) block"
            };
            fail(
                doc,
                at,
                Target::Value,
                format!("{file} holds no private key"),
                hint,
            )
        }
        [first, second, ..] => fail(
            doc,
            at,
            Target::Value,
            format!(
                "{file} holds {} private keys (lines {} and {}{})",
                keys.len(),
                first.line,
                second.line,
                if keys.len() > 2 { ", ..." } else { "" }
            ),
            "a certificate has one key; keep only the key that belongs to cert_file",
        ),
    }
}

/// The PEM blocks of a file's contents, or an error located at `at` naming the file.
/// `der_hint` is the hint for binary contents.
fn read_pem<'b>(
    doc: &Document<'_>,
    at: &FieldPath,
    path: &Path,
    bytes: &'b [u8],
    der_hint: &str,
) -> Result<Vec<PemBlock<'b>>, ConfigError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{} is not PEM text", path.display()),
            der_hint,
        );
    };
    pem_blocks(text).or_else(|problem| {
        fail(
            doc,
            at,
            Target::Value,
            format!("{} is not valid PEM: {problem}", path.display()),
            "a PEM block is a -----BEGIN LABEL----- line, base64 lines, and the matching \
             -----END LABEL----- line; check the file was copied whole",
        )
    })
}

/// One `-----BEGIN LABEL-----` … `-----END LABEL-----` block of a PEM text (RFC 7468 §2).
#[derive(Debug, PartialEq, Eq)]
struct PemBlock<'t> {
    label: &'t str,
    /// 1-based line of its BEGIN line.
    line: usize,
    /// It carries the RFC 1421 header `Proc-Type: 4,ENCRYPTED`, as OpenSSL writes a legacy
    /// encrypted `RSA PRIVATE KEY` or `EC PRIVATE KEY`.
    encrypted: bool,
}

/// The blocks of a PEM text, in order. Text between blocks is ignored (RFC 7468 §2 allows
/// explanatory text there). Inside a block, lines with a `:` are RFC 1421 headers and the
/// rest must be base64 text. A BEGIN inside a block, an END without its BEGIN or with another
/// label, a block without END and a block without a body are errors (returned as a message).
fn pem_blocks(text: &str) -> Result<Vec<PemBlock<'_>>, String> {
    let mut blocks = Vec::new();
    // The block being read, and whether it has a body line yet.
    let mut open: Option<(PemBlock<'_>, bool)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim_end();
        let begin = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"));
        let end = line
            .strip_prefix("-----END ")
            .and_then(|rest| rest.strip_suffix("-----"));
        match (&mut open, begin, end) {
            (None, Some(label), _) => {
                let block = PemBlock {
                    label,
                    line: line_no,
                    encrypted: false,
                };
                open = Some((block, false));
            }
            (None, None, Some(label)) => {
                return Err(format!("line {line_no}: END {label} without a BEGIN"));
            }
            (None, None, None) => {}
            (Some((block, _)), Some(_), _) => {
                return Err(format!(
                    "line {line_no}: a BEGIN inside the {} block of line {}",
                    block.label, block.line
                ));
            }
            (Some((block, body)), None, Some(label)) => {
                if label != block.label {
                    return Err(format!(
                        "line {line_no}: END {label} closes the {} block of line {}",
                        block.label, block.line
                    ));
                }
                if !*body {
                    return Err(format!(
                        "the {} block of line {} is empty",
                        block.label, block.line
                    ));
                }
                if let Some((block, _)) = open.take() {
                    blocks.push(block);
                }
            }
            (Some((block, body)), None, None) => {
                let line = line.trim_start();
                if let Some((name, value)) = line.split_once(':') {
                    if name.trim() == "Proc-Type" && value.contains("ENCRYPTED") {
                        block.encrypted = true;
                    }
                } else if line.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b' ' | b'\t')
                }) {
                    *body |= !line.is_empty();
                } else {
                    return Err(format!(
                        "line {line_no} of the {} block of line {} is not base64",
                        block.label, block.line
                    ));
                }
            }
        }
    }
    match open {
        Some((block, _)) => Err(format!(
            "the {} block of line {} has no -----END {}----- line",
            block.label, block.line, block.label
        )),
        None => Ok(blocks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Result<Vec<(&str, usize, bool)>, String> {
        pem_blocks(text).map(|blocks| {
            blocks
                .into_iter()
                .map(|b| (b.label, b.line, b.encrypted))
                .collect()
        })
    }

    #[test]
    fn pem_blocks_are_read_by_label_lines() {
        let text = "subject=CN=api\n-----BEGIN CERTIFICATE-----\nMIIB\nAA==\n\
                    -----END CERTIFICATE-----\r\n\n-----BEGIN EC PARAMETERS-----\nBggq\n\
                    -----END EC PARAMETERS-----\n";
        assert_eq!(
            labels(text),
            Ok(vec![("CERTIFICATE", 2, false), ("EC PARAMETERS", 7, false)])
        );
        assert_eq!(labels("no pem here\n"), Ok(vec![]));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,00FF\n\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(labels(legacy), Ok(vec![("RSA PRIVATE KEY", 1, true)]));
    }

    #[test]
    fn broken_pem_is_described() {
        let unterminated = "-----BEGIN CERTIFICATE-----\nMIIB\n";
        assert_eq!(
            labels(unterminated),
            Err("the CERTIFICATE block of line 1 has no -----END CERTIFICATE----- line".to_owned())
        );
        let crossed = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            labels(crossed),
            Err("line 3: END PRIVATE KEY closes the CERTIFICATE block of line 1".to_owned())
        );
        assert!(labels("-----END CERTIFICATE-----\n").is_err());
        let nested = "-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n";
        assert!(labels(nested).is_err());
        let empty = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
        assert_eq!(
            labels(empty),
            Err("the CERTIFICATE block of line 1 is empty".to_owned())
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert_eq!(
            labels(garbage),
            Err("line 2 of the CERTIFICATE block of line 1 is not base64".to_owned())
        );
    }

    #[test]
    fn sni_names_are_dns_names_or_one_leading_wildcard() {
        assert_eq!(
            check_sni_name("API.Example.com"),
            Ok("api.example.com".to_owned())
        );
        assert_eq!(
            check_sni_name("*.Example.COM"),
            Ok("*.example.com".to_owned())
        );
        assert_eq!(check_sni_name("localhost"), Ok("localhost".to_owned()));
        assert_eq!(check_sni_name("x-1.example"), Ok("x-1.example".to_owned()));
        for bad in [
            "",
            "*",
            "*.",
            "*.com",
            "a.*.com",
            "*foo.com",
            "foo*.example.com",
            "*.*.example.com",
            "example.com.",
            ".example.com",
            "a..b",
            "-a.example.com",
            "a-.example.com",
            "a_b.example.com",
            "exa mple.com",
            "bücher.example",
            "10.0.0.1",
            "::1",
            "api.example.com:443",
        ] {
            assert!(check_sni_name(bad).is_err(), "accepted {bad:?}");
        }
        let label = "a".repeat(63);
        assert!(check_sni_name(&format!("{label}.com")).is_ok());
        assert!(check_sni_name(&format!("{label}a.com")).is_err());
        // 4 labels of 63 and 3 dots: 255 characters.
        let long = [label.as_str(); 4].join(".");
        assert!(check_sni_name(&long).is_err());
        assert!(check_sni_name(&long[..253]).is_ok());
    }

    #[test]
    fn server_names_are_dns_names_or_ip_addresses() {
        assert_eq!(
            check_server_name("API.internal"),
            Ok("api.internal".to_owned())
        );
        assert_eq!(check_server_name("10.0.0.1"), Ok("10.0.0.1".to_owned()));
        assert_eq!(check_server_name("FD00::0001"), Ok("fd00::1".to_owned()));
        let hint = |name| check_server_name(name).map_err(|(_, hint)| hint);
        assert_eq!(
            hint("[::1]"),
            Err("write the address without brackets: \"::1\"".to_owned())
        );
        assert_eq!(
            hint("api.internal:8443"),
            Err("the port comes from the endpoint's address; write \"api.internal\"".to_owned())
        );
        for bad in [
            "",
            "*.internal",
            "api.internal.",
            "a b",
            "under_score.internal",
        ] {
            assert!(check_server_name(bad).is_err(), "accepted {bad:?}");
        }
    }
}
