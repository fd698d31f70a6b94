//! Real nodes on the testbed (docs/testbed.md): one public bootstrap node and two homes, each
//! behind its own NAT, on links with 10 ms of delay each way. The homes are given only the
//! public node's address. Behind cone NATs they must punch a hole (AutoNAT finds them private,
//! they reserve a relay slot on the public node, the relayed connection is upgraded by DCUtR)
//! and fetch each other's winners directly; behind a symmetric NAT hole punching must fail and
//! every winner still plays, fetched through the public node. Needs root; skips elsewhere, never
//! in CI.
//!
//! All three propose; from slot 5 on the test follows every slot until each home has won one
//! (usually within a few slots: a home wins a slot with probability about 1/3).

// Test code: each test is one scenario read top to bottom.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chorus_tests::net::{Node, NodeSpec, library, s, slot, write_seed_queue};
use chorus_tests::testbed::{HomeSpec, Host, Link, Nat, Shape, Spec, Testbed};
use serde_json::Value;

const MS: Duration = Duration::from_millis(1);
const LONG: Duration = Duration::from_secs(300);
/// Slots in which each home must have won once: with a chance of 1/3 a slot, a home loses all
/// 24 with probability (2/3)^24 = 6e-5.
const SLOTS_TO_WIN: u64 = 24;
const LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4747", "/ip4/0.0.0.0/udp/4747/quic-v1"];

/// The testbed's hosts run many processes each: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The public node and the two homes' nodes.
struct Radio {
    public: Node,
    homes: [Node; 2],
    ids: [String; 3],
}

/// A folder for the nodes, removed at the end unless `CHORUS_TEST_KEEP` is set (then its path
/// is printed).
fn tempdir() -> tempfile::TempDir {
    let mut tmp = tempfile::tempdir().unwrap();
    if std::env::var_os("CHORUS_TEST_KEEP").is_some() {
        tmp.disable_cleanup(true);
        eprintln!("logs kept in {}", tmp.path().display());
    }
    tmp
}

fn wan() -> Link {
    Link::both(Shape::wire().delay(10 * MS))
}

fn start(tb: &Testbed, root: &Path) -> Radio {
    let lib = library(&root.join("lib-public"), 1, 5);
    let queue = root.join("seed.toml");
    write_seed_queue(&queue, &lib, "in 25s", "");
    let public = Node::start_on(
        tb.public(0),
        NodeSpec {
            name: "public",
            root,
            command: "bootstrap",
            args: vec![
                s("--seed-queue"),
                queue.display().to_string(),
                s("--library"),
                lib.display().to_string(),
            ],
        },
        &LISTEN,
    );
    let network = public.wait_stdout("network ", LONG);
    let public_id = identity(&public);
    let peer = format!("/ip4/{}/tcp/4747/p2p/{public_id}", tb.public(0).addr());
    let home = |i: usize, host: &Host| {
        let lib = library(&root.join(format!("lib-home{i}")), 10 + i as u64, 6);
        Node::start_on(
            host,
            NodeSpec {
                name: if i == 0 { "home0" } else { "home1" },
                root,
                command: "run",
                args: vec![
                    s("--library"),
                    lib.display().to_string(),
                    s("--network"),
                    network.clone(),
                    s("--peer"),
                    peer.clone(),
                ],
            },
            &LISTEN,
        )
    };
    let homes = [home(0, tb.host(0, 0)), home(1, tb.host(1, 0))];
    let ids = [public_id, identity(&homes[0]), identity(&homes[1])];
    Radio { public, homes, ids }
}

/// The node's peer id, from its status once its HTTP API is up and the driver has published
/// a first snapshot.
fn identity(node: &Node) -> String {
    node.wait_for("http", LONG, |v| v["event"] == "http");
    let start = Instant::now();
    loop {
        if let Some(id) = node.status()["identity"].as_str() {
            return id.to_owned();
        }
        assert!(
            start.elapsed() < LONG,
            "{} never published its status",
            node.name
        );
        std::thread::sleep(100 * MS);
    }
}

/// `node`'s /status entry for `peer`.
fn peer_entry(node: &Node, peer: &str) -> Option<Value> {
    node.status()["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer)
        .cloned()
}

/// Polls `node`'s status every 250 ms until `peer` is connected directly; the time it took.
fn wait_direct(node: &Node, peer: &str, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if peer_entry(node, peer).is_some_and(|p| p["connected"] == true && p["route"] == "direct")
        {
            return Some(start.elapsed());
        }
        std::thread::sleep(250 * MS);
    }
    None
}

/// From slot 5 on, waits for every node's `final` of each slot until each home has won one;
/// checks that all three agree and play every winner in full. Returns, per slot, the winner's
/// proposer and track hash.
fn agree_until_both_won(radio: &Radio) -> BTreeMap<u64, (String, String)> {
    let nodes = [&radio.public, &radio.homes[0], &radio.homes[1]];
    let mut winners = BTreeMap::new();
    for k in 5..5 + SLOTS_TO_WIN {
        let finals: Vec<Value> = nodes
            .iter()
            .map(|n| {
                n.wait_for(&format!("final {k}"), LONG, |v| {
                    v["event"] == "final" && slot(v) == Some(k)
                })
            })
            .collect();
        for f in &finals[1..] {
            assert_eq!(
                f["track_hash"], finals[0]["track_hash"],
                "slot {k}: {f} vs {}",
                finals[0]
            );
        }
        let proposer = finals[0]["proposer"].as_str().unwrap_or("-").to_owned();
        let track = finals[0]["track_hash"].as_str().unwrap().to_owned();
        eprintln!(
            "slot {k}: winner {} proposed by {}",
            &track[..8],
            who(radio, &proposer)
        );
        winners.insert(k, (proposer, track));
        let won = |i: usize| winners.values().any(|(p, _)| *p == radio.ids[i + 1]);
        if won(0) && won(1) {
            break;
        }
    }
    for (k, (_, track)) in &winners {
        for n in nodes {
            let playing = n.wait_for(&format!("{} plays slot {k}", n.name), LONG, |v| {
                v["event"] == "playing" && slot(v) == Some(*k)
            });
            assert_ne!(
                playing["substitute"], true,
                "{}: slot {k}: {playing}",
                n.name
            );
            assert!(
                n.events("unavailable").is_empty(),
                "{}: {:?}",
                n.name,
                n.events("unavailable")
            );
            let _ = track;
        }
    }
    let won = |i: usize| winners.values().any(|(p, _)| *p == radio.ids[i + 1]);
    assert!(
        won(0) && won(1),
        "each home wins a slot within {SLOTS_TO_WIN}: {winners:?}"
    );
    winners
}

fn who<'a>(radio: &Radio, peer: &'a str) -> &'a str {
    match radio.ids.iter().position(|p| p == peer) {
        Some(0) => "public",
        Some(1) => "home0",
        Some(2) => "home1",
        _ => peer,
    }
}

#[test]
fn cone_nat_homes_punch_a_direct_connection() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let spec = Spec::new()
        .public()
        .home(HomeSpec::new(1).link(wan()))
        .home(HomeSpec::new(1).link(wan()));
    let Some(tb) = Testbed::new_or_skip("cone_punch", &spec) else {
        return;
    };
    let tmp = tempdir();
    let radio = start(&tb, tmp.path());
    let [h0, h1] = &radio.homes;
    // Private behind their NATs, public on the internet.
    for home in [h0, h1] {
        home.wait_for("private", LONG, |v| {
            v["event"] == "reachability" && v["status"] == "private"
        });
    }
    radio.public.wait_for("public", LONG, |v| {
        v["event"] == "reachability" && v["status"] == "public"
    });
    let took = wait_direct(h0, &radio.ids[2], Duration::from_secs(120))
        .expect("home0 reaches home1 directly");
    eprintln!("direct connection between the homes after {took:?} (from the first check)");
    assert!(wait_direct(h1, &radio.ids[1], Duration::from_secs(30)).is_some());
    let punched = h0.events("hole_punched").len() + h1.events("hole_punched").len();
    assert!(
        punched > 0,
        "a hole was punched: {:?}",
        h0.events("hole_punch_failed")
    );
    let winners = agree_until_both_won(&radio);
    // Each home fetched the other's winner, some of it from the other home itself.
    for (i, home) in radio.homes.iter().enumerate() {
        let other = &radio.ids[2 - i];
        let entry = peer_entry(home, other).unwrap();
        eprintln!(
            "home{i} from home{}: {} bytes received, {} sent, route {}",
            1 - i,
            entry["exchange_bytes_received"],
            entry["exchange_bytes_sent"],
            entry["route"]
        );
        assert!(
            entry["exchange_bytes_received"].as_u64().unwrap_or(0) > 0,
            "home{i} received blocks from the other home directly: {entry}; winners {winners:?}"
        );
    }
}

#[test]
fn symmetric_nat_home_still_plays_every_winner() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let spec = Spec::new()
        .public()
        .home(HomeSpec::new(1).link(wan()))
        .home(HomeSpec::new(1).link(wan()).nat(Nat::Symmetric));
    let Some(tb) = Testbed::new_or_skip("symmetric", &spec) else {
        return;
    };
    let tmp = tempdir();
    let radio = start(&tb, tmp.path());
    let [h0, h1] = &radio.homes;
    agree_until_both_won(&radio);
    for (home, other) in [(h0, &radio.ids[2]), (h1, &radio.ids[1])] {
        let entry = peer_entry(home, other);
        assert!(
            entry.as_ref().is_none_or(|p| p["route"] != "direct"),
            "{}: no direct connection through a symmetric NAT: {entry:?}",
            home.name
        );
    }
    assert!(h0.events("hole_punched").is_empty() && h1.events("hole_punched").is_empty());
    let failed = h0.events("hole_punch_failed").len() + h1.events("hole_punch_failed").len();
    assert!(failed > 0, "hole punching was tried and failed");
    // Each played the other's winners (above) without a byte from the other home: they came
    // through the public node.
    for (i, home) in radio.homes.iter().enumerate() {
        let from_public = peer_entry(home, &radio.ids[0]).unwrap();
        let from_other = peer_entry(home, &radio.ids[2 - i]);
        eprintln!(
            "home{i}: {} bytes from the public node, {:?} from the other home",
            from_public["exchange_bytes_received"],
            from_other
                .as_ref()
                .map(|p| p["exchange_bytes_received"].clone())
        );
        assert!(
            from_other.is_none_or(|p| p["exchange_bytes_received"].as_u64().unwrap_or(0) == 0),
            "home{i} received blocks from the other home"
        );
    }
}
