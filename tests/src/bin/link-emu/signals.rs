//! SIGTERM and SIGINT as a file descriptor that the event loop polls (signalfd), so that a
//! signal arriving at any moment ends the loop at its next wake-up, with no handler and no
//! race between checking a flag and going to sleep.

use std::fs::File;
use std::os::fd::FromRawFd;

use anyhow::Result;

/// Blocks SIGTERM and SIGINT for this thread (and threads it starts later) and returns a
/// non-blocking descriptor that becomes readable when one is pending. Call it before starting
/// any thread.
pub fn stop_signals() -> Result<File> {
    // SAFETY: sigset_t is plain data and is initialised by sigemptyset before use; the
    // pointers passed live across each call.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            anyhow::bail!("cannot block SIGTERM");
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // The descriptor is new and ours alone.
        Ok(File::from_raw_fd(fd))
    }
}
