//! Property tests of the state machine (issue 3): a few `Consensus` on virtual time over a
//! network that delays, reorders, duplicates and loses gossip as each case says.
//!
//! Every case is a pure function of its inputs (the network's faults come from a seed, hashed per
//! message), so a failure replays exactly from the case proptest prints and persists under
//! `proptest-regressions/machine/proptests.txt`; pinned cases are the `regression_*` tests.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libp2p_identity::{Keypair, PeerId};
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{Action, Consensus};
use crate::chain::Chain;
use crate::codec::from_cbor;
use crate::envelope::{Envelope, Validation};
use crate::genesis::tests::signed_genesis;
use crate::hash::Hash32;
use crate::message::{Body, Decision, Message, Proposal, Tally};
use crate::testing::keypair;
use crate::ticket::{SlotContext, ticket};
use crate::track::TrackRef;
use crate::track::tests::track;

/// Runs stop once every chain holds this many slots: slots 5, 6 and 7 are decided.
const LEN: u64 = 8;
/// Least delay of any delivery, ms.
const LATENCY_MS: u64 = 20;

/// Whether gossip from node `from` to node `to` is lost.
type DropRule = Box<dyn Fn(usize, usize, &Message) -> bool>;

/// How the network treats gossip and fetches: a delay of `LATENCY_MS ..= LATENCY_MS +
/// max_delay_ms`, a second copy for `duplicate_pct` % of messages, and the losses of `drop`.
struct Faults {
    seed: u64,
    max_delay_ms: u64,
    duplicate_pct: u64,
    drop: DropRule,
}

impl Faults {
    fn reliable() -> Faults {
        Faults::new(0, 0, 0)
    }

    fn new(seed: u64, max_delay_ms: u64, duplicate_pct: u64) -> Faults {
        Faults {
            seed,
            max_delay_ms,
            duplicate_pct,
            drop: Box::new(|_, _, _| false),
        }
    }

    /// A pseudo-random number for delivery `seq`, fixed by the seed.
    fn roll(&self, seq: u64, salt: u8) -> u64 {
        let h = Hash32::digest_parts(&[&self.seed.to_be_bytes(), &seq.to_be_bytes(), &[salt]]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&h.0[..8]);
        u64::from_be_bytes(first)
    }

    fn delay(&self, seq: u64, salt: u8) -> u64 {
        LATENCY_MS + self.roll(seq, salt) % (self.max_delay_ms + 1)
    }
}

enum Delivery {
    Gossip { source: PeerId, envelope: Envelope },
    Fetched(Vec<Envelope>),
}

/// The nodes, the deliveries in flight and what happened.
struct Net {
    now: u64,
    nodes: Vec<Consensus>,
    faults: Faults,
    queue: BTreeMap<(u64, u64), (usize, Delivery)>,
    seq: u64,
    /// `(node, message id, verdict)` of every gossip delivery.
    verdicts: Vec<(usize, Hash32, Validation)>,
    /// `(time, node, action)` of every action, in order.
    log: Vec<(u64, usize, Action)>,
    /// `start(k)` as each node first knew it.
    starts: Vec<Vec<u64>>,
}

/// Node `i`'s key.
fn node_key(i: usize) -> Keypair {
    keypair(u8::try_from(10 + i).expect("few nodes"))
}

/// Node `i`'s PeerId (computed once: key derivation is slow in debug builds).
fn node_peer(i: usize) -> PeerId {
    static PEERS: OnceLock<Vec<PeerId>> = OnceLock::new();
    PEERS.get_or_init(|| (0..5).map(|i| node_key(i).public().to_peer_id()).collect())[i]
}

/// Node `i`'s library: three tracks of its own.
fn library(i: usize) -> Vec<TrackRef> {
    (0..3)
        .map(|j| track(&format!("node {i} track {j}"), 90_000 + 10_000 * j))
        .collect()
}

impl Net {
    /// `n` nodes with libraries, started one second before the genesis start.
    fn new(n: usize, faults: Faults) -> Net {
        let genesis = signed_genesis();
        let nodes = (0..n)
            .map(|i| {
                let mut node = Consensus::new(
                    node_key(i),
                    Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open),
                );
                node.set_library(library(i));
                node
            })
            .collect();
        Net {
            now: genesis.genesis().start_ms - 1_000,
            nodes,
            faults,
            queue: BTreeMap::new(),
            seq: 0,
            verdicts: Vec::new(),
            log: Vec::new(),
            starts: vec![Vec::new(); n],
        }
    }

    fn chain(&self) -> &Chain {
        self.nodes[0].chain()
    }

    /// Delivers `envelope` to node `to` at time `at` (a message from outside the nodes).
    fn inject(&mut self, at: u64, to: usize, envelope: Envelope) {
        self.seq += 1;
        let source = keypair(200).public().to_peer_id();
        let delivery = Delivery::Gossip { source, envelope };
        self.queue.insert((at, self.seq), (to, delivery));
    }

    fn send(&mut self, to: usize, make: impl Fn() -> Delivery) {
        self.seq += 1;
        let seq = self.seq;
        let at = self.now + self.faults.delay(seq, 0);
        self.queue.insert((at, seq), (to, make()));
        if self.faults.roll(seq, 1) % 100 < self.faults.duplicate_pct {
            let again = self.now + self.faults.delay(seq, 2);
            self.queue.insert((again, seq), (to, make()));
        }
    }

    /// Executes node `i`'s actions.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].poll_action() {
            self.log.push((self.now, i, action.clone()));
            if let Action::Publish { envelope, .. } = action {
                let message = decode(&envelope);
                let source = *self.nodes[i].peer_id();
                for to in (0..self.nodes.len()).filter(|to| *to != i) {
                    if !(self.faults.drop)(i, to, &message) {
                        let envelope = envelope.clone();
                        self.send(to, move || Delivery::Gossip {
                            source,
                            envelope: envelope.clone(),
                        });
                    }
                }
            } else if let Action::FetchProposals { peer, slot, ids } = action
                && let Some(from) = self.nodes.iter().position(|n| *n.peer_id() == peer)
            {
                let envelopes = self.nodes[from].answer_proposals(slot, &ids);
                self.send(i, move || Delivery::Fetched(envelopes.clone()));
            }
        }
        let known = &mut self.starts[i];
        let chain = self.nodes[i].chain();
        while let Some(start) = chain.start(known.len() as u64) {
            known.push(start);
        }
    }

    /// Advances to the next event and handles it; false if there is none.
    fn step(&mut self) -> bool {
        let Some(next) = self.next_event() else {
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
                    let id = envelope.id();
                    let verdict = self.nodes[to].handle_message(self.now, source, envelope);
                    self.verdicts.push((to, id, verdict));
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

    /// Steps until the time reaches `at` (or nothing is left to do).
    fn run_until(&mut self, at: u64) {
        while self.next_event().is_some_and(|t| t <= at) {
            self.step();
        }
    }

    /// The time of the next delivery or timeout.
    fn next_event(&self) -> Option<u64> {
        let next_delivery = self.queue.keys().next().map(|(at, _)| *at);
        let next_timeout = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
        [next_delivery, next_timeout].into_iter().flatten().min()
    }

    /// Steps until every chain holds `len` slots.
    fn run_until_len(&mut self, len: u64) {
        for _ in 0..100_000 {
            if self.nodes.iter().all(|n| n.chain().len() >= len) {
                return;
            }
            assert!(self.step(), "the network stalled at {}", self.now);
        }
        panic!("no progress to chain length {len}");
    }

    /// Every node's chain hashes of slots `5 .. len`.
    fn hashes(&self, len: u64) -> Vec<Vec<Option<Hash32>>> {
        self.nodes
            .iter()
            .map(|n| (5..len).map(|k| n.chain().chain_hash(k)).collect())
            .collect()
    }

    /// Checks that every node holds the same chain of `len` slots, and that no `start(k)` a
    /// node ever knew has moved.
    fn assert_agreement(&self, len: u64) -> Result<Vec<Option<Hash32>>, TestCaseError> {
        let hashes = self.hashes(len);
        for (i, h) in hashes.iter().enumerate() {
            prop_assert_eq!(h, &hashes[0], "node {} disagrees", i);
            prop_assert!(h.iter().all(Option::is_some), "node {} decided nothing", i);
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let now: Vec<u64> = (0..=node.chain().len())
                .filter_map(|k| node.chain().start(k))
                .collect();
            prop_assert_eq!(&now[..self.starts[i].len()], &self.starts[i][..]);
            prop_assert_eq!(&self.starts[i][..], &self.starts[0][..]);
        }
        Ok(hashes[0].clone())
    }
}

/// The body of an envelope a node published (not verified again: signatures are what debug
/// builds spend their time on).
fn decode(envelope: &Envelope) -> Message {
    let body = &envelope.body;
    let decoded = match envelope.kind.as_str() {
        Proposal::KIND => from_cbor(body).map(Message::Proposal),
        Tally::KIND => from_cbor(body).map(Message::Tally),
        Decision::KIND => from_cbor(body).map(Message::Decision),
        _ => from_cbor(body).map(Message::Status),
    };
    decoded.expect("nodes publish valid messages")
}

/// The chain hashes of slots `5 .. LEN` on a reliable network of `n` nodes (computed once).
fn baseline(n: usize) -> &'static [Option<Hash32>] {
    static RUNS: [OnceLock<Vec<Option<Hash32>>>; 5] = [const { OnceLock::new() }; 5];
    RUNS[n].get_or_init(|| {
        let mut net = Net::new(n, Faults::reliable());
        net.run_until_len(LEN);
        net.hashes(LEN).swap_remove(0)
    })
}

/// The lowest `(ticket, peer_id bytes)` among `peers` for `slot`.
fn lowest_of(
    network_id: &Hash32,
    slot: u64,
    peers: impl IntoIterator<Item = PeerId>,
) -> (u64, PeerId) {
    let ctx = SlotContext::detached(*network_id, slot);
    peers
        .into_iter()
        .map(|peer| (ticket(&ctx, &peer), peer))
        .min_by_key(|(t, peer)| (*t, peer.to_bytes()))
        .expect("at least one peer")
}

/// The node among the first `n` with the lowest ticket for `slot`: it wins whenever it is
/// eligible, since it always proposes.
fn lowest_node(network_id: &Hash32, n: usize, slot: u64) -> usize {
    let (_, peer) = lowest_of(network_id, slot, (0..n).map(node_peer));
    (0..n)
        .position(|i| node_peer(i) == peer)
        .expect("one of them")
}

/// Checks that the winner of every slot `5 .. len` has the ticket of `expected(k)`.
fn assert_winners(
    net: &Net,
    len: u64,
    expected: impl Fn(u64) -> Vec<PeerId>,
) -> Result<(), TestCaseError> {
    let network_id = *net.chain().network_id();
    for k in 5..len {
        let (low, _) = lowest_of(&network_id, k, expected(k));
        let decided = net.chain().decided(k).and_then(|d| d.ticket);
        prop_assert_eq!(decided, Some(low), "slot {}", k);
    }
    Ok(())
}

/// A proposal for `slot` by `key`, whose plays are the genesis winners (admissible).
fn outsider_proposal(chain: &Chain, slot: u64, key: &Keypair, created_ms: u64) -> Proposal {
    let mut p = crate::testing::proposal(chain, slot, 0);
    p.from = key.public().to_peer_id();
    p.track = track(&format!("outsider {} slot {slot}", p.from), 120_000);
    p.created_ms = created_ms;
    p
}

fn config(cases: u32) -> Config {
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    Config {
        cases: from_env.unwrap_or(cases),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// Any delays (up to 8 s, within the windows), reorderings and duplications of the same
    /// messages give every node the chain of a reliable network: the lowest ticket wins every
    /// slot; the schedule never moves.
    #[test]
    fn delays_reorderings_and_duplicates_change_nothing(
        n in 2usize..=4,
        seed in any::<u64>(),
        max_delay_ms in 0u64..=8_000,
        duplicate_pct in 0u64..=50,
    ) {
        let mut net = Net::new(n, Faults::new(seed, max_delay_ms, duplicate_pct));
        net.run_until_len(LEN);
        let hashes = net.assert_agreement(LEN)?;
        prop_assert_eq!(&hashes[..], baseline(n));
        assert_winners(&net, LEN, |_| (0..n).map(node_peer).collect())?;
        let violations = net.log.iter().filter(|(_, _, a)| matches!(a, Action::Violation { .. })).count();
        prop_assert_eq!(violations, 0);
    }

    /// A node that misses any set of proposals but the winning one reaches the same chain.
    #[test]
    fn missing_losing_proposals_changes_nothing(
        n in 3usize..=4,
        victim in 0usize..4,
        mask in any::<u64>(),
        seed in any::<u64>(),
        max_delay_ms in 0u64..=2_000,
    ) {
        let victim = victim % n;
        let network_id = signed_genesis().network_id();
        let mut faults = Faults::new(seed, max_delay_ms, 0);
        faults.drop = Box::new(move |from, to, m| {
            let Message::Proposal(p) = m else { return false };
            let bit = (p.slot * 4 + from as u64) % 64;
            to == victim && from != lowest_node(&network_id, n, p.slot) && mask & (1 << bit) != 0
        });
        let mut net = Net::new(n, faults);
        net.run_until_len(LEN);
        let hashes = net.assert_agreement(LEN)?;
        prop_assert_eq!(&hashes[..], baseline(n));
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// An outsider that sends two bodies for slot 5 (every node gets both, in any order, at any
    /// time of the proposal window) is recorded as an equivocator by every node and never wins:
    /// neither slot 5 nor slots 6 and 7, for which it sends one body each but is excluded.
    #[test]
    fn an_equivocator_is_recorded_and_never_wins(
        n in 2usize..=3,
        cheat in any::<[u8; 32]>(),
        offsets in prop::collection::vec(0u64..8_000, 6),
        later in prop::collection::vec(0u64..7_000, 2),
        seed in any::<u64>(),
        max_delay_ms in 0u64..=2_000,
    ) {
        let cheat = Keypair::ed25519_from_bytes(cheat).expect("any 32 bytes are a secret");
        let mut net = Net::new(n, Faults::new(seed, max_delay_ms, 0));
        let chain = net.chain().clone();
        let start = |k: u64| chain.start(k).expect("a genesis slot");
        let seal = |p: &Proposal| Envelope::seal(p, &cheat).expect("the cheat signs its own");
        let bodies = [0, 1].map(|created| seal(&outsider_proposal(&chain, 5, &cheat, created)));
        for to in 0..n {
            for (b, body) in bodies.iter().enumerate() {
                net.inject(start(0) - 500 + offsets[2 * to + b], to, body.clone());
            }
        }
        let mut cheat_ids: Vec<Hash32> = bodies.iter().map(Envelope::id).collect();
        for (slot, offset) in [6u64, 7].into_iter().zip(&later) {
            let envelope = seal(&outsider_proposal(&chain, slot, &cheat, 0));
            cheat_ids.push(envelope.id());
            for to in 0..n {
                net.inject(start(slot - 5) + 100 + offset, to, envelope.clone());
            }
        }
        net.run_until_len(LEN);
        net.assert_agreement(LEN)?;
        let cheat_peer = cheat.public().to_peer_id();
        for node in &net.nodes {
            let decided = node.chain().decided(5).expect("slot 5 is decided");
            prop_assert_eq!(&decided.equivocators, &vec![cheat_peer]);
            for k in 5..LEN {
                let id = node.chain().decided(k).and_then(|d| d.proposal_id);
                prop_assert!(id.is_some_and(|id| !cheat_ids.contains(&id)), "slot {}", k);
            }
        }
        for (to, id, verdict) in &net.verdicts {
            if bodies.iter().any(|b| b.id() == *id) {
                prop_assert_eq!(*verdict, Validation::Accept, "node {}", to);
            }
        }
        assert_winners(&net, LEN, |_| (0..n).map(node_peer).collect())?;
    }

    /// Eligibility (section 5) in the running machine: node 0 reports playing something else
    /// than the winner of some genesis slots j and so does not propose for j + 5 (nor for 8
    /// after three divergences); an outsider's proposals are accepted or ignored as its plays
    /// make it eligible; every slot goes to the lowest ticket among the eligible.
    #[test]
    fn only_eligible_proposers_win(
        n in 2usize..=3,
        diverged in prop::collection::vec(any::<bool>(), 4),
        outsider in any::<[u8; 32]>(),
        reports in prop::collection::vec(prop::collection::vec(0u8..3, 4), 4),
    ) {
        const LAST: u64 = LEN + 1;
        let outsider = Keypair::ed25519_from_bytes(outsider).expect("any 32 bytes are a secret");
        let mut net = Net::new(n, Faults::reliable());
        let chain = net.chain().clone();
        let start = |k: u64| chain.start(k).expect("a genesis slot");
        let other = Hash32::digest(b"something else");
        for (j, d) in (0u64..).zip(&diverged) {
            if *d {
                net.nodes[0].report_played(j, Some(other));
            }
        }
        let winner = |j: u64| chain.winner(j).map(|t| t.track_hash);
        let mut outsider_ok = BTreeMap::new();
        for k in 5..LAST {
            let report = &reports[(k - 5) as usize];
            let mut proposal = outsider_proposal(&chain, k, &outsider, 0);
            proposal.plays = (0..=k - 5)
                .map(|j| (j, match report[j as usize] {
                    0 => winner(j).map(Into::into),
                    1 => Some(other.into()),
                    _ => None,
                }))
                .collect();
            let three_off = k >= 8 && (k - 8..k - 5).all(|j| report[j as usize] == 1);
            outsider_ok.insert(k, report[(k - 5) as usize] == 0 && !three_off);
            let envelope = Envelope::seal(&proposal, &outsider).expect("signs its own");
            for to in 0..n {
                net.inject(start(k - 5) + 100, to, envelope.clone());
            }
            let expected = if outsider_ok[&k] { Validation::Accept } else { Validation::Ignore };
            net.run_until(start(k - 5) + 200);
            let id = envelope.id();
            let verdicts: Vec<Validation> =
                net.verdicts.iter().filter(|v| v.1 == id).map(|v| v.2).collect();
            prop_assert_eq!(verdicts, vec![expected; n], "slot {}", k);
        }
        net.run_until_len(LAST);
        net.assert_agreement(LAST)?;
        let node0_ok = |k: u64| {
            let three_off = k >= 8 && diverged[(k - 8) as usize..(k - 5) as usize].iter().all(|d| *d);
            let now_off = diverged[(k - 5) as usize];
            !now_off && !three_off
        };
        let outsider_peer = outsider.public().to_peer_id();
        assert_winners(&net, LAST, |k| {
            let mut eligible: Vec<PeerId> = (1..n).map(node_peer).collect();
            eligible.extend(node0_ok(k).then(|| node_peer(0)));
            eligible.extend(outsider_ok[&k].then_some(outsider_peer));
            eligible
        })?;
    }
}

proptest! {
    #![proptest_config(config(8))]

    /// The same inputs give the same actions, in the same order, at the same times.
    #[test]
    fn same_inputs_give_the_same_actions(
        n in 2usize..=3,
        seed in any::<u64>(),
        max_delay_ms in 0u64..=8_000,
        duplicate_pct in 0u64..=50,
    ) {
        let run = || {
            let mut net = Net::new(n, Faults::new(seed, max_delay_ms, duplicate_pct));
            net.run_until_len(LEN - 1);
            (net.log, net.verdicts)
        };
        prop_assert!(run() == run());
    }
}
