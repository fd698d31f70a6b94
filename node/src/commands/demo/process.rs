//! The demo's node processes: each started as this same program, its output read line by line
//! on threads of its own, and all of them stopped together.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One demo node process.
pub(super) struct DemoNode {
    pub(super) name: String,
    pub(super) child: Child,
}

pub(super) fn spawn_node(
    name: &str,
    args: &[String],
    json_logs: bool,
    lines: mpsc::Sender<(String, Line)>,
) -> Result<DemoNode> {
    let exe = std::env::current_exe().context("cannot find the chorus program")?;
    let mut cmd = Command::new(exe);
    if json_logs {
        cmd.args(["--log-format", "json"]);
    }
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start demo node {name}"))?;
    for (stream, is_out) in [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            true,
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            false,
        ),
    ] {
        let Some(stream) = stream else { continue };
        let tx = lines.clone();
        let name = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let line = if is_out {
                    Line::Out(line)
                } else {
                    Line::Err(line)
                };
                if tx.send((name.clone(), line)).is_err() {
                    return;
                }
            }
        });
    }
    Ok(DemoNode {
        name: name.to_owned(),
        child,
    })
}

/// A line a node wrote: on stdout (the bootstrap node prints its network and address there)
/// or on stderr (its logs).
pub(super) enum Line {
    /// On stdout.
    Out(String),
    /// On stderr.
    Err(String),
}

/// Stops every node with SIGINT (kill -9 after 10 s), showing their last lines.
pub(super) fn interrupt(nodes: &mut [DemoNode], lines: &mpsc::Receiver<(String, Line)>) {
    for n in nodes.iter() {
        let _ = Command::new("kill")
            .args(["-INT", &n.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in nodes.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = n.child.try_wait() {
                break;
            }
            if let Ok((name, Line::Out(l) | Line::Err(l))) =
                lines.recv_timeout(Duration::from_millis(50))
            {
                say!("[{name}] {l}");
            }
        }
        if let Ok(None) = n.child.try_wait() {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}
