//! The `evil-peer` attacker as a child process: its stdout lines can be awaited, its log goes
//! to a file beside the test's nodes, and it is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Stdout lines so far, whether stdout closed, and a condvar signalled at each change.
type Lines = Arc<(Mutex<(Vec<String>, bool)>, Condvar)>;

/// A running `evil-peer`.
pub struct Evil {
    child: Child,
    lines: Lines,
}

/// The `evil-peer` binary of this build, beside `chorus`.
pub fn evil_bin() -> std::path::PathBuf {
    crate::chorus_bin().with_file_name(format!("evil-peer{}", std::env::consts::EXE_SUFFIX))
}

impl Evil {
    /// Starts `evil-peer args`, its log in `root/evil.log`.
    pub fn start(root: &Path, args: &[&str]) -> Evil {
        let log = std::fs::File::create(root.join("evil.log")).expect("create evil.log");
        let mut child = Command::new(evil_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start evil-peer (cargo builds it with the tests)");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines: Lines = Arc::default();
        let shared = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                shared
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .0
                    .push(line);
                shared.1.notify_all();
            }
            shared.0.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            shared.1.notify_all();
        });
        Evil { child, lines }
    }

    /// The first stdout line that starts with `prefix` (the rest of it), waiting up to
    /// `timeout`; panics with what it printed otherwise.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.lines;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(l) = state.0.iter().find(|l| l.starts_with(prefix)) {
                return l[prefix.len()..].to_owned();
            }
            let now = Instant::now();
            assert!(
                now < deadline && !state.1,
                "evil-peer {} waiting for {prefix:?}; it printed:\n{}",
                if state.1 { "exited" } else { "timed out" },
                state.0.join("\n")
            );
            state = cvar
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Every stdout line that starts with `prefix`.
    pub fn lines(&self, prefix: &str) -> Vec<String> {
        let state = self.lines.0.lock().unwrap_or_else(|e| e.into_inner());
        state
            .0
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for Evil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
