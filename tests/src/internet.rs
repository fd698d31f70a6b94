//! A radio on the testbed (docs/testbed.md): a public bootstrap node and joiners on other
//! hosts (public or behind home NATs), each given only the bootstrap node's address, as a
//! community radio on the internet starts. Shared by the tests of `tests/internet.rs` and
//! `tests/nat.rs` and by `bench-network internet`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::net::{Node, NodeSpec, bootstrap_args, join_args, library_of, write_seed_queue};
use crate::testbed::{Host, Jitter, Link, Shape};

/// Every node listens on TCP and QUIC, port 4747 of every interface.
pub const LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4747", "/ip4/0.0.0.0/udp/4747/quic-v1"];

const MS: Duration = Duration::from_millis(1);

/// A home's link to the internet as the real-internet issue describes it: 40 ms +- 10 ms
/// (normal) each way, 1 % loss each way, 5 Mbit/s up.
pub fn home_link() -> Link {
    let wan = || {
        Shape::wire()
            .delay(40 * MS)
            .jitter(10 * MS, Jitter::Normal)
            .loss(0.01)
    };
    Link::new(wan().rate(5_000_000), wan())
}

/// The node's peer id, from its status once its HTTP API is up and the driver has published
/// a first snapshot.
pub fn identity(node: &Node, timeout: Duration) -> String {
    node.wait_for("http", timeout, |v| v["event"] == "http");
    let start = Instant::now();
    loop {
        if let Some(id) = node.status()["identity"].as_str() {
            return id.to_owned();
        }
        assert!(
            start.elapsed() < timeout,
            "{} never published its status",
            node.name
        );
        std::thread::sleep(100 * MS);
    }
}

/// A node to start on the testbed after the bootstrap node.
pub struct Joiner<'a> {
    /// Its name (and folder).
    pub name: &'a str,
    /// Where it runs.
    pub host: &'a Host,
    /// More `run` arguments (an audio sink, a clock skew).
    pub extra: Vec<String>,
}

impl<'a> Joiner<'a> {
    /// A joiner with no extra arguments.
    pub fn new(name: &'a str, host: &'a Host) -> Self {
        Joiner {
            name,
            host,
            extra: Vec::new(),
        }
    }
}

/// Rules added to [`crate::net::TEST_RULES`] for a radio on the testbed: every joiner's Enroll
/// fits in the creator's first winning proposal (the default, 4 per slot, takes three of them
/// for nine joiners), so the homes propose from about slot 12 rather than 16.
pub const RADIO_RULES: &str = "enroll_per_slot = 12";

/// A radio's nodes: the bootstrap node first, then the joiners in the order of their hosts.
pub struct Radio {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Their peer ids, in the same order.
    pub ids: Vec<String>,
    /// The network id.
    pub network: String,
    /// The bootstrap node's address (`/ip4/…/tcp/4747/p2p/…`).
    pub peer: String,
}

impl Radio {
    /// Starts a bootstrap node on `public` whose seed queue starts `start_in` from now (its
    /// library: 5 tracks of 7 s), then a joiner on each host of `joiners` (`lan`: mDNS on),
    /// with its name, with a library of `tracks` tracks of `seconds` each, given only the
    /// bootstrap node's address.
    pub fn start(
        root: &Path,
        public: &Host,
        start_in: Duration,
        joiners: &[Joiner<'_>],
        (tracks, seconds): (usize, f64),
        lan: bool,
    ) -> Radio {
        let lib = library_of(&root.join("lib-public"), 1, 5, 7.0);
        let queue = root.join("seed.toml");
        write_seed_queue(
            &queue,
            &lib,
            &format!("in {}s", start_in.as_secs()),
            &format!("{}\n{RADIO_RULES}", crate::net::TEST_RULES),
        );
        let first = Node::start_on(
            public,
            NodeSpec {
                name: "public",
                root,
                command: "bootstrap",
                args: bootstrap_args(&queue, &lib),
            },
            &LISTEN,
        );
        let long = Duration::from_secs(300);
        let network = first.wait_stdout("network ", long);
        let first_id = identity(&first, long);
        let peer = format!("/ip4/{}/tcp/4747/p2p/{first_id}", public.addr());
        let mut nodes = vec![first];
        for (i, joiner) in joiners.iter().enumerate() {
            nodes.push(Self::join(
                root,
                joiner,
                10 + i as u64,
                (tracks, seconds),
                &network,
                &peer,
                lan,
            ));
        }
        let mut ids = vec![first_id];
        ids.extend(nodes[1..].iter().map(|n| identity(n, long)));
        Radio {
            nodes,
            ids,
            network,
            peer,
        }
    }

    /// Starts `joiner` on `network` given only `peer`, with a library of `tracks` tracks of
    /// `seconds` made from `seed`.
    pub fn join(
        root: &Path,
        joiner: &Joiner<'_>,
        seed: u64,
        (tracks, seconds): (usize, f64),
        network: &str,
        peer: &str,
        lan: bool,
    ) -> Node {
        let name = joiner.name;
        let lib = library_of(&root.join(format!("lib-{name}")), seed, tracks, seconds);
        let mut args = join_args(&lib, network, peer);
        args.extend(joiner.extra.iter().cloned());
        let spec = NodeSpec {
            name,
            root,
            command: "run",
            args,
        };
        if lan {
            Node::start_on_lan(joiner.host, spec, &LISTEN)
        } else {
            Node::start_on(joiner.host, spec, &LISTEN)
        }
    }

    /// Waits until every joiner is enrolled (PROTOCOL.md 12.3: until then the creator alone
    /// proposes, and only the tracks of its seed queue, which every node fetched from it as it
    /// joined); the slot from which they all may propose.
    pub fn eligible_from(&self) -> u64 {
        self.nodes[1..]
            .iter()
            .map(|n| {
                let long = Duration::from_secs(300);
                let enrolled = n.wait_for(&format!("{} enrolled", n.name), long, |v| {
                    v["event"] == "enrolled"
                });
                enrolled["eligible_from"]
                    .as_u64()
                    .expect("`enrolled` names eligible_from")
            })
            .max()
            .unwrap_or(0)
    }

    /// The name of the node with peer id `peer` (the id itself for a stranger).
    pub fn who<'a>(&'a self, peer: &'a str) -> &'a str {
        match self.ids.iter().position(|p| p == peer) {
            Some(i) => &self.nodes[i].name,
            None => peer,
        }
    }
}

/// What a slot's winner cost its proposer: bytes served of it, in copies of the track.
#[derive(Debug, Clone, Copy)]
pub struct Upload {
    /// The proposer's upload of the winner over the track's size.
    pub proposer_copies: f64,
    /// Everyone's upload of it over the track's size.
    pub all_copies: f64,
    /// How many nodes served some of it.
    pub servers: usize,
}

/// The upload of the winner named by the `final` line `fin`, from every node's `/status`
/// (`served`, bytes per manifest) and the track's size (the largest `fetched` of it). `None`
/// when the proposer is unknown (a replay) or nobody fetched it.
pub fn upload(nodes: &[Node], fin: &Value) -> Option<Upload> {
    let proposer = fin["proposer"].as_str()?;
    let manifest = fin["manifest_id"].as_str()?;
    let mut by_proposer = 0u64;
    let mut total = 0u64;
    let mut servers = 0;
    let mut track_bytes = 0u64;
    for node in nodes {
        let status = node.status();
        let served = status["served"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["manifest_id"] == manifest)
            .and_then(|s| s["bytes"].as_u64())
            .unwrap_or(0);
        if served > 0 {
            servers += 1;
        }
        total += served;
        if status["identity"] == proposer {
            by_proposer = served;
        }
        for e in node.events("fetched") {
            if e["track_hash"] == fin["track_hash"] {
                track_bytes = track_bytes.max(e["bytes"].as_u64().unwrap_or(0));
            }
        }
    }
    (track_bytes > 0).then(|| Upload {
        proposer_copies: by_proposer as f64 / track_bytes as f64,
        all_copies: total as f64 / track_bytes as f64,
        servers,
    })
}
