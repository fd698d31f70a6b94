//! `internet`: the propagation benchmark on the namespace testbed (docs/testbed.md): a public
//! bootstrap node and N-1 homes behind cone NATs, each home's uplink 40 ms +- 10 ms (normal),
//! 1 % loss and 5 Mbit/s up, its downlink 40 ms +- 10 ms and 1 % loss. The homes are given
//! only the public node's address. The public node's library is short (7 s tracks, so the
//! seed slots pass quickly); the homes' tracks last `--seconds` (30 by default: five 6-s
//! segments, about 600 KB). For each slot from 6 on: the time from the first `final` to the
//! last node holding the winner, the proposer's upload in copies of the track, and whether
//! every node played it in full. Needs root.

use std::time::Duration;

use anyhow::{Result, bail};
use chorus_tests::net::{Node, NodeSpec, slot, write_seed_queue};
use chorus_tests::testbed::{HomeSpec, Jitter, Link, Shape, Spec, Testbed};

use crate::{LONG, join_args, library, slot_propagation};

const MS: Duration = Duration::from_millis(1);
const LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4747", "/ip4/0.0.0.0/udp/4747/quic-v1"];

fn uplink() -> Link {
    let wan = |rate: Option<u64>| {
        let s = Shape::wire()
            .delay(40 * MS)
            .jitter(10 * MS, Jitter::Normal)
            .loss(0.01);
        match rate {
            Some(r) => s.rate(r),
            None => s,
        }
    };
    Link::new(wan(Some(5_000_000)), wan(None))
}

pub fn internet(n: usize, slots: u64, seconds: f64) -> Result<()> {
    if n < 2 {
        bail!("--nodes counts the public node: at least 2");
    }
    if let Some(why) = chorus_tests::testbed::unavailable() {
        bail!("the testbed is unavailable: {why}");
    }
    let mut spec = Spec::new().public();
    for _ in 1..n {
        spec = spec.home(HomeSpec::new(1).link(uplink()));
    }
    let tb = Testbed::new("bench_internet", &spec)?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    println!("logs in {} (kept with CHORUS_BENCH_KEEP=1)", root.display());
    let lib = library(&root.join("lib0"), 1, 5, 7.0)?;
    let queue = root.join("seed.toml");
    write_seed_queue(&queue, &lib, &format!("in {}s", 15 + 2 * n), "");
    let public = Node::start_on(
        tb.public(0),
        NodeSpec {
            name: "n0",
            root,
            command: "bootstrap",
            args: vec![
                "--seed-queue".into(),
                queue.display().to_string(),
                "--library".into(),
                lib.display().to_string(),
            ],
        },
        &LISTEN,
    );
    let network = public.wait_stdout("network ", LONG);
    public.wait_for("http", LONG, |v| v["event"] == "http");
    let id = loop {
        if let Some(id) = public.status()["identity"].as_str() {
            break id.to_owned();
        }
        std::thread::sleep(100 * MS);
    };
    let peer = format!("/ip4/{}/tcp/4747/p2p/{id}", tb.public(0).addr());
    let mut nodes = vec![public];
    for i in 1..n {
        let lib = library(&root.join(format!("lib{i}")), i as u64 + 1, 3, seconds)?;
        nodes.push(Node::start_on(
            tb.host(i - 1, 0),
            NodeSpec {
                name: &format!("n{i}"),
                root,
                command: "run",
                args: join_args(&lib, &network, &peer),
            },
            &LISTEN,
        ));
    }
    println!("nodes {n} (1 public, {} homes behind cone NATs)", n - 1);
    measure(&nodes, slots);
    if std::env::var_os("CHORUS_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
    drop(tb);
    Ok(())
}

/// Per slot from 6 on: propagation, the proposer's upload, and nodes that started the slot
/// without every segment; then the median and maximum propagation.
fn measure(nodes: &[Node], slots: u64) {
    let n = nodes.len();
    let mut times = Vec::new();
    for k in 6..6 + slots {
        if let Some(ms) = slot_propagation(nodes, k) {
            times.push(ms);
        }
        let late: Vec<&str> = nodes
            .iter()
            .filter(|node| {
                let p = node.wait_for(&format!("playing {k}"), LONG, |v| {
                    v["event"] == "playing" && slot(v) == Some(k)
                });
                p["segments_held"] != p["segments"]
            })
            .map(|node| node.name.as_str())
            .collect();
        if !late.is_empty() {
            println!("slot {k}: started without every segment on {late:?}");
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
        println!(
            "propagation to all {n} nodes on the testbed: median {median:.0} ms, max {max:.0} ms over {} slots",
            times.len()
        );
    }
}
