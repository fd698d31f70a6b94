//! `chorus-tests`: end-to-end tests that run the real `chorus` binary on real files and check
//! what a user would check, plus the benchmark commands (`src/bin/`).
//!
//! # Layout
//! - this file: helpers to find and run the `chorus` binary and to generate libraries.
//! - `net`: real node processes on loopback and their JSON logs.
//! - `internet`: a radio on the testbed (a bootstrap node and joiners behind NATs), and what
//!   a winner cost its proposer.
//! - `evil`: the `evil-peer` attacker (`src/bin/evil-peer/`) as a child process.
//! - `prom`: checking Prometheus text exposition.
//! - `sync`: reading wav sinks' CSVs and the offsets between nodes.
//! - `testbed`: network namespaces for a public internet and homes behind NATs, with links
//!   emulated by `link-emu` (`src/bin/link-emu/`): delay, jitter, loss, a rate cap
//!   (docs/testbed.md).
//! - `tests/cli.rs`: the command line as a user runs it (help, logs, ingest, kill -9, full disk).
//! - `tests/network.rs`: networks of real nodes: agreement, fetching, blacklist, late joiner,
//!   kill -9, corrupt blocks, garbage gossip.
//! - `tests/playback.rs`: synchronized playback on wav sinks with skewed clocks, late joiner,
//!   output equal to the decoded track, cpal through PulseAudio, no device, volume and mute.
//! - `tests/hostile.rs`: attacks by `evil-peer` on real nodes (docs/security.md).
//! - `tests/listener.rs`: the live HLS stream read by ffmpeg, the status page in headless
//!   Chromium (`browser/probe.py`), metrics.
//! - `tests/testbed.rs`: the testbed itself: NAT, isolation, a partition, and the emulator's
//!   figures.
//! - `tests/nat.rs`: hole punching between homes, a symmetric NAT, two nodes of one home by
//!   mDNS.
//! - `tests/internet.rs`: ten nodes on slow lossy links: winners held in time, the proposer's
//!   upload bounded, a partition and its repair.
//! - `src/bin/bench-ingest.rs`: ingest speed against the ffmpeg program.
//! - `src/bin/bench-network.rs`: propagation, memory, synchronization and listener benchmarks.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chorus_media::synth::{FileTags, Format, Tune, write_tune};

pub mod evil;
pub mod internet;
pub mod net;
pub mod prom;
pub mod sync;
pub mod testbed;

/// A folder for a test's nodes, removed at the end unless the environment variable
/// `CHORUS_TEST_KEEP` is set (then its path is printed, and it stays for reading the logs).
pub fn kept_tempdir() -> tempfile::TempDir {
    let mut tmp = tempfile::tempdir().expect("a temporary folder");
    if std::env::var_os("CHORUS_TEST_KEEP").is_some() {
        tmp.disable_cleanup(true);
        eprintln!("logs kept in {}", tmp.path().display());
    }
    tmp
}

/// The `chorus` binary of this build (built first if it is missing).
pub fn chorus_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // target/<profile>/deps/<test> or target/<profile>/<bench>
    let mut dir = exe
        .parent()
        .expect("the test binary is in a folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("chorus{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "chorus", "--bin", "chorus"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the chorus binary failed");
    }
    bin
}

/// A `chorus` command with `--data-dir data_dir`.
pub fn chorus(data_dir: &Path) -> Command {
    let mut cmd = Command::new(chorus_bin());
    cmd.arg("--data-dir").arg(data_dir).env_remove("RUST_LOG");
    cmd
}

/// Writes `n` generated tracks of `seconds` each into `dir`, cycling through the formats;
/// returns their paths.
pub fn write_tracks(dir: &Path, n: usize, seconds: f64, formats: &[Format]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("create the library folder");
    (0..n)
        .map(|i| {
            let format = formats[i % formats.len()];
            let path = dir.join(format!("Artist {i} - Track {i}.{}", format.extension()));
            let tags = FileTags {
                title: format!("Track {i}"),
                artist: format!("Artist {i}"),
                album: "Bench".into(),
            };
            write_tune(&path, format, &Tune::new(i as u64 + 100, seconds), &tags)
                .expect("write a generated track");
            path
        })
        .collect()
}

/// Makes sure a PulseAudio server runs (`scripts/start-pulse.sh`), for tests of the cpal
/// output. Returns false when such a test should be skipped: PulseAudio is not installed and
/// this is not CI (CI installs it with `scripts/install-deps.sh --test`, so there it must work).
pub fn pulse_available() -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-pulse.sh");
    let out = Command::new("bash").arg(&script).output();
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    match out {
        Ok(o) if o.status.success() => true,
        _ if !ci && which("pulseaudio").is_none() => {
            println!(
                "SKIPPED: PulseAudio is not installed (scripts/install-deps.sh --test installs it)"
            );
            false
        }
        Ok(o) => panic!(
            "{} could not start PulseAudio: {}",
            script.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {}: {e}", script.display()),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// `GET path` from an HTTP/1.1 server at `addr`: the status code, the header block (lowercase
/// names) and the body (`Connection: close`, no chunked encoding expected from axum for
/// sized bodies).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    http_request(addr, "GET", path, &[("Host", addr)])
}

/// `method path` to an HTTP/1.1 server at `addr` with exactly the `headers` given (a browser's
/// `Host` and `Origin`, or none), as [`http_get`] answers.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    http_request_with_body(addr, method, path, headers, b"")
}

/// `POST path` with a JSON `body` (and `Host`) to an HTTP/1.1 server at `addr`, with `headers`
/// besides, as [`http_get`] answers.
pub fn http_post_json(
    addr: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut all = vec![("Host", addr), ("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    http_request_with_body(addr, "POST", path, &all, body.as_bytes())
}

/// `method path` with `headers` and `body` (a `Content-Length` for any method but GET).
pub fn http_request_with_body(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status code"))?;
    Ok((code, head, raw[split + 4..].to_vec()))
}

/// Whether `program` is on the PATH.
pub fn has_program(program: &str) -> bool {
    which(program).is_some()
}
