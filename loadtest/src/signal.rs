//! Waiting for SIGINT or SIGTERM, for `loadtest origin`, which serves until told to stop.
//!
//! No handler runs: the signals are blocked before any other thread starts (threads inherit
//! the mask) and taken synchronously with sigwait(3) on the thread that waits, which can then
//! stop the origin in plain code.

use std::io;
use std::mem::MaybeUninit;

/// SIGINT and SIGTERM, blocked in this thread and in the threads it starts from now on.
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks SIGINT and SIGTERM; call before starting threads.
    pub fn block() -> io::Result<TerminationSignals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initializes the set it is given, and sigaddset then only
        // writes into that initialized set; assume_init follows the initialization.
        let set = unsafe {
            if libc::sigemptyset(set.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            for signal in [libc::SIGINT, libc::SIGTERM] {
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
        Ok(TerminationSignals { set })
    }

    /// Waits until SIGINT or SIGTERM arrives and returns its number.
    pub fn wait(&self) -> io::Result<i32> {
        let mut signal = 0;
        // SAFETY: `self.set` is an initialized signal set and `signal` a valid place for the
        // number of the signal taken.
        let error = unsafe { libc::sigwait(&self.set, &mut signal) };
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(signal)
    }
}
