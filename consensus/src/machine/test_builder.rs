//! `TestBuilder`: a few state machines on virtual time over a scripted network, driven by hand.

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;

use super::{Action, Consensus};
use crate::beacon::HashChain;
use crate::chain::{Chain, DecidedSlot, Tickets};
use crate::envelope::Envelope;
use crate::genesis::tests::signed_genesis;
use crate::genesis::{Genesis, SignedGenesis};
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
    partition: Option<(BTreeSet<usize>, u64)>,
    lost_fetches: usize,
    lost_chain_fetches: usize,
    mute: BTreeSet<usize>,
    fair: bool,
}

/// Length of the test nodes' hash chains: enough for every slot a test reaches.
pub(crate) const TEST_CHAIN_LEN: u64 = 512;

/// Node `i`'s hash chain under fair tickets (`generation` 0; a later one stands for a seed lost
/// and made anew).
pub(crate) fn hash_chain_of(i: usize, generation: u8) -> HashChain {
    let seed = Hash32::digest_parts(&[b"test seed", &i.to_be_bytes(), &[generation]]);
    HashChain::new(&seed, TEST_CHAIN_LEN)
}

/// The test genesis (its queue, rules and start), created and signed by node 0, which is
/// enrolled at slot 0 with its hash chain's commit.
pub(crate) fn fair_genesis() -> SignedGenesis {
    let base = signed_genesis();
    let creator = node_key(0);
    let g = base.genesis();
    Genesis::new(
        g.name.clone(),
        g.start_ms,
        base.rules(),
        g.queue.clone(),
        creator.public().to_peer_id(),
        g.created_ms,
    )
    .expect("the test genesis is valid")
    .with_enroll(hash_chain_of(0, 0).commit(), TEST_CHAIN_LEN)
    .sign(&creator)
    .expect("the creator signs")
}

/// Node `i`'s library: three tracks of its own.
pub(crate) fn library_of(i: usize) -> Vec<TrackRef> {
    (0..3)
        .map(|j| track(&format!("node {i} track {j}"), 90_000 + 10_000 * j))
        .collect()
}

impl TestBuilder {
    /// `nodes` nodes, each with a library of three tracks of its own, 50 ms latency, no loss.
    pub(crate) fn new(nodes: usize) -> TestBuilder {
        let libraries = (0..nodes).map(|i| (i, library_of(i))).collect();
        TestBuilder {
            nodes,
            latency_ms: 50,
            libraries,
            drop: Box::new(|_, _, _| false),
            partition: None,
            lost_fetches: 0,
            lost_chain_fetches: 0,
            mute: BTreeSet::new(),
            fair: false,
        }
    }

    /// Runs protocol 1.1's fair tickets (12.3): node 0 creates the genesis and is enrolled in
    /// it; every node has a hash chain and enrolls. Without it, nodes run version 1's open
    /// tickets (tests of what enrollment does not change).
    pub(crate) fn fair(mut self) -> TestBuilder {
        self.fair = true;
        self
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

    /// Until network time `until_ms`, nodes in `side` and the others cannot reach each other
    /// (gossip and requests).
    pub(crate) fn partition(mut self, side: &[usize], until_ms: u64) -> TestBuilder {
        self.partition = Some((side.iter().copied().collect(), until_ms));
        self
    }

    /// The first `n` `FetchProposals` requests get no answer.
    pub(crate) fn lose_fetches(mut self, n: usize) -> TestBuilder {
        self.lost_fetches = n;
        self
    }

    /// The first `n` `FetchChain` requests get no answer.
    pub(crate) fn lose_chain_fetches(mut self, n: usize) -> TestBuilder {
        self.lost_chain_fetches = n;
        self
    }

    /// The nodes in `nodes` answer no `FetchChain` request (a withholder, or a peer whose
    /// answers never arrive); they gossip as usual.
    pub(crate) fn mute_chain(mut self, nodes: &[usize]) -> TestBuilder {
        self.mute.extend(nodes.iter().copied());
        self
    }

    /// Starts every node one second before the genesis start.
    pub(crate) fn build(self) -> TestNet {
        let genesis = if self.fair {
            fair_genesis()
        } else {
            signed_genesis()
        };
        let now = genesis.genesis().start_ms - 1_000;
        let nodes: Vec<Consensus> = (0..self.nodes)
            .map(|i| {
                let mut node = if self.fair {
                    let mut node = Consensus::new(node_key(i), Chain::new(&genesis));
                    node.set_hash_chain(hash_chain_of(i, 0), now);
                    node
                } else {
                    let chain = Chain::new(&genesis).with_tickets(Tickets::Open);
                    Consensus::new(node_key(i), chain)
                };
                node.set_library(self.libraries.get(&i).cloned().unwrap_or_default());
                node
            })
            .collect();
        TestNet {
            now,
            nodes,
            latency_ms: self.latency_ms,
            drop: self.drop,
            partition: self.partition,
            lost_fetches: self.lost_fetches,
            lost_chain_fetches: self.lost_chain_fetches,
            mute: self.mute,
            queue: BTreeMap::new(),
            seq: 0,
            violations: Vec::new(),
            events: Vec::new(),
            published: Vec::new(),
        }
    }
}

/// Node `i`'s key.
pub(crate) fn node_key(i: usize) -> libp2p_identity::Keypair {
    keypair(u8::try_from(10 + i).expect("tests use few nodes"))
}

enum Delivery {
    Gossip {
        source: PeerId,
        envelope: Envelope,
    },
    Fetched(Vec<Envelope>),
    ChainAsked {
        from: usize,
        from_slot: u64,
    },
    Chain {
        peer: PeerId,
        slots: Vec<DecidedSlot>,
    },
}

/// Running state machines and the messages in flight between them.
pub(crate) struct TestNet {
    pub(crate) now: u64,
    pub(crate) nodes: Vec<Consensus>,
    latency_ms: u64,
    drop: DropRule,
    partition: Option<(BTreeSet<usize>, u64)>,
    lost_fetches: usize,
    lost_chain_fetches: usize,
    /// Nodes that answer no `FetchChain`.
    mute: BTreeSet<usize>,
    queue: BTreeMap<(u64, u64), (usize, Delivery)>,
    seq: u64,
    /// `(reporting node, reason)` of every Violation action.
    pub(crate) violations: Vec<(usize, String)>,
    /// `(node, time, action)` of every action but Publish and Decided (requests are recorded
    /// and executed).
    pub(crate) events: Vec<(usize, u64, Action)>,
    /// `(node, envelope)` of every message published.
    pub(crate) published: Vec<(usize, Envelope)>,
}

impl TestNet {
    fn send(&mut self, to: usize, delay: u64, delivery: Delivery) {
        self.seq += 1;
        self.queue
            .insert((self.now + delay, self.seq), (to, delivery));
    }

    /// Whether `a` and `b` are cut off from each other now.
    fn cut(&self, a: usize, b: usize) -> bool {
        self.partition.as_ref().is_some_and(|(side, until)| {
            self.now < *until && side.contains(&a) != side.contains(&b)
        })
    }

    fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.nodes.iter().position(|n| n.peer_id() == peer)
    }

    /// From now on, loses the gossip messages for which `rule(from, to, message)` holds.
    pub(crate) fn set_drop(&mut self, rule: impl Fn(usize, usize, &Message) -> bool + 'static) {
        self.drop = Box::new(rule);
    }

    /// Adds a node with `chain` (synced from the others) that starts now with
    /// [`Consensus::start_synced`]; returns its index.
    pub(crate) fn join(&mut self, chain: Chain) -> usize {
        let i = self.nodes.len();
        let fair = chain.tickets() == Tickets::Fair;
        let mut node = Consensus::new(node_key(i), chain);
        node.set_library(library_of(i));
        node.start_synced(self.now);
        if fair {
            node.set_hash_chain(hash_chain_of(i, 0), self.now);
        }
        self.nodes.push(node);
        self.drain(i);
        i
    }

    /// Executes node `i`'s actions.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].poll_action() {
            match action {
                Action::Publish { envelope, .. } => {
                    self.published.push((i, envelope.clone()));
                    let message = envelope
                        .clone()
                        .open(self.nodes[i].chain().network_id())
                        .expect("nodes publish valid messages")
                        .message;
                    let source = *self.nodes[i].peer_id();
                    for to in (0..self.nodes.len()).filter(|to| *to != i) {
                        if !(self.drop)(i, to, &message) && !self.cut(i, to) {
                            let envelope = envelope.clone();
                            self.send(to, self.latency_ms, Delivery::Gossip { source, envelope });
                        }
                    }
                }
                Action::FetchProposals { peer, slot, ids } => {
                    self.events.push((
                        i,
                        self.now,
                        Action::FetchProposals {
                            peer,
                            slot,
                            ids: ids.clone(),
                        },
                    ));
                    let Some(from) = self.index_of(&peer) else {
                        continue;
                    };
                    if self.lost_fetches > 0 {
                        self.lost_fetches -= 1;
                        continue;
                    }
                    if self.cut(i, from) {
                        continue;
                    }
                    let envelopes = self.nodes[from].answer_proposals(slot, &ids);
                    self.send(i, 2 * self.latency_ms, Delivery::Fetched(envelopes));
                }
                Action::FetchChain { peer, from_slot } => {
                    self.events
                        .push((i, self.now, Action::FetchChain { peer, from_slot }));
                    let Some(from) = self.index_of(&peer) else {
                        continue;
                    };
                    if self.lost_chain_fetches > 0 {
                        self.lost_chain_fetches -= 1;
                        continue;
                    }
                    if !self.cut(i, from) && !self.mute.contains(&from) {
                        self.send(i, self.latency_ms, Delivery::ChainAsked { from, from_slot });
                    }
                }
                Action::Violation { reason, .. } => self.violations.push((i, reason)),
                Action::Decided(_) => {}
                other => self.events.push((i, self.now, other)),
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
                Delivery::ChainAsked { from, from_slot } => {
                    // The peer answers when the request reaches it.
                    let slots = self.nodes[from].answer_chain(from_slot);
                    let peer = *self.nodes[from].peer_id();
                    self.send(to, self.latency_ms, Delivery::Chain { peer, slots });
                }
                Delivery::Chain { peer, slots } => {
                    // Errors (an empty answer, a peer behind) leave the request to its retry.
                    let _ = self.nodes[to].handle_chain(self.now, peer, slots);
                }
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

    /// Steps until network time `until_ms` (panics after a bounded number of steps).
    pub(crate) fn run_until(&mut self, until_ms: u64) {
        for _ in 0..100_000 {
            let next_delivery = self.queue.keys().next().map(|(at, _)| *at);
            let next_timeout = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
            let next = [next_delivery, next_timeout].into_iter().flatten().min();
            if next.is_none_or(|t| t > until_ms) {
                self.now = self.now.max(until_ms);
                return;
            }
            self.step();
        }
        panic!("no progress to time {until_ms}");
    }

    /// The chain hash at `slot` of every node.
    pub(crate) fn hashes_at(&self, slot: u64) -> Vec<Option<Hash32>> {
        self.nodes
            .iter()
            .map(|n| n.chain().chain_hash(slot))
            .collect()
    }

    /// Asserts that every node holds the same decided chain hash at `slot`.
    pub(crate) fn assert_agree(&self, slot: u64) {
        let hashes = self.hashes_at(slot);
        assert!(
            hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]),
            "slot {slot}: {hashes:?}"
        );
    }

    /// The PeerId of node `i`.
    pub(crate) fn peer(&self, i: usize) -> PeerId {
        *self.nodes[i].peer_id()
    }

    /// The first slot from 9 on whose proposal window (on node 0's chain) opens after now.
    pub(crate) fn next_proposal_slot(&self) -> u64 {
        let chain = self.nodes[0].chain();
        (9..20)
            .find(|k| {
                crate::schedule::proposal_window(chain, *k).is_some_and(|w| w.start_ms > self.now)
            })
            .expect("a proposal window ahead")
    }

    /// When each of the first `n` nodes publishes its proposal for `slot` (the time its ticket
    /// gives in the window, on node 0's chain), earliest first, with the node's index.
    pub(crate) fn proposal_times(&self, slot: u64, n: usize) -> Vec<(u64, usize)> {
        let chain = self.nodes[0].chain();
        let ctx = crate::ticket::SlotContext::on_chain(chain, slot);
        let mut times: Vec<(u64, usize)> = (0..n)
            .map(|i| {
                let ticket = crate::ticket::ticket(&ctx, &self.peer(i));
                let at = crate::schedule::proposal_time(chain, slot, ticket).expect("in a window");
                (at, i)
            })
            .collect();
        times.sort();
        times
    }

    /// Node `i`'s `FetchChain` requests, in order: (peer asked, first slot asked for).
    pub(crate) fn chain_fetches_of(&self, i: usize) -> Vec<(PeerId, u64)> {
        self.events_of(i)
            .filter_map(|a| match a {
                Action::FetchChain { peer, from_slot } => Some((*peer, *from_slot)),
                _ => None,
            })
            .collect()
    }

    /// Node `i`'s events, in order.
    pub(crate) fn events_of(&self, i: usize) -> impl Iterator<Item = &Action> {
        self.events
            .iter()
            .filter(move |(n, _, _)| *n == i)
            .map(|(_, _, a)| a)
    }
}
