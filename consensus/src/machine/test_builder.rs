//! `TestBuilder`: a few state machines on virtual time over a scripted network, driven by hand.

use std::collections::BTreeMap;

use libp2p_identity::PeerId;

use super::{Action, Consensus};
use crate::chain::Chain;
use crate::envelope::Envelope;
use crate::genesis::tests::signed_genesis;
use crate::hash::Hash32;
use crate::message::Message;
use crate::testing::keypair;
use crate::track::TrackRef;
use crate::track::tests::track;

/// Decides whether a gossip message from node `from` to node `to` is lost.
type DropRule = Box<dyn Fn(usize, usize, &Message) -> bool>;

/// Builds a [`TestNet`].
pub(crate) struct TestBuilder {
    nodes: usize,
    latency_ms: u64,
    libraries: BTreeMap<usize, Vec<TrackRef>>,
    drop: DropRule,
}

impl TestBuilder {
    /// `nodes` nodes, each with a library of three tracks of its own, 50 ms latency, no loss.
    pub(crate) fn new(nodes: usize) -> TestBuilder {
        let libraries = (0..nodes)
            .map(|i| {
                let tracks = (0..3)
                    .map(|j| track(&format!("node {i} track {j}"), 90_000 + 10_000 * j))
                    .collect();
                (i, tracks)
            })
            .collect();
        TestBuilder {
            nodes,
            latency_ms: 50,
            libraries,
            drop: Box::new(|_, _, _| false),
        }
    }

    /// Replaces node `i`'s library.
    pub(crate) fn library(mut self, i: usize, tracks: Vec<TrackRef>) -> TestBuilder {
        self.libraries.insert(i, tracks);
        self
    }

    /// Loses the gossip messages for which `rule(from, to, message)` holds.
    pub(crate) fn drop_if(
        mut self,
        rule: impl Fn(usize, usize, &Message) -> bool + 'static,
    ) -> TestBuilder {
        self.drop = Box::new(rule);
        self
    }

    /// Starts every node one second before the genesis start.
    pub(crate) fn build(self) -> TestNet {
        let genesis = signed_genesis();
        let nodes: Vec<Consensus> = (0..self.nodes)
            .map(|i| {
                let seed = u8::try_from(10 + i).expect("tests use few nodes");
                let mut node = Consensus::new(keypair(seed), Chain::new(&genesis));
                node.set_library(self.libraries.get(&i).cloned().unwrap_or_default());
                node
            })
            .collect();
        TestNet {
            now: genesis.genesis().start_ms - 1_000,
            nodes,
            latency_ms: self.latency_ms,
            drop: self.drop,
            queue: BTreeMap::new(),
            seq: 0,
            violations: Vec::new(),
        }
    }
}

enum Delivery {
    Gossip { source: PeerId, envelope: Envelope },
    Fetched(Vec<Envelope>),
}

/// Running state machines and the messages in flight between them.
pub(crate) struct TestNet {
    pub(crate) now: u64,
    pub(crate) nodes: Vec<Consensus>,
    latency_ms: u64,
    drop: DropRule,
    queue: BTreeMap<(u64, u64), (usize, Delivery)>,
    seq: u64,
    /// `(reporting node, reason)` of every Violation action.
    pub(crate) violations: Vec<(usize, String)>,
}

impl TestNet {
    fn send(&mut self, to: usize, delay: u64, delivery: Delivery) {
        self.seq += 1;
        self.queue
            .insert((self.now + delay, self.seq), (to, delivery));
    }

    /// Executes node `i`'s actions.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].poll_action() {
            match action {
                Action::Publish { envelope, .. } => {
                    let message = envelope
                        .clone()
                        .open(self.nodes[i].chain().network_id())
                        .expect("nodes publish valid messages")
                        .message;
                    let source = *self.nodes[i].peer_id();
                    for to in (0..self.nodes.len()).filter(|to| *to != i) {
                        if !(self.drop)(i, to, &message) {
                            let envelope = envelope.clone();
                            self.send(to, self.latency_ms, Delivery::Gossip { source, envelope });
                        }
                    }
                }
                Action::FetchProposals { peer, slot, ids } => {
                    let Some(from) = self.nodes.iter().position(|n| *n.peer_id() == peer) else {
                        continue;
                    };
                    let envelopes = self.nodes[from].proposal_envelopes(slot, &ids);
                    self.send(i, 2 * self.latency_ms, Delivery::Fetched(envelopes));
                }
                Action::Decided(_) => {}
                Action::Violation { reason, .. } => self.violations.push((i, reason)),
            }
        }
    }

    /// Advances to the next event (a delivery or a timeout) and handles it; false if none.
    pub(crate) fn step(&mut self) -> bool {
        let next_delivery = self.queue.keys().next().map(|(at, _)| *at);
        let next_timeout = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
        let Some(next) = [next_delivery, next_timeout].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (to, delivery) = entry.remove();
            match delivery {
                Delivery::Gossip { source, envelope } => {
                    self.nodes[to].handle_message(self.now, source, envelope);
                }
                Delivery::Fetched(envelopes) => self.nodes[to].handle_fetched(self.now, envelopes),
            }
            self.drain(to);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                self.nodes[i].handle_timeout(self.now);
            }
            self.drain(i);
        }
        true
    }

    /// Steps until every node's chain holds `len` slots (panics after a bounded number of steps).
    pub(crate) fn run_until_len(&mut self, len: u64) {
        for _ in 0..100_000 {
            if self.nodes.iter().all(|n| n.chain().len() >= len) {
                return;
            }
            assert!(self.step(), "the network stalled at {}", self.now);
        }
        panic!("no progress to chain length {len}");
    }

    /// The chain hash at `slot` of every node.
    pub(crate) fn hashes_at(&self, slot: u64) -> Vec<Option<Hash32>> {
        self.nodes
            .iter()
            .map(|n| n.chain().chain_hash(slot))
            .collect()
    }
}
