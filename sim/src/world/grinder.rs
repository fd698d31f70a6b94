//! The grinder (`--adversary grinder:COUNT`): unlimited key generation against the lottery and,
//! under protocol 1.1, strategic withholding (PROTOCOL.md 4.1 and 12.3).
//!
//! - **Fresh identities.** When the proposal window of slot k opens, each grinder generates
//!   fresh keys until one has a ticket below that of every honest node that could propose for k
//!   (it can compute them all: version 1's from the PeerIds alone, 1.1's from the beacon too),
//!   at most [`GRIND_TRIES`] keys per such node, and proposes for k with it at once, claiming
//!   the chain's winners in `plays` (self-reported, PROTOCOL.md 5). In version 1 that identity
//!   wins k; in 1.1 it is not enrolled, so no node admits its proposal.
//! - **Enrolled identities (1.1).** Each grinder's own identity enrolls like anyone's: its
//!   machine publishes its Enroll with every Status, and a winning proposal carries it or not as
//!   any node's. The proposals of its machine are held until a quarter into the slot's
//!   selection window, when the winner of k-1, and so beacon(k-1), is final. If one of them has
//!   the lowest ticket among the proposals for k (those gossiped and those the grinders hold),
//!   the grinder computes beacon(k) both ways, with its reveal or with the runner-up's (a
//!   replay's zero bytes if there is none), and under each the winner of slot k + L + 1, whose
//!   ticket uses beacon(k). It stays silent when silence makes one of the grinders win that
//!   slot and proposing does not. (With the runner-up honest that trades slot k for slot
//!   k + L + 1; with the runner-up a grinder too, it costs nothing.) A withheld proposal is
//!   never served.
//!
//! The grinders read the network's chain through an honest shadow node (the simulator reads
//! node 0's), so that their own machines, which decide their withheld proposals and then adopt
//! the honest chain, do not mislead them. What they know of others' proposals is what was
//! gossiped.

use std::collections::{BTreeMap, BTreeSet};

use chorus_consensus::beacon::{beacon_next, ticket_v2};
use chorus_consensus::message::{Play, Played, library_hash, track_index};
use chorus_consensus::schedule::selection_window;
use chorus_consensus::ticket::{rank_cmp, ticket_beacon, ticket_v1};
use chorus_consensus::{Chain, Consensus, Envelope, Hash32, Proposal, SlotContext, ticket};
use libp2p_identity::PeerId;

use super::{Event, World, random_key};
use crate::adversary::AdversaryKind;
use crate::config::Protocol;

/// Most fresh keys a grinder generates for one slot, per honest node it must beat. The best of
/// n honest tickets is beaten by one key in n + 1 on average.
pub const GRIND_TRIES: u64 = 64;
/// Slots of gossiped proposals the grinders remember.
const SEEN_SLOTS: u64 = 16;

/// A proposal's author and its reveal.
type Seen = (PeerId, Option<Hash32>);

/// What the grinders of a run know and hold.
#[derive(Debug, Default)]
pub(super) struct Grind {
    /// The grinders' own identities.
    peers: BTreeSet<PeerId>,
    /// Slot -> the proposals gossiped for it (protocol 1.1, with a grinder in the run).
    seen: BTreeMap<u64, Vec<Seen>>,
    /// Slot -> the grinders' proposals held until their decision: the node and the proposal.
    held: BTreeMap<u64, Vec<(usize, Seen)>>,
    /// Ids of the grinders' proposals not published (held, or withheld for good): never served.
    unpublished: BTreeSet<Hash32>,
}

impl Grind {
    /// Whether the proposal `id` of a grinder is held or withheld.
    pub(super) fn unpublished(&self, id: &Hash32) -> bool {
        self.unpublished.contains(id)
    }
}

impl World {
    /// Notes the grinders' identities (once, when the world is built).
    pub(super) fn init_grinders(&mut self) {
        self.grind.peers = self
            .nodes
            .iter()
            .filter(|n| n.adversary == Some(AdversaryKind::Grinder))
            .map(|n| n.peer)
            .collect();
    }

    /// The network's chain, as the grinders' honest shadow node holds it.
    fn shadow_chain(&self) -> Option<&Chain> {
        self.nodes[0].machine().map(Consensus::chain)
    }

    /// The proposal window of slot `k` opens: each running grinder proposes for it with a
    /// fresh identity of a ticket lower than every honest eligible node's, if it found one.
    pub(super) fn grind_fresh(&mut self, k: u64) {
        if self.grind.peers.is_empty() {
            return;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].adversary != Some(AdversaryKind::Grinder)
                || self.nodes[i].machine().is_none()
            {
                continue;
            }
            if let Some(envelope) = self.ground_proposal(i, k) {
                self.obs.ground.insert(envelope.id());
                self.obs.targeted.insert(k);
                self.gossip(i, envelope, "proposal");
            }
        }
    }

    /// Grinder `i`'s proposal for slot `k` under a fresh identity that beats every honest
    /// eligible node's ticket (None if none was found within the tries, or the chain does not
    /// reach what it needs yet).
    fn ground_proposal(&mut self, i: usize, k: u64) -> Option<Envelope> {
        let chain = self.shadow_chain()?;
        let ctx = SlotContext::on_chain(chain, k);
        let net = *chain.network_id();
        // Under fair tickets the beacon of k (None under open tickets).
        let beacon = ticket_beacon(&ctx);
        if chain.tickets() == chorus_consensus::Tickets::Fair && beacon.is_none() {
            return None;
        }
        let honest = &self.obs.eligible.get(&k)?.honest;
        let best = honest
            .iter()
            .map(|&j| (ticket(&ctx, &self.nodes[j].peer), self.nodes[j].peer))
            .min_by(|a, b| rank_cmp((a.0, &a.1), (b.0, &b.1)));
        let tries = GRIND_TRIES * (honest.len() as u64 + 1);
        let plays: Vec<Play> = (k.saturating_sub(8)..=k.checked_sub(5)?)
            .map(|j| (j, chain.winner(j).map(|t| Played::Track(t.track_hash))))
            .collect();
        let rules_hash = *chain.rules_hash();
        let beats = |peer: &PeerId| {
            let t = match &beacon {
                Some(b) => ticket_v2(&net, k, b, peer),
                None => ticket_v1(&net, k, peer),
            };
            best.is_none_or(|(bt, bp)| rank_cmp((t, peer), (bt, &bp)).is_lt())
        };
        let key = (0..tries)
            .map(|_| random_key(&mut self.grind_rng))
            .find(|key| beats(&key.public().to_peer_id()))?;
        let node = &self.nodes[i];
        let track = node.library.get(k as usize % node.library.len().max(1))?;
        let hashes: Vec<Hash32> = node.library.iter().map(|t| t.track_hash).collect();
        let proposal = Proposal {
            network_id: net,
            slot: k,
            from: key.public().to_peer_id(),
            track: track.clone(),
            library_hash: library_hash(&hashes),
            track_index: track_index(&hashes, &track.track_hash)?,
            plays,
            rules_hash,
            created_ms: self.node_time(i),
            reveal: None,
            enrolls: Vec::new(),
        };
        Envelope::seal(&proposal, &key).ok()
    }

    /// Protocol 1.1: grinder `i`'s machine proposed; the proposal waits until beacon(k-1) is
    /// final, a quarter into the slot's selection window (then [`World::grind_decide`]).
    pub(super) fn hold_proposal(&mut self, i: usize, envelope: Envelope, proposal: &Proposal) {
        let window = self.nodes[i]
            .machine()
            .and_then(|m| selection_window(m.chain(), proposal.slot));
        let Some(window) = window else {
            self.gossip(i, envelope, "proposal");
            return;
        };
        let local = window.start_ms + window.len_ms() / 4;
        let at = local
            .saturating_add_signed(-self.nodes[i].skew_ms)
            .max(self.now);
        self.grind.unpublished.insert(envelope.id());
        self.grind
            .held
            .entry(proposal.slot)
            .or_default()
            .push((i, (proposal.from, proposal.reveal)));
        let inc = self.nodes[i].inc;
        self.push(
            at,
            Event::Grind {
                node: i,
                inc,
                envelope,
            },
        );
    }

    /// A grinder's held proposal: published, or withheld for good when that pays.
    pub(super) fn grind_decide(&mut self, i: usize, inc: u32, envelope: Envelope) {
        let Some(proposal) = self.open_proposal(i, &envelope) else {
            return;
        };
        if let Some(held) = self.grind.held.get_mut(&proposal.slot) {
            held.retain(|(node, _)| *node != i);
        }
        if self.nodes[i].inc != inc {
            return;
        }
        if self.withholding_pays(&proposal) {
            self.obs.silent.insert(proposal.slot);
            return;
        }
        self.grind.unpublished.remove(&envelope.id());
        self.gossip(i, envelope, "proposal");
    }

    /// Whether `proposal` (of a grinder, for slot k) has the lowest ticket of the proposals for
    /// k, and silence makes a grinder win slot k + L + 1 where proposing does not.
    fn withholding_pays(&self, proposal: &Proposal) -> bool {
        let Some(chain) = self.shadow_chain() else {
            return false;
        };
        let k = proposal.slot;
        let Some(before) = k.checked_sub(1).and_then(|j| chain.beacon(j)) else {
            return false;
        };
        let ctx = SlotContext::on_chain(chain, k);
        let delay = chain.rules().enroll_delay;
        let held = self.grind.held.get(&k).into_iter().flatten().map(|h| &h.1);
        let runner_up = self
            .grind
            .seen
            .get(&k)
            .into_iter()
            .flatten()
            .chain(held)
            .filter(|(peer, _)| *peer != proposal.from)
            .filter(|(peer, _)| {
                chain
                    .enrollment(peer)
                    .is_some_and(|e| e.eligible_from(delay) <= k)
            })
            .map(|(peer, reveal)| (ticket(&ctx, peer), peer, reveal))
            .min_by(|a, b| rank_cmp((a.0, a.1), (b.0, b.1)));
        let mine = (ticket(&ctx, &proposal.from), &proposal.from);
        if runner_up.is_some_and(|(t, peer, _)| rank_cmp((t, peer), mine).is_lt()) {
            return false;
        }
        let other_reveal = runner_up.and_then(|(_, _, reveal)| reveal.as_ref());
        let target = k + chain.lookahead() + 1;
        let propose = beacon_next(&before, k, proposal.reveal.as_ref());
        let silent = beacon_next(&before, k, other_reveal);
        self.grinder_wins(chain, target, &silent) && !self.grinder_wins(chain, target, &propose)
    }

    /// Whether a grinder has the lowest ticket for `slot` over `beacon` among the peers the
    /// chain enrolls for it.
    fn grinder_wins(&self, chain: &Chain, slot: u64, beacon: &Hash32) -> bool {
        let net = chain.network_id();
        let delay = chain.rules().enroll_delay;
        chain
            .roster()
            .iter()
            .filter(|(_, e)| e.eligible_from(delay) <= slot)
            .map(|(peer, _)| (ticket_v2(net, slot, beacon, peer), peer))
            .min_by(|a, b| rank_cmp(*a, *b))
            .is_some_and(|(_, peer)| self.grind.peers.contains(peer))
    }

    /// A proposal is gossiped: under protocol 1.1 with grinders in the run, they note its
    /// author and reveal.
    pub(super) fn note_proposal(&mut self, envelope: &Envelope) {
        if self.grind.peers.is_empty() || self.cfg.protocol != Protocol::V1_1 {
            return;
        }
        let Ok(p) = chorus_consensus::codec::from_cbor::<Proposal>(&envelope.body) else {
            return;
        };
        self.grind
            .seen
            .entry(p.slot)
            .or_default()
            .push((p.from, p.reveal));
        let old = p.slot.saturating_sub(SEEN_SLOTS);
        self.grind.seen = self.grind.seen.split_off(&old);
        self.grind.held = self.grind.held.split_off(&old);
    }
}
