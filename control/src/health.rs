//! Active health checks: one probe thread per checked endpoint, thresholds applied on the
//! control thread, and the set of endpoints that are down published to the workers.
//!
//! A probe is a blocking `GET path` over a fresh TCP connection (with a TLS handshake first
//! when the upstream has `tls`, verified as the workers verify) with the check's timeout for
//! the whole exchange (connect to status line); it never runs on a worker. Endpoints are named
//! by address: when several upstreams list the same address, the first (by name) that checks
//! it decides how. An endpoint starts up; `unhealthy_threshold` failures in a row take it
//! down, `healthy_threshold` successes in a row bring it back. State survives a reload for the
//! addresses that stay checked.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coregate_config::{HealthCheck, UpstreamTls};
use coregate_engine::tls::ClientTls;
use coregate_engine::Snapshot;

/// Longest status line read from a probed endpoint.
const STATUS_LINE_BYTES_MAX: usize = 1024;
/// How often a sleeping probe thread looks at its stop flag.
const STOP_POLL_MS: u64 = 50;

/// One probe's outcome, sent from a probe thread to the control thread.
pub struct ProbeResult {
    /// Which probe thread (a stopped thread's late results are ignored).
    pub probe: u64,
    pub address: SocketAddr,
    /// `Err` says why it failed.
    pub outcome: Result<(), String>,
}

/// What the control side knows about one checked endpoint.
#[derive(Clone, Debug)]
pub struct EndpointHealth {
    pub up: bool,
    pub successes: u32,
    pub failures: u32,
    /// The last probe's outcome, `None` before the first.
    pub last: Option<Result<(), String>>,
}

struct Probe {
    id: u64,
    check: HealthCheck,
    /// The upstream's TLS settings, to tell whether a reload changed them.
    tls: Option<UpstreamTls>,
    stop: Arc<AtomicBool>,
}

/// What one endpoint's probe needs from the snapshot.
struct Wanted {
    check: HealthCheck,
    tls: Option<(UpstreamTls, Arc<ClientTls>)>,
}

/// The running checks and their state.
pub struct Checker {
    probes: HashMap<SocketAddr, Probe>,
    state: BTreeMap<SocketAddr, EndpointHealth>,
    results_tx: Sender<ProbeResult>,
    pub results: Receiver<ProbeResult>,
    next_id: u64,
}

/// A change of an endpoint's state, for the log.
pub struct Transition {
    pub address: SocketAddr,
    pub up: bool,
    pub reason: String,
}

impl Checker {
    pub fn new() -> Checker {
        let (results_tx, results) = std::sync::mpsc::channel();
        Checker {
            probes: HashMap::new(),
            state: BTreeMap::new(),
            results_tx,
            results,
            next_id: 0,
        }
    }

    /// Starts, keeps or stops probe threads so that exactly the endpoints `config` checks are
    /// probed. Returns whether the set of down endpoints changed (an endpoint no longer
    /// checked counts as up).
    pub fn configure(&mut self, snapshot: &Snapshot) -> bool {
        let mut wanted: HashMap<SocketAddr, Wanted> = HashMap::new();
        for (upstream, client) in snapshot.config.upstreams.iter().zip(&snapshot.upstream_tls) {
            if let Some(check) = &upstream.health_check {
                let tls = upstream.tls.clone().zip(client.clone());
                for endpoint in &upstream.endpoints {
                    wanted.entry(endpoint.address).or_insert_with(|| Wanted {
                        check: check.clone(),
                        tls: tls.clone(),
                    });
                }
            }
        }
        let before = self.down();
        self.probes.retain(|address, probe| {
            let keep = wanted.get(address).is_some_and(|w| {
                w.check == probe.check && w.tls.as_ref().map(|(t, _)| t) == probe.tls.as_ref()
            });
            if !keep {
                probe.stop.store(true, Ordering::Release);
            }
            keep
        });
        self.state.retain(|address, _| wanted.contains_key(address));
        for (address, w) in wanted {
            if self.probes.contains_key(&address) {
                continue;
            }
            self.next_id += 1;
            let (tls, client) = w.tls.unzip();
            let probe = Probe {
                id: self.next_id,
                check: w.check.clone(),
                tls,
                stop: Arc::new(AtomicBool::new(false)),
            };
            let stop = probe.stop.clone();
            let tx = self.results_tx.clone();
            let id = probe.id;
            let check = w.check;
            let spawned = std::thread::Builder::new()
                .name(format!("coregate-health-{address}"))
                .spawn(move || probe_loop(id, address, check, client, stop, tx));
            if let Err(e) = spawned {
                eprintln!("health: cannot start the probe of {address}: {e}");
                continue;
            }
            self.probes.insert(address, probe);
            self.state.entry(address).or_insert(EndpointHealth {
                up: true,
                successes: 0,
                failures: 0,
                last: None,
            });
        }
        self.down() != before
    }

    /// Applies one probe result; returns the transition it caused, if any.
    pub fn apply(&mut self, result: ProbeResult) -> Option<Transition> {
        let probe = self.probes.get(&result.address)?;
        if probe.id != result.probe {
            return None;
        }
        let check = &probe.check;
        let state = self.state.get_mut(&result.address)?;
        let transition = match &result.outcome {
            Ok(()) => {
                state.successes = state.successes.saturating_add(1);
                state.failures = 0;
                (!state.up && state.successes >= check.healthy_threshold).then(|| {
                    state.up = true;
                    format!("{} successful probes in a row", state.successes)
                })
            }
            Err(why) => {
                state.failures = state.failures.saturating_add(1);
                state.successes = 0;
                (state.up && state.failures >= check.unhealthy_threshold).then(|| {
                    state.up = false;
                    format!("{} failed probes in a row, last: {why}", state.failures)
                })
            }
        };
        state.last = Some(result.outcome);
        transition.map(|reason| Transition {
            address: result.address,
            up: state.up,
            reason,
        })
    }

    /// The endpoints currently down, sorted.
    pub fn down(&self) -> Vec<SocketAddr> {
        self.state
            .iter()
            .filter(|(_, s)| !s.up)
            .map(|(a, _)| *a)
            .collect()
    }

    /// The state of every checked endpoint.
    pub fn states(&self) -> &BTreeMap<SocketAddr, EndpointHealth> {
        &self.state
    }

    /// Stops every probe thread.
    pub fn stop(&mut self) {
        for probe in self.probes.values() {
            probe.stop.store(true, Ordering::Release);
        }
        self.probes.clear();
    }
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

fn probe_loop(
    id: u64,
    address: SocketAddr,
    check: HealthCheck,
    tls: Option<Arc<ClientTls>>,
    stop: Arc<AtomicBool>,
    tx: Sender<ProbeResult>,
) {
    let interval = Duration::from_millis(check.interval_ms);
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let outcome = probe(address, &check, tls.as_deref());
        if tx
            .send(ProbeResult {
                probe: id,
                address,
                outcome,
            })
            .is_err()
        {
            return;
        }
        let next = started + interval;
        while !stop.load(Ordering::Acquire) {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(STOP_POLL_MS)));
        }
    }
}

/// The probe's connection: plain, or TLS over it.
enum ProbeStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl ProbeStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ProbeStream::Plain(tcp) => tcp,
            ProbeStream::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for ProbeStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ProbeStream::Plain(tcp) => tcp.read(buf),
            ProbeStream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for ProbeStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ProbeStream::Plain(tcp) => tcp.write(buf),
            ProbeStream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ProbeStream::Plain(tcp) => tcp.flush(),
            ProbeStream::Tls(tls) => tls.flush(),
        }
    }
}

/// One probe: connect (and handshake, with `tls`), send `GET path`, read the status line, all
/// within `timeout_ms`.
pub fn probe(
    address: SocketAddr,
    check: &HealthCheck,
    tls: Option<&ClientTls>,
) -> Result<(), String> {
    let timeout = Duration::from_millis(check.timeout_ms);
    let deadline = Instant::now() + timeout;
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(format!("no status line within {} ms", check.timeout_ms))
        } else {
            Ok(left)
        }
    };
    let tcp = TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = match tls {
        None => ProbeStream::Plain(tcp),
        Some(tls) => {
            let session = tls.session(address.ip()).map_err(|e| format!("TLS: {e}"))?;
            ProbeStream::Tls(Box::new(rustls::StreamOwned::new(session, tcp)))
        }
    };
    stream
        .tcp()
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    // The handshake runs within the first write and read, under the same timeouts.
    stream
        .tcp()
        .set_read_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: coregate-health-check\r\n\
         Connection: close\r\n\r\n",
        check.path
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    let line_end = loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            break end;
        }
        if buf.len() >= STATUS_LINE_BYTES_MAX {
            return Err("status line too long".to_owned());
        }
        stream
            .tcp()
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err("closed before a status line".to_owned()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no status line within {} ms", check.timeout_ms))
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let line = String::from_utf8_lossy(&buf[..line_end]);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
    if status == check.expected_status {
        Ok(())
    } else {
        Err(format!(
            "status {status}, expected {}",
            check.expected_status
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn check(expected_status: u16) -> HealthCheck {
        HealthCheck {
            path: "/healthz".to_owned(),
            interval_ms: 1000,
            timeout_ms: 500,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            expected_status,
        }
    }

    fn answer_once(listener: &TcpListener, response: &'static [u8]) {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(response);
    }

    #[test]
    fn probe_reads_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            answer_once(&listener, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            answer_once(&listener, b"HTTP/1.1 503 Unavailable\r\n\r\n");
        });
        assert_eq!(probe(addr, &check(200), None), Ok(()));
        let err = probe(addr, &check(200), None).unwrap_err();
        assert!(err.contains("status 503"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn probe_of_a_closed_port_fails() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = probe(addr, &check(200), None).unwrap_err();
        assert!(err.starts_with("connect"), "{err}");
    }

    #[test]
    fn thresholds_apply() {
        let mut checker = Checker::new();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        checker.probes.insert(
            addr,
            Probe {
                id: 7,
                check: check(200),
                tls: None,
                stop: Arc::new(AtomicBool::new(true)),
            },
        );
        checker.state.insert(
            addr,
            EndpointHealth {
                up: true,
                successes: 0,
                failures: 0,
                last: None,
            },
        );
        let result = |outcome: Result<(), String>| ProbeResult {
            probe: 7,
            address: addr,
            outcome,
        };
        assert!(checker.apply(result(Err("x".into()))).is_none());
        let t = checker.apply(result(Err("x".into()))).expect("down");
        assert!(!t.up);
        assert_eq!(checker.down(), vec![addr]);
        assert!(checker.apply(result(Ok(()))).is_none());
        assert!(checker.apply(result(Ok(()))).expect("up").up);
        assert!(checker.down().is_empty());
        // A stale probe's result changes nothing.
        let stale = ProbeResult {
            probe: 6,
            address: addr,
            outcome: Err("old".into()),
        };
        assert!(checker.apply(stale).is_none());
        assert_eq!(checker.states()[&addr].failures, 0);
    }
}
