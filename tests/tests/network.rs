//! Networks of real `chorus` processes on loopback (TCP), each with its own generated library,
//! as PROTOCOL.md describes them: bootstrap, join, agree, fetch, blacklist, late join, kill -9,
//! a peer serving corrupt blocks and a peer sending garbage gossip.
//!
//! Tracks are 7 s long (two segments), so a slot lasts 7 s. Each test waits for log events,
//! never for fixed times. The tests run one at a time (a shared lock): each starts several
//! debug-build nodes, and the machine may have two cores.

// Test code: each test is one scenario read top to bottom, however long.
#![allow(clippy::too_many_lines)]

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chorus_tests::net::{Node, bootstrap, join, library, s, slot, store_is_intact};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const LONG: Duration = Duration::from_secs(300);

fn is(event: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["event"] == event
}

fn at_slot(event: &'static str, k: u64) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == event && slot(v) == Some(k)
}

fn final_of(node: &Node, k: u64) -> String {
    node.wait_for(&format!("final slot={k}"), LONG, at_slot("final", k))["track_hash"]
        .as_str()
        .expect("final has a track_hash")
        .to_owned()
}

/// Four nodes with different libraries agree on every slot and hold each winner in full before
/// its slot; one of them blacklists a coming winner, diverges for that slot only (and any later
/// slot the same track wins again), and is seen
/// diverged by the others; a fifth node joins mid-track and is in consensus within one status
/// interval.
#[test]
fn four_nodes_agree_and_fetch_in_time_with_a_blacklist_and_a_late_joiner() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = chorus_tests::kept_tempdir();
    let root = tmp.path();
    let libs: Vec<PathBuf> = (1..=5)
        .map(|i| library(&root.join(format!("lib{i}")), i, 6))
        .collect();
    let (a, network, addr) = bootstrap(root, &libs[0], "in 15s", &[]);
    let b = join(root, "b", &libs[1], &network, &[&addr], &[]);
    let c = join(root, "c", &libs[2], &network, &[&addr], &[]);
    let d = join(root, "d", &libs[3], &network, &[&addr], &[]);
    let nodes = [&a, &b, &c, &d];

    // d blacklists the winner of slot 8 as soon as it is final (at start(6)).
    let banned = final_of(&d, 8);
    let out = d.blacklist(&["add", &banned]);
    assert!(out.contains("added"), "{out}");
    let diverged = d.wait_for("d diverged in slot 8", LONG, at_slot("diverged", 8));
    assert_eq!(diverged["reason"], "blacklisted", "{diverged}");
    let playing = d.wait_for("d plays slot 8", LONG, at_slot("playing", 8));
    assert_eq!(playing["substitute"], true, "{playing}");
    let status = d.status();
    assert_eq!(
        status["diverged"], true,
        "d's status during slot 8: {status}"
    );
    assert_eq!(status["playing"]["substitute"], true, "{status}");
    let d_id = d.status()["identity"]
        .as_str()
        .expect("identity")
        .to_owned();
    for other in [&a, &b, &c] {
        other.wait_for("the others see d diverged", LONG, |v| {
            v["event"] == "peer" && v["peer"] == d_id.as_str() && v["to"] == "diverged"
        });
    }

    // A late joiner, mid-track in slot 9.
    let nine = a.wait_for("slot 9 playing", LONG, at_slot("playing", 9));
    let _ = nine;
    let e = join(root, "e", &libs[4], &network, &[&addr], &[]);
    let joined = e.wait_for("e joined", LONG, is("joined"));
    let joined_slot = slot(&joined).expect("joined has a slot");
    let playing = e.wait_for("e playing", LONG, |v| {
        v["event"] == "playing" && slot(v).is_some_and(|k| k >= joined_slot)
    });
    let (t_join, t_play) = (timestamp(&joined), timestamp(&playing));
    assert!(
        t_play - t_join <= 5.0,
        "the late joiner took {:.1} s from joining to playing",
        t_play - t_join
    );

    // d is back in consensus at slot 9: the others see it in sync again.
    for other in [&a, &b, &c] {
        other.wait_for("the others see d back", LONG, |v| {
            v["event"] == "peer" && v["peer"] == d_id.as_str() && v["to"] == "in sync"
        });
    }

    // Every node, the joiner included, decides the same winner for slots 5 ..= 12.
    for k in 5..=12 {
        let expected = final_of(&a, k);
        for n in nodes.iter().skip(1) {
            assert_eq!(final_of(n, k), expected, "{} disagrees at slot {k}", n.name);
        }
        if k > joined_slot + 3 {
            assert_eq!(
                final_of(&e, k),
                expected,
                "the late joiner disagrees at slot {k}"
            );
        }
    }
    // Every winner was held in full before its slot began.
    for n in nodes {
        for k in 5..=12 {
            let p = n.wait_for(
                &format!("{} playing slot {k}", n.name),
                LONG,
                at_slot("playing", k),
            );
            // The banned track may win again later (a replay): d substitutes it each time.
            if n.name == "d" && final_of(&a, k) == banned {
                assert_eq!(p["substitute"], true, "{p}");
                continue;
            }
            assert_eq!(
                p["segments_held"], p["segments"],
                "{} slot {k}: {p}",
                n.name
            );
            assert!(p["late"].is_null(), "{} started slot {k} late: {p}", n.name);
        }
        assert!(
            n.events("diverged").iter().all(|v| n.name == "d"
                && v["reason"] == "blacklisted"
                && slot(v).is_some_and(|k| final_of(&a, k) == banned)),
            "{} diverged: {:?}",
            n.name,
            n.events("diverged")
        );
    }
    // d proposed nothing while diverged (the proposal window of slot 13 lies in slot 8).
    assert!(
        d.events("proposed").iter().all(|v| slot(v) != Some(13)),
        "d proposed for slot 13 while diverged"
    );
    // The joiner's chain is the others'.
    let (sa, se) = (a.status(), e.status());
    let len = sa["chain"]["len"]
        .as_u64()
        .expect("len")
        .min(se["chain"]["len"].as_u64().expect("len"));
    assert!(len >= 13);
    assert_eq!(sa["network"]["id"], se["network"]["id"]);
    // The network's name, from the genesis, for the joiner too.
    assert_eq!(se["network"]["name"], "Test Radio");
    enrollment_of_founders_and_joiner(&nodes, &e, &joined);
    reachable_and_meshed(&nodes, &e);
}

/// On one machine every node is reachable: none took itself for private (a bootstrap node
/// whose AutoNAT tests failed turned DHT client, and a joiner then found no peer through it,
/// connected to the bootstrap node only). The joiner is connected to every founder.
fn reachable_and_meshed(nodes: &[&Node; 4], e: &Node) {
    for n in nodes.iter().copied().chain([e]) {
        let private: Vec<Value> = n
            .events("reachability")
            .into_iter()
            .filter(|v| v["status"] == "private")
            .collect();
        assert!(
            private.is_empty(),
            "{} took itself for private: {private:?}",
            n.name
        );
    }
    let met: std::collections::BTreeSet<String> = e
        .events("peer_connected")
        .iter()
        .filter_map(|v| v["peer"].as_str().map(str::to_owned))
        .collect();
    assert!(met.len() >= 4, "the joiner met only {met:?}");
}

/// PROTOCOL.md 12.3 on real processes: the creator is enrolled in the genesis; the three other
/// founders within `enroll_delay + 2` slots (a proposal of the creator carried their Enrolls);
/// the late joiner enrolls, proposes once eligible, and agrees on every slot meanwhile.
fn enrollment_of_founders_and_joiner(nodes: &[&Node; 4], e: &Node, joined: &Value) {
    let delay = 7; // chorus_tests::net::TEST_RULES
    let creator = nodes[0].wait_for("the creator's enrollment", LONG, is("enrollment"));
    assert_eq!(creator["enrolled_at"], 0, "{creator}");
    for n in &nodes[1..] {
        let enrolled = n.wait_for(&format!("{} enrolled", n.name), LONG, is("enrolled"));
        let at = slot(&enrolled).expect("enrolled names its slot");
        assert!(at <= delay + 2, "{} enrolled at slot {at}", n.name);
        assert_eq!(enrolled["eligible_from"], at + delay, "{enrolled}");
        let status = n.status();
        assert_eq!(status["enrollment"]["enrolled_at"], at, "{status}");
        assert!(
            status["enrollment"]["roster"].as_u64() >= Some(4),
            "{status}"
        );
    }
    let enrolled = e.wait_for("the joiner enrolled", LONG, is("enrolled"));
    let eligible_from = enrolled["eligible_from"].as_u64().expect("eligible_from");
    let first = e.wait_for("the joiner proposes", LONG, is("proposed"));
    let k = slot(&first).expect("proposed names its slot");
    assert!(
        k >= eligible_from,
        "proposed for {k} before {eligible_from}"
    );
    let wait = timestamp(&first) - timestamp(joined);
    println!(
        "join to first proposal: {wait:.1} s (joined in slot {}, enrolled at {}, first proposal for slot {k})",
        joined["slot"], enrolled["slot"]
    );
    // Every slot up to the one the joiner first proposed for was agreed on by all five. The
    // joiner logs `final` from the first slot its synced chain did not hold (13, or 14 when its
    // start-up ends after slot 13 became final at start(10)), the slots it only follows
    // included, whether a Decision or a peer's chain made them final.
    let synced = joined_slot_of(joined) + 4;
    let own_from = e
        .events("final")
        .iter()
        .filter_map(slot)
        .min()
        .expect("the joiner decided slots");
    assert!(
        own_from <= synced + 1,
        "the joiner's first own final is slot {own_from}, joined in {}",
        joined["slot"]
    );
    for j in 13..=k {
        let expected = final_of(nodes[0], j);
        for n in &nodes[1..] {
            assert_eq!(final_of(n, j), expected, "{} disagrees at slot {j}", n.name);
        }
        if j >= own_from {
            assert_eq!(final_of(e, j), expected, "the joiner disagrees at slot {j}");
        }
    }
}

fn joined_slot_of(joined: &Value) -> u64 {
    slot(joined).expect("joined names its slot")
}

fn timestamp(v: &Value) -> f64 {
    // RFC 3339 from tracing: 2026-01-01T12:34:56.789012Z; seconds of the day are enough here.
    let t = v["timestamp"].as_str().expect("timestamp");
    let time = t
        .split('T')
        .nth(1)
        .expect("time part")
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next().and_then(|x| x.parse().ok()).expect("hours");
    let m: f64 = parts.next().and_then(|x| x.parse().ok()).expect("minutes");
    let sec: f64 = parts.next().and_then(|x| x.parse().ok()).expect("seconds");
    h * 3600.0 + m * 60.0 + sec
}

/// A provider that serves corrupt blocks is caught and banned and the blocks come from another
/// provider; the same peer's garbage gossip disturbs nobody; a node killed with -9 in the middle
/// of its fetches resumes from disk with an intact store and the same chain.
#[test]
fn corrupt_provider_garbage_gossip_and_kill9_mid_fetch() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = chorus_tests::kept_tempdir();
    let root = tmp.path();
    let lib_a = library(&root.join("lib-a"), 11, 6);
    let lib_c = library(&root.join("lib-c"), 13, 6);
    let (a, network, addr) = bootstrap(root, &lib_a, "in 10s", &[]);
    // b holds the same library as a, serves every block corrupted and sends garbage gossip.
    let b = join(
        root,
        "b",
        &lib_a,
        &network,
        &[&addr],
        &[s("--serve-corrupt-blocks"), s("--send-garbage")],
    );
    let b_addr = b.address();
    let b_id = b_addr.rsplit('/').next().expect("peer id").to_owned();
    let mut c = join(root, "c", &lib_c, &network, &[&addr, &b_addr], &[]);

    // c fetches the genesis tracks from a and b; b's blocks are caught.
    let corrupt = c.wait_for("c catches a corrupt block", LONG, is("corrupt_block"));
    assert_eq!(corrupt["peer"], b_id.as_str(), "{corrupt}");
    // The log line comes just before the status snapshot that counts it: poll for a moment.
    let b_row = || {
        c.status()["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["peer_id"] == b_id.as_str()).cloned())
            .expect("b in c's peers")
    };
    let counted = std::time::Instant::now() + Duration::from_secs(10);
    let mut row = b_row();
    while row["corrupt_blocks"].as_u64().unwrap_or(0) == 0 && std::time::Instant::now() < counted {
        std::thread::sleep(Duration::from_millis(50));
        row = b_row();
    }
    assert!(row["corrupt_blocks"].as_u64().unwrap_or(0) >= 1, "{row}");
    // Kill c in the middle of its fetches, then restart it from disk.
    c.wait_for("c fetched a track", LONG, is("fetched"));
    c.kill9();
    let blocks = store_is_intact(&c.data_dir).expect("c's store is intact after kill -9");
    assert!(blocks > 0);
    let before = c.event_count();
    c.restart(&[s("--peer"), addr.clone()]);
    c.wait_for_from(before, "c resumes", LONG, |v| v["event"] == "genesis");

    // Everyone agrees on slots 5 ..= 8 despite b's garbage; a and c log b's violations.
    for k in 5..=8 {
        let expected = final_of(&a, k);
        assert_eq!(final_of(&c, k), expected, "c disagrees at slot {k}");
    }
    let violations: Vec<Value> = a.events("violation");
    assert!(
        violations.iter().any(|v| v["peer"] == b_id.as_str()),
        "a logged no violation by b: {violations:?}"
    );
    // c played the winners of slots 5 ..= 8 with every segment held, none from b.
    for k in 5..=8 {
        let p = c.wait_for_from(
            before,
            &format!("c playing slot {k}"),
            LONG,
            at_slot("playing", k),
        );
        assert_eq!(p["segments_held"], p["segments"], "slot {k}: {p}");
    }
    assert!(
        a.events("diverged").is_empty(),
        "{:?}",
        a.events("diverged")
    );
    let blocks = store_is_intact(&c.data_dir).expect("c's store holds no corrupt block");
    assert!(blocks > 0);
    // c's chain after the restart is a's.
    let (sa, sc) = (a.status(), c.status());
    assert_eq!(sa["network"]["id"], sc["network"]["id"]);
    let k = 8;
    assert_eq!(final_of(&a, k), final_of(&c, k));
}
