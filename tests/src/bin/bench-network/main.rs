//! Benchmarks of running nodes (real `chorus` processes on loopback):
//!
//!     cargo build --release -p chorus && cargo run --release -p chorus-tests --bin bench-network -- propagate --nodes 20 --slots 6
//!     cargo build --release -p chorus && cargo run --release -p chorus-tests --bin bench-network -- rss --tracks 500
//!     cargo build --release -p chorus && cargo run --release -p chorus-tests --bin bench-network -- sync --seconds 90
//!     cargo build --release -p chorus && cargo run --release -p chorus-tests --bin bench-network -- listeners --clients 200 --seconds 30
//!     cargo build --release -p chorus && cargo run --release -p chorus-tests --bin bench-network -- stream --clients 200 --seconds 60
//!     cargo build --release -p chorus && sudo target/release/bench-network internet --nodes 10 --slots 6 --seconds 30
//!     cargo build --release -p chorus && sudo target/release/bench-network sync --seconds 90 --rates --testbed
//!
//! `propagate`: N nodes, each with its own 3-track library (7 s tracks), one bootstrap node and
//! N-1 joiners. For each consensus slot, the time from the first node's decision for the slot
//! (its `prefetch`; its `final` when no node prefetched the winner) to the moment the last node
//! holds every segment of the winner (its `fetched` event; 0 for the node whose library holds
//! it). Prints each slot and the median and maximum.
//!
//! `internet`: `propagate` on the namespace testbed, homes behind NATs on slow lossy links
//! (`internet.rs`). `sync --testbed`: `sync` with each node in its own home behind a NAT, on
//! asymmetric links with jitter (`internet.rs`).
//!
//! `rss`: one node bootstrapped with a library of T tracks (6 s each: ingest time is not what
//! is measured, the size of the library is), left idle for 30 s after it starts playing, then
//! its resident set size (VmRSS) and peak (VmHWM) from /proc.
//!
//! `sync`: three nodes with wav sinks and clocks skewed by -400, 0 and +350 ms (with `--rates`
//! also running -80, 0 and +100 ppm fast), and a fourth
//! (no skew) started once slot 2 plays. Slot 0 starts 4 s after the first node, so the
//! joiners start playing before their clocks have converged. After S seconds, from the wav sinks' CSVs: the offset
//! between any two of the first three (when each plays the same track sample) after their first
//! 10 s, p50 / p99 / max; how long each node took until its offsets stayed under 1 ms; the late
//! joiner's time from start to first sound and the offset of that first sound.
//!
//! `listeners`: one node, and N live HLS clients on loopback (threads) that each reload
//! `/live.m3u8` every 2 s and fetch every new segment once, all starting at once (a burst of
//! N playlist and N x 2 segment requests), for S seconds. Prints latency p50 / p99 / max per
//! kind and the node's CPU time over the run (user + system, from /proc).
//!
//! `stream`: one node, and N Icecast clients of `/stream` (threads, HTTP/1.0 with
//! `Icy-MetaData: 1`) reading for S seconds: listeners held at once (the node's own count),
//! audio bytes and titles per listener, and the node's CPU time and resident set size.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use chorus_media::synth::{FileTags, Format, Tune, write_tune};
use chorus_tests::net::{Node, NodeSpec, slot, write_seed_queue};
use chorus_tests::sync::{Row, first_audio, offsets, quantile};
use serde_json::Value;

mod internet;

const LONG: Duration = Duration::from_secs(900);

fn arg(args: &[String], name: &str, default: u64) -> Result<u64> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).context("missing value")?.parse()?),
        None => Ok(default),
    }
}

fn library(dir: &Path, seed: u64, n: usize, seconds: f64) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for i in 0..n {
        let path = dir.join(format!("Artist {seed} - Song {i}.flac"));
        if path.exists() {
            continue;
        }
        let tags = FileTags {
            title: format!("Song {seed}.{i}"),
            artist: format!("Artist {seed}"),
            album: "Bench".into(),
        };
        write_tune(
            &path,
            Format::Flac,
            &Tune::new(seed * 10_000 + i as u64, seconds),
            &tags,
        )?;
    }
    Ok(dir.to_path_buf())
}

fn seconds_of_day(v: &Value) -> f64 {
    let t = v["timestamp"].as_str().unwrap_or("");
    let time = t.split('T').nth(1).unwrap_or("0:0:0").trim_end_matches('Z');
    let p: Vec<f64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    if p.len() == 3 {
        p[0] * 3600.0 + p[1] * 60.0 + p[2]
    } else {
        0.0
    }
}

fn bootstrap(root: &Path, lib: &Path, start: &str) -> Result<(Node, String, String)> {
    let seed = root.join("seed.toml");
    write_seed_queue(&seed, lib, start, chorus_tests::net::TEST_RULES);
    let node = Node::start(NodeSpec {
        name: "n0",
        root,
        command: "bootstrap",
        args: chorus_tests::net::bootstrap_args(&seed, lib),
    });
    let network = node.wait_stdout("network ", LONG);
    let address = node.address();
    Ok((node, network, address))
}

fn propagate(n: usize, slots: u64) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    println!("logs in {} (kept with CHORUS_BENCH_KEEP=1)", root.display());
    let libs: Vec<PathBuf> = (0..n)
        .map(|i| {
            library(
                &root.join(format!("lib{i}")),
                i as u64 + 1,
                if i == 0 { 5 } else { 3 },
                7.0,
            )
        })
        .collect::<Result<_>>()?;
    let (first, network, addr) = bootstrap(root, &libs[0], &format!("in {}s", 10 + n))?;
    let mut nodes = vec![first];
    for (i, lib) in libs.iter().enumerate().skip(1) {
        nodes.push(Node::start(NodeSpec {
            name: &format!("n{i}"),
            root,
            command: "run",
            args: chorus_tests::net::join_args(lib, &network, &addr),
        }));
    }
    let mut times = Vec::new();
    println!("nodes {n}");
    for k in 6..6 + slots {
        if let Some(ms) = slot_propagation(&nodes, k) {
            times.push(ms);
        }
    }
    if times.is_empty() {
        let _ = tmp.keep();
        bail!("no slot needed a fetch");
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let max = times.last().copied().unwrap_or(0.0);
    if std::env::var_os("CHORUS_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
    println!(
        "propagation to all {n} nodes: median {median:.0} ms, max {max:.0} ms over {} slots",
        times.len()
    );
    Ok(())
}

/// The time (ms) from the first node's `final` for slot `k` to the last node's `fetched` of its
/// winner, printed; `None` when every node already held the winner.
fn slot_propagation(nodes: &[Node], k: u64) -> Option<f64> {
    let n = nodes.len();
    let mut t_final = f64::MAX;
    let mut winner = String::new();
    let mut last_final = serde_json::Value::Null;
    for node in nodes {
        let f = node.wait_for(&format!("final {k}"), LONG, |v| {
            v["event"] == "final" && slot(v) == Some(k)
        });
        t_final = t_final.min(seconds_of_day(&f));
        winner = f["track_hash"].as_str().unwrap_or("").to_owned();
        last_final = f;
    }
    // Fetching starts at the first node's decision (`prefetch`), before finality.
    let t_start = nodes
        .iter()
        .flat_map(|node| node.events("prefetch"))
        .filter(|p| slot(p) == Some(k) && p["track_hash"] == winner.as_str())
        .map(|p| seconds_of_day(&p))
        .fold(t_final, f64::min);
    let mut t_all = t_start;
    let mut fetchers = 0;
    for node in nodes {
        // The node holds it once it logs `fetched` for it, or when its slot plays with every
        // segment held (its own track, or one fetched for an earlier slot).
        let w = winner.clone();
        let e = node.wait_for(&format!("holding slot {k}"), LONG, |v| {
            (v["event"] == "fetched"
                && v["track_hash"] == w.as_str()
                && seconds_of_day(v) >= t_start - 0.5)
                || (v["event"] == "playing" && slot(v) == Some(k))
        });
        if e["event"] == "fetched" {
            t_all = t_all.max(seconds_of_day(&e));
            fetchers += 1;
        }
    }
    if fetchers == 0 {
        println!("slot {k}: every node already held the winner");
        return None;
    }
    let ms = (t_all - t_start) * 1000.0;
    let ahead = (t_final - t_all) * 1000.0;
    println!(
        "slot {k}: winner {} reached all {n} nodes ({fetchers} fetched it) {ms:.0} ms after the first decision ({ahead:.0} ms before the first final); {}",
        &winner[..8.min(winner.len())],
        upload_share(nodes, &last_final)
    );
    Some(ms)
}

/// What the winner's proposer uploaded of it, in copies of the track, and how many peers
/// served it in all.
fn upload_share(nodes: &[Node], fin: &serde_json::Value) -> String {
    match chorus_tests::internet::upload(nodes, fin) {
        Some(u) => format!(
            "proposer uploaded {:.2} copies, {} peers served {:.2} copies in all",
            u.proposer_copies, u.servers, u.all_copies
        ),
        None => "proposer or track size unknown".to_owned(),
    }
}

fn rss(tracks: usize) -> Result<()> {
    let cache = std::env::temp_dir().join(format!("chorus-bench-rss-{tracks}"));
    let lib = library(&cache.join("library"), 7, tracks, 6.0)?;
    let tmp = tempfile::tempdir()?;
    let (mut node, _, _) = bootstrap(tmp.path(), &lib, "in 5s")?;
    node.wait_for("playing", LONG, |v| v["event"] == "playing");
    std::thread::sleep(Duration::from_secs(30));
    let pid = std::fs::read_to_string(tmp.path().join("n0").join("data").join("http.addr")).ok();
    let _ = pid;
    let status = node.status();
    let library_tracks = tracks;
    let (rss_kb, hwm_kb) = proc_rss(&node)?;
    println!(
        "idle node right after ingesting its {library_tracks} tracks, store {:.0} MB: VmRSS {:.1} MB, VmHWM {:.1} MB",
        status["store"]["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        rss_kb as f64 / 1024.0,
        hwm_kb as f64 / 1024.0
    );
    // The usual case: a node restarted on an ingested library (the rescan finds nothing new).
    node.kill9();
    let before = node.event_count();
    node.restart(&["--library".into(), lib.display().to_string()]);
    node.wait_for_from(before, "playing again", LONG, |v| v["event"] == "playing");
    std::thread::sleep(Duration::from_secs(30));
    let (rss_kb, hwm_kb) = proc_rss(&node)?;
    println!(
        "idle node restarted on the same {library_tracks} tracks: VmRSS {:.1} MB, VmHWM {:.1} MB",
        rss_kb as f64 / 1024.0,
        hwm_kb as f64 / 1024.0
    );
    Ok(())
}

fn proc_rss(node: &Node) -> Result<(u64, u64)> {
    let pid = node.pid().context("the node is not running")?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn sync(seconds: u64, rates: bool) -> Result<()> {
    use chorus_tests::net::{bootstrap as boot, join, library as lib, s};
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let wav = |name: &str, skew: i64| {
        let rate = SKEWS
            .iter()
            .position(|(n, _)| *n == name)
            .filter(|_| rates)
            .map_or(0, |k| RATES_PPM[k]);
        vec![
            s("--audio"),
            format!("wav:{}", root.join(format!("{name}.wav")).display()),
            format!("--clock-skew-ms={skew}"),
            format!("--clock-rate-ppm={rate}"),
        ]
    };
    let libs: Vec<PathBuf> = (1..=4)
        .map(|i| lib(&root.join(format!("lib{i}")), i, 6))
        .collect();
    let started = Instant::now();
    let (a, network, addr) = boot(root, &libs[0], "in 4s", &wav("a", SKEWS[0].1));
    let b = join(
        root,
        "b",
        &libs[1],
        &network,
        &[&addr],
        &wav("b", SKEWS[1].1),
    );
    let c = join(
        root,
        "c",
        &libs[2],
        &network,
        &[&addr],
        &wav("c", SKEWS[2].1),
    );
    a.wait_for("slot 2", LONG, |v| {
        v["event"] == "playing" && slot(v) == Some(2)
    });
    // The late joiner is given all three peers, so that they count for its clock together.
    let (addr_b, addr_c) = (b.address(), c.address());
    let d_start = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64;
    let d = join(
        root,
        "d",
        &libs[3],
        &network,
        &[&addr, &addr_b, &addr_c],
        &wav("d", 0),
    );
    let left = Duration::from_secs(seconds).saturating_sub(started.elapsed());
    std::thread::sleep(left);
    let (rows, steps) = sync_rows(root, [&a, &b, &c])?;
    if std::env::var_os("CHORUS_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
    drop((a, b, c, d));
    let last_bad = print_offsets(&rows)?;
    print_convergence(&rows, &last_bad, &steps);
    print_late_joiner(&rows, d_start)
}

/// Per node, when it last stepped its clock (s from its player's start), if it did.
type Steps = Vec<Option<f64>>;

/// The sinks' rows of nodes a, b, c and d (their wav sinks in `root`), and when each of the
/// first three (`nodes`) last stepped its clock, from its player's start (after that it only
/// slews).
fn sync_rows(root: &Path, nodes: [&Node; 3]) -> Result<(Vec<Vec<Row>>, Steps)> {
    let rows: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| {
            chorus_tests::sync::read_csv(&root.join(format!("{n}.wav.csv")))
                .map_err(anyhow::Error::msg)
        })
        .collect::<Result<_>>()?;
    let steps = nodes
        .iter()
        .zip(&rows)
        .map(|(n, r)| {
            let start = r.first()?.system_us as f64 / 1e6 % 86_400.0;
            let last = n.events("clock_step").last().map(seconds_of_day)?;
            Some(last - start)
        })
        .collect();
    Ok((rows, steps))
}

/// The first three nodes of `sync` and their clock skews, ms.
const SKEWS: [(&str, i64); 3] = [("a", -400), ("b", 0), ("c", 350)];
/// With `--rates`: how fast their clocks run, ppm (real oscillators are within about ±100).
const RATES_PPM: [i64; 3] = [-80, 0, 100];

/// Prints the offsets between any two of the first three nodes after their first 10 s; returns,
/// per node, the last time (system µs) one of its offsets was 1 ms or more.
fn print_offsets(rows: &[Vec<Row>]) -> Result<[i64; 3]> {
    let start = rows[..3]
        .iter()
        .filter_map(|r| r.first().map(|r| r.system_us))
        .max()
        .context("no rows")?;
    // From 10 s after the last player started, from 30 s (the homes of the testbed meet each
    // other through relays and hole punching some seconds in) and from 60 s (each peer's line
    // has a minute of samples: the estimate converges as the square root of their number).
    let mut after = [(10, Vec::new()), (30, Vec::new()), (60, Vec::new())];
    let mut last_bad = [i64::MIN; 3];
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        for (_, t, off) in offsets(&rows[i], &rows[j], 0) {
            for (s, all) in after.iter_mut() {
                if t >= start + *s * 1_000_000 {
                    all.push(off.abs());
                }
            }
            if off.abs() >= 1000.0 {
                for k in [i, j] {
                    last_bad[k] = last_bad[k].max(t);
                }
            }
        }
    }
    for (s, all) in after.iter_mut() {
        let n = all.len();
        if n == 0 {
            continue;
        }
        let max = all.iter().copied().fold(0.0, f64::max);
        println!(
            "offset between any two of 3 nodes (skews -400/0/+350 ms) after their first {s} s: p50 {:.1} µs, p99 {:.1} µs, max {max:.1} µs over {n} comparisons",
            quantile(all, 0.5),
            quantile(all, 0.99)
        );
    }
    Ok(last_bad)
}

/// Prints when each of the first three nodes came within 1 ms of the others for good, and
/// when it last stepped its clock.
fn print_convergence(rows: &[Vec<Row>], last_bad: &[i64; 3], steps: &[Option<f64>]) {
    for (k, (name, skew)) in SKEWS.iter().enumerate() {
        let start = rows[k].first().map_or(0, |r| r.system_us);
        let conv = if last_bad[k] == i64::MIN {
            0.0
        } else {
            (last_bad[k] - start) as f64 / 1e6
        };
        let step = steps[k].map_or("never stepped".to_owned(), |t| {
            format!("last clock step {t:.1} s")
        });
        println!(
            "node {name} (skew {skew:+} ms): within 1 ms of the others from {conv:.1} s after its player started ({step} after it)"
        );
    }
}

/// Prints the late joiner's first sound: when, after its start at `d_start` (system µs), and
/// how far from node b playing the same sample.
fn print_late_joiner(rows: &[Vec<Row>], d_start: i64) -> Result<()> {
    let first = first_audio(&rows[3]).context("the late joiner played nothing")?;
    let (k, sample) = (first.slot.context("slot")?, first.sample.context("sample")?);
    let tb = chorus_tests::sync::time_of(&rows[1], k, sample).context("b did not play it")?;
    println!(
        "late joiner: first sound {:.2} s after its start (slot {k}, track sample {sample}), {:.1} µs from node b playing the same sample",
        (first.system_us - d_start) as f64 / 1e6,
        first.system_us as f64 - tb
    );
    Ok(())
}

/// One client's requests: (is a segment, latency in µs, bytes).
type Requests = Vec<(bool, u64, usize)>;

/// A live HLS client: the playlist every 2 s, each new segment once (as hls.js does, which
/// reloads a live playlist at half the target duration while it has not changed).
fn listener(addr: String, until: Instant) -> Result<Requests> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let (code, _, body) = chorus_tests::http_get(&addr, "/live.m3u8")?;
        out.push((false, t.elapsed().as_micros() as u64, body.len()));
        if code != 200 {
            bail!("playlist: HTTP {code}");
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        for uri in text.lines().filter(|l| l.starts_with("live/")) {
            if seen.insert(uri.to_owned()) {
                let t = Instant::now();
                let (code, _, body) = chorus_tests::http_get(&addr, &format!("/{uri}"))?;
                out.push((true, t.elapsed().as_micros() as u64, body.len()));
                if code != 200 {
                    bail!("{uri}: HTTP {code}");
                }
            }
        }
        std::thread::sleep(Duration::from_secs(2).saturating_sub(t.elapsed()));
    }
    Ok(out)
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// A lone node in `root`, once slot 1 plays: the node, its HTTP address and its process id.
fn radio(root: &Path) -> Result<(Node, String, u32)> {
    let node = chorus_tests::net::lone_node(root, "radio", 5, &[], &[]);
    node.wait_for("slot 1", LONG, |v| {
        v["event"] == "playing" && slot(v) == Some(1)
    });
    let addr = std::fs::read_to_string(node.data_dir.join("http.addr"))?
        .trim()
        .to_owned();
    let pid = node.pid().context("node pid")?;
    Ok((node, addr, pid))
}

fn listeners(clients: usize, seconds: u64) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_node, addr, pid) = radio(tmp.path())?;
    let cpu0 = cpu_seconds(pid)?;
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || listener(addr, until))
        })
        .collect();
    let mut all: Requests = Vec::new();
    let mut failed = 0;
    for h in handles {
        match h.join().map_err(|_| anyhow::anyhow!("client panicked"))? {
            Ok(r) => all.extend(r),
            Err(e) => {
                failed += 1;
                eprintln!("client failed: {e:#}");
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    for (kind, is_segment) in [("playlist", false), ("segment", true)] {
        let mut lat: Vec<f64> = all
            .iter()
            .filter(|r| r.0 == is_segment)
            .map(|r| r.1 as f64 / 1000.0)
            .collect();
        let bytes: usize = all.iter().filter(|r| r.0 == is_segment).map(|r| r.2).sum();
        let n = lat.len();
        let max = lat.iter().copied().fold(0.0, f64::max);
        println!(
            "{kind}: {n} requests, {:.1} MB, latency p50 {:.2} ms, p99 {:.2} ms, max {max:.2} ms",
            bytes as f64 / 1e6,
            chorus_tests::sync::quantile(&mut lat, 0.5),
            chorus_tests::sync::quantile(&mut lat, 0.99)
        );
    }
    println!(
        "{clients} listeners for {wall:.1} s ({failed} failed): node CPU {cpu:.2} s = {:.1} % of one core",
        100.0 * cpu / wall
    );
    Ok(())
}

/// An Icecast client of `/stream` (HTTP/1.0, as old radio players speak it, so the body is the
/// bytes up to the close): reads until `until`; returns the audio bytes and the titles its
/// metadata blocks named.
fn stream_client(addr: &str, until: Instant) -> Result<(u64, Vec<String>)> {
    use std::io::{BufRead, Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET /stream HTTP/1.0\r\nHost: {addr}\r\nIcy-MetaData: 1\r\n\r\n"
    )?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, s);
    let mut metaint = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end().to_lowercase();
        if line.is_empty() {
            break;
        }
        if line.starts_with("http/") && !line.contains(" 200") {
            bail!("/stream: {line}");
        }
        if let Some(v) = line.strip_prefix("icy-metaint:") {
            metaint = Some(v.trim().parse::<usize>()?);
        }
    }
    let metaint = metaint.context("no icy-metaint")?;
    let (mut audio, mut titles) = (0u64, Vec::new());
    let mut buf = vec![0u8; metaint];
    while Instant::now() < until {
        r.read_exact(&mut buf)?;
        audio += metaint as u64;
        let mut len = [0u8; 1];
        r.read_exact(&mut len)?;
        let mut block = vec![0u8; usize::from(len[0]) * 16];
        r.read_exact(&mut block)?;
        if !block.is_empty() {
            titles.push(
                String::from_utf8_lossy(&block)
                    .trim_end_matches('\0')
                    .to_owned(),
            );
        }
    }
    Ok((audio, titles))
}

/// One node and N Icecast clients of `/stream` (threads) for `seconds`.
fn stream(clients: usize, seconds: u64) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (node, addr, pid) = radio(tmp.path())?;
    let (cpu0, rss0) = (cpu_seconds(pid)?, proc_rss(&node)?.0);
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || stream_client(&addr, until))
        })
        .collect();
    // Listeners held at once, from the node's own count, halfway through.
    std::thread::sleep(Duration::from_secs(seconds / 2));
    let (_, _, body) = chorus_tests::http_get(&addr, "/status")?;
    let held = serde_json::from_slice::<Value>(&body)?["stream"]["listeners"]
        .as_u64()
        .unwrap_or(0);
    let rss_mid = proc_rss(&node)?.0;
    let (mut failed, mut bytes, mut titles) = (0, Vec::new(), Vec::new());
    for h in handles {
        match h.join().map_err(|_| anyhow::anyhow!("client panicked"))? {
            Ok((b, t)) => {
                bytes.push(b as f64);
                titles.push(t.len() as f64);
            }
            Err(e) => {
                failed += 1;
                eprintln!("client failed: {e:#}");
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    let total: f64 = bytes.iter().sum();
    println!(
        "/stream: {clients} listeners for {wall:.1} s, {held} held at once, {failed} failed; audio per listener: min {:.0} kB, median {:.0} kB; titles per listener: median {:.0}",
        bytes.iter().copied().fold(f64::MAX, f64::min) / 1e3,
        chorus_tests::sync::quantile(&mut bytes, 0.5) / 1e3,
        chorus_tests::sync::quantile(&mut titles, 0.5),
    );
    println!(
        "node: CPU {cpu:.2} s = {:.1} % of one core, {:.1} MB sent, RSS {} -> {} MB",
        100.0 * cpu / wall,
        total / 1e6,
        rss0 / 1024,
        rss_mid / 1024
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("propagate") => propagate(
            arg(&args, "--nodes", 2)? as usize,
            arg(&args, "--slots", 6)?,
        ),
        Some("internet") => internet::internet(
            arg(&args, "--nodes", 10)? as usize,
            arg(&args, "--slots", 6)?,
            arg(&args, "--seconds", 30)? as f64,
        ),
        Some("hop") => internet::hop(
            arg(&args, "--rounds", 10)? as usize,
            arg(&args, "--idle-ms", 1500)?,
            args.iter().any(|a| a == "--to-public"),
        ),
        Some("rss") => rss(arg(&args, "--tracks", 500)? as usize),
        Some("sync") if args.iter().any(|a| a == "--testbed") => internet::sync(
            arg(&args, "--seconds", 90)?,
            args.iter().any(|a| a == "--rates"),
        ),
        Some("sync") => sync(
            arg(&args, "--seconds", 90)?,
            args.iter().any(|a| a == "--rates"),
        ),
        Some("listeners") => listeners(
            arg(&args, "--clients", 200)? as usize,
            arg(&args, "--seconds", 30)?,
        ),
        Some("stream") => stream(
            arg(&args, "--clients", 200)? as usize,
            arg(&args, "--seconds", 60)?,
        ),
        _ => bail!(
            "usage: bench-network propagate --nodes N --slots S | internet --nodes N --slots S --seconds T | hop [--rounds R] [--idle-ms MS] [--to-public] | rss --tracks T | sync --seconds S [--rates] [--testbed] | listeners --clients N --seconds S | stream --clients N --seconds S"
        ),
    }
}
