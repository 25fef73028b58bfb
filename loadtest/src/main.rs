//! The `loadtest` binary: `loadtest run URL` drives load at a server and reports throughput,
//! errors and latency; `loadtest origin` serves a fixture origin until SIGINT or SIGTERM;
//! `loadtest forward` forwards bytes to an upstream until SIGINT or SIGTERM; `loadtest compare`
//! measures coregate against nginx, HAProxy and that forwarder.
//! Glue only: the work lives in the library.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use coregate_loadtest::cli::{self, Command, USAGE};
use coregate_loadtest::compare::{self, CompareConfig};
use coregate_loadtest::forward::{self, ForwardConfig};
use coregate_loadtest::load::{self, RunConfig};
use coregate_loadtest::origin::{Origin, OriginConfig};
use coregate_loadtest::signal::TerminationSignals;

fn main() -> ExitCode {
    let result = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            Ok(())
        }
        Ok(Command::Run { cfg, json }) => run(&cfg, json),
        Ok(Command::Origin(cfg)) => origin(cfg),
        Ok(Command::Forward(cfg)) => forward(&cfg),
        Ok(Command::Compare {
            cfg,
            json,
            json_file,
        }) => compare(&cfg, json, json_file.as_deref()),
        Err(message) => {
            eprintln!("loadtest: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: &RunConfig, json: bool) -> std::io::Result<()> {
    let report = load::run(cfg, |progress| {
        eprintln!(
            "[{:>4.0}s] {:>10.0} req/s {:>6} errors{}",
            progress.elapsed.as_secs_f64(),
            progress.responses_per_second,
            progress.errors,
            if progress.warmup { " (warm-up)" } else { "" }
        );
    })?;
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

fn origin(cfg: OriginConfig) -> std::io::Result<()> {
    // Blocked before the origin's threads start, so that they inherit the mask and the
    // signals reach the wait below.
    let signals = TerminationSignals::block()?;
    let (name, mode) = (cfg.name.clone(), cfg.mode);
    let origin = Origin::start(cfg)?;
    let tls = if origin.is_tls() { ", TLS" } else { "" };
    println!(
        "origin {name} ({mode:?}{tls}) listening on {}",
        origin.addr()
    );
    std::io::stdout().flush()?;
    let signal = signals.wait()?;
    origin.stop();
    println!("origin {name} stopped by signal {signal}");
    Ok(())
}

fn forward(cfg: &ForwardConfig) -> std::io::Result<()> {
    // Blocked before the forwarder's threads start, as for the origin.
    let signals = TerminationSignals::block()?;
    let (addr, driver) = forward::start(cfg)?;
    println!(
        "forward listening on {addr} ({driver}, {} ring), to {}",
        cfg.ring, cfg.upstream
    );
    std::io::stdout().flush()?;
    let signal = signals.wait()?;
    println!("forward stopped by signal {signal}");
    Ok(())
}

fn compare(cfg: &CompareConfig, json: bool, json_file: Option<&Path>) -> std::io::Result<()> {
    // Before any thread starts, so that SIGINT and SIGTERM reach the clean-up thread.
    compare::kill_children_on_signal()?;
    let report = compare::run(cfg, |line| eprintln!("{line}"))?;
    if let Some(path) = json_file {
        std::fs::write(path, format!("{:#}\n", report.json()))?;
    }
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.markdown());
    }
    Ok(())
}
