//! `chorus demo`: the radio with no configuration at all. It generates a small library for each
//! of three nodes, bootstraps a network with the first (a real `chorus bootstrap` process) and
//! joins the others to it (`chorus run`), all on loopback, and shows their logs, each line
//! prefixed with the node's name.

use std::path::Path;
use std::process::ExitCode;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chorus_media::synth::{FileTags, Format, Tune, write_tune};

const TITLES: [&str; 10] = [
    "Morning Light",
    "Harbour Lanterns",
    "Paper Satellites",
    "Slow River",
    "Night Market",
    "Glass Orchard",
    "Northern Static",
    "Late Bus Home",
    "Copper Fields",
    "Open Window",
];
const ARTISTS: [&str; 3] = ["The Demo Ensemble", "Loopback Choir", "Quiet Carrier"];

/// Writes the demo library into `dir` (files that exist are kept, so a second demo is quick).
/// Libraries with different `offset`s hold different music.
pub fn write_demo_library(dir: &Path, tracks: u16, offset: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for i in offset..offset + usize::from(tracks) {
        let format = Format::ALL[i % Format::ALL.len()];
        let title = format!(
            "{}{}",
            TITLES[i % TITLES.len()],
            if i >= TITLES.len() {
                format!(" {}", i / TITLES.len() + 1)
            } else {
                String::new()
            }
        );
        let artist = ARTISTS[i % ARTISTS.len()];
        let path = dir.join(format!("{artist} - {title}.{}", format.extension()));
        if path.exists() {
            continue;
        }
        let tune = Tune::new(i as u64 + 1, 15.0 + (i % 4) as f64 * 5.0);
        let tags = FileTags {
            title: title.clone(),
            artist: artist.into(),
            album: "Chorus Demo".into(),
        };
        write_tune(&path, format, &tune, &tags)
            .with_context(|| format!("cannot write demo track {}", path.display()))?;
    }
    Ok(())
}

/// Writes a line to stderr, ignoring a closed stderr (the demo must still stop its nodes).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// One demo node process.
struct DemoNode {
    name: String,
    child: Child,
}

fn spawn_node(
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

enum Line {
    Out(String),
    Err(String),
}

/// Stops every node with SIGINT (kill -9 after 10 s), showing their last lines.
fn interrupt(nodes: &mut [DemoNode], lines: &mpsc::Receiver<(String, Line)>) {
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
    let mut running: Vec<DemoNode> = Vec::new();
    let result = (|| -> Result<()> {
        for i in 0..usize::from(nodes) {
            let lib = root.join(format!("node{}-library", i + 1));
            write_demo_library(&lib, tracks, i * 100)?;
        }
        let node_args = |i: usize, http_port: u16| -> Vec<String> {
            let dir = root.join(format!("node{}", i + 1));
            vec![
                "--data-dir".into(),
                dir.display().to_string(),
                "--config-dir".into(),
                dir.join("config").display().to_string(),
            ]
            .into_iter()
            .chain([
                "--library".into(),
                root.join(format!("node{}-library", i + 1))
                    .display()
                    .to_string(),
                "--listen".into(),
                "/ip4/127.0.0.1/tcp/0".into(),
                "--no-mdns".into(),
                "--http-listen".into(),
                format!("127.0.0.1:{http_port}"),
                // One node plays through the sound card (when there is one); three in one
                // room would sound as one anyway, and the others show the same timing in logs.
                "--audio".into(),
                if i == 0 { "auto" } else { "null" }.into(),
            ])
            .collect()
        };
        // A fresh network each time: the demo's start time is "in 20s" from now.
        let _ = std::fs::remove_dir_all(root.join("node1"));
        let seed = root.join("seed-queue.toml");
        let lib1 = root.join("node1-library");
        let mut names: Vec<String> = std::fs::read_dir(&lib1)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut text = String::from("name = \"Chorus Demo Radio\"\nstart = \"in 20s\"\n");
        for n in names.iter().take(5) {
            text.push_str(&format!("[[track]]\npath = {:?}\n", n));
        }
        std::fs::write(&seed, text).with_context(|| format!("cannot write {}", seed.display()))?;
        let mut args = vec![
            "bootstrap".to_owned(),
            "--seed-queue".into(),
            seed.display().to_string(),
        ];
        args.extend(node_args(0, crate::cli::DEFAULT_HTTP_PORT));
        running.push(spawn_node("node1", &args, json_logs, tx.clone())?);
        let (mut network, mut address) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(600);
        while network.is_none() || address.is_none() {
            if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                bail!("the bootstrap node did not start");
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
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
                    if let Some(n) = running.first_mut()
                        && let Ok(Some(status)) = n.child.try_wait()
                    {
                        bail!("the bootstrap node exited ({status})");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the bootstrap node stopped"),
            }
        }
        let (network, address) = (network.unwrap_or_default(), address.unwrap_or_default());
        for i in 1..usize::from(nodes) {
            let _ =
                std::fs::remove_dir_all(root.join(format!("node{}", i + 1)).join("genesis.cbor"));
            let _ = std::fs::remove_file(root.join(format!("node{}", i + 1)).join("chain.cbor"));
            let _ = std::fs::remove_file(root.join(format!("node{}", i + 1)).join("peers.json"));
            let _ = std::fs::remove_file(root.join(format!("node{}", i + 1)).join("genesis.cbor"));
            let mut args = vec![
                "run".to_owned(),
                "--network".into(),
                network.clone(),
                "--peer".into(),
                address.clone(),
            ];
            args.extend(node_args(i, 0));
            running.push(spawn_node(
                &format!("node{}", i + 1),
                &args,
                json_logs,
                tx.clone(),
            )?);
        }
        say!(
            "[demo] network {network}: {nodes} nodes on loopback; `chorus --data-dir {} status` shows node1; Ctrl-C stops",
            root.join("node1").display()
        );
        let until = seconds.map(|s| Instant::now() + Duration::from_secs(s));
        loop {
            if stop.load(Ordering::SeqCst) || until.is_some_and(|u| Instant::now() > u) {
                return Ok(());
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok((name, Line::Out(l) | Line::Err(l))) => say!("[{name}] {l}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
            for n in running.iter_mut() {
                if let Ok(Some(status)) = n.child.try_wait() {
                    bail!("demo node {} exited ({status})", n.name);
                }
            }
        }
    })();
    interrupt(&mut running, &rx);
    // What the nodes wrote while stopping.
    while let Ok((name, Line::Out(l) | Line::Err(l))) = rx.recv_timeout(Duration::from_millis(200))
    {
        say!("[{name}] {l}");
    }
    result?;
    Ok(ExitCode::SUCCESS)
}
