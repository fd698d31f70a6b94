//! `chorus demo`: the radio with no configuration at all. It generates a small library for each
//! of three nodes, bootstraps a network with the first (a real `chorus bootstrap` process) and
//! joins the others to it (`chorus run`), all on loopback, and shows their logs, each line
//! prefixed with the node's name.
//!
//! - `library`: the generated music.
//! - `process`: the node processes and their output.

/// Writes a line to stderr, ignoring a closed stderr (the demo must still stop its nodes).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod library;
mod process;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use library::write_demo_library;
use process::{DemoNode, Line, interrupt, spawn_node};

/// `chorus demo`.
pub fn run(
    data_dir: &Path,
    tracks: u16,
    nodes: u16,
    seconds: Option<u64>,
    json_logs: bool,
) -> Result<ExitCode> {
    let root = data_dir.join("demo");
    tracing::info!(event = "demo", dir = %root.display(), "demo: {nodes} nodes with {tracks} tracks each under {}", root.display());
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // The terminal sends Ctrl-C to the children too; the demo waits for them to stop.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let (tx, rx) = mpsc::channel();
    let mut demo = Demo {
        root,
        nodes,
        json_logs,
        stop,
        tx,
        rx,
        running: Vec::new(),
    };
    let result = demo.start_and_watch(tracks, seconds);
    interrupt(&mut demo.running, &demo.rx);
    // What the nodes wrote while stopping.
    while let Ok((name, Line::Out(l) | Line::Err(l))) =
        demo.rx.recv_timeout(Duration::from_millis(200))
    {
        say!("[{name}] {l}");
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The demo network while it runs.
struct Demo {
    /// Where the libraries and the nodes' directories are.
    root: PathBuf,
    /// Nodes to start.
    nodes: u16,
    json_logs: bool,
    /// Set by Ctrl-C.
    stop: Arc<AtomicBool>,
    /// The nodes' output lines, by node name.
    tx: mpsc::Sender<(String, Line)>,
    rx: mpsc::Receiver<(String, Line)>,
    /// The nodes started so far (all stopped at the end, whatever happened).
    running: Vec<DemoNode>,
}

impl Demo {
    /// Writes the libraries, starts the bootstrap node and then the others, and shows their
    /// logs until Ctrl-C, `seconds`, or a node's exit.
    fn start_and_watch(&mut self, tracks: u16, seconds: Option<u64>) -> Result<()> {
        for i in 0..usize::from(self.nodes) {
            write_demo_library(&self.library(i), tracks, i * 100)?;
            // A fresh network each time (its start is "in 20s" from now): what an earlier run
            // left (a chain of its own network, the peers it knew) would only be refused.
            let dir = self.dir(i);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot clear the earlier demo's {}", dir.display())
                    });
                }
            }
        }
        let (network, address) = self.bootstrap()?;
        for i in 1..usize::from(self.nodes) {
            let mut args = vec![
                "run".to_owned(),
                "--network".into(),
                network.clone(),
                "--peer".into(),
                address.clone(),
            ];
            args.extend(self.node_args(i, 0));
            self.spawn(&format!("node{}", i + 1), &args)?;
        }
        say!(
            "[demo] network {network}: {} nodes on loopback; `chorus --data-dir {} status` shows node1; Ctrl-C stops",
            self.nodes,
            self.dir(0).display()
        );
        self.watch(seconds)
    }

    /// The data directory of node `i` (from 0).
    fn dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{}", i + 1))
    }

    /// The library of node `i` (from 0).
    fn library(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{}-library", i + 1))
    }

    /// The options every node `i` runs with (after its subcommand's own).
    fn node_args(&self, i: usize, http_port: u16) -> Vec<String> {
        let dir = self.dir(i);
        vec![
            "--data-dir".into(),
            dir.display().to_string(),
            "--config-dir".into(),
            dir.join("config").display().to_string(),
            "--library".into(),
            self.library(i).display().to_string(),
            "--listen".into(),
            "/ip4/127.0.0.1/tcp/0".into(),
            "--no-mdns".into(),
            "--no-upnp".into(),
            // Loopback is no global address: without this the nodes would never find
            // themselves reachable, and the DHT would have no server.
            "--autonat-any-address".into(),
            "--http-listen".into(),
            format!("127.0.0.1:{http_port}"),
            // One node plays through the sound card (when there is one); three in one
            // room would sound as one anyway, and the others show the same timing in logs.
            "--audio".into(),
            if i == 0 { "auto" } else { "null" }.into(),
        ]
    }

    fn spawn(&mut self, name: &str, args: &[String]) -> Result<()> {
        let node = spawn_node(name, args, self.json_logs, self.tx.clone())?;
        self.running.push(node);
        Ok(())
    }

    /// A seed queue of the first five tracks of node1's library, starting in 20 s.
    fn write_seed_queue(&self) -> Result<PathBuf> {
        let seed = self.root.join("seed-queue.toml");
        let mut names: Vec<String> = std::fs::read_dir(self.library(0))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut text = String::from("name = \"Chorus Demo Radio\"\nstart = \"in 20s\"\n");
        for n in names.iter().take(5) {
            text.push_str(&format!("[[track]]\npath = {:?}\n", n));
        }
        std::fs::write(&seed, text).with_context(|| format!("cannot write {}", seed.display()))?;
        Ok(seed)
    }

    /// Starts node1 on a fresh network and waits for the network id and the address it prints.
    fn bootstrap(&mut self) -> Result<(String, String)> {
        let seed = self.write_seed_queue()?;
        let mut args = vec![
            "bootstrap".to_owned(),
            "--seed-queue".into(),
            seed.display().to_string(),
        ];
        args.extend(self.node_args(0, crate::cli::DEFAULT_HTTP_PORT));
        self.spawn("node1", &args)?;
        let (mut network, mut address) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(600);
        while network.is_none() || address.is_none() {
            if self.stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                bail!("the bootstrap node did not start");
            }
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok((name, Line::Out(l))) => {
                    if let Some(id) = l.strip_prefix("network ") {
                        network = Some(id.trim().to_owned());
                    } else if let Some(a) = l.strip_prefix("address ") {
                        address = Some(a.trim().to_owned());
                    }
                    say!("[{name}] {l}");
                }
                Ok((name, Line::Err(l))) => say!("[{name}] {l}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(n) = self.running.first_mut()
                        && let Ok(Some(status)) = n.child.try_wait()
                    {
                        bail!("the bootstrap node exited ({status})");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the bootstrap node stopped"),
            }
        }
        Ok((network.unwrap_or_default(), address.unwrap_or_default()))
    }

    /// Shows the nodes' lines until Ctrl-C or `seconds`; fails when a node exits.
    fn watch(&mut self, seconds: Option<u64>) -> Result<()> {
        let until = seconds.map(|s| Instant::now() + Duration::from_secs(s));
        loop {
            if self.stop.load(Ordering::SeqCst) || until.is_some_and(|u| Instant::now() > u) {
                return Ok(());
            }
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok((name, Line::Out(l) | Line::Err(l))) => say!("[{name}] {l}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
            for n in self.running.iter_mut() {
                if let Ok(Some(status)) = n.child.try_wait() {
                    bail!("demo node {} exited ({status})", n.name);
                }
            }
        }
    }
}
