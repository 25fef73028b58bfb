//! The child processes of a comparison and what is read about them from /proc: a [`Child`]
//! guard that starts a command pinned to a set of cores in its own process group and kills
//! the whole group when dropped (also while unwinding from a panic), the CPU time and
//! resident memory of a process tree, and a [`TempDir`] that removes itself.
//!
//! Every child also gets `PR_SET_PDEATHSIG(SIGKILL)`, so that it dies with the thread that
//! started it even when this process is killed with SIGKILL and no destructor runs, and
//! [`kill_children_on_signal`] turns SIGINT and SIGTERM into a clean-up of the groups still
//! running before exiting.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::signal::TerminationSignals;

/// How long a child may take to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Start of the names of the temporary directories, followed by a label, the pid and a
/// counter.
const TEMP_DIR_PREFIX: &str = "coregate-";

/// Process groups of the children still running, for the signal clean-up.
static RUNNING_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// A child process running in its own process group, killed with its group on drop.
pub struct Child {
    name: String,
    child: std::process::Child,
    /// Where its stdout and stderr go, read back when it fails to start.
    log_path: PathBuf,
}

impl Child {
    /// Starts `command` pinned to `cores` (its affinity mask: threads and processes it starts
    /// inherit it), with stdout and stderr appended to `log_path`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        cores: &[usize],
        log_path: &Path,
    ) -> io::Result<Child> {
        let log = fs::File::create(log_path)?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let mask = cpu_set(cores)?;
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: sched_setaffinity and prctl are plain system
        // calls, `mask` is a copy owned by the closure, and nothing allocates or locks. The
        // test `pinned_child_has_the_mask` exercises it.
        unsafe {
            command.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mask) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        lock_groups().push(child.id() as i32);
        Ok(Child {
            name: name.to_owned(),
            child,
            log_path: log_path.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error when the child has exited, with the end of its output.
    pub fn check_running(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!(
                "{} exited ({status}): {}",
                self.name,
                self.log_tail()
            ))),
        }
    }

    /// The last lines of the child's output.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Waits until `addr` accepts TCP connections, failing when the child exits first or
    /// `timeout` passes.
    pub fn wait_listening(
        &mut self,
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} is not listening on {addr} after {timeout:?}: {}",
                        self.name,
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        signal_group(group, libc::SIGTERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left of the group (a worker that outlived its master, or a child that
        // ignored SIGTERM) goes now.
        signal_group(group, libc::SIGKILL);
        let _ = self.child.wait();
        lock_groups().retain(|&g| g != group);
    }
}

fn lock_groups() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING_GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn signal_group(group: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; `group` is the pid of a
    // child started with process_group(0), so the group is ours alone.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// Blocks SIGINT and SIGTERM in this thread and those started after it, and starts a thread
/// that, when one arrives, kills the process groups of the children still running and exits
/// with status 130. Call before starting any other thread.
pub fn kill_children_on_signal() -> io::Result<()> {
    let signals = TerminationSignals::block()?;
    std::thread::Builder::new()
        .name("compare-signals".to_owned())
        .spawn(move || {
            if let Ok(signal) = signals.wait() {
                eprintln!("loadtest compare: signal {signal}, stopping the proxies");
                for &group in lock_groups().iter() {
                    signal_group(group, libc::SIGKILL);
                }
                remove_own_temp_dirs();
                std::process::exit(130);
            }
        })?;
    Ok(())
}

/// Removes the [`TempDir`]s of this process, whose destructors will not run.
fn remove_own_temp_dirs() {
    let marker = format!("-{}-", std::process::id());
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_DIR_PREFIX) && name.contains(&marker) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn cpu_set(cores: &[usize]) -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array for which all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &core in cores {
        if core >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("core {core} is out of range"),
            ));
        }
        // SAFETY: `core` is below CPU_SETSIZE, the number of bits in the set.
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    if cores.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no cores to pin to",
        ));
    }
    Ok(set)
}

/// The cores this process may run on.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: all zeroes is the empty set, and sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ok != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: every `core` here is below CPU_SETSIZE, the number of bits in the set.
        .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
        .collect()
}

/// `root` and every process descended from it, from the parent pids in /proc/PID/stat.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_pid(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        if let Some(kids) = children.get(&tree[next]) {
            tree.extend(kids);
        }
        next += 1;
    }
    tree
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; the fields after the last
    // ')' are the state, then the parent pid.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Nanoseconds on CPU so far of every thread of `pids`: the sum of the first field of
/// /proc/PID/task/TID/schedstat. Threads that have exited are not counted.
pub fn cpu_ns(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| tasks_cpu_ns(&format!("/proc/{pid}/task"), |_| true))
        .sum()
}

/// Nanoseconds on CPU so far of the threads of this process whose name starts with `prefix`.
pub fn own_threads_cpu_ns(prefix: &str) -> u64 {
    tasks_cpu_ns("/proc/self/task", |task| {
        fs::read_to_string(task.join("comm"))
            .map(|comm| comm.starts_with(prefix))
            .unwrap_or(false)
    })
}

fn tasks_cpu_ns(dir: &str, keep: impl Fn(&Path) -> bool) -> u64 {
    let Ok(tasks) = fs::read_dir(dir) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| keep(&task.path()))
        .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Resident memory (VmRSS) of `pids` together, in bytes.
pub fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .sum()
}

/// Raises this process's open-file limit to its hard limit; returns the soft limit in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// A directory under the system temporary directory, removed with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> io::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "{TEMP_DIR_PREFIX}{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Whether `program` is an executable file in a directory of PATH (or a path to one).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let is_file = |p: &Path| p.is_file();
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_file(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    // nginx and haproxy live in /usr/sbin, which is not on every user's PATH.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_file(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_child_has_the_mask_and_dies_with_its_guard() {
        let cores = allowed_cores();
        let core = *cores.last().expect("some core is allowed");
        let dir = TempDir::new("process-test").unwrap();
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut child = Child::spawn("sleep", command, &[core], &dir.path().join("log")).unwrap();
        child.check_running().unwrap();
        let pid = child.pid();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let allowed = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap();
        assert_eq!(
            allowed.split_whitespace().nth(1),
            Some(core.to_string().as_str())
        );
        assert_eq!(process_tree(pid), vec![pid]);
        assert!(rss_bytes(&[pid]) > 0);
        let _ = cpu_ns(&[pid]);
        drop(child);
        // Reaped by the guard: the pid is gone (or reused by an unrelated process, which a
        // test cannot rule out, so only the common case is checked).
        assert!(fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| !c.starts_with("sleep"))
            .unwrap_or(true));
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn own_thread_cpu_is_counted() {
        let handle = std::thread::Builder::new()
            .name("cputest-0".to_owned())
            .spawn(|| {
                // Spin until the thread's own CPU time shows 10 ms (bounded by a generous
                // deadline): on a loaded machine 30 ms of wall time may hold far less CPU.
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut x = 0u64;
                while own_threads_cpu_ns("cputest-") < 10_000_000 && Instant::now() < deadline {
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                }
                own_threads_cpu_ns("cputest-")
            })
            .unwrap();
        assert!(handle.join().unwrap() >= 10_000_000);
    }
}
