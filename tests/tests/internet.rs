//! Ten nodes on the testbed (docs/testbed.md) as a community radio on the internet: a public
//! bootstrap node, a second public node, and eight homes behind cone NATs, every uplink
//! 40 ms +- 10 ms each way, 1 % loss each way and 5 Mbit/s up. Every joiner is given only the
//! bootstrap node's address. Needs root; skips elsewhere, never in CI. About 195 s.
//!
//! 1. Swarming on slow lossy links: once every joiner is enrolled (protocol 1.1), in each slot
//!    until five new tracks have won every node holds the winner before its slot (it starts
//!    with every segment), and the proposer of each new winner
//!    uploads at most 3 copies of it (a block's third copy is its last until its slot starts
//!    within 10 s: the swarm failed a peer that still lacks it then, and this test with it).
//! 2. A partition: the internet is cut between 7 nodes and 3 (the second public node and two
//!    homes) for two slots. Each side goes on deciding on its own, so their chains fork; after
//!    the repair the minority adopts the majority's chain (PROTOCOL.md 9) within two slots,
//!    logged (`fork`, `adopted`), and all ten agree again.

// Test code: one scenario read top to bottom.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_tests::internet::{Joiner, Radio, home_link, upload};
use chorus_tests::net::{Node, slot};
use chorus_tests::testbed::{HomeSpec, Spec, Testbed, Uplink};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(300);
/// New winners checked before the partition.
const SWARM_SLOTS: u64 = 5;
/// The minority: node indexes (1: public1, 8 and 9: home6 and home7).
const MINORITY: [usize; 3] = [1, 8, 9];

/// Every node's `final` for slot `k`.
fn finals(nodes: &[&Node], k: u64) -> Vec<Value> {
    nodes
        .iter()
        .map(|n| {
            n.wait_for(&format!("final {k}"), LONG, |v| {
                v["event"] == "final" && slot(v) == Some(k)
            })
        })
        .collect()
}

/// The winner all of `finals` agree on (panics naming the slot when they do not).
fn agreed(finals: &[Value], k: u64) -> Value {
    for f in &finals[1..] {
        assert_eq!(
            f["track_hash"], finals[0]["track_hash"],
            "slot {k}: {f} vs {}",
            finals[0]
        );
    }
    finals[0].clone()
}

/// Polls `node`'s status every 250 ms until it is connected to `peer` directly; the time it
/// took.
fn wait_direct(node: &Node, peer: &str, timeout: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        let direct = node.status()["peers"].as_array().is_some_and(|peers| {
            peers
                .iter()
                .any(|p| p["peer_id"] == peer && p["connected"] == true && p["route"] == "direct")
        });
        if direct {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// The network time now: the testbed's nodes run on this machine's clock.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn ten_nodes_on_slow_lossy_links_swarm_then_survive_a_partition() {
    let mut spec = Spec::new()
        .public_with(home_link())
        .public_with(home_link());
    for _ in 0..8 {
        spec = spec.home(HomeSpec::new(1).link(home_link()));
    }
    let Some(mut tb) = Testbed::new_or_skip("internet", &spec) else {
        return;
    };
    let tmp = chorus_tests::kept_tempdir();
    let names: Vec<String> = std::iter::once("public1".to_owned())
        .chain((0..8).map(|i| format!("home{i}")))
        .collect();
    let hosts = std::iter::once(tb.public(1)).chain((0..8).map(|i| tb.host(i, 0)));
    let joiners: Vec<Joiner<'_>> = names
        .iter()
        .zip(hosts)
        .map(|(name, host)| Joiner::new(name, host))
        .collect();
    let radio = Radio::start(
        tmp.path(),
        tb.public(0),
        // Every joiner has sent its Enroll by the first proposal that can carry it (published
        // at the start of slot 2) with room to spare: all are up about 16 s after the start.
        Duration::from_secs(25),
        &joiners,
        (3, 7.0),
        false,
    );
    let all: Vec<&Node> = radio.nodes.iter().collect();

    // 1. Winners held in time, the proposer's upload bounded.
    let mut copies = Vec::new();
    let mut checked = std::collections::BTreeSet::new();
    // Under protocol 1.1 a joiner proposes only once enrolled (PROTOCOL.md 12.3): until then
    // the creator alone proposes, and only tracks of the seed queue that every node fetched
    // from it as it joined. The slots checked begin when every joiner may propose.
    let eligible = radio.eligible_from();
    eprintln!("every joiner proposes from slot {eligible}");
    let mut k = eligible;
    while copies.len() < SWARM_SLOTS as usize {
        assert!(
            k < eligible + 2 * SWARM_SLOTS,
            "only {} new winners in slots {eligible}..{k}: {copies:?}",
            copies.len()
        );
        let fin = agreed(&finals(&all, k), k);
        for node in &all {
            let playing = node.wait_for(&format!("{} plays slot {k}", node.name), LONG, |v| {
                v["event"] == "playing" && slot(v) == Some(k)
            });
            assert!(
                playing["late"] != true
                    && playing["substitute"] != true
                    && playing["segments_held"] == playing["segments"],
                "{}: slot {k} started without every segment: {playing}",
                node.name
            );
        }
        let proposer = fin["proposer"].as_str().unwrap_or("-").to_owned();
        // A track played before (a seed track proposed again: the joiners fetched the seed
        // queue's tracks from the creator as they joined, and its upload counts them) is
        // held everywhere already; so is one that won a slot checked before. Node 0 has
        // played every slot before `eligible`.
        let played_before = radio.nodes[0]
            .events("playing")
            .iter()
            .any(|p| p["track_hash"] == fin["track_hash"] && slot(p).is_some_and(|s| s < k));
        let new = !played_before
            && fin["track_hash"]
                .as_str()
                .is_some_and(|t| checked.insert(t.to_owned()));
        match upload(&radio.nodes, &fin).filter(|_| new) {
            Some(u) => {
                eprintln!(
                    "slot {k}: winner by {}: proposer uploaded {:.2} copies, {} nodes served {:.2} copies",
                    radio.who(&proposer),
                    u.proposer_copies,
                    u.servers,
                    u.all_copies
                );
                copies.push((k, radio.who(&proposer).to_owned(), u.proposer_copies));
            }
            None => eprintln!("slot {k}: a replay or a track played before ({proposer})"),
        }
        k += 1;
    }
    let over: Vec<_> = copies.iter().filter(|(_, _, c)| *c > 3.0).collect();
    assert!(
        over.is_empty(),
        "proposers uploaded more than 3 copies (slot, proposer, copies): {over:?}"
    );

    // 2. The partition. The cut starts 3 s before slot c and lasts two slots, until slot
    // c + 5 is final everywhere: its proposals (published at start(c)), its decision (at the end
    // of its selection window in slot c + 1) and its finality (at start(c + 2)) happen on each
    // side alone.
    let minority: Vec<&Node> = MINORITY.iter().map(|&i| &radio.nodes[i]).collect();
    let majority: Vec<&Node> = (0..radio.nodes.len())
        .filter(|i| !MINORITY.contains(i))
        .map(|i| &radio.nodes[i])
        .collect();
    // The minority's homes reach its public node directly (found by discovery), so that the
    // minority is one network during the cut.
    for node in &minority[1..] {
        let took = wait_direct(node, &radio.ids[MINORITY[0]], Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{} never reached public1 directly", node.name));
        eprintln!("{} reaches public1 directly ({took:?} more)", node.name);
    }
    let status = radio.nodes[0].status();
    let (c, start_c) = status["next"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["slot"].as_u64()?, s["start_ms"].as_u64()?)))
        .find(|(_, start)| *start > now_ms() + 4000)
        .expect("a final slot starting in more than 4 s");
    // A deadline in network time, not an event: nothing happens 3 s before a slot.
    std::thread::sleep(Duration::from_millis(start_c - 3000 - now_ms()));
    tb.cut(&[Uplink::Public(1), Uplink::Home(6), Uplink::Home(7)])
        .unwrap();
    eprintln!(
        "cut before slot {c} at {} ms (slot {c} starts at {start_c})",
        now_ms()
    );
    for node in &minority {
        let peers = node.status()["peers"].clone();
        for p in peers.as_array().into_iter().flatten() {
            if p["connected"] == true {
                eprintln!(
                    "  {} -> {} at {} ({})",
                    node.name,
                    radio.who(p["peer_id"].as_str().unwrap_or("")),
                    p["address"],
                    p["route"]
                );
            }
        }
    }
    // Each side decides slot c + 5 on its own and makes it final at the start of slot c + 2:
    // two chains. The cut ends once every node has (a Decision from across the cut arriving
    // before a node's finality would still count there).
    let fork = c + 5;
    let theirs = agreed(&finals(&minority, fork), fork);
    let ours = agreed(&finals(&majority, fork), fork);
    tb.heal().unwrap();
    // The slot node 0 plays at the repair: two slots after the repair end before slot
    // `healed_in + 3` starts.
    let healed_in = radio.nodes[0]
        .events("phase")
        .last()
        .and_then(slot)
        .expect("node 0 is playing");
    eprintln!("healed in slot {healed_in}, after every node made slot {fork} final");
    assert_ne!(
        theirs["track_hash"], ours["track_hash"],
        "slot {fork} was decided apart"
    );
    // The minority kept playing during the cut.
    for node in &minority {
        node.wait_for(&format!("{} plays slot {}", node.name, c + 1), LONG, |v| {
            v["event"] == "playing" && slot(v) == Some(c + 1)
        });
    }
    // After the repair, within two slots, the minority adopts the majority's chain.
    for node in &minority {
        let adopted = node.wait_for(&format!("{} adopts", node.name), LONG, |v| {
            v["event"] == "adopted"
        });
        let fork_seen = node.events("fork");
        eprintln!(
            "{}: {} fork lines, adopted from slot {}",
            node.name,
            fork_seen.len(),
            adopted["from_slot"]
        );
        assert!(!fork_seen.is_empty(), "{}: the fork is logged", node.name);
        assert!(adopted["from_slot"].as_u64().unwrap() <= fork);
        let deadline = radio.nodes[0].wait_for(&format!("slot {}", healed_in + 3), LONG, |v| {
            v["event"] == "phase" && slot(v) == Some(healed_in + 3)
        });
        assert!(
            adopted["timestamp"].as_str() < deadline["timestamp"].as_str(),
            "{} adopted within two slots of the repair: {adopted} vs {deadline}",
            node.name
        );
    }
    for node in &majority {
        assert!(
            node.events("adopted").is_empty(),
            "{}: the majority keeps its chain",
            node.name
        );
    }
    // And all ten are on one chain: they agree on a slot decided after the repair, and their
    // chains hold the majority's winner at the fork.
    agreed(&finals(&all, c + 7), c + 7);
    for node in &all {
        let status = node.status();
        let winner = status["next"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| slot(s) == Some(fork))
            .map(|s| s["track"]["track_hash"].clone());
        if let Some(w) = winner {
            assert_eq!(w, ours["track_hash"], "{}: slot {fork}", node.name);
        }
    }
}
