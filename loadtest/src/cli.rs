//! Command-line parsing of the `loadtest` binary: `run` (the load generator), `origin` (a
//! fixture origin served until SIGINT or SIGTERM), `forward` (the bare byte forwarder, until
//! SIGINT or SIGTERM) and `compare` (coregate against nginx, HAProxy and the forwarder). Pure:
//! turns arguments into configurations or an error message, and does nothing else.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::compare::{CompareConfig, Kind, Scenario};
use crate::forward::ForwardConfig;
use crate::load::{ConnectionMode, RunConfig, Target};
use crate::origin::{Mode, OriginConfig, OriginTls};

pub const USAGE: &str = "\
usage:
  loadtest run URL [options]      load http://IP:port/path or https://… over HTTP/1.1
    -c N                  connections (default 10)
    --conn MODE           keep-alive: one connect (and TLS handshake) per connection, then
                          request after request (default); new: a new connection per
                          request (Connection: close), https with a full handshake each time;
                          resume: as new, https resuming the session of an earlier one
                          (TLS 1.3 ticket or 1.2 session)
    --ca FILE             https: PEM trust anchors the server's certificate must chain to
                          (required for https)
    --sni NAME            https: server name sent and verified (default the URL's host)
    -d DURATION           measured time: 10, 10s, 500ms, 2m (default 10s)
    --warmup DURATION     load sent first and not counted (default 0)
    -t N                  threads, each its own io_uring runtime (default 1)
    --cores LIST          pin threads to cores, round-robin: 0,1 or 0-3
    -m METHOD             request method (default GET)
    -H 'Name: value'      extra header field, repeatable
    --body-bytes N        request body size (default 0)
    --rate R              open loop: R requests per second in total, latency measured
                          from the scheduled send time (default: closed loop)
    --timeout-ms N        per-request timeout (default 2000)
    --json                print one JSON object instead of text
  loadtest origin [options]       serve a fixture origin until SIGINT or SIGTERM
    --listen ADDR         address to listen on (default 127.0.0.1:0, printed at start)
    --mode MODE           fixed, echo, json, slow, flaky or demo (default fixed)
    --name NAME           sent as X-Origin (default origin)
    --body-bytes N        fixed: response body size (default 13)
    --delay-ms N          wait before each response (default 100 for slow, else 0)
    --failure-rate F      flaky: share of failed requests (default 0.5)
    --tls-cert FILE       serve HTTPS with this PEM certificate chain (with --tls-key)
    --tls-key FILE        its PEM private key
    --threads N           server threads (default 1)
    --cores LIST          pin threads to cores, round-robin
  loadtest forward --upstream ADDR [options]
                                  forward bytes, parsing nothing, until SIGINT or SIGTERM:
                                  one upstream connection per client connection (the floor of
                                  compare, not a proxy)
    --upstream ADDR       IP:port every connection is forwarded to (required)
    --listen ADDR         address to listen on (default 127.0.0.1:0, printed at start)
    --cores LIST          one thread pinned to each core (default one thread, not pinned)
    --ring RING           monoio (default); rt: coregate's own runtime; or raw: an
                          io_uring driven directly, with
                          +fixed (registered files) and +multishot (multishot receives
                          into a provided-buffer ring): raw, raw+fixed, raw+multishot,
                          raw+fixed+multishot
  loadtest compare [options]      coregate, nginx and HAProxy (those found), one worker each,
                                  in front of one fixed origin, plus the origin alone and the
                                  bare forwarder (loadtest forward) as floors
    --coregate PATH       the coregate binary (default: beside loadtest, else on PATH)
    --baseline PATH       a second coregate binary, run beside the first as
                          coregate-baseline with the same configuration (an A/B in one
                          run; scenarios small, 16k and https)
    --targets LIST        of origin,forwarder,coregate,nginx,haproxy (default all; origin
                          always runs)
    --scenarios LIST      small (13-byte body), 16k (16 KiB body) (default small,16k);
                          https (TLS terminated by each proxy, certificates made for the
                          run: keep-alive, new full handshakes, resumed handshakes;
                          no forwarder);
                          coregate only: policies (plain vs JWT HS256/ES256 + rate limit),
                          access-log (plain vs access log on)
    -d, --duration D      measured time of each run (default 10s)
    --warmup D            warm-up before each run (default 2s)
    -c, --connections N   connections of each run, kept alive or (https) one per request
                          (default 64)
    --rate R              open-loop rate (default: half the lowest proxy closed-loop rate)
    --proxy-core LIST     cores of the proxies (default 0)
    --other-cores LIST    cores of the origin and the load generator (default 1)
    --rounds N            rounds of closed- and open-loop runs, targets interleaved,
                          medians reported (default 1)
    --idle-connections N  idle keep-alive connections for the memory figure, taken with the
                          first plain-HTTP scenario; 0 skips (default 4000)
    --json                print one JSON object instead of Markdown tables
    --json-file FILE      also write the JSON object to FILE
  loadtest help";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run {
        cfg: RunConfig,
        json: bool,
    },
    Origin(OriginConfig),
    Forward(ForwardConfig),
    Compare {
        cfg: CompareConfig,
        json: bool,
        /// Also write the JSON object to this file.
        json_file: Option<std::path::PathBuf>,
    },
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = Args::new(args);
    match args.next_word().as_deref() {
        Some("run") => parse_run(&mut args),
        Some("origin") => parse_origin(&mut args),
        Some("forward") => parse_forward(&mut args),
        Some("compare") => parse_compare(&mut args),
        Some("help" | "-h" | "--help") | None => Ok(Command::Help),
        Some(other) => Err(format!("unknown command {other:?}")),
    }
}

fn parse_run(args: &mut Args) -> Result<Command, String> {
    let mut url = None;
    let mut json = false;
    let mut options = Vec::new();
    while let Some(arg) = args.next_word() {
        if arg == "--json" {
            json = true;
        } else if arg.starts_with('-') {
            options.push((arg.clone(), args.value(&arg)?));
        } else if url.is_none() {
            url = Some(arg);
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    let url = url.ok_or("run needs a URL")?;
    let mut cfg = RunConfig::new(Target::parse(&url)?);
    for (name, value) in options {
        match name.as_str() {
            "-c" | "--connections" => cfg.connections = number(&name, &value)?,
            "-d" | "--duration" => cfg.duration = duration(&name, &value)?,
            "--warmup" => cfg.warmup = duration(&name, &value)?,
            "-t" | "--threads" => cfg.threads = number(&name, &value)?,
            "--cores" => cfg.cores = cores(&value)?,
            "-m" | "--method" => cfg.method = method(&value)?,
            "-H" | "--header" => cfg.headers.push(header(&value)?),
            "--body-bytes" => cfg.body_bytes = number(&name, &value)?,
            "--rate" => cfg.rate = Some(positive(&name, &value)?),
            "--timeout-ms" => cfg.timeout = Duration::from_millis(number(&name, &value)?),
            "--conn" => cfg.conn = ConnectionMode::parse(&value)?,
            "--ca" => cfg.ca = Some(value.into()),
            "--sni" => cfg.sni = Some(value),
            _ => return Err(format!("unknown option {name} for run")),
        }
    }
    if cfg.target.tls && cfg.ca.is_none() {
        return Err("https needs --ca FILE, the trust anchors of the server".to_owned());
    }
    if !cfg.target.tls && (cfg.ca.is_some() || cfg.sni.is_some()) {
        return Err("--ca and --sni are for https URLs only".to_owned());
    }
    if cfg.connections == 0 || cfg.threads == 0 {
        return Err("-c and -t must be at least 1".to_owned());
    }
    if cfg.duration.is_zero() {
        return Err("-d must be above zero".to_owned());
    }
    Ok(Command::Run { cfg, json })
}

fn parse_origin(args: &mut Args) -> Result<Command, String> {
    let mut options = Vec::new();
    while let Some(arg) = args.next_word() {
        if !arg.starts_with('-') {
            return Err(format!("unexpected argument {arg:?}"));
        }
        options.push((arg.clone(), args.value(&arg)?));
    }
    // The mode decides some defaults, so it is read first.
    let mode = match options.iter().find(|(name, _)| name == "--mode") {
        Some((_, value)) => value.parse::<Mode>()?,
        None => Mode::Fixed,
    };
    let mut cfg = OriginConfig::new("origin", mode);
    let (mut cert_file, mut key_file) = (None, None);
    for (name, value) in options {
        match name.as_str() {
            "--mode" => {}
            "--listen" => cfg.listen = socket_addr(&name, &value)?,
            "--name" => cfg.name = value,
            "--body-bytes" => cfg.body_bytes = number(&name, &value)?,
            "--delay-ms" => cfg.delay_ms = number(&name, &value)?,
            "--failure-rate" => {
                let rate: f64 = value
                    .parse()
                    .map_err(|_| format!("{name} wants a number, not {value:?}"))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("{name} must be within 0..=1"));
                }
                cfg.failure_rate = rate;
            }
            "--threads" => cfg.threads = number(&name, &value)?,
            "--cores" => cfg.cores = cores(&value)?,
            "--tls-cert" => cert_file = Some(value.into()),
            "--tls-key" => key_file = Some(value.into()),
            _ => return Err(format!("unknown option {name} for origin")),
        }
    }
    cfg.tls = match (cert_file, key_file) {
        (Some(cert_file), Some(key_file)) => Some(OriginTls {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".to_owned()),
    };
    if cfg.threads == 0 {
        return Err("--threads must be at least 1".to_owned());
    }
    Ok(Command::Origin(cfg))
}

fn parse_forward(args: &mut Args) -> Result<Command, String> {
    let mut listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut upstream = None;
    let mut cores_list = Vec::new();
    let mut ring = crate::forward::Ring::default();
    while let Some(arg) = args.next_word() {
        if !arg.starts_with('-') {
            return Err(format!("unexpected argument {arg:?}"));
        }
        let value = args.value(&arg)?;
        match arg.as_str() {
            "--listen" => listen = socket_addr(&arg, &value)?,
            "--upstream" => upstream = Some(socket_addr(&arg, &value)?),
            "--cores" => cores_list = cores(&value)?,
            "--ring" => ring = crate::forward::parse_ring(&value)?,
            _ => return Err(format!("unknown option {arg} for forward")),
        }
    }
    Ok(Command::Forward(ForwardConfig {
        listen,
        upstream: upstream.ok_or("forward needs --upstream IP:port")?,
        cores: cores_list,
        ring,
    }))
}

fn parse_compare(args: &mut Args) -> Result<Command, String> {
    let mut cfg = CompareConfig::default();
    let mut json = false;
    let mut json_file = None;
    while let Some(arg) = args.next_word() {
        if arg == "--json" {
            json = true;
            continue;
        }
        if !arg.starts_with('-') {
            return Err(format!("unexpected argument {arg:?}"));
        }
        let value = args.value(&arg)?;
        match arg.as_str() {
            "--coregate" => cfg.coregate = Some(value.into()),
            "--baseline" => cfg.baseline = Some(value.into()),
            "--json-file" => json_file = Some(value.into()),
            "--targets" => {
                cfg.targets = value
                    .split(',')
                    .map(|name| Kind::parse(name.trim()))
                    .collect::<Result<_, _>>()?
            }
            "--scenarios" => {
                cfg.scenarios = value
                    .split(',')
                    .map(|name| Scenario::parse(name.trim()))
                    .collect::<Result<_, _>>()?
            }
            "-d" | "--duration" => cfg.duration = duration(&arg, &value)?,
            "--warmup" => cfg.warmup = duration(&arg, &value)?,
            "-c" | "--connections" => cfg.connections = number(&arg, &value)?,
            "--rate" => cfg.rate = Some(positive(&arg, &value)?),
            "--proxy-core" | "--proxy-cores" => cfg.proxy_cores = cores(&value)?,
            "--other-cores" | "--other-core" => cfg.other_cores = cores(&value)?,
            "--rounds" => cfg.rounds = number(&arg, &value)?,
            "--idle-connections" => cfg.idle_connections = number(&arg, &value)?,
            _ => return Err(format!("unknown option {arg} for compare")),
        }
    }
    if cfg.connections == 0 || cfg.rounds == 0 {
        return Err("-c and --rounds must be at least 1".to_owned());
    }
    if cfg.duration.is_zero() {
        return Err("-d must be above zero".to_owned());
    }
    if cfg.scenarios.is_empty() {
        return Err("--scenarios needs at least one scenario".to_owned());
    }
    Ok(Command::Compare {
        cfg,
        json,
        json_file,
    })
}

/// Arguments, with `--name=value` split into a name and a value.
struct Args {
    words: std::vec::IntoIter<String>,
    pending_value: Option<String>,
}

impl Args {
    fn new(args: impl IntoIterator<Item = String>) -> Self {
        Args {
            words: args.into_iter().collect::<Vec<_>>().into_iter(),
            pending_value: None,
        }
    }

    fn next_word(&mut self) -> Option<String> {
        let word = self.words.next()?;
        if word.starts_with("--") {
            if let Some((name, value)) = word.split_once('=') {
                self.pending_value = Some(value.to_owned());
                return Some(name.to_owned());
            }
        }
        Some(word)
    }

    /// The value of option `name`: the part after `=`, or the next argument.
    fn value(&mut self, name: &str) -> Result<String, String> {
        self.pending_value
            .take()
            .or_else(|| self.words.next())
            .ok_or_else(|| format!("{name} needs a value"))
    }
}

fn socket_addr(name: &str, value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("{name} wants IP:port, not {value:?}"))
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name} wants a whole number, not {value:?}"))
}

fn positive(name: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{name} wants a positive number, not {value:?}")),
    }
}

/// `10`, `10s`, `1.5s`, `500ms` or `2m`; a bare number is seconds.
fn duration(name: &str, value: &str) -> Result<Duration, String> {
    let (number, unit_seconds) = if let Some(ms) = value.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = value.strip_suffix('m') {
        (m, 60.0)
    } else {
        (value, 1.0)
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(Duration::from_secs_f64(n * unit_seconds)),
        _ => Err(format!(
            "{name} wants a duration like 10s or 500ms, not {value:?}"
        )),
    }
}

/// `0,1,3` or ranges like `0-3`, mixed freely.
fn cores(value: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("--cores wants a list like 0,1 or 0-3, not {value:?}");
    let mut cores = Vec::new();
    for part in value.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let first: usize = first.trim().parse().map_err(|_| bad())?;
                let last: usize = last.trim().parse().map_err(|_| bad())?;
                if first > last {
                    return Err(bad());
                }
                cores.extend(first..=last);
            }
            None => cores.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(cores)
}

/// A method is an HTTP token (RFC 9110 §9.1); it goes into the request line as is.
fn method(value: &str) -> Result<String, String> {
    if value.is_empty() || !value.bytes().all(is_token_byte) {
        return Err(format!("-m wants a method like GET, not {value:?}"));
    }
    Ok(value.to_owned())
}

/// `Name: value`, with a token name and a value free of CR and LF.
fn header(value: &str) -> Result<(String, String), String> {
    let bad = || format!("-H wants 'Name: value', not {value:?}");
    let (name, field) = value.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    let field = field.trim();
    if name.is_empty() || !name.bytes().all(is_token_byte) || field.contains(['\r', '\n']) {
        return Err(bad());
    }
    Ok((name.to_owned(), field.to_owned()))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{RawRing, Ring};

    fn parse_words(words: &str) -> Result<Command, String> {
        parse(words.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn run_options() {
        let command = parse_words(
            "run http://127.0.0.1:8080/api?x=1 -c 64 -d 5s --warmup=500ms -t 2 --cores 0-1 \
             -m POST -H X-A:1 -H Host:api.test --body-bytes 100 --rate 1000 --timeout-ms 50 --json",
        )
        .unwrap();
        let Command::Run { cfg, json } = command else {
            panic!("not a run: {command:?}");
        };
        assert!(json);
        assert_eq!(cfg.target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(cfg.target.path, "/api?x=1");
        assert_eq!(cfg.connections, 64);
        assert_eq!(cfg.duration, Duration::from_secs(5));
        assert_eq!(cfg.warmup, Duration::from_millis(500));
        assert_eq!(cfg.threads, 2);
        assert_eq!(cfg.cores, vec![0, 1]);
        assert_eq!(cfg.method, "POST");
        assert_eq!(cfg.body_bytes, 100);
        assert_eq!(cfg.rate, Some(1000.0));
        assert_eq!(cfg.timeout, Duration::from_millis(50));
        let request = String::from_utf8(cfg.request()).unwrap();
        assert!(
            request.starts_with("POST /api?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            !request.contains("127.0.0.1:8080"),
            "Host from -H wins: {request}"
        );
        assert!(
            request.contains("\r\nHost: api.test\r\nX-A: 1\r\n")
                || request.contains("X-A: 1\r\nHost: api.test\r\n")
        );
        assert!(request.contains("Content-Length: 100\r\n\r\n0123456789"));
        assert_eq!(request.len(), request.find("\r\n\r\n").unwrap() + 4 + 100);
    }

    #[test]
    fn run_defaults_and_host_header() {
        let Command::Run { cfg, json } = parse_words("run http://127.0.0.1:9/").unwrap() else {
            panic!("not a run");
        };
        assert!(!json);
        assert_eq!(cfg.connections, 10);
        assert_eq!(cfg.duration, Duration::from_secs(10));
        assert_eq!(cfg.rate, None);
        assert_eq!(
            cfg.request(),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn https_run_options() {
        let Command::Run { cfg, .. } = parse_words(
            "run https://127.0.0.1:8443/x --ca /tmp/ca.pem --sni api.test --conn resume -c 2",
        )
        .unwrap() else {
            panic!("not a run");
        };
        assert!(cfg.target.tls);
        assert_eq!(cfg.target.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(cfg.target.host, "127.0.0.1");
        assert_eq!(cfg.ca, Some("/tmp/ca.pem".into()));
        assert_eq!(cfg.sni.as_deref(), Some("api.test"));
        assert_eq!(cfg.conn, ConnectionMode::Resume);
        // A new connection per request says so.
        assert_eq!(
            cfg.request(),
            b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nConnection: close\r\n\r\n".to_vec()
        );

        let Command::Run { cfg, .. } =
            parse_words("run https://[::1]/ --ca=ca.pem --conn=new -H Connection:keep-alive")
                .unwrap()
        else {
            panic!("not a run");
        };
        assert_eq!(cfg.target.addr, "[::1]:443".parse().unwrap());
        assert_eq!(cfg.target.host, "::1");
        assert_eq!(cfg.sni, None);
        assert_eq!(cfg.conn, ConnectionMode::New);
        // A Connection field given with -H wins over the one --conn adds.
        let request = String::from_utf8(cfg.request()).unwrap();
        assert!(
            request.ends_with("\r\nConnection: keep-alive\r\n\r\n"),
            "{request}"
        );
        assert!(!request.contains("close"), "{request}");

        // Plain http takes the connection modes too, and keep-alive is the default.
        let Command::Run { cfg, .. } = parse_words("run http://127.0.0.1:1/ --conn new").unwrap()
        else {
            panic!("not a run");
        };
        assert!(!cfg.target.tls);
        assert_eq!(cfg.conn, ConnectionMode::New);
        let Command::Run { cfg, .. } = parse_words("run http://127.0.0.1:1/").unwrap() else {
            panic!("not a run");
        };
        assert_eq!(cfg.conn, ConnectionMode::KeepAlive);
        assert!(!String::from_utf8(cfg.request())
            .unwrap()
            .contains("Connection"));

        for (words, why) in [
            ("run https://127.0.0.1:1/", "--ca"),
            ("run http://127.0.0.1:1/ --ca ca.pem", "https"),
            ("run http://127.0.0.1:1/ --sni a.test", "https"),
            (
                "run https://127.0.0.1:1/ --ca ca.pem --conn sometimes",
                "keep-alive, new or resume",
            ),
            ("run https://127.0.0.1:1/ --ca", "needs a value"),
        ] {
            let error = parse_words(words).unwrap_err();
            assert!(error.contains(why), "{words}: {error}");
        }
    }

    #[test]
    fn origin_tls_options() {
        let Command::Origin(cfg) =
            parse_words("origin --tls-cert /c/server.pem --tls-key=/c/server.key --mode echo")
                .unwrap()
        else {
            panic!("not an origin");
        };
        assert_eq!(
            cfg.tls,
            Some(OriginTls {
                cert_file: "/c/server.pem".into(),
                key_file: "/c/server.key".into(),
            })
        );
        assert_eq!(cfg.mode, Mode::Echo);
        let Command::Origin(cfg) = parse_words("origin").unwrap() else {
            panic!("not an origin");
        };
        assert_eq!(cfg.tls, None);
        for words in ["origin --tls-cert c.pem", "origin --tls-key k.pem"] {
            let error = parse_words(words).unwrap_err();
            assert!(error.contains("go together"), "{words}: {error}");
        }
    }

    #[test]
    fn origin_options() {
        let Command::Origin(cfg) = parse_words(
            "origin --listen 127.0.0.1:9000 --mode slow --name api --threads 2 --cores 1",
        )
        .unwrap() else {
            panic!("not an origin");
        };
        assert_eq!(cfg.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(cfg.mode, Mode::Slow);
        assert_eq!(cfg.delay_ms, crate::origin::DEFAULT_SLOW_DELAY_MS);
        assert_eq!(cfg.name, "api");
        assert_eq!(cfg.threads, 2);
        assert_eq!(cfg.cores, vec![1]);
    }

    #[test]
    fn forward_options() {
        let Command::Forward(cfg) =
            parse_words("forward --listen 127.0.0.1:8000 --upstream=127.0.0.1:9000 --cores 0-1")
                .unwrap()
        else {
            panic!("not a forward");
        };
        assert_eq!(cfg.listen, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(cfg.upstream, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(cfg.cores, vec![0, 1]);
        let Command::Forward(cfg) = parse_words("forward --upstream [::1]:80").unwrap() else {
            panic!("not a forward");
        };
        assert_eq!(cfg.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(cfg.upstream, "[::1]:80".parse().unwrap());
        assert!(cfg.cores.is_empty());
        assert_eq!(cfg.ring, Ring::Monoio);
        let raw = |fixed_files, multishot| {
            Ring::Raw(RawRing {
                fixed_files,
                multishot,
            })
        };
        for (name, ring) in [
            ("monoio", Ring::Monoio),
            ("rt", Ring::Rt),
            ("raw", raw(false, false)),
            ("raw+fixed", raw(true, false)),
            ("raw+multishot", raw(false, true)),
            ("raw+fixed+multishot", raw(true, true)),
        ] {
            let Command::Forward(cfg) =
                parse_words(&format!("forward --upstream 127.0.0.1:1 --ring {name}")).unwrap()
            else {
                panic!("not a forward");
            };
            assert_eq!(cfg.ring, ring);
            assert_eq!(ring.to_string(), name);
        }
        for (words, why) in [
            ("forward", "--upstream"),
            ("forward --upstream localhost:80", "IP:port"),
            ("forward --upstream 127.0.0.1:1 --listen", "needs a value"),
            (
                "forward --upstream 127.0.0.1:1 --threads 2",
                "unknown option",
            ),
            ("forward --upstream 127.0.0.1:1 extra", "unexpected"),
            ("forward --upstream 127.0.0.1:1 --ring uring", "raw[+fixed]"),
            (
                "forward --upstream 127.0.0.1:1 --ring raw+zerocopy",
                "zerocopy",
            ),
            (
                "forward --upstream 127.0.0.1:1 --ring monoio+fixed",
                "raw[+fixed]",
            ),
        ] {
            let error = parse_words(words).unwrap_err();
            assert!(error.contains(why), "{words}: {error}");
        }
    }

    #[test]
    fn compare_options() {
        let Command::Compare {
            cfg,
            json,
            json_file,
        } = parse_words(
            "compare --json-file /tmp/c.json --coregate /x/coregate --targets coregate,nginx --scenarios 16k -d 3s \
             --warmup 1s -c 32 --rate 5000 --proxy-core 0 --other-cores 1-2 --rounds 3 \
             --idle-connections 0 --json",
        )
        .unwrap() else {
            panic!("not a compare");
        };
        assert!(json);
        assert_eq!(json_file, Some("/tmp/c.json".into()));
        assert_eq!(cfg.coregate, Some("/x/coregate".into()));
        assert_eq!(cfg.targets, vec![Kind::Coregate, Kind::Nginx]);
        assert_eq!(cfg.scenarios, vec![Scenario::Body16k]);
        assert_eq!(cfg.duration, Duration::from_secs(3));
        assert_eq!(cfg.warmup, Duration::from_secs(1));
        assert_eq!(cfg.connections, 32);
        assert_eq!(cfg.rate, Some(5000.0));
        assert_eq!(cfg.proxy_cores, vec![0]);
        assert_eq!(cfg.other_cores, vec![1, 2]);
        assert_eq!(cfg.rounds, 3);
        assert_eq!(cfg.idle_connections, 0);

        let Command::Compare { cfg, json, .. } = parse_words("compare").unwrap() else {
            panic!("not a compare");
        };
        assert!(!json);
        assert_eq!(cfg.connections, 64);
        assert_eq!(cfg.duration, Duration::from_secs(10));
        assert_eq!(cfg.warmup, Duration::from_secs(2));
        assert_eq!(cfg.scenarios, vec![Scenario::Small, Scenario::Body16k]);
        let Command::Compare { cfg, .. } =
            parse_words("compare --scenarios policies,access-log").unwrap()
        else {
            panic!("not a compare");
        };
        assert_eq!(cfg.scenarios, vec![Scenario::Policies, Scenario::AccessLog]);
        let Command::Compare { cfg, .. } =
            parse_words("compare --scenarios https --targets origin,nginx,haproxy").unwrap()
        else {
            panic!("not a compare");
        };
        assert_eq!(cfg.scenarios, vec![Scenario::Https]);
        assert_eq!(cfg.targets, vec![Kind::Origin, Kind::Nginx, Kind::Haproxy]);
        for words in [
            "compare --targets envoy",
            "compare --scenarios huge",
            "compare -c 0",
            "compare --rounds 0",
            "compare extra",
        ] {
            assert!(parse_words(words).is_err(), "{words}");
        }
    }

    #[test]
    fn bad_arguments_are_explained() {
        for words in [
            "run",
            "run ftp://x/",
            "run http://127.0.0.1:1/ -c",
            "run http://127.0.0.1:1/ -c zero",
            "run http://127.0.0.1:1/ -c 0",
            "run http://127.0.0.1:1/ -d 0",
            "run http://127.0.0.1:1/ --rate -5",
            "run http://127.0.0.1:1/ -H NoColon",
            "run http://127.0.0.1:1/ -m GE/T",
            "run http://127.0.0.1:1/ --cores 3-1",
            "run http://127.0.0.1:1/ --bogus 1",
            "origin --mode nope",
            "origin --failure-rate 2",
            "origin --listen nowhere",
            "launch",
        ] {
            assert!(parse_words(words).is_err(), "{words}");
        }
        assert!(matches!(parse_words(""), Ok(Command::Help)));
    }

    #[test]
    fn urls() {
        let target = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(target.path, "/");
        assert_eq!(target.authority, "127.0.0.1:8080");
        let target = Target::parse("http://[::1]:81/x").unwrap();
        assert_eq!(target.addr, "[::1]:81".parse().unwrap());
        let target = Target::parse("http://127.0.0.1?q").unwrap();
        assert_eq!(target.addr.port(), 80);
        assert_eq!(target.path, "/?q");
        assert!(!target.tls);
        assert_eq!(target.url(), "http://127.0.0.1/?q");
        let target = Target::parse("https://localhost/a").unwrap();
        assert!(target.tls);
        assert_eq!(target.addr.port(), 443);
        assert_eq!(target.host, "localhost");
        assert_eq!(target.url(), "https://localhost/a");
        let target = Target::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!((target.addr.port(), target.path.as_str()), (8443, "/"));
        assert!(Target::parse("ftp://127.0.0.1/")
            .unwrap_err()
            .contains("https://"));
    }
}
