//! SIGHUP (reload), SIGTERM and SIGINT (drain), taken synchronously.
//!
//! No handler runs: [`Signals::block`] blocks the three signals before any other thread
//! starts (threads inherit the mask, so no worker is ever interrupted), and a dedicated thread
//! takes them with sigwait(3) and raises a flag the control thread reads on its next tick.

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// What arrived since the control thread last looked.
#[derive(Default)]
pub struct Flags {
    reload: AtomicBool,
    stops: AtomicU32,
}

impl Flags {
    /// Whether a SIGHUP arrived since the last call.
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::AcqRel)
    }

    /// How many SIGTERM or SIGINT arrived so far: the first drains, a second one ends the
    /// drain at once.
    pub fn stops(&self) -> u32 {
        self.stops.load(Ordering::Acquire)
    }
}

/// SIGHUP, SIGINT and SIGTERM, blocked in the calling thread and every thread it starts.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks the signals; call first thing in `main`, before any thread starts.
    pub fn block() -> io::Result<Signals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initializes the set it is given, and sigaddset then only
        // writes into that initialized set; assume_init follows the initialization.
        let set = unsafe {
            if libc::sigemptyset(set.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
                if libc::sigaddset(set.as_mut_ptr(), signal) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            set.assume_init()
        };
        // SAFETY: `set` is an initialized signal set; a null old-set pointer is allowed.
        let error = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(Signals { set })
    }

    /// Starts the thread that takes the signals and raises `flags`.
    pub fn spawn(self, flags: Arc<Flags>) -> io::Result<()> {
        std::thread::Builder::new()
            .name("coregate-signals".to_owned())
            .spawn(move || loop {
                let mut signal = 0;
                // SAFETY: `self.set` is an initialized signal set and `signal` a valid place
                // for the number of the signal taken.
                let error = unsafe { libc::sigwait(&self.set, &mut signal) };
                if error != 0 {
                    eprintln!(
                        "signals: sigwait failed: {}",
                        io::Error::from_raw_os_error(error)
                    );
                    return;
                }
                if signal == libc::SIGHUP {
                    flags.reload.store(true, Ordering::Release);
                } else {
                    flags.stops.fetch_add(1, Ordering::AcqRel);
                }
            })?;
        Ok(())
    }
}
