//! Network namespaces as `ip netns` names them: running `ip`, doing work inside a namespace
//! from a thread of this process, and finding leftovers.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where `ip netns` keeps its namespaces (`/var/run` is a link to `/run` on current systems).
fn run_dir() -> PathBuf {
    let run = PathBuf::from("/run/netns");
    if run.is_dir() {
        run
    } else {
        PathBuf::from("/var/run/netns")
    }
}

/// The file that holds namespace `name` open.
pub fn path(name: &str) -> PathBuf {
    run_dir().join(name)
}

/// Runs `ip args...`; the error carries ip's own message.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (package iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `f` on a thread that has entered namespace `name`, and returns what it returns.
/// Sockets made inside `f` stay in that namespace wherever they are used afterwards, so a test
/// can bind a server "on" a host and drive it from its own thread. A panic in `f` is passed on.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let file = File::open(path(name)).with_context(|| format!("no network namespace {name}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<T> {
                // SAFETY: setns(2) on an open namespace file changes only the calling thread's
                // network namespace; this thread ends with `f`.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("cannot enter network namespace {name}"));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Sets `/proc/sys/<key>` (dots or slashes) to `value` inside namespace `name`.
pub fn sysctl(name: &str, settings: &[(&str, &str)]) -> Result<()> {
    in_netns(name, || -> Result<()> {
        for (key, value) in settings {
            let file = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&file, value)
                .with_context(|| format!("cannot set {key}={value} in namespace {name}"))?;
        }
        Ok(())
    })?
}

/// The names of all namespaces `ip netns` knows.
pub fn list() -> Vec<String> {
    std::fs::read_dir(run_dir())
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes namespace `name` (its devices go with it; processes still inside keep it alive,
/// unnamed, until they exit).
pub fn delete(name: &str) -> Result<()> {
    ip(&["netns", "delete", name])
}
