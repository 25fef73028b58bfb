//! TLS for the integration tests: certificates made at test time, a gateway whose first
//! listener speaks HTTPS, curl over HTTPS, and a blocking rustls client that shows what curl
//! cannot (the certificate served, whether the handshake resumed, the version, ALPN).
//!
//! Certificates are ECDSA P-256 from rcgen, signed by a CA made for the test; a leaf's
//! serial number is a hash of its fresh key, so two leaves for the same names still differ.
//! The client is rustls 0.23 with the ring provider over a std `TcpStream` switched to
//! non-blocking after the handshake, so that it can read an echo while it is still writing a
//! large body (a blocking client would stall against a server that streams both ways).

use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coregate_loadtest::tls::TestCa;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, ProtocolVersion,
    RootCertStore, SignatureScheme, StreamOwned, SupportedProtocolVersion,
};

use super::{connect, show, take_response, Response, READ_TIMEOUT};

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certificate authority made for one test: the harness's [`TestCa`], which the demo and
/// `loadtest compare` use too.
pub struct Ca {
    ca: TestCa,
    /// Its self-signed certificate: the trust anchor (`--cacert`, `ca_file`).
    pub pem: String,
}

impl Ca {
    pub fn new(common_name: &str) -> Ca {
        let ca = TestCa::new(common_name).expect("make a test CA");
        let pem = ca.pem.clone();
        Ca { ca, pem }
    }

    /// A server certificate for `names` (see [`TestCa::issue`]): `(cert_pem, key_pem)`.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        self.ca.issue(names).expect("issue a test certificate")
    }
}

/// The DER bytes of the first certificate in `pem`, to compare with what a server presented.
pub fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

/// A directory in the temp dir for one test's PEM files, removed on drop.
pub struct CertDir {
    pub path: PathBuf,
}

impl CertDir {
    pub fn new(tag: &str) -> CertDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "coregate-tls-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create the certificate dir");
        CertDir { path }
    }

    /// Writes `text` to `name` in the directory atomically (a sibling, then renamed over), so
    /// a gateway watching the file never reads it half-written; returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        let next = self.path.join(format!("{name}.next"));
        fs::write(&next, text).expect("write a PEM file");
        fs::rename(&next, &path).expect("rename a PEM file into place");
        path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// `[[listener.tls.certificate]]` for the files `cert` and `key`, with `extra` lines.
pub fn certificate_toml(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[[listener.tls.certificate]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}\n",
        cert.display(),
        key.display()
    )
}

// ---------------------------------------------------------------------------------------------
// curl

/// `curl https://HOST:PORT{path}` to the gateway at `addr` (HOST resolved to 127.0.0.1),
/// trusting the CA file `ca` only, with `extra` arguments: `(status, body)`, or curl's error
/// when the transfer failed (a certificate that does not verify, say).
pub fn curl_https(
    ca: &Path,
    host: &str,
    addr: SocketAddr,
    path: &str,
    extra: &[&str],
) -> Result<(u16, String), String> {
    let port = addr.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("run curl (CI installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "curl https://{host}:{port}{path} {extra:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    let status = code
        .trim()
        .parse()
        .map_err(|_| format!("curl output {text:?}"))?;
    Ok((status, body.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// The rustls client

pub const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
pub const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// How a [`TlsClient`] behaves.
#[derive(Clone, Copy)]
pub struct ClientOptions {
    /// Versions offered. Default both.
    pub versions: &'static [&'static SupportedProtocolVersion],
    /// Keep sessions in memory and resume with them. Default false: every handshake is full,
    /// so the certificate is always presented.
    pub resume: bool,
    /// Send the server name as SNI. Default true.
    pub sni: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            versions: rustls::ALL_VERSIONS,
            resume: false,
            sni: true,
        }
    }
}

/// A rustls client trusting one CA, offering ALPN `http/1.1`. It remembers the last server
/// certificate it was asked to verify, so a test sees which one was presented even when the
/// handshake then fails (a name the certificate does not cover).
pub struct TlsClient {
    config: Arc<ClientConfig>,
    presented: Arc<Mutex<Option<Vec<u8>>>>,
}

impl TlsClient {
    pub fn new(ca_pem: &str) -> TlsClient {
        TlsClient::with(ca_pem, ClientOptions::default())
    }

    pub fn with(ca_pem: &str, options: ClientOptions) -> TlsClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(der(ca_pem)))
            .expect("a usable trust anchor");
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .expect("verifier");
        let presented = Arc::new(Mutex::new(None));
        let verifier = Arc::new(Recording {
            inner,
            presented: presented.clone(),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(options.versions)
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.enable_sni = options.sni;
        config.resumption = if options.resume {
            Resumption::in_memory_sessions(64)
        } else {
            Resumption::disabled()
        };
        TlsClient {
            config: Arc::new(config),
            presented,
        }
    }

    /// Connects to `addr` and completes a handshake for `server_name` (a DNS name, or an IP
    /// address: then no SNI is sent).
    pub fn connect(&self, addr: SocketAddr, server_name: &str) -> Result<TlsConn, String> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("server name {server_name:?}: {e}"))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| format!("client connection: {e}"))?;
        let mut tls = StreamOwned::new(conn, connect(addr));
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("TLS handshake with {addr} as {server_name:?}: {e}"))?;
        }
        tls.sock.set_nonblocking(true).expect("non-blocking socket");
        Ok(TlsConn {
            tls,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// The end-entity certificate (DER) the server presented in the last full handshake.
    pub fn last_presented(&self) -> Option<Vec<u8>> {
        self.presented.lock().unwrap().clone()
    }
}

/// webpki's verifier, recording the end-entity certificate before judging it.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    presented: Arc<Mutex<Option<Vec<u8>>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.presented.lock().unwrap() = Some(end_entity.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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

/// One TLS connection that reads responses one at a time, like [`super::Client`].
pub struct TlsConn {
    pub tls: StreamOwned<ClientConnection, std::net::TcpStream>,
    buf: Vec<u8>,
    eof: bool,
}

impl TlsConn {
    /// The end-entity certificate (DER) of this connection's session.
    pub fn peer_certificate(&self) -> Vec<u8> {
        self.tls
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("the server presented a certificate")
            .to_vec()
    }

    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.tls.conn.handshake_kind()
    }

    pub fn version(&self) -> Option<ProtocolVersion> {
        self.tls.conn.protocol_version()
    }

    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.tls.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// Writes `bytes`, reading whatever arrives meanwhile (kept for the next
    /// [`TlsConn::read_response`]), so a server that answers while it reads never stalls.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut pos = 0;
        let mut last_progress = Instant::now();
        loop {
            let mut progress = false;
            if pos < bytes.len() {
                // rustls takes as much plaintext as its buffer limit allows.
                let n = self
                    .tls
                    .conn
                    .writer()
                    .write(&bytes[pos..])
                    .map_err(|e| format!("TLS write: {e}"))?;
                pos += n;
                progress |= n > 0;
            }
            progress |= self.flush()?;
            progress |= self.fill()?;
            if pos == bytes.len() && !self.tls.conn.wants_write() {
                return Ok(());
            }
            if self.eof {
                return Err(format!(
                    "the gateway closed the connection with {} of {} bytes written",
                    pos,
                    bytes.len()
                ));
            }
            if progress {
                last_progress = Instant::now();
            } else if last_progress.elapsed() > READ_TIMEOUT {
                return Err(format!("no progress writing for {READ_TIMEOUT:?}"));
            } else {
                self.wait(true, Duration::from_millis(200));
            }
        }
    }

    /// Sends `raw` and reads one response (to a request that was not HEAD); panics on error.
    pub fn request(&mut self, raw: &str) -> Response {
        self.send(raw.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        self.read_response()
    }

    pub fn read_response(&mut self) -> Response {
        self.try_read_response().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads one response, or says why there is none (after [`READ_TIMEOUT`] without
    /// progress).
    pub fn try_read_response(&mut self) -> Result<Response, String> {
        let mut deadline = Instant::now() + READ_TIMEOUT;
        loop {
            if let Some(resp) = take_response(&mut self.buf, false, self.eof)? {
                return Ok(resp);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no complete response (nothing more for {READ_TIMEOUT:?}); got {:?}",
                    show(&self.buf)
                ));
            }
            let before = self.buf.len();
            if !self.fill()? {
                self.wait(false, left);
            }
            if self.buf.len() > before {
                deadline = Instant::now() + READ_TIMEOUT;
            }
        }
    }

    /// Whether the gateway closes the connection within `wait` with nothing more sent to us.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.eof && self.buf.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => self.wait(false, left),
                Err(_) => return true,
            }
        }
        self.eof && self.buf.is_empty()
    }

    /// Writes the TLS records rustls has ready, as far as the socket takes them. Whether any
    /// bytes went out.
    fn flush(&mut self) -> Result<bool, String> {
        let mut progress = false;
        while self.tls.conn.wants_write() {
            match self.tls.conn.write_tls(&mut self.tls.sock) {
                Ok(n) => progress |= n > 0,
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(format!("TLS write to the socket: {e}")),
            }
        }
        Ok(progress)
    }

    /// Reads what the socket has, decrypts it and keeps the plaintext. Whether anything came
    /// (bytes or the end of the stream).
    fn fill(&mut self) -> Result<bool, String> {
        let mut progress = false;
        while !self.eof {
            match self.tls.conn.read_tls(&mut self.tls.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => return Err(format!("TLS read from the socket: {e}")),
            }
            progress = true;
            self.tls
                .conn
                .process_new_packets()
                .map_err(|e| format!("TLS: {e}"))?;
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match self.tls.conn.reader().read(&mut chunk) {
                    // close_notify.
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The TCP stream ended without close_notify.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        self.eof = true;
                        break;
                    }
                    Err(e) => return Err(format!("TLS plaintext: {e}")),
                }
            }
        }
        // Alerts and key updates rustls wants to answer.
        self.flush()?;
        Ok(progress)
    }

    /// Waits until the socket is readable (or writable too, with `write`) or `wait` passes.
    fn wait(&self, write: bool, wait: Duration) {
        let mut events = libc::POLLIN;
        if write && self.tls.conn.wants_write() {
            events |= libc::POLLOUT;
        }
        let mut fd = libc::pollfd {
            fd: self.tls.sock.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: `fd` is one valid pollfd that outlives the call, and the count says one.
        unsafe { libc::poll(&mut fd, 1, ms) };
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
