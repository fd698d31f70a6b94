//! Real nodes on the testbed (docs/testbed.md): one public bootstrap node and two homes, each
//! behind its own NAT, on links with 10 ms of delay each way. The homes are given only the
//! public node's address. Behind cone NATs they must punch a hole (AutoNAT finds them private,
//! they reserve a relay slot on the public node, the relayed connection is upgraded by DCUtR)
//! and fetch each other's winners directly; behind a symmetric NAT hole punching must fail and
//! every winner still plays, fetched through the public node. Two nodes in one home find each
//! other by mDNS and fetch each other's winners over their LAN. On a testbed with IPv6 beside
//! IPv4, a home joins the public node over IPv6 (NAT66) on the default listen addresses. Needs
//! root; skips elsewhere, never in CI.
//!
//! All three propose; from slot 5 on the test follows every slot until each home has won one
//! (usually within a few slots: a home wins a slot with probability about 1/3).

// Test code: each test is one scenario read top to bottom.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chorus_tests::internet::{Joiner, Radio};
use chorus_tests::net::{Node, slot};
use chorus_tests::testbed::{HomeSpec, Host, Link, Nat, Shape, Spec, Testbed};
use serde_json::Value;

const MS: Duration = Duration::from_millis(1);
const LONG: Duration = Duration::from_secs(300);
/// Slots (from slot 5) in which each home must have won once. The homes are enrolled at slot 7
/// and eligible from 14 (PROTOCOL.md 12.3, `enroll_delay` 7 in test networks); with a chance
/// of 1/3 a slot, a home loses all 31 slots from 14 to 44 with probability (2/3)^31 = 3.5e-6.
const SLOTS_TO_WIN: u64 = 40;

/// The testbed's hosts run many processes each: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn wan() -> Link {
    Link::both(Shape::wire().delay(10 * MS))
}

/// The public node, then a node on each of `hosts` given only the public node's address
/// (`lan`: with mDNS on), named home0 and home1.
fn start(tb: &Testbed, root: &Path, hosts: [&Host; 2], lan: bool) -> Radio {
    let joiners = [
        Joiner::new("home0", hosts[0]),
        Joiner::new("home1", hosts[1]),
    ];
    Radio::start(
        root,
        tb.public(0),
        Duration::from_secs(25),
        &joiners,
        (6, 7.0),
        lan,
    )
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
    wait_peer(node, peer, timeout, |p| {
        p["connected"] == true && p["route"] == "direct"
    })
}

/// Polls `node`'s status every 250 ms until its entry for `peer` passes `ok`; the time it took.
fn wait_peer(
    node: &Node,
    peer: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if peer_entry(node, peer).is_some_and(|p| ok(&p)) {
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
    let nodes = &radio.nodes;
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
            radio.who(&proposer)
        );
        winners.insert(k, (proposer, track));
        let won = |i: usize| winners.values().any(|(p, _)| *p == radio.ids[i + 1]);
        if won(0) && won(1) {
            break;
        }
    }
    for (k, (_, track)) in &winners {
        for n in nodes.iter() {
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
    let tmp = chorus_tests::kept_tempdir();
    let radio = start(&tb, tmp.path(), [tb.host(0, 0), tb.host(1, 0)], false);
    let [_, h0, h1] = &radio.nodes[..] else {
        unreachable!()
    };
    // Private behind their NATs, public on the internet.
    for home in [h0, h1] {
        home.wait_for("private", LONG, |v| {
            v["event"] == "reachability" && v["status"] == "private"
        });
    }
    radio.nodes[0].wait_for("public", LONG, |v| {
        v["event"] == "reachability" && v["status"] == "public"
    });
    // DHT clients behind their NATs (their addresses are of no use to others), a server on
    // the internet: the mode follows the reachability, not a relay circuit's address.
    for home in [h0, h1] {
        home.wait_for("DHT client", LONG, |v| {
            v["event"] == "dht_mode" && v["mode"] == "client"
        });
    }
    let modes = radio.nodes[0].events("dht_mode");
    assert!(
        modes.last().is_none_or(|m| m["mode"] == "server"),
        "the public node serves the DHT (a server from the start): {modes:?}"
    );
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
    for (i, home) in radio.nodes[1..].iter().enumerate() {
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
    let tmp = chorus_tests::kept_tempdir();
    let radio = start(&tb, tmp.path(), [tb.host(0, 0), tb.host(1, 0)], false);
    let [_, h0, h1] = &radio.nodes[..] else {
        unreachable!()
    };
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
    for (i, home) in radio.nodes[1..].iter().enumerate() {
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

#[test]
fn two_nodes_in_one_home_find_each_other_by_mdns_and_fetch_over_the_lan() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let spec = Spec::new().public().home(HomeSpec::new(2).link(wan()));
    let Some(tb) = Testbed::new_or_skip("mdns", &spec) else {
        return;
    };
    let tmp = chorus_tests::kept_tempdir();
    // Both are given only the public node's address.
    let radio = start(&tb, tmp.path(), [tb.host(0, 0), tb.host(0, 1)], true);
    let lan = |node: &Node, other: &str| {
        node.wait_for(&format!("{} finds {other} by mDNS", node.name), LONG, |v| {
            v["event"] == "mdns_discovered" && v["peer"] == other
        });
        let took = wait_peer(node, other, Duration::from_secs(60), on_lan).unwrap_or_else(|| {
            panic!(
                "{}: no LAN connection: {:?}",
                node.name,
                peer_entry(node, other)
            )
        });
        eprintln!("{} reaches {other} over the LAN after {took:?}", node.name);
    };
    lan(&radio.nodes[1], &radio.ids[2]);
    lan(&radio.nodes[2], &radio.ids[1]);
    let winners = agree_until_both_won(&radio);
    // Each fetched the other's winner, some of it from the other over the LAN: the home's
    // uplink carried it up once at most.
    for (i, node) in radio.nodes[1..].iter().enumerate() {
        let other = &radio.ids[2 - i];
        let entry = peer_entry(node, other).unwrap();
        eprintln!(
            "home{i} from home{}: {} bytes received, {} sent, over {}",
            1 - i,
            entry["exchange_bytes_received"],
            entry["exchange_bytes_sent"],
            entry["address"]
        );
        assert!(
            entry["exchange_bytes_received"].as_u64().unwrap_or(0) > 0,
            "home{i} received blocks from the other over the LAN: {entry}; winners {winners:?}"
        );
        assert!(on_lan(&entry), "still over the LAN: {entry}");
    }
}

/// Whether a /status peer entry is connected directly over the home's LAN (10.1.0.0/24).
fn on_lan(entry: &Value) -> bool {
    entry["connected"] == true
        && entry["route"] == "direct"
        && entry["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("/ip4/10.1.0."))
}

/// A public node and a home both on the node's default listen addresses (TCP and QUIC on every
/// IPv4 and IPv6 address) on a testbed with IPv6 beside IPv4: the home, given only the public
/// node's IPv6 address, joins over IPv6 through its router's NAT66, and both decide the same
/// winners.
#[test]
fn nodes_on_their_default_addresses_join_and_agree_over_ipv6() {
    use chorus_tests::internet::identity;
    use chorus_tests::net::{NodeSpec, bootstrap_args, join_args, library_of, write_seed_queue};

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let spec = Spec::new()
        .ipv6()
        .public()
        .home(HomeSpec::new(1).link(wan()));
    let Some(tb) = Testbed::new_or_skip("ipv6", &spec) else {
        return;
    };
    let tmp = chorus_tests::kept_tempdir();
    let root = tmp.path();
    let lib = library_of(&root.join("lib-public"), 1, 5, 7.0);
    let queue = root.join("seed.toml");
    write_seed_queue(&queue, &lib, "in 15s", chorus_tests::net::TEST_RULES);
    let public = Node::start_on_default_listen(
        tb.public(0),
        NodeSpec {
            name: "public",
            root,
            command: "bootstrap",
            args: bootstrap_args(&queue, &lib),
        },
    );
    let network = public.wait_stdout("network ", LONG);
    let public_id = identity(&public, LONG);
    let public6 = tb.public(0).addr6().expect("an IPv6 testbed");
    let peer = format!("/ip6/{public6}/tcp/4747/p2p/{public_id}");
    let home_lib = library_of(&root.join("lib-home"), 2, 3, 7.0);
    let home = Node::start_on_default_listen(
        tb.host(0, 0),
        NodeSpec {
            name: "home0",
            root,
            command: "run",
            args: join_args(&home_lib, &network, &peer),
        },
    );
    let home_id = identity(&home, LONG);

    // The home reaches the public node at its IPv6 address; the public node sees the home's
    // router's (NAT66), never the home's own ULA.
    let over_ipv6 = |p: &Value, addr: &str| {
        p["connected"] == true && p["address"].as_str().is_some_and(|a| a.contains(addr))
    };
    let public6 = format!("/ip6/{public6}/");
    let took = wait_peer(&home, &public_id, LONG, |p| over_ipv6(p, &public6))
        .unwrap_or_else(|| panic!("no IPv6 connection: {:?}", peer_entry(&home, &public_id)));
    eprintln!("home0 reached the public node over IPv6 after {took:?}");
    let router6 = format!("/ip6/{}/", tb.host(0, 0).public_addr6().unwrap());
    let seen = wait_peer(&public, &home_id, LONG, |p| over_ipv6(p, &router6));
    assert!(
        seen.is_some(),
        "the public node sees the home at its router's IPv6 address: {:?}",
        peer_entry(&public, &home_id)
    );
    let own6 = tb.host(0, 0).addr6().unwrap().to_string();
    let entry = peer_entry(&public, &home_id).unwrap();
    assert!(
        !entry["address"].as_str().unwrap_or("").contains(&own6),
        "{entry}"
    );

    // Both decide and play the first consensus slots alike.
    for k in 5..7 {
        let finals: Vec<Value> = [&public, &home]
            .iter()
            .map(|n| {
                n.wait_for(&format!("final {k}"), LONG, |v| {
                    v["event"] == "final" && slot(v) == Some(k)
                })
            })
            .collect();
        assert_eq!(finals[0]["track_hash"], finals[1]["track_hash"], "slot {k}");
        home.wait_for(&format!("home0 plays slot {k}"), LONG, |v| {
            v["event"] == "playing" && slot(v) == Some(k)
        });
    }
}
