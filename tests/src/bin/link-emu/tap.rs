//! Attaching to a TAP (or TUN) device, possibly in another network namespace.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, bail};
use chorus_tests::testbed::netns;

/// Opens device `name` (creating it if it does not exist) in namespace `netns` (this
/// process's own when `None`). The file is non-blocking; each read or write is one frame (TAP)
/// or one IP packet (TUN).
pub fn open(name: &str, netns: Option<&str>, tap: bool) -> Result<File> {
    match netns {
        // The device is created in, or looked up in, the namespace of the thread that opens
        // /dev/net/tun, and stays there whichever thread reads it.
        Some(ns) => netns::in_netns(ns, || open_here(name, tap))?,
        None => open_here(name, tap),
    }
    .with_context(|| {
        format!(
            "cannot attach to {} {name}",
            if tap { "TAP" } else { "TUN" }
        )
    })
}

fn open_here(name: &str, tap: bool) -> Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        bail!("device name {name:?} must have 1 to 15 bytes");
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .context("cannot open /dev/net/tun")?;
    // SAFETY: ifreq is plain data for which all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let kind = if tap { libc::IFF_TAP } else { libc::IFF_TUN };
    ifr.ifr_ifru.ifru_flags = (kind | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads (and updates) one ifreq, which lives across the call; the file
    // is an open /dev/net/tun.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("TUNSETIFF");
    }
    Ok(file)
}
