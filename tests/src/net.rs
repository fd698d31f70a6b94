//! Real `chorus` node processes on loopback, with their JSON logs parsed as they arrive.
//!
//! Tests wait for log events (a condition variable wakes them on every new line), never for
//! fixed times.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use chorus_media::synth::{FileTags, Format, Tune, write_tune};

use crate::chorus_bin;

#[derive(Default)]
struct Log {
    events: Vec<Value>,
    stdout: Vec<String>,
    /// Panic messages on stderr (`thread '…' panicked at …` and the line after): a library's
    /// task can panic without ending the node.
    panics: Vec<String>,
    /// The last stderr line was a panic's first line.
    in_panic: bool,
    /// JSON log fields written in Rust's debug format (`"slot":"Some(6)"`) instead of as
    /// plain values: `field: value (event)`.
    debug_values: Vec<String>,
    closed: bool,
}

/// The fields of a JSON log line whose values are Rust's debug format of an `Option` or a list
/// (the message and the fields of library lines aside).
fn debug_values(v: &Value) -> Vec<String> {
    let Some(fields) = v.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|(k, _)| *k != "message" && !k.starts_with("log."))
        .filter_map(|(k, f)| Some((k, f.as_str()?)))
        .filter(|(_, f)| f.starts_with("Some(") || f.starts_with("[\""))
        .map(|(k, f)| format!("{k}: {f} ({})", v["event"]))
        .collect()
}

impl Log {
    /// One line of the node's stdout (`is_out`) or stderr: JSON events, panic messages.
    fn take(&mut self, line: String, is_out: bool) {
        if is_out {
            self.stdout.push(line);
        } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
            self.debug_values.extend(debug_values(&v));
            self.events.push(v);
        } else if line.contains("' panicked at ") {
            self.panics.push(line);
            self.in_panic = true;
        } else if std::mem::take(&mut self.in_panic)
            && let Some(last) = self.panics.last_mut()
        {
            last.push_str(": ");
            last.push_str(&line);
        }
    }
}

/// One running node.
pub struct Node {
    /// A short name for messages.
    pub name: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its config directory (the blacklist).
    pub config_dir: PathBuf,
    /// Where its raw log is written.
    pub log_file: PathBuf,
    child: Option<Child>,
    log: Arc<(Mutex<Log>, Condvar)>,
    env: Vec<(String, String)>,
    /// The network namespace it runs in (a testbed host), if not the test's own.
    netns: Option<String>,
    /// Its `--listen` addresses (loopback TCP on any port when empty), or none at all: the
    /// node's default ([`Node::start_on_default_listen`]).
    listen: Option<Vec<String>>,
    /// Whether it looks for peers on its LAN by mDNS (off unless started with
    /// [`Node::start_on_lan`]).
    mdns: bool,
}

/// What a node is started with.
pub struct NodeSpec<'a> {
    /// Name for messages and folder names.
    pub name: &'a str,
    /// The folder that holds its data, config and log.
    pub root: &'a Path,
    /// `bootstrap` or `run` arguments after the subcommand (library, network, peers...).
    pub args: Vec<String>,
    /// The subcommand: `bootstrap` or `run`.
    pub command: &'a str,
}

impl Node {
    /// Starts `chorus --log-format json <command> ...` with loopback listen and HTTP addresses
    /// and mDNS off.
    pub fn start(spec: NodeSpec<'_>) -> Node {
        Self::start_with_env(spec, &[])
    }

    /// As [`Node::start`], with extra environment variables (kept for restarts).
    pub fn start_with_env(spec: NodeSpec<'_>, env: &[(&str, &str)]) -> Node {
        let dir = spec.root.join(spec.name);
        let data_dir = dir.join("data");
        let config_dir = dir.join("config");
        std::fs::create_dir_all(&data_dir).expect("create the node's data folder");
        let log_file = dir.join("node.log");
        let mut node = Node {
            name: spec.name.to_owned(),
            data_dir,
            config_dir,
            log_file,
            child: None,
            log: Arc::new((Mutex::new(Log::default()), Condvar::new())),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            netns: None,
            listen: Some(Vec::new()),
            mdns: false,
        };
        node.spawn(spec.command, &spec.args);
        node
    }

    /// As [`Node::start`], on a testbed host (`ip netns exec`), listening on `listen` (e.g.
    /// TCP and QUIC on port 4747 of every interface). Its HTTP API stays on the host's
    /// loopback; [`Node::status`] reads it from inside the namespace.
    pub fn start_on(host: &crate::testbed::Host, spec: NodeSpec<'_>, listen: &[&str]) -> Node {
        Self::start_in(host, spec, Some(listen), false)
    }

    /// As [`Node::start_on`], on the node's default listen addresses (TCP and QUIC on port 4747
    /// of every IPv4 and IPv6 address).
    pub fn start_on_default_listen(host: &crate::testbed::Host, spec: NodeSpec<'_>) -> Node {
        Self::start_in(host, spec, None, false)
    }

    /// As [`Node::start_on`], with mDNS on: the node finds the other nodes of its home's LAN.
    pub fn start_on_lan(host: &crate::testbed::Host, spec: NodeSpec<'_>, listen: &[&str]) -> Node {
        Self::start_in(host, spec, Some(listen), true)
    }

    fn start_in(
        host: &crate::testbed::Host,
        spec: NodeSpec<'_>,
        listen: Option<&[&str]>,
        mdns: bool,
    ) -> Node {
        let dir = spec.root.join(spec.name);
        let data_dir = dir.join("data");
        let config_dir = dir.join("config");
        std::fs::create_dir_all(&data_dir).expect("create the node's data folder");
        let mut node = Node {
            name: spec.name.to_owned(),
            data_dir,
            config_dir,
            log_file: dir.join("node.log"),
            child: None,
            log: Arc::new((Mutex::new(Log::default()), Condvar::new())),
            env: Vec::new(),
            netns: Some(host.netns().to_owned()),
            listen: listen.map(|l| l.iter().map(|a| a.to_string()).collect()),
            mdns,
        };
        node.spawn(spec.command, &spec.args);
        node
    }

    /// `chorus` itself, or inside the node's namespace.
    fn program(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(chorus_bin());
                c
            }
            None => Command::new(chorus_bin()),
        }
    }

    /// The `--listen` arguments, and mDNS, UPnP and AutoNAT as tests want them.
    fn listen_args(&self) -> Vec<String> {
        let mut args: Vec<String> = match &self.listen {
            None => Vec::new(),
            Some(listen) if listen.is_empty() => {
                vec!["--listen".into(), "/ip4/127.0.0.1/tcp/0".into()]
            }
            Some(listen) => listen
                .iter()
                .flat_map(|a| ["--listen".to_owned(), a.clone()])
                .collect(),
        };
        if !self.mdns {
            args.push("--no-mdns".into());
        }
        // Loopback and the testbed's benchmarking range are no global addresses.
        args.extend(["--no-upnp".into(), "--autonat-any-address".into()]);
        args
    }

    fn spawn(&mut self, command: &str, args: &[String]) {
        let mut cmd = self.program();
        let listen = self.listen_args();
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--config-dir")
            .arg(&self.config_dir)
            .args(["--log-format", "json", command])
            .args(args)
            // Tests never play through the machine's sound card unless they ask for it.
            .args(if args.iter().any(|a| a == "--audio") {
                &[][..]
            } else {
                &["--audio", "null"][..]
            })
            .args(listen)
            // Any free loopback port unless the test chose the HTTP address.
            .args(if args.iter().any(|a| a == "--http-listen") {
                &[][..]
            } else {
                &["--http-listen", "127.0.0.1:0"][..]
            })
            // CHORUS_TEST_RUST_LOG (e.g. `info,chorus::net=debug`) shows more when a test needs it.
            .env(
                "RUST_LOG",
                std::env::var("CHORUS_TEST_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start chorus");
        {
            let mut log = self.log.0.lock().unwrap_or_else(|e| e.into_inner());
            log.closed = false;
        }
        let raw = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .expect("open the node's log file");
        let raw = Arc::new(Mutex::new(raw));
        for (stream, is_out) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                true,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                false,
            ),
        ] {
            let Some(stream) = stream else { continue };
            let log = self.log.clone();
            let raw = raw.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut f) = raw.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                    let (lock, cvar) = &*log;
                    lock.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take(line, is_out);
                    cvar.notify_all();
                }
                if !is_out {
                    let (lock, cvar) = &*log;
                    lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
                    cvar.notify_all();
                }
            });
        }
        self.child = Some(child);
    }

    /// Starts the node again (same data) with `chorus run` and `args`.
    pub fn restart(&mut self, args: &[String]) {
        self.spawn("run", args);
    }

    /// Waits until an event satisfies `pred` (events seen before count too) and returns it;
    /// panics with the log's tail after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_from(0, what, timeout, pred)
    }

    /// As [`Node::wait_for`], among events from index `from` on.
    pub fn wait_for_from(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = log.events.iter().skip(from).find(|v| pred(v)) {
                return v.clone();
            }
            let now = Instant::now();
            if now >= deadline || log.closed {
                let tail: Vec<String> = log
                    .events
                    .iter()
                    .rev()
                    .take(25)
                    .rev()
                    .map(|v| v.to_string())
                    .collect();
                panic!(
                    "{}: {} waiting for {what}; last events:\n{}",
                    self.name,
                    if log.closed { "exited" } else { "timed out" },
                    tail.join("\n")
                );
            }
            log = cvar
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for a line on stdout starting with `prefix`; returns the rest.
    pub fn wait_stdout(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(l) = log.stdout.iter().find_map(|l| l.strip_prefix(prefix)) {
                return l.trim().to_owned();
            }
            let now = Instant::now();
            assert!(
                now < deadline && !log.closed,
                "{}: no stdout line {prefix:?}",
                self.name
            );
            log = cvar
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The panics the node's process reported on stderr so far (in any thread: a panic in a
    /// connection's task ends that connection only, and would go unseen).
    pub fn panics(&self) -> Vec<String> {
        let log = self.log.0.lock().unwrap_or_else(|e| e.into_inner());
        log.panics.clone()
    }

    /// Every event so far with `"event": name`.
    pub fn events(&self, name: &str) -> Vec<Value> {
        let log = self.log.0.lock().unwrap_or_else(|e| e.into_inner());
        log.events
            .iter()
            .filter(|v| v["event"] == name)
            .cloned()
            .collect()
    }

    /// The place of event `v` among all events so far.
    pub fn index_of(&self, v: &Value) -> Option<usize> {
        let log = self.log.0.lock().unwrap_or_else(|e| e.into_inner());
        log.events.iter().position(|e| e == v)
    }

    /// How many events were logged so far.
    pub fn event_count(&self) -> usize {
        self.log
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .len()
    }

    /// The node's `/status` document (once its HTTP API is up: a joiner starts it after it has
    /// the chain).
    pub fn status(&self) -> Value {
        self.wait_for("its HTTP API", Duration::from_secs(300), |v| {
            v["event"] == "http"
        });
        let addr = std::fs::read_to_string(self.data_dir.join("http.addr"))
            .expect("the node wrote http.addr");
        let get = || crate::http_get(addr.trim(), "/status");
        let answer = match &self.netns {
            Some(ns) => crate::testbed::netns::in_netns(ns, get).expect("enter the node's host"),
            None => get(),
        };
        let (code, _, body) = answer.expect("GET /status from the HTTP API");
        assert_eq!(code, 200, "GET /status: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("status JSON")
    }

    /// The first listen address it printed (`address ...`).
    pub fn address(&self) -> String {
        self.wait_stdout("address ", Duration::from_secs(300))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !log.closed {
            log = cvar
                .wait_timeout(log, Duration::from_secs(5))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Runs `chorus blacklist ...` against this node's directories.
    pub fn blacklist(&self, args: &[&str]) -> String {
        let args: Vec<&str> = std::iter::once("blacklist")
            .chain(args.iter().copied())
            .collect();
        chorus_with(&self.data_dir, &self.config_dir, &args)
    }
}

impl Drop for Node {
    /// Stops the process; a test that passed fails here if the node reported a panic in any
    /// thread (a library's connection task can panic without ending the node, and nothing
    /// else would notice).
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let panics = self.panics();
        if !panics.is_empty() && !std::thread::panicking() {
            panic!("{}: the node panicked: {panics:#?}", self.name);
        }
        let debug_values = {
            let log = self.log.0.lock().unwrap_or_else(|e| e.into_inner());
            log.debug_values.clone()
        };
        if !debug_values.is_empty() && !std::thread::panicking() {
            panic!(
                "{}: JSON log fields in Rust's debug format: {debug_values:#?}",
                self.name
            );
        }
    }
}

/// The slot of an event, if it has one.
pub fn slot(v: &Value) -> Option<u64> {
    v["slot"].as_u64()
}

/// The rules of the test networks: `enroll_delay` at the least the protocol allows (L + 2,
/// PROTOCOL.md 12.3), so that the creator proposes from slot 7 and the founders it enrolls
/// there from slot 14 (the default, 8, makes that 8 and 16: two slots more of every test).
pub const TEST_RULES: &str = "enroll_delay = 7";

/// Runs `chorus <args>` with `data_dir` and `config_dir`; its stdout. Panics, naming the
/// command and its stderr, if it fails.
pub fn chorus_with(data_dir: &Path, config_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(chorus_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config-dir")
        .arg(config_dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run chorus {args:?}: {e}"));
    assert!(
        out.status.success(),
        "chorus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a seed queue naming the first five (sorted) files of `library`.
pub fn write_seed_queue(path: &Path, library: &Path, start: &str, rules: &str) {
    let mut names: Vec<String> = std::fs::read_dir(library)
        .expect("read the library")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut text = format!("name = \"Test Radio\"\nstart = \"{start}\"\n");
    for n in names.iter().take(5) {
        text.push_str(&format!("[[track]]\npath = {n:?}\n"));
    }
    if !rules.is_empty() {
        text.push_str(&format!("[rules]\n{rules}\n"));
    }
    std::fs::write(path, text).expect("write the seed queue");
}

/// Every block file in a data directory's store hashes to its name.
pub fn store_is_intact(data_dir: &Path) -> Result<usize, String> {
    use sha2::{Digest, Sha256};
    let mut n = 0;
    let blocks = data_dir.join("store").join("blocks");
    for fan in std::fs::read_dir(&blocks).map_err(|e| e.to_string())? {
        let fan = fan.map_err(|e| e.to_string())?;
        for f in std::fs::read_dir(fan.path()).map_err(|e| e.to_string())? {
            let f = f.map_err(|e| e.to_string())?;
            let bytes = std::fs::read(f.path()).map_err(|e| e.to_string())?;
            let hex: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if f.file_name().to_string_lossy() != hex {
                return Err(format!("{} does not hash to its name", f.path().display()));
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Length of the tracks of [`library`]: a slot lasts this long.
pub const TRACK_SECONDS: f64 = 7.0;

/// A library of `n` tracks unique to `seed` (different audio, so different track hashes).
pub fn library(dir: &Path, seed: u64, n: usize) -> PathBuf {
    library_of(dir, seed, n, TRACK_SECONDS)
}

/// As [`library`], with tracks `seconds` long.
pub fn library_of(dir: &Path, seed: u64, n: usize, seconds: f64) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create library");
    for i in 0..n {
        let path = dir.join(format!("Artist {seed} - Song {i}.flac"));
        let tags = FileTags {
            title: format!("Song {seed}.{i}"),
            artist: format!("Artist {seed}"),
            album: "Test".into(),
        };
        write_tune(
            &path,
            Format::Flac,
            &Tune::new(seed * 1000 + i as u64, seconds),
            &tags,
        )
        .expect("write a track");
    }
    dir.to_path_buf()
}

/// An owned string.
pub fn s(v: &str) -> String {
    v.to_owned()
}

/// `bootstrap` arguments: the seed queue and the library.
pub fn bootstrap_args(queue: &Path, lib: &Path) -> Vec<String> {
    vec![
        s("--seed-queue"),
        queue.display().to_string(),
        s("--library"),
        lib.display().to_string(),
    ]
}

/// `run` arguments of a joiner: its library, the network, and the one peer it is given.
pub fn join_args(lib: &Path, network: &str, peer: &str) -> Vec<String> {
    vec![
        s("--library"),
        lib.display().to_string(),
        s("--network"),
        s(network),
        s("--peer"),
        s(peer),
    ]
}

/// Starts the bootstrap node; returns it with the network id and its address.
pub fn bootstrap(root: &Path, lib: &Path, start: &str, extra: &[String]) -> (Node, String, String) {
    let seed = root.join("seed.toml");
    write_seed_queue(&seed, lib, start, TEST_RULES);
    let mut args = bootstrap_args(&seed, lib);
    args.extend_from_slice(extra);
    let node = Node::start(NodeSpec {
        name: "a",
        root,
        command: "bootstrap",
        args,
    });
    let network = node.wait_stdout("network ", Duration::from_secs(300));
    let address = node.address();
    (node, network, address)
}

/// Starts `chorus run` joining `network` through `peers`.
pub fn join(
    root: &Path,
    name: &str,
    lib: &Path,
    network: &str,
    peers: &[&str],
    extra: &[String],
) -> Node {
    let mut args = vec![
        s("--library"),
        lib.display().to_string(),
        s("--network"),
        s(network),
    ];
    for p in peers {
        args.push(s("--peer"));
        args.push(s(p));
    }
    args.extend_from_slice(extra);
    Node::start(NodeSpec {
        name,
        root,
        command: "run",
        args,
    })
}

/// A node alone on its own network: `bootstrap` on a library of 5 tracks of 7 s made from
/// `seed` in `root/lib`, slot 0 four seconds from now, with `extra` arguments and environment.
pub fn lone_node(
    root: &Path,
    name: &str,
    seed: u64,
    extra: &[String],
    env: &[(&str, &str)],
) -> Node {
    lone_node_of(root, name, seed, 5, extra, env)
}

/// As [`lone_node`], with a library of `tracks` tracks (the seed queue takes five of them).
pub fn lone_node_of(
    root: &Path,
    name: &str,
    seed: u64,
    tracks: usize,
    extra: &[String],
    env: &[(&str, &str)],
) -> Node {
    let lib = library(&root.join("lib"), seed, tracks);
    let queue = root.join("seed.toml");
    // Slot 0 begins 8 s after the command reads the queue: the node ingests its library and
    // builds its beacon's hash chain first, and must be playing by then, or it starts slot 0
    // mid-track (seen with 4 s on a loaded two-core machine: 0.2 s into the track, so that
    // tests comparing slot 0 with the decoded track found the decoder's warm-up instead).
    write_seed_queue(&queue, &lib, "in 8s", TEST_RULES);
    let mut args = vec![
        s("--seed-queue"),
        queue.display().to_string(),
        s("--library"),
        lib.display().to_string(),
    ];
    args.extend_from_slice(extra);
    Node::start_with_env(
        NodeSpec {
            name,
            root,
            command: "bootstrap",
            args,
        },
        env,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_formatted_fields_are_found() {
        let line = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_default();
        let bad =
            line(r#"{"event":"status","slot":"Some(6)","diverged":"[\"a\"]","message":"Some(1)"}"#);
        assert_eq!(debug_values(&bad).len(), 2, "{:?}", debug_values(&bad));
        let good = line(r#"{"event":"status","slot":6,"diverged":"a,b","track":"Song"}"#);
        assert!(debug_values(&good).is_empty());
    }
}
