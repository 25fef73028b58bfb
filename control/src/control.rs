//! The control thread's loop: reports in, reloads, health results, access log, drain.
//!
//! Each tick (at most [`TICK_MS`]) it takes the workers' reports, looks at the signal flags,
//! polls the config file every [`WATCH_INTERVAL_MS`] and applies health-probe results. A
//! reload is published with one atomic store the workers see before their next request, so
//! from SIGHUP to new requests using the new snapshot takes a tick plus the parse (well under
//! 100 ms for any realistic file).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coregate_config::{Config, JwtKeys};
use coregate_engine::policy::ratelimit::{GlobalLimiter, LimiterConfig, ShareUpdate};
use coregate_engine::{Health, Report, Shared, Snapshot};

use crate::access_log::AccessLog;
use crate::health::Checker;
use crate::signals::Flags;
use crate::{Drained, Status};

/// Longest the loop sleeps waiting for a report before it looks at signals and the file.
pub const TICK_MS: u64 = 20;
/// How often the config file's metadata is polled. A change is reloaded once the metadata
/// has stayed the same for one poll, so a file caught half-written is not loaded.
pub const WATCH_INTERVAL_MS: u64 = 50;

/// The file's identity and shape: a change of any part means "look again".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStat {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

/// The global limiter's sizes: the workers, the largest `keys_max` and the sync interval of
/// the first config with rate limits (a later reload does not resize the table).
fn rate_config(snapshot: &Snapshot, workers: usize) -> LimiterConfig {
    let mut config = LimiterConfig::new(workers);
    config.keys_max = snapshot.policies.rate_keys_max.max(1);
    config.sync_interval_ms = snapshot.config.server.rate_limit_sync_interval_ms;
    config
}

fn stat(path: &Path) -> Option<FileStat> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStat {
        inode: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

pub(crate) struct Control {
    shared: Arc<Shared>,
    reports: Receiver<Report>,
    status: Arc<Mutex<Status>>,
    flags: Arc<Flags>,
    access_log: Option<AccessLog>,
    workers: usize,
    /// The rate limits' one true buckets (created when a config first has rate limits, sized
    /// by it), and where each worker's shares go.
    rates: Option<GlobalLimiter>,
    shares: Vec<Sender<ShareUpdate>>,
    last_rate_sync: Instant,
    exited: usize,
    unfinished: usize,
    draining: bool,
    checker: Checker,
    /// The config being served.
    current: Arc<Snapshot>,
    /// The config file, then the files it names whose contents are part of the config
    /// (certificates, keys, CA and JWT key files): their metadata when last loaded (or
    /// tried; `None` while unknown), and at the last poll.
    path: Option<PathBuf>,
    watched: Vec<PathBuf>,
    loaded_stat: Option<Vec<Option<FileStat>>>,
    polled_stat: Option<Vec<Option<FileStat>>>,
    last_poll: Instant,
}

impl Control {
    pub fn new(
        shared: Arc<Shared>,
        reports: Receiver<Report>,
        status: Arc<Mutex<Status>>,
        flags: Arc<Flags>,
        access_log: Option<AccessLog>,
        shares: Vec<Sender<ShareUpdate>>,
    ) -> Control {
        let workers = shares.len();
        let current = shared.snapshot.load();
        let path = current.config.source.path.clone();
        let watched = watched_files(path.as_deref(), &current.config);
        // Unknown: the file may have changed between its load in `main` and now, so the
        // first poll reads it again (an unchanged content is then a silent no-op).
        Control {
            shared,
            reports,
            status,
            flags,
            access_log,
            workers,
            rates: None,
            shares,
            last_rate_sync: Instant::now(),
            exited: 0,
            unfinished: 0,
            draining: false,
            checker: Checker::new(),
            current,
            path,
            watched,
            loaded_stat: None,
            polled_stat: None,
            last_poll: Instant::now(),
        }
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }

    pub fn run(mut self) -> Drained {
        if self.checker.configure(&self.current) {
            self.publish_health();
        }
        loop {
            let tick_end = Instant::now() + Duration::from_millis(TICK_MS);
            loop {
                let left = tick_end.saturating_duration_since(Instant::now());
                match self.reports.recv_timeout(left) {
                    Ok(report) => self.take(report),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return self.finish(),
                }
            }
            if self.draining && self.exited >= self.workers {
                return self.finish();
            }
            let stops = self.flags.stops();
            if stops >= 1 && !self.draining {
                self.start_draining();
            }
            if stops >= 2 {
                // The operator does not want to wait (a second Ctrl-C).
                self.flush_access_log();
                eprintln!("second stop signal: exiting now, cutting off what is in flight");
                std::process::exit(1);
            }
            if !self.draining {
                if self.flags.take_reload() {
                    self.reopen_access_log();
                    self.reload("SIGHUP");
                }
                self.watch();
                self.apply_health();
                self.sync_rate_limits();
            }
            self.flush_access_log();
        }
    }

    fn take(&mut self, report: Report) {
        match report {
            Report::Stats(stats) => {
                let mut status = self.status();
                status.metrics.add(&stats);
                status.breakers.insert(stats.worker, stats.breakers.clone());
            }
            Report::RateUsage(usage) => {
                let (current, workers) = (&self.current, self.workers);
                self.rates
                    .get_or_insert_with(|| GlobalLimiter::new(rate_config(current, workers)))
                    .merge(&usage);
            }
            Report::AccessLog(batch) => {
                let Some(log) = &mut self.access_log else {
                    return;
                };
                let written = log.write(&batch.lines);
                let mut status = lock(&self.status);
                match written {
                    Ok(()) => status.metrics.access_log_bytes += batch.lines.len() as u64,
                    Err(e) => {
                        status.metrics.access_log_errors += 1;
                        eprintln!("access log {}: {e}", log.path().display());
                    }
                }
            }
            Report::Exited { worker, unfinished } => {
                self.exited += 1;
                self.unfinished += unfinished;
                if unfinished > 0 {
                    eprintln!(
                        "drain: worker {worker} exited with {unfinished} connection(s) cut off \
                         by drain_timeout_ms"
                    );
                }
                self.status().workers_exited = self.exited;
            }
        }
    }

    /// Every `rate_limit_sync_interval_ms`: hands each worker its share of the next interval
    /// of every rate-limit key it used, in proportion to its recent demand.
    fn sync_rate_limits(&mut self) {
        let interval = self.current.config.server.rate_limit_sync_interval_ms;
        if self.current.config.rate_limits.is_empty()
            || self.last_rate_sync.elapsed() < Duration::from_millis(interval)
        {
            return;
        }
        self.last_rate_sync = Instant::now();
        let Some(rates) = self.rates.as_mut() else {
            return;
        };
        for update in rates.allocate(self.shared.now_ms()) {
            if let Some(worker) = self.shares.get(update.worker) {
                let _ = worker.send(update);
            }
        }
    }

    fn flush_access_log(&mut self) {
        if let Some(log) = &mut self.access_log {
            if let Err(e) = log.flush() {
                lock(&self.status).metrics.access_log_errors += 1;
                eprintln!("access log {}: {e}", log.path().display());
            }
        }
    }

    /// Opens the access log's path again, so that after a rotation (rename, then SIGHUP)
    /// lines go to a fresh file.
    fn reopen_access_log(&mut self) {
        let Some(log) = &mut self.access_log else {
            return;
        };
        let path = log.path().to_path_buf();
        let _ = log.flush();
        match AccessLog::open(&path) {
            Ok(fresh) => *log = fresh,
            Err(e) => {
                lock(&self.status).metrics.access_log_errors += 1;
                eprintln!(
                    "access log {}: cannot reopen: {e}; still writing to the old file",
                    path.display()
                );
            }
        }
    }

    fn start_draining(&mut self) {
        self.draining = true;
        let timeout_ms = self.current.config.server.drain_timeout_ms;
        eprintln!(
            "draining: no longer accepting; in-flight requests get up to {timeout_ms} ms \
             (drain_timeout_ms)"
        );
        self.shared.start_draining();
        self.checker.stop();
        self.status().draining = true;
    }

    fn finish(mut self) -> Drained {
        self.flush_access_log();
        eprintln!(
            "drained: {} worker(s) exited, {} connection(s) cut off",
            self.exited, self.unfinished
        );
        Drained {
            unfinished: self.unfinished,
            asked: self.draining,
        }
    }

    /// Polls the config file and the files it names; reloads once a change has settled.
    fn watch(&mut self) {
        if self.path.is_none() {
            return;
        }
        if self.last_poll.elapsed() < Duration::from_millis(WATCH_INTERVAL_MS) {
            return;
        }
        self.last_poll = Instant::now();
        let now: Vec<Option<FileStat>> = self.watched.iter().map(|p| stat(p)).collect();
        let settled = self.polled_stat.as_ref() == Some(&now);
        let changed = self.loaded_stat.as_ref() != Some(&now);
        let config_exists = now[0].is_some();
        self.polled_stat = Some(now);
        if config_exists && settled && changed {
            self.reload("file change");
        }
    }

    /// Loads the file again and publishes it, or says why not and keeps the old snapshot.
    /// Logs and counts a reload refused for an invalid file; the old snapshot keeps serving.
    fn reject_invalid(&self, trigger: &str, version: u64, text: String) {
        eprintln!("reload ({trigger}) rejected: {text}\n  still serving version {version}");
        let mut status = self.status();
        status.metrics.reloads_invalid += 1;
        status.last_reload_error = Some(text);
    }

    fn reload(&mut self, trigger: &str) {
        let Some(path) = self.path.clone() else {
            eprintln!("reload ({trigger}): the config is embedded, not a file; nothing to reload");
            return;
        };
        self.loaded_stat = Some(self.watched.iter().map(|p| stat(p)).collect());
        self.polled_stat = self.loaded_stat.clone();
        let version = self.current.version;
        let config = match coregate_config::load_file(&path) {
            Ok(config) => config,
            Err(error) => {
                let text = error.to_string();
                return self.reject_invalid(trigger, version, text);
            }
        };
        let file = config.source.display_name.clone();
        // Key files (JWKS, PEM, secret files, certificates and their keys, CA files) are read
        // with the config, so an unchanged config text with a rotated key file is still a
        // change.
        let keys_unchanged = same_material(&config, &self.current.config);
        if config.source.hash == self.current.config.source.hash && keys_unchanged {
            if trigger != "SIGHUP" {
                // Touched but not changed (or the first look at start): nothing to say.
                return;
            }
            eprintln!(
                "reload ({trigger}): {file} unchanged (fnv1a64={:016x}), still version {version}",
                config.source.hash
            );
            return;
        }
        if let Some(reason) = needs_restart(&self.current.config, &config) {
            let text = format!("{file}: needs a restart: {reason}");
            eprintln!(
                "reload ({trigger}) rejected: {text}\n  still serving version {version}; \
                 restart the gateway to apply it"
            );
            let mut status = self.status();
            status.metrics.reloads_needs_restart += 1;
            status.last_reload_error = Some(text);
            return;
        }
        let next = version + 1;
        let snapshot = match Snapshot::compile(config, next, Some(&self.current)) {
            Ok(snapshot) => snapshot,
            Err(text) => {
                let text = format!("{file}: {text}");
                return self.reject_invalid(trigger, version, text);
            }
        };
        if let Err(text) = self.switch_access_log(&snapshot.config) {
            return self.reject_invalid(trigger, version, text);
        }
        let (hash, routes, upstreams) = (
            snapshot.config.source.hash,
            snapshot.config.routes.len(),
            snapshot.config.upstreams.len(),
        );
        self.shared.snapshot.publish(snapshot);
        self.current = self.shared.snapshot.load();
        self.watched = watched_files(Some(&path), &self.current.config);
        self.loaded_stat = Some(self.watched.iter().map(|p| stat(p)).collect());
        self.polled_stat = self.loaded_stat.clone();
        eprintln!(
            "reload ({trigger}): {file}: now serving version {next} (fnv1a64={hash:016x}, \
             {routes} routes, {upstreams} upstreams)"
        );
        {
            let current = self.current.clone();
            let mut status = self.status();
            status.metrics.reloads_ok += 1;
            status.last_reload_error = None;
            status
                .metrics
                .know_routes(current.config.routes.iter().map(|r| r.name.as_str()));
            status.snapshot = current;
        }
        if self.checker.configure(&self.current) {
            self.publish_health();
        } else {
            self.status().health = self.checker.states().clone();
        }
    }

    /// Opens the new access log before anything is published, so a path that cannot be
    /// opened rejects the reload instead of half-applying it.
    fn switch_access_log(&mut self, config: &Config) -> Result<(), String> {
        let wanted = config.access_log.as_ref().map(|l| l.path.as_path());
        let have = self.access_log.as_ref().map(AccessLog::path);
        if wanted == have {
            return Ok(());
        }
        match wanted {
            None => self.access_log = None,
            Some(path) => {
                let log = AccessLog::open(path).map_err(|e| {
                    format!(
                        "{}: access_log.path: cannot open {}: {e}",
                        config.source.display_name,
                        path.display()
                    )
                })?;
                self.access_log = Some(log);
            }
        }
        Ok(())
    }

    fn apply_health(&mut self) {
        let results: Vec<_> = self.checker.results.try_iter().collect();
        if results.is_empty() {
            return;
        }
        let mut changed = false;
        for result in results {
            if let Some(t) = self.checker.apply(result) {
                let state = if t.up { "up" } else { "down" };
                eprintln!("health: {} is {state} ({})", t.address, t.reason);
                changed = true;
            }
        }
        if changed {
            self.publish_health();
        } else {
            self.status().health = self.checker.states().clone();
        }
    }

    fn publish_health(&mut self) {
        let version = self.shared.health.version() + 1;
        self.shared
            .health
            .publish(Health::new(version, self.checker.down()));
        let mut status = self.status();
        status.health = self.checker.states().clone();
        status.health_version = version;
    }
}

fn lock(status: &Mutex<Status>) -> MutexGuard<'_, Status> {
    match status.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The files a reload watches: the config file first, then every file whose contents the
/// config holds.
fn watched_files(config_path: Option<&Path>, config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config_path.map(Path::to_path_buf).into_iter().collect();
    for listener in &config.listeners {
        for cert in listener.tls.iter().flat_map(|tls| &tls.certificates) {
            files.push(cert.cert_path.clone());
            files.push(cert.key_path.clone());
        }
    }
    for upstream in &config.upstreams {
        if let Some((ca, _)) = upstream.tls.as_ref().and_then(|tls| tls.ca.as_ref()) {
            files.push(ca.clone());
        }
    }
    for jwt in &config.jwt {
        match &jwt.keys {
            JwtKeys::PublicKeyPem { path, .. } | JwtKeys::Jwks { path, .. } => {
                files.push(path.clone());
            }
            JwtKeys::Secret(_) => {}
        }
    }
    files.dedup();
    files
}

/// Whether the key material read with two configs is the same (the text alone does not
/// tell: a key file may have been rotated under an unchanged config).
fn same_material(a: &Config, b: &Config) -> bool {
    let upstream_tls = |c: &Config| {
        c.upstreams
            .iter()
            .map(|u| u.tls.clone())
            .collect::<Vec<_>>()
    };
    a.jwt == b.jwt && a.listeners == b.listeners && upstream_tls(a) == upstream_tls(b)
}

/// Why `next` cannot be applied to a running gateway, if it cannot.
pub(crate) fn needs_restart(current: &Config, next: &Config) -> Option<String> {
    let addresses = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| l.address.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (was, now) = (addresses(current), addresses(next));
    if was != now {
        return Some(format!("listener addresses changed ({was} → {now})"));
    }
    if current.server.workers != next.server.workers {
        return Some(format!(
            "server.workers changed ({} → {})",
            current.server.workers, next.server.workers
        ));
    }
    let admin = |c: &Config| {
        c.admin
            .as_ref()
            .map_or("off".to_owned(), |a| a.address.to_string())
    };
    let (was, now) = (admin(current), admin(next));
    if was != now {
        return Some(format!("admin address changed ({was} → {now})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, workers: usize, admin: &str) -> Config {
        let text = format!(
            "[server]\nworkers = {workers}\n[[listener]]\naddress = \"{listen}\"\n\
             [upstreams.u]\nendpoints = [{{ address = \"127.0.0.1:9\" }}]\n\
             [[route]]\npath_prefix = \"/\"\nupstream = \"u\"\n{admin}"
        );
        coregate_config::load_str(&text, "t.toml").expect("valid")
    }

    #[test]
    fn restart_needing_changes_are_named() {
        let base = config("127.0.0.1:8080", 2, "");
        assert_eq!(needs_restart(&base, &config("127.0.0.1:8080", 2, "")), None);
        let why = needs_restart(&base, &config("127.0.0.1:8081", 2, "")).unwrap();
        assert!(why.starts_with("listener addresses changed"), "{why}");
        let why = needs_restart(&base, &config("127.0.0.1:8080", 3, "")).unwrap();
        assert!(why.starts_with("server.workers changed (2 → 3)"), "{why}");
        let off = config("127.0.0.1:8080", 2, "[admin]\nenabled = false\n");
        let why = needs_restart(&base, &off).unwrap();
        assert_eq!(why, "admin address changed (127.0.0.1:9901 → off)");
    }
}
