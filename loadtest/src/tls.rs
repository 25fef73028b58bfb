//! TLS for the harness: the client side of `loadtest run https://…`, the server side of TLS
//! origins, and certificates made at run time for tests and `loadtest compare`.
//!
//! Both sides are rustls 0.23 with the ring provider, over monoio through the `monoio-rustls`
//! adapter: not the gateway's own adapter, so that a fixture never shares TLS glue with the
//! system it checks. TLS 1.2 and 1.3 are offered, X25519 first (ring's default order), and
//! ALPN names `http/1.1`.
//!
//! What a handshake costs the generator, and why it caches a verified chain: a full handshake costs
//! the client an X25519 key pair and agreement, the check of the server's handshake signature and
//! the check of its certificate chain; the server pays a key pair, an agreement and one signature,
//! and an ECDSA verification costs about twice a signature. The chain check is a second
//! verification the server has no counterpart for, so, as browsers' certificate verifiers do, each
//! generator thread remembers the one chain it verified last (its exact bytes and the server name)
//! and gives the same bytes the same verdict without verifying them again. The handshake signature
//! is verified on every full handshake: it is what proves the server holds the key. Measured on the
//! project's 2-core VM (a one-thread TLS origin pinned to core 0, one generator thread on core 1,
//! 32 connections, three alternating 3 s runs, medians, CPU time from /proc): `--conn new` costs
//! the generator 257 µs per request with the cache against 319 µs without (the origin: 197 µs),
//! `--conn resume` 172 µs (the origin: 157 µs), and keep-alive 6.3 µs against 4.9 µs over plain
//! HTTP. What is left is X25519, one P-256 verification (new only), SHA-256 and the kernel's TCP
//! set-up and tear-down, none of which a real client skips; so a generator that shares its core
//! with the origin bounds `--conn new` runs against a proxy that handshakes faster than it, and
//! `loadtest compare` reports the generator's busy share beside each such run.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, ServerConfig,
    SignatureAlgorithm, SignatureScheme,
};

/// Servers each generator thread's client keeps TLS 1.2 sessions and key-exchange hints for
/// (it talks to one).
const CLIENT_SERVERS_MAX: usize = 16;
/// TLS 1.3 tickets each generator thread keeps per connection of the thread, and at least.
/// rustls' own cache keeps 8 per server name, which is too few for a thread that reconnects
/// many connections at once: their responses (each bringing tickets) tend to arrive in one
/// batch, before any of them reconnects (each taking a ticket), and a capped cache drops the
/// surplus and then runs dry. Measured with 16 connections against a TLS origin: a quarter
/// of the `--conn resume` handshakes were full with rustls' cache, none with this one.
const CLIENT_TICKETS_PER_CONNECTION: usize = 2;
const CLIENT_TICKETS_MIN: usize = 8;
/// TLS 1.3 tickets an origin sends after each full or resumed handshake (rustls' default):
/// tickets are single-use, so a client that reconnects as it resumes needs at least one per
/// connection.
const ORIGIN_TLS13_TICKETS: usize = 2;
/// The ALPN protocol both sides name.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider of every config here: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client's provider: ring with AES-128-GCM (SHA-256) ahead of AES-256-GCM (SHA-384), the
/// order browsers offer. A server that follows the client's order (rustls, nginx) then runs
/// its key schedule on SHA-256, which CPUs with SHA extensions compute in hardware: measured
/// as above, resumed handshakes cost the rustls origin 157 µs against 198 µs with SHA-384.
fn client_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::*;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The certificates of a PEM file, in order; an error when it holds none.
pub fn read_certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let bad = |e: rustls::pki_types::pem::Error| invalid(format!("{}: {e}", path.display()));
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certificates)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub fn read_private_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        invalid(format!(
            "{}: no usable PEM private key: {e}",
            path.display()
        ))
    })
}

/// How a client handles sessions between its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSessions {
    /// Keep sessions and resume with them when reconnecting.
    Resume,
    /// Keep nothing: every handshake is a full one.
    Forget,
}

/// What every generator thread needs to build its TLS client: the trust anchors and the server
/// name, read once at the start of a run.
#[derive(Debug, Clone)]
pub struct ClientSetup {
    roots: Arc<RootCertStore>,
    server_name: ServerName<'static>,
    sessions: ClientSessions,
}

impl ClientSetup {
    /// Trust anchors from the PEM file `ca_file`; `server_name` (a DNS name or an IP address)
    /// is sent as SNI when it is a name and checked against the certificate either way.
    pub fn new(ca_file: &Path, server_name: &str, sessions: ClientSessions) -> io::Result<Self> {
        let mut roots = RootCertStore::empty();
        for certificate in read_certificates(ca_file)? {
            roots.add(certificate).map_err(|e| {
                invalid(format!(
                    "{}: not a usable trust anchor: {e}",
                    ca_file.display()
                ))
            })?;
        }
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| invalid(format!("{server_name:?} is not a DNS name or IP address")))?;
        Ok(ClientSetup {
            roots: Arc::new(roots),
            server_name,
            sessions,
        })
    }

    /// A client for one generator thread that opens up to `connections` connections at once,
    /// with a session cache and certificate cache of its own, so that threads never meet on a
    /// lock.
    pub fn client(&self, connections: usize) -> io::Result<TlsClient> {
        let provider = client_provider();
        let webpki =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| invalid(format!("trust anchors: {e}")))?;
        let verifier = Arc::new(CachingVerifier {
            inner: webpki,
            last_verified: Mutex::new(None),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS client: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.resumption = match self.sessions {
            ClientSessions::Resume => Resumption::store(Arc::new(ThreadSessions::new(
                (connections * CLIENT_TICKETS_PER_CONNECTION).max(CLIENT_TICKETS_MIN),
            ))),
            ClientSessions::Forget => Resumption::disabled(),
        };
        Ok(TlsClient {
            connector: TlsConnector::from(config),
            server_name: self.server_name.clone(),
        })
    }
}

/// One generator thread's TLS client.
pub struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

/// How a handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The server sent its certificate, which was checked.
    Full,
    /// The server resumed an earlier session: no certificate.
    Resumed,
}

thread_local! {
    /// Server certificate chains this thread was asked to verify: one per full handshake.
    static CHAINS_VERIFIED: Cell<u64> = const { Cell::new(0) };
}

impl TlsClient {
    /// The TLS handshake over `tcp`, and whether it was full or resumed.
    ///
    /// rustls asks the verifier for a chain only in a full handshake, synchronously while
    /// this future is polled, and nothing else runs on the thread during a poll: so a change
    /// of the thread's count across this future's polls is this handshake's.
    pub async fn connect(
        &self,
        tcp: TcpStream,
    ) -> Result<(ClientTlsStream<TcpStream>, Handshake), monoio_rustls::TlsError> {
        let mut handshake = pin!(self.connector.connect(self.server_name.clone(), tcp));
        let mut full = false;
        let stream = std::future::poll_fn(|cx| {
            let before = CHAINS_VERIFIED.get();
            let poll = handshake.as_mut().poll(cx);
            full |= CHAINS_VERIFIED.get() != before;
            poll
        })
        .await?;
        let kind = if full {
            Handshake::Full
        } else {
            Handshake::Resumed
        };
        Ok((stream, kind))
    }
}

/// The session store of one generator thread: rustls' memory cache for TLS 1.2 sessions and
/// key-exchange hints, and TLS 1.3 tickets (single-use, newest first) up to a bound that
/// grows with the thread's connections (see [`CLIENT_TICKETS_PER_CONNECTION`]).
struct ThreadSessions {
    cache: ClientSessionMemoryCache,
    tickets: Mutex<VecDeque<(ServerName<'static>, Tls13ClientSessionValue)>>,
    tickets_max: usize,
}

impl ThreadSessions {
    fn new(tickets_max: usize) -> Self {
        ThreadSessions {
            cache: ClientSessionMemoryCache::new(CLIENT_SERVERS_MAX),
            tickets: Mutex::new(VecDeque::with_capacity(tickets_max)),
            tickets_max,
        }
    }

    fn tickets(
        &self,
    ) -> std::sync::MutexGuard<'_, VecDeque<(ServerName<'static>, Tls13ClientSessionValue)>> {
        self.tickets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for ThreadSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tickets are secrets: only their number is shown.
        f.debug_struct("ThreadSessions")
            .field("tickets", &self.tickets().len())
            .field("tickets_max", &self.tickets_max)
            .finish()
    }
}

impl ClientSessionStore for ThreadSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.cache.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.cache.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.cache.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.cache.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.cache.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut tickets = self.tickets();
        if tickets.len() == self.tickets_max {
            tickets.pop_front();
        }
        tickets.push_back((server_name, value));
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let mut tickets = self.tickets();
        let newest = tickets.iter().rposition(|(name, _)| name == server_name)?;
        tickets.remove(newest).map(|(_, ticket)| ticket)
    }
}

/// webpki's verifier, remembering the last chain it accepted (see the module doc).
#[derive(Debug)]
struct CachingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The end-entity certificate, intermediates and server name last verified. One thread
    /// uses it, so the lock is never contended.
    last_verified: Mutex<Option<VerifiedChain>>,
}

#[derive(Debug, PartialEq, Eq)]
struct VerifiedChain {
    end_entity: Vec<u8>,
    intermediates: Vec<Vec<u8>>,
    server_name: ServerName<'static>,
}

impl VerifiedChain {
    fn matches(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
    ) -> bool {
        self.end_entity == end_entity.as_ref()
            && self.intermediates.len() == intermediates.len()
            && self
                .intermediates
                .iter()
                .zip(intermediates)
                .all(|(a, b)| a == b.as_ref())
            && self.server_name == *server_name
    }
}

impl ServerCertVerifier for CachingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        CHAINS_VERIFIED.set(CHAINS_VERIFIED.get() + 1);
        let mut last = self
            .last_verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last
            .as_ref()
            .is_some_and(|chain| chain.matches(end_entity, intermediates, server_name))
        {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        *last = Some(VerifiedChain {
            end_entity: end_entity.to_vec(),
            intermediates: intermediates.iter().map(|c| c.to_vec()).collect(),
            server_name: server_name.to_owned(),
        });
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Counts of an origin's TLS handshakes, shared by its threads.
#[derive(Debug, Default)]
pub struct ServerCounts {
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Handshake signatures made: one per full handshake (a resumed one signs nothing).
    pub signatures: AtomicU64,
    /// Handshakes that failed (an alert, a bad record, or the client leaving).
    pub failures: AtomicU64,
}

/// The server config of a TLS origin: the chain and key from PEM files, stateless session
/// tickets (one ticket key for all the origin's threads, so that a client resumes whichever
/// thread it lands on) and [`ORIGIN_TLS13_TICKETS`] TLS 1.3 tickets per handshake.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    counts: Arc<ServerCounts>,
) -> io::Result<Arc<ServerConfig>> {
    let chain = read_certificates(cert_file)?;
    let key_der = read_private_key(key_file)?;
    let provider = provider();
    let key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| invalid(format!("{}: {e}", key_file.display())))?;
    let key = Arc::new(CountingKey { inner: key, counts });
    let certified = Arc::new(CertifiedKey::new(chain, key));
    certified.keys_match().map_err(|e| {
        invalid(format!(
            "{} and {}: {e}",
            cert_file.display(),
            key_file.display()
        ))
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS server: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCertificate(certified)));
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| io::Error::other(format!("TLS ticket key: {e}")))?;
    config.send_tls13_tickets = ORIGIN_TLS13_TICKETS;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A signing key that counts the signatures it makes.
#[derive(Debug)]
struct CountingKey {
    inner: Arc<dyn SigningKey>,
    counts: Arc<ServerCounts>,
}

impl SigningKey for CountingKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let inner = self.inner.choose_scheme(offered)?;
        Some(Box::new(CountingSigner {
            inner,
            counts: self.counts.clone(),
        }))
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.inner.algorithm()
    }
}

#[derive(Debug)]
struct CountingSigner {
    inner: Box<dyn Signer>,
    counts: Arc<ServerCounts>,
}

impl Signer for CountingSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.counts.signatures.fetch_add(1, Ordering::Relaxed);
        self.inner.sign(message)
    }

    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
}

/// A certificate authority made at run time (ECDSA P-256), for tests, the demo and
/// `loadtest compare`: it issues server certificates.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Its self-signed certificate: the trust anchor (`--ca`, `--cacert`, `ca_file`).
    pub pem: String,
}

impl TestCa {
    pub fn new(common_name: &str) -> io::Result<TestCa> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().map_err(generation_failed)?;
        let mut params = CertificateParams::new(Vec::new()).map_err(generation_failed)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let pem = params.self_signed(&key).map_err(generation_failed)?.pem();
        Ok(TestCa {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// A server certificate for `names` (DNS names, `*.` wildcards or IP addresses such as
    /// `"127.0.0.1"`, each a subject alternative name; the first is also the common name)
    /// with a fresh key: `(cert_pem, key_pem)`, the key PKCS#8.
    pub fn issue(&self, names: &[&str]) -> io::Result<(String, String)> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).map_err(generation_failed)?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(generation_failed)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generation_failed)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn generation_failed(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("certificate generation: {e}"))
}

/// A CA and a server certificate it signed, ECDSA P-256, in PEM, made at run time.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    pub ca_pem: String,
    /// The server certificate alone (the CA is the trust anchor, not sent).
    pub cert_pem: String,
    /// The server's private key, PKCS#8.
    pub key_pem: String,
}

/// Where [`TestCertificates::write`] put the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// `ca.pem`: the trust anchor for `--ca`.
    pub ca_file: PathBuf,
    /// `server.pem`: the server certificate.
    pub cert_file: PathBuf,
    /// `server.key`: its private key.
    pub key_file: PathBuf,
    /// `server-with-key.pem`: certificate then key in one file, as HAProxy's `crt` wants.
    pub combined_file: PathBuf,
}

impl TestCertificates {
    /// A fresh CA and a server certificate for `names`: DNS names, or IP addresses
    /// (`"127.0.0.1"`), each a subject alternative name.
    pub fn generate(names: &[&str]) -> io::Result<TestCertificates> {
        let ca = TestCa::new("coregate loadtest CA")?;
        let (cert_pem, key_pem) = ca.issue(names)?;
        Ok(TestCertificates {
            ca_pem: ca.pem,
            cert_pem,
            key_pem,
        })
    }

    /// Writes the PEM files into `dir` (which must exist), the key readable by its owner only.
    pub fn write(&self, dir: &Path) -> io::Result<CertificateFiles> {
        use std::os::unix::fs::OpenOptionsExt;
        let files = CertificateFiles {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            combined_file: dir.join("server-with-key.pem"),
        };
        fs::write(&files.ca_file, &self.ca_pem)?;
        fs::write(&files.cert_file, &self.cert_pem)?;
        let private = |path: &Path, text: &str| {
            use std::io::Write;
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?
                .write_all(text.as_bytes())
        };
        private(&files.key_file, &self.key_pem)?;
        private(
            &files.combined_file,
            &format!("{}{}", self.cert_pem, self.key_pem),
        )?;
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_load_on_both_sides() {
        let dir = std::env::temp_dir().join(format!("loadtest-tls-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let files = TestCertificates::generate(&["localhost", "127.0.0.1"])
            .unwrap()
            .write(&dir)
            .unwrap();
        let counts = Arc::new(ServerCounts::default());
        server_config(&files.cert_file, &files.key_file, counts.clone()).unwrap();
        // The combined file holds both, as HAProxy reads it.
        assert_eq!(read_certificates(&files.combined_file).unwrap().len(), 1);
        read_private_key(&files.combined_file).unwrap();
        for name in ["localhost", "127.0.0.1"] {
            ClientSetup::new(&files.ca_file, name, ClientSessions::Resume)
                .unwrap()
                .client(4)
                .unwrap();
        }
        assert!(ClientSetup::new(&files.ca_file, "not a name", ClientSessions::Forget).is_err());
        assert!(read_private_key(&files.ca_file).is_err());
        assert!(read_certificates(&files.key_file).is_err());
        // A key that is not the certificate's is refused at start, not at the first handshake.
        let other = TestCertificates::generate(&["localhost"]).unwrap();
        let other_key = dir.join("other.key");
        fs::write(&other_key, other.key_pem).unwrap();
        assert!(server_config(&files.cert_file, &other_key, counts).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
