//! The `coregate` binary: command-line parsing and wiring only. Configuration lives in
//! `coregate-config`, the data plane in `coregate-engine`, start-up in `coregate-control`.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use coregate_config::Config;
use coregate_control::signals::Signals;
use coregate_control::Gateway;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const USAGE: &str = "\
coregate — thread-per-core io_uring API gateway

usage:
  coregate run -c FILE        run the gateway with the config FILE
  coregate check -c FILE      validate FILE (and the key and certificate files it names),
                              print a summary; exit 0 if valid, 1 if not
  coregate demo [--listen ADDR] [--https ADDR] [--admin ADDR]
                              run the built-in demo: the gateway (default 127.0.0.1:8080,
                              HTTPS 127.0.0.1:8443 with a certificate made at start, admin
                              127.0.0.1:9901) plus demo services on loopback

signals (run, demo):
  SIGHUP                      reload the config file (a change of the file also reloads)
  SIGTERM, SIGINT             stop accepting, finish in-flight requests, exit 0
                              (a second one exits at once)
  coregate version            print the version
";

/// What a quiet worker calls: mimalloc's collect, which purges the pages its thread freed
/// (see `coregate_engine::set_release_memory`).
fn release_memory() {
    // SAFETY: mi_collect only walks the calling thread's heap; `false` asks for the cheap
    // collection (no forced return of every segment).
    unsafe { libmimalloc_sys::mi_collect(false) }
}

fn main() -> ExitCode {
    coregate_engine::set_release_memory(release_memory);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["run", "-c" | "--config", file] | ["run", file] => run(PathBuf::from(file)),
        ["check", "-c" | "--config", file] | ["check", file] => check(PathBuf::from(file)),
        ["demo", rest @ ..] => match demo::Options::parse(rest) {
            Ok(options) => demo::run(&options),
            Err(e) => {
                eprintln!("error: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        ["version" | "--version" | "-V"] => {
            println!("coregate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn load(file: &std::path::Path) -> Result<Config, ExitCode> {
    coregate_config::load_file(file).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

fn check(file: PathBuf) -> ExitCode {
    match load(&file) {
        Ok(config) => {
            // Compiling judges what validation cannot: that each key matches its certificate,
            // that chains and JWT keys parse.
            let config = match coregate_engine::Snapshot::compile(config, 1, None) {
                Ok(snapshot) => snapshot.config,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            println!("{}: ok", config.source.display_name);
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(file: PathBuf) -> ExitCode {
    // Before any thread starts, so that every thread inherits the blocked mask.
    let signals = match block_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    match load(&file) {
        Ok(config) => match serve_started(config) {
            Ok(gateway) => {
                let pid = std::process::id();
                println!(
                    "reload: edit {} or `kill -HUP {pid}`; stop: `kill -TERM {pid}` (drains)",
                    file.display()
                );
                finish(gateway, signals)
            }
            Err(code) => code,
        },
        Err(code) => code,
    }
}

/// Blocks SIGHUP, SIGINT and SIGTERM in this (the main) thread and every thread started later.
pub(crate) fn block_signals() -> Result<Signals, ExitCode> {
    Signals::block().map_err(|e| {
        eprintln!("error: cannot block signals: {e}");
        ExitCode::FAILURE
    })
}

/// Starts the gateway on `config` and prints the start-up lines.
pub(crate) fn serve_started(config: Config) -> Result<Gateway, ExitCode> {
    let source = config.source.display_name.clone();
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| {
            let scheme = if l.tls.is_some() { "https" } else { "http" };
            let redirect = match &l.redirect_https {
                Some(r) => format!(", redirects to https on port {}", r.port),
                None => String::new(),
            };
            format!("{scheme}://{} ({}{redirect})", l.address, l.name)
        })
        .collect();
    let gateway = Gateway::start(config).map_err(|e| {
        eprintln!("error: cannot start: {e}");
        ExitCode::FAILURE
    })?;
    println!("coregate {}: config {source}", env!("CARGO_PKG_VERSION"));
    for w in gateway.workers() {
        let s = &w.started;
        match s.core {
            Some(core) => println!("worker {}: core {core}, driver {}", s.index, s.driver),
            None => println!("worker {}: not pinned, driver {}", s.index, s.driver),
        }
    }
    match gateway.admin_addr() {
        Some(admin) => {
            println!("admin on http://{admin} (/metrics, /healthz, /ready, /config, /upstreams)")
        }
        None => println!("admin: off"),
    }
    for l in &listeners {
        println!("listening on {l}");
    }
    Ok(gateway)
}

/// Runs the control side until SIGTERM/SIGINT has drained the workers.
pub(crate) fn finish(gateway: Gateway, signals: Signals) -> ExitCode {
    match gateway.run(signals) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
