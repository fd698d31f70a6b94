//! A running `link-emu` process and what it reports when it stops.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::pipe::Counters;
use super::shape::Link;

/// One direction's figures in a [`Report`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionReport {
    /// What the direction did with its packets.
    pub counters: Counters,
    /// Packets it released that the device refused.
    pub write_errors: u64,
    /// Packets still held when the emulator stopped (thrown away).
    pub in_flight: u64,
}

/// What an emulator did, printed by `link-emu` as one JSON line on stdout when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// The seed it ran with.
    pub seed: u64,
    /// Towards the internet (device a to device b).
    pub up: DirectionReport,
    /// From the internet (device b to device a).
    pub down: DirectionReport,
}

impl DirectionReport {
    fn to_json(self) -> Value {
        let c = self.counters;
        json!({
            "packets_in": c.packets_in, "packets_out": c.packets_out, "lost": c.lost,
            "queue_dropped": c.queue_dropped, "bytes_in": c.bytes_in, "bytes_out": c.bytes_out,
            "write_errors": self.write_errors, "in_flight": self.in_flight,
        })
    }

    fn from_json(v: &Value) -> Result<Self> {
        let n = |key: &str| {
            v.get(key)
                .and_then(Value::as_u64)
                .with_context(|| format!("report has no number {key}"))
        };
        Ok(Self {
            counters: Counters {
                packets_in: n("packets_in")?,
                packets_out: n("packets_out")?,
                lost: n("lost")?,
                queue_dropped: n("queue_dropped")?,
                bytes_in: n("bytes_in")?,
                bytes_out: n("bytes_out")?,
            },
            write_errors: n("write_errors")?,
            in_flight: n("in_flight")?,
        })
    }
}

impl Report {
    /// The one-line JSON form.
    pub fn to_json(&self) -> String {
        json!({"seed": self.seed, "up": self.up.to_json(), "down": self.down.to_json()}).to_string()
    }

    /// Parses [`Report::to_json`]'s output.
    pub fn from_json(line: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(line).context("report is not JSON")?;
        Ok(Self {
            seed: v
                .get("seed")
                .and_then(Value::as_u64)
                .context("report has no seed")?,
            up: DirectionReport::from_json(v.get("up").context("report has no up")?)?,
            down: DirectionReport::from_json(v.get("down").context("report has no down")?)?,
        })
    }
}

/// Where one end of the emulated wire is: a TAP device in a namespace.
#[derive(Debug, Clone)]
pub struct End {
    /// The namespace that holds the device.
    pub netns: String,
    /// The device's name there.
    pub dev: String,
}

/// A `link-emu` process joining two TAP devices. Dropping it stops it.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// Its log lines (a few per run), passed on to the test's captured output when it stops.
    stderr: ChildStderr,
    /// Held open: the emulator stops when it closes, so it never outlives this process.
    _stdin: ChildStdin,
    seed: u64,
    stopped: bool,
}

impl Emulator {
    /// Starts `bin` inside `a.netns` between `a` (inside) and `b` (the internet's side), and
    /// returns once both devices are attached.
    pub fn spawn(bin: &Path, a: &End, b: &End, link: &Link, seed: u64) -> Result<Self> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &a.netns])
            .arg(bin)
            .args(["--a", &a.dev, "--b", &b.dev, "--b-netns", &b.netns])
            .args([
                "--up",
                &link.up.to_string(),
                "--down",
                &link.down.to_string(),
            ])
            .args(["--seed", &seed.to_string(), "--watch-stdin"])
            .args(["--name", &format!("{}:{}", a.netns, a.dev)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdin = child.stdin.take().context("piped stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("piped stdout")?);
        let mut stderr = child.stderr.take().context("piped stderr")?;
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            let status = child.wait()?;
            let mut why = String::new();
            stderr.read_to_string(&mut why)?;
            bail!(
                "link-emu for {}:{} did not start ({status}): {}",
                a.netns,
                a.dev,
                why.trim()
            );
        }
        Ok(Self {
            child,
            stdout,
            stderr,
            _stdin: stdin,
            seed,
            stopped: false,
        })
    }

    /// The seed it runs with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Stops it with SIGTERM and returns its report.
    pub fn stop(mut self) -> Result<Report> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<Report> {
        self.stopped = true;
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child, which has not been waited for yet (its pid cannot
        // have been reused).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                break self.child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let mut log = String::new();
        self.stderr.read_to_string(&mut log)?;
        print!("{log}");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        if !status.success() {
            bail!("link-emu exited with {status}");
        }
        let line = rest.lines().last().context("link-emu printed no report")?;
        Report::from_json(line)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.terminate();
        }
    }
}

/// The `link-emu` binary of this build: beside the running test or benchmark, or built with
/// cargo when missing (as `chorus_bin` does for `chorus`).
pub fn link_emu_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("the running binary is in a folder")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("link-emu");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "chorus-tests", "--bin", "link-emu"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        if !cmd.status()?.success() {
            bail!("building link-emu failed");
        }
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_json() {
        let mut r = Report {
            seed: 42,
            ..Report::default()
        };
        r.up.counters.lost = 3;
        r.down.in_flight = 2;
        r.down.write_errors = 1;
        assert_eq!(Report::from_json(&r.to_json()).unwrap(), r);
    }
}
