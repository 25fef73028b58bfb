//! TLS: termination on listeners and TLS to upstreams, with rustls and its ring provider.
//!
//! Owns compiling the validated TLS config into rustls configs (certificate chains and keys
//! parsed and checked against each other, the SNI table, ticket keys, trust anchors) — done by
//! the control side when a snapshot is compiled, never by a worker — and running handshakes
//! on the workers through the gateway's own adapter ([`stream::TlsStream`]).
//!
//! A certificate is chosen by the client's SNI name: an exact name first, then a wildcard
//! (`*.example.com` answers `api.example.com`, not `example.com` nor `a.b.example.com`, as
//! RFC 6125 §6.4.3 has it), then the listener's default. Ticket keys live as long as the
//! listener (not one config version), so sessions resume across reloads and certificate
//! swaps; they rotate every 6 hours (rustls's rotator).

pub mod stream;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use coregate_config::{Certificate, ListenerTls, TlsVersion, UpstreamTls};
use coregate_rt::TcpStream;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use stream::{HandshakeError, TlsStream};

/// The one protocol offered by ALPN: HTTP/1.1 is all the gateway speaks.
const ALPN_HTTP11: &[u8] = b"http/1.1";
/// Sessions a listener remembers for TLS 1.2 session-id resumption (tickets need none).
const SESSION_CACHE_ENTRIES: usize = 4096;

/// A listener's compiled TLS: what a worker hands each accepted connection.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
    /// Kept so the next snapshot's config reuses the keys (module doc).
    ticketer: Option<Arc<dyn ProducesTickets>>,
}

impl ServerTls {
    /// Compiles a listener's TLS settings: reads every chain and key out of their PEM text,
    /// checks that each key matches its certificate and that each configured name is one the
    /// certificate covers. `previous`, the same listener's TLS in the snapshot being
    /// replaced, lends its ticket keys. Errors name the file and the reason.
    pub fn compile(tls: &ListenerTls, previous: Option<&ServerTls>) -> Result<ServerTls, String> {
        let resolver = SniResolver::compile(tls)?;
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = tls
            .versions
            .iter()
            .map(|v| match v {
                TlsVersion::Tls12 => &rustls::version::TLS12,
                TlsVersion::Tls13 => &rustls::version::TLS13,
            })
            .collect();
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&versions)
                .map_err(|e| format!("TLS versions: {e}"))?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.session_storage =
            rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let ticketer = if tls.session_tickets {
            let reused = previous.and_then(|p| p.ticketer.clone());
            let ticketer = match reused {
                Some(t) => t,
                None => provider::Ticketer::new().map_err(|e| format!("ticket keys: {e}"))?,
            };
            config.ticketer = ticketer.clone();
            config.send_tls13_tickets = 2;
            Some(ticketer)
        } else {
            config.send_tls13_tickets = 0;
            None
        };
        Ok(ServerTls {
            config: Arc::new(config),
            handshake_timeout: Duration::from_millis(tls.handshake_timeout_ms),
            ticketer,
        })
    }

    /// Runs the server side of a handshake on an accepted connection, bounded by the
    /// listener's handshake timeout.
    pub async fn accept(&self, tcp: TcpStream) -> Result<TlsStream, AcceptError> {
        let session = rustls::ServerConnection::new(self.config.clone())
            .map_err(|e| AcceptError::Handshake(HandshakeError::Protocol(e)))?;
        let handshake = TlsStream::handshake(tcp, session.into());
        match coregate_rt::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(AcceptError::Handshake(e)),
            Err(_) => Err(AcceptError::Timeout),
        }
    }
}

/// How a client's handshake failed.
#[derive(Debug)]
pub enum AcceptError {
    Handshake(HandshakeError),
    /// Not done within the listener's `handshake_timeout_ms`.
    Timeout,
}

/// Chooses the certificate for a client hello.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn compile(tls: &ListenerTls) -> Result<SniResolver, String> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut keys = Vec::with_capacity(tls.certificates.len());
        for cert in &tls.certificates {
            let (key, names) = certified_key(cert)?;
            let key = Arc::new(key);
            for name in names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.insert(suffix.to_owned(), key.clone()),
                    None => exact.insert(name, key.clone()),
                };
            }
            keys.push(key);
        }
        Ok(SniResolver {
            exact,
            wildcard,
            default: keys.swap_remove(tls.default_certificate),
        })
    }

    fn choose(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        // rustls hands over SNI names already lower-cased and validated as DNS names.
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.choose(hello.server_name()).clone())
    }
}

/// Parses one certificate entry: the chain, the key, their match, and the SNI names it
/// answers for (configured, each checked against the certificate, or else the DNS names the
/// certificate lists).
fn certified_key(cert: &Certificate) -> Result<(CertifiedKey, Vec<String>), String> {
    let cert_file = cert.cert_path.display();
    let key_file = cert.key_path.display();
    let chain = CertificateDer::pem_slice_iter(&cert.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_file}: certificate chain does not parse: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{cert_file}: holds no certificate"));
    };
    let parsed = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("{cert_file}: the first certificate does not parse: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&cert.key_pem)
        .map_err(|e| format!("{key_file}: private key does not parse: {e}"))?;
    let signer = provider::sign::any_supported_type(&key)
        .map_err(|e| format!("{key_file}: unusable private key: {e}"))?;
    let names = if cert.names.is_empty() {
        let names: Vec<String> = parsed
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        if names.is_empty() {
            return Err(format!(
                "{cert_file}: the certificate lists no DNS names; give `names` for it"
            ));
        }
        names
    } else {
        for name in &cert.names {
            // A wildcard is covered when a name it stands for is.
            let probe = match name.strip_prefix("*.") {
                Some(suffix) => format!("coregate-sni-probe.{suffix}"),
                None => name.clone(),
            };
            let covered = ServerName::try_from(probe.as_str())
                .ok()
                .is_some_and(|server_name| {
                    parsed
                        .verify_is_valid_for_subject_name(&server_name)
                        .is_ok()
                });
            if !covered {
                return Err(format!(
                    "{cert_file}: the certificate does not cover the name {name:?} it is \
                     configured for"
                ));
            }
        }
        cert.names.clone()
    };
    drop(parsed);
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "{key_file}: the private key does not match the certificate in {cert_file}"
            ));
        }
        // A key that cannot tell its public half cannot be checked; rustls still signs
        // with it, and a mismatch then fails every handshake, which the tests show.
        Err(_) => {}
    }
    Ok((certified, names))
}

/// The digest behind [`ClientTls::identity`]: SHA-256 over the server name and the CA file's
/// bytes, each length-prefixed, truncated to 128 bits and kept off 0.
fn identity(tls: &UpstreamTls) -> u128 {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut part = |bytes: Option<&[u8]>| match bytes {
        Some(bytes) => {
            digest.update(&[1]);
            digest.update(&(bytes.len() as u64).to_le_bytes());
            digest.update(bytes);
        }
        None => digest.update(&[0]),
    };
    part(tls.server_name.as_deref().map(str::as_bytes));
    part(tls.ca.as_ref().map(|(_, pem)| pem.as_slice()));
    let sum = digest.finish();
    let mut first = [0u8; 16];
    first.copy_from_slice(&sum.as_ref()[..16]);
    u128::from_le_bytes(first).max(1)
}

/// An upstream's compiled TLS: what a worker uses to connect to its endpoints.
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    /// `None`: no SNI; the certificate is verified against the endpoint's IP address.
    server_name: Option<ServerName<'static>>,
    /// What a connection was verified against (server name and trust anchors), digested: a
    /// pooled connection is reused only under the same identity (see [`ClientTls::identity`]).
    identity: u128,
}

impl ClientTls {
    /// Compiles an upstream's TLS settings: the trust anchors (the configured CA file, else
    /// the system's roots) and the name to send and verify.
    pub fn compile(tls: &UpstreamTls) -> Result<ClientTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca {
            Some((path, pem)) => {
                let file = path.display();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| format!("{file}: CA file does not parse: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{file}: unusable CA certificate: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err("upstream TLS: no system root certificates found (install \
                         ca-certificates or give ca_file)"
                        .to_owned());
                }
            }
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("upstream TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        let server_name = match &tls.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| format!("upstream TLS server_name {name:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
            identity: identity(tls),
        })
    }

    /// Never 0 (which the pools use for plain connections). Two upstreams get the same
    /// identity exactly when they verify the same way (same server name, same CA bytes, or
    /// both the system's roots), so a connection verified for one is good for the other, and
    /// one that was not is never handed over, across upstreams or reloads.
    pub fn identity(&self) -> u128 {
        self.identity
    }

    /// A client session for the endpoint at `ip` (for a blocking client such as a health
    /// probe, or for [`ClientTls::connect`]).
    pub fn session(&self, ip: IpAddr) -> Result<rustls::ClientConnection, rustls::Error> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::IpAddress(ip.into()),
        };
        rustls::ClientConnection::new(self.config.clone(), name)
    }

    /// Runs the client side of a handshake to an endpoint; the caller bounds the time.
    pub async fn connect(&self, tcp: TcpStream, ip: IpAddr) -> Result<TlsStream, HandshakeError> {
        let session = self.session(ip).map_err(HandshakeError::Protocol)?;
        TlsStream::handshake(tcp, session.into()).await
    }
}

#[cfg(test)]
mod tests;
