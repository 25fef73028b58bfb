//! The reverse proxies a comparison runs, each with one worker in front of the same origin:
//! coregate, nginx and HAProxy, started from configurations generated here into a temporary
//! directory. The settings give each the same footing: keep-alive to clients and to the origin
//! (a pool of 64 idle upstream connections), no access logging, no request limit per
//! connection, and generous timeouts. The coregate variants of the coregate-only scenarios add
//! a policy or the access log to that configuration ([`super::policies`]).
//!
//! With `--baseline`, a second coregate binary runs beside the first with the same
//! configuration, as `coregate-baseline`.
//!
//! Beside them, as a floor rather than a proxy, runs the bare byte forwarder of
//! [`crate::forward`]: this executable itself (`loadtest forward`), one thread, started,
//! pinned and measured as the proxies are, with one upstream connection per client connection
//! (as many as the load's keep-alive connections, so as many as the proxies' pools hold).
//!
//! With certificates (scenario https) each terminates TLS on its listener: TLS 1.2 and 1.3,
//! session tickets on (each server's default of two TLS 1.3 tickets per handshake) and a
//! session cache for TLS 1.2 session IDs, the origin behind it still plain HTTP.

use std::fmt::Write;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::policies::{self, CoregateExtra, Jwt};
use super::process::{Child, TempDir};
use crate::tls::CertificateFiles;

/// Longest wait for a proxy to listen after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Starts of a proxy whose port was taken before it bound it, on a new port each time.
const START_ATTEMPTS: usize = 3;
/// Idle keep-alive connections each proxy keeps to the origin.
pub const UPSTREAM_KEEPALIVE: usize = 64;
/// Client connections each proxy accepts, above the idle-memory measurement's thousands.
/// HAProxy wants about twice this many file descriptors (client plus server side), which
/// must fit the open-file limit it inherits.
const CLIENT_CONNECTIONS_MAX: usize = 8_192;
/// nginx's shared TLS session cache (one megabyte holds about 4000 sessions).
const NGINX_SESSION_CACHE_MB: usize = 10;

/// What load is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The origin alone, without a proxy: the floor.
    Origin,
    /// `loadtest forward` in front of the origin: a byte forwarder that parses nothing, the
    /// floor a proxy approaches.
    Forwarder,
    Coregate,
    /// A second coregate binary (`--baseline`), configured as plain coregate: an A/B of two
    /// builds in one run, their rounds interleaved like every target's.
    Baseline,
    Nginx,
    Haproxy,
    /// coregate with an HS256 JWT and a rate limit on its route (scenario policies).
    CoregatePolicies,
    /// coregate with an ES256 JWT (JWKS file) and a rate limit on its route (scenario
    /// policies).
    CoregateEs256,
    /// coregate writing an access log (scenario access-log).
    CoregateAccessLog,
}

impl Kind {
    /// The targets `--targets` selects from; the coregate variants come with their scenarios.
    pub const ALL: [Kind; 5] = [
        Kind::Origin,
        Kind::Forwarder,
        Kind::Coregate,
        Kind::Nginx,
        Kind::Haproxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Origin => "origin",
            Kind::Forwarder => "forwarder",
            Kind::Coregate => "coregate",
            Kind::Baseline => "coregate-baseline",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::CoregatePolicies => "coregate+policies",
            Kind::CoregateEs256 => "coregate+es256",
            Kind::CoregateAccessLog => "coregate+access-log",
        }
    }

    /// A coregate with something switched on, measured against plain coregate.
    pub fn is_coregate_variant(self) -> bool {
        matches!(
            self,
            Kind::CoregatePolicies | Kind::CoregateEs256 | Kind::CoregateAccessLog
        )
    }

    /// A floor measured beside the proxies (the origin alone, the forwarder), not a proxy.
    pub fn is_floor(self) -> bool {
        matches!(self, Kind::Origin | Kind::Forwarder)
    }

    fn is_coregate(self) -> bool {
        matches!(self, Kind::Coregate | Kind::Baseline) || self.is_coregate_variant()
    }

    pub fn parse(name: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown target {name:?} (expected origin, forwarder, coregate, nginx or \
                     haproxy)"
                )
            })
    }
}

/// A proxy process listening on `addr`, stopped when dropped.
pub struct Proxy {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub child: Child,
    /// Header fields every request to it carries (a bearer token for the policy variants).
    pub headers: Vec<(String, String)>,
    /// The access log it writes, if any.
    pub access_log: Option<PathBuf>,
    /// Holds the configuration, logs and temporary files; removed after the child is gone
    /// (fields drop in declaration order).
    _dir: TempDir,
}

/// Starts a proxy of `kind` (not [`Kind::Origin`]) from `program`, in front of `origin`,
/// pinned to `cores`, terminating TLS with `tls` when given (not the forwarder), and waits
/// until it listens.
pub fn start(
    kind: Kind,
    program: &Path,
    origin: SocketAddr,
    cores: &[usize],
    tls: Option<&CertificateFiles>,
) -> io::Result<Proxy> {
    // The port was free when picked; something else (a connection's local port, another
    // test's listener) may take it before the proxy binds it. Then another is picked.
    let mut attempts = START_ATTEMPTS;
    loop {
        match start_once(kind, program, origin, cores, tls) {
            Err(e) if attempts > 1 && e.to_string().contains("Address already in use") => {
                attempts -= 1;
            }
            started => return started,
        }
    }
}

fn start_once(
    kind: Kind,
    program: &Path,
    origin: SocketAddr,
    cores: &[usize],
    tls: Option<&CertificateFiles>,
) -> io::Result<Proxy> {
    let dir = TempDir::new(kind.name())?;
    let addr = free_loopback_addr()?;
    let config_path = dir.path().join(match kind {
        Kind::Nginx => "nginx.conf",
        Kind::Haproxy => "haproxy.cfg",
        _ => "coregate.toml",
    });
    let extra = match kind {
        Kind::CoregatePolicies => policies::policies(Jwt::Hs256, dir.path())?,
        Kind::CoregateEs256 => policies::policies(Jwt::Es256, dir.path())?,
        Kind::CoregateAccessLog => policies::access_log(dir.path()),
        _ => CoregateExtra::default(),
    };
    let access_log =
        (kind == Kind::CoregateAccessLog).then(|| dir.path().join(policies::ACCESS_LOG_FILE));
    let invalid = |message| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    let (config, command) = match kind {
        Kind::Origin => return invalid("the origin is not a proxy"),
        Kind::Forwarder if tls.is_some() => return invalid("the forwarder does not speak TLS"),
        Kind::Forwarder => {
            let mut command = Command::new(program);
            command
                .arg("forward")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--upstream")
                .arg(origin.to_string());
            (None, command)
        }
        _ if kind.is_coregate() => {
            let mut command = Command::new(program);
            command.arg("run").arg("-c").arg(&config_path);
            (Some(coregate_config(addr, origin, &extra, tls)), command)
        }
        Kind::Nginx => {
            let mut command = Command::new(program);
            command
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&config_path);
            (Some(nginx_config(addr, origin, dir.path(), tls)), command)
        }
        _ => {
            let mut command = Command::new(program);
            command.arg("-db").arg("-f").arg(&config_path);
            (Some(haproxy_config(addr, origin, cores, tls)), command)
        }
    };
    if let Some(config) = config {
        fs::write(&config_path, config)?;
    }
    let mut child = Child::spawn(kind.name(), command, cores, &dir.path().join("output.log"))?;
    if let Err(e) = child.wait_listening(addr, START_TIMEOUT) {
        if tls.is_some() && kind.is_coregate() {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "{e} (this coregate did not start with a [listener.tls] listener: does \
                     its build terminate TLS yet?)"
                ),
            ));
        }
        return Err(e);
    }
    Ok(Proxy {
        kind,
        addr,
        child,
        headers: extra.headers,
        access_log,
        _dir: dir,
    })
}

/// A loopback address with a port that was free a moment ago. Another process could take it
/// before the proxy binds it; the proxy then fails to start, and [`start`] tries another.
pub fn free_loopback_addr() -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// One worker; its core is whatever the process's affinity mask allows. The admin listener
/// stays on (as by default) but on a free port, so that several coregates can run at once.
/// `extra` adds keys to the route and tables after it (see [`policies`]); `tls` gives the
/// listener a certificate (session tickets are on by default in coregate).
pub fn coregate_config(
    listen: SocketAddr,
    origin: SocketAddr,
    extra: &CoregateExtra,
    tls: Option<&CertificateFiles>,
) -> String {
    let tls = match tls {
        Some(files) => format!(
            "[listener.tls]\n[[listener.tls.certificate]]\ncert_file = \"{}\"\nkey_file = \
             \"{}\"\n",
            files.cert_file.display(),
            files.key_file.display()
        ),
        None => String::new(),
    };
    format!(
        "\
# Generated by loadtest compare.
[server]
workers = 1

[[listener]]
address = \"{listen}\"
{tls}
[upstreams.origin]
endpoints = [{{ address = \"{origin}\" }}]
pool_idle_max = {UPSTREAM_KEEPALIVE}

[[route]]
path_prefix = \"/\"
upstream = \"origin\"
{route}
[admin]
address = \"127.0.0.1:0\"
{tables}",
        route = extra.route,
        tables = extra.tables,
    )
}

/// One worker process beside the master, both on the proxy core through the inherited mask
/// (so no worker_cpu_affinity is needed); keep-alive upstream as nginx documents it for
/// proxy_pass (HTTP/1.1, an empty Connection header); every path in the temporary directory
/// so that nothing touches /var. With `tls`, the listener terminates TLS with tickets and a
/// shared session cache.
pub fn nginx_config(
    listen: SocketAddr,
    origin: SocketAddr,
    dir: &Path,
    tls: Option<&CertificateFiles>,
) -> String {
    let d = dir.display();
    let (ssl, tls_lines) = match tls {
        Some(files) => (
            " ssl",
            format!(
                "
        ssl_certificate {};
        ssl_certificate_key {};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache shared:tls:{NGINX_SESSION_CACHE_MB}m;
        ssl_session_timeout 1h;",
                files.cert_file.display(),
                files.key_file.display()
            ),
        ),
        None => ("", String::new()),
    };
    let mut config = String::new();
    let _ = write!(
        config,
        "\
# Generated by loadtest compare.
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log error;
worker_rlimit_nofile {files};

events {{
    worker_connections {CLIENT_CONNECTIONS_MAX};
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 100000000;

    upstream origin {{
        server {origin};
        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests 100000000;
    }}

    server {{
        listen {listen}{ssl};{tls_lines}
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
",
        files = CLIENT_CONNECTIONS_MAX * 2 + 64,
    );
    config
}

/// One thread mapped to the first proxy core, HTTP mode with keep-alive on both sides and
/// connection reuse to the origin, no logging. With `tls`, the bind terminates TLS with the
/// certificate and key in one file, as HAProxy wants them; tickets and the session cache are
/// on by default.
pub fn haproxy_config(
    listen: SocketAddr,
    origin: SocketAddr,
    cores: &[usize],
    tls: Option<&CertificateFiles>,
) -> String {
    let core = cores.first().copied().unwrap_or(0);
    let ssl = match tls {
        Some(files) => format!(
            " ssl crt {} ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3",
            files.combined_file.display()
        ),
        None => String::new(),
    };
    format!(
        "\
# Generated by loadtest compare.
global
    nbthread 1
    cpu-map 1/1 {core}
    maxconn {CLIENT_CONNECTIONS_MAX}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 10s

frontend proxy
    bind {listen}{ssl}
    default_backend origin

backend origin
    server origin {origin} pool-max-conn {UPSTREAM_KEEPALIVE}
"
    )
}

/// Where the coregate binary is: `explicit` when given, else `coregate` beside this
/// executable (target/release/loadtest finds target/release/coregate), else on PATH.
pub fn coregate_program(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    let beside = std::env::current_exe()
        .ok()?
        .parent()
        .map(|dir| dir.join("coregate"));
    match beside {
        Some(path) if path.is_file() => Some(path),
        _ => super::process::find_program("coregate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_configurations_name_the_certificate_files() {
        let listen: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let origin: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let files = CertificateFiles {
            ca_file: "/d/ca.pem".into(),
            cert_file: "/d/server.pem".into(),
            key_file: "/d/server.key".into(),
            combined_file: "/d/server-with-key.pem".into(),
        };
        let coregate = coregate_config(listen, origin, &CoregateExtra::default(), Some(&files));
        assert!(coregate.contains(
            "address = \"127.0.0.1:1000\"\n[listener.tls]\n[[listener.tls.certificate]]\n\
             cert_file = \"/d/server.pem\"\nkey_file = \"/d/server.key\"\n"
        ));
        // The listener's tables come before the upstreams, so the TOML nests as meant.
        assert!(coregate.find("[listener.tls]") < coregate.find("[upstreams.origin]"));
        let nginx = nginx_config(listen, origin, Path::new("/tmp/x"), Some(&files));
        for line in [
            "listen 127.0.0.1:1000 ssl;",
            "ssl_certificate /d/server.pem;",
            "ssl_certificate_key /d/server.key;",
            "ssl_protocols TLSv1.2 TLSv1.3;",
            "ssl_session_tickets on;",
            "ssl_session_cache shared:tls:10m;",
        ] {
            assert!(nginx.contains(line), "{line} in {nginx}");
        }
        let haproxy = haproxy_config(listen, origin, &[0], Some(&files));
        assert!(haproxy.contains(
            "bind 127.0.0.1:1000 ssl crt /d/server-with-key.pem ssl-min-ver TLSv1.2 \
             ssl-max-ver TLSv1.3\n"
        ));
    }

    #[test]
    fn configurations_name_both_addresses() {
        let listen: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let origin: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let coregate = coregate_config(listen, origin, &CoregateExtra::default(), None);
        assert!(coregate.contains("workers = 1"));
        assert!(coregate.contains("address = \"127.0.0.1:1000\""));
        assert!(coregate.contains("{ address = \"127.0.0.1:2000\" }"));
        assert!(coregate.contains("[admin]\naddress = \"127.0.0.1:0\""));
        let nginx = nginx_config(listen, origin, Path::new("/tmp/x"), None);
        assert!(nginx.contains("listen 127.0.0.1:1000;"));
        assert!(nginx.contains("server 127.0.0.1:2000;"));
        assert!(nginx.contains("keepalive 64;"));
        assert!(nginx.contains("pid /tmp/x/nginx.pid;"));
        let haproxy = haproxy_config(listen, origin, &[3], None);
        assert!(haproxy.contains("cpu-map 1/1 3"));
        assert!(haproxy.contains("bind 127.0.0.1:1000"));
        assert!(haproxy.contains("server origin 127.0.0.1:2000"));
        assert!(!coregate.contains("tls") && !nginx.contains("ssl") && !haproxy.contains("ssl"));
        assert_eq!(Kind::parse("nginx"), Ok(Kind::Nginx));
        assert_eq!(Kind::parse("forwarder"), Ok(Kind::Forwarder));
        assert!(Kind::Forwarder.is_floor() && !Kind::Coregate.is_floor());
        assert!(Kind::parse("envoy").unwrap_err().contains("forwarder"));
    }
}
