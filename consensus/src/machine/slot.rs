//! What the state machine holds for one target slot while it is being decided.

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;

use crate::admissibility::check_admissible;
use crate::chain::Chain;
use crate::envelope::Envelope;
use crate::hash::Hash32;
use crate::limits::PROPOSALS_PER_SLOT;
use crate::message::{Decision, Proposal, Tally};
use crate::ticket::rank_cmp;

/// Most decisions kept per slot (PROTOCOL.md 10: bounded memory); past it the one ranked last
/// (a replay, else the highest ticket; ties: the largest author) is dropped.
pub const DECISIONS_PER_SLOT: usize = 256;

/// Authors of Tallies counted per slot: past the minimum that silences a node, more change
/// nothing.
pub(crate) const TALLY_AUTHORS_KEPT: usize = 64;

/// A proposal id asked for with `FetchProposals`, until it arrives or the tries run out.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// Peers that announced the id (in a Tally or Decision).
    pub(crate) announcers: BTreeSet<PeerId>,
    /// Peers already asked.
    pub(crate) asked: BTreeSet<PeerId>,
    /// The peer asked last.
    pub(crate) peer: PeerId,
    /// How many times it was asked for.
    pub(crate) tries: u32,
    /// When to ask again if it has not arrived; None once answered or given up.
    pub(crate) due_ms: Option<u64>,
}

/// A proposal held for a slot.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) proposal: Proposal,
    pub(crate) envelope: Envelope,
    pub(crate) ticket: u64,
}

/// The state of one target slot.
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    /// Proposals held, by id.
    pub(crate) proposals: BTreeMap<Hash32, Held>,
    /// Ids of the bodies known per proposer (two or more: an equivocation).
    pub(crate) by_proposer: BTreeMap<PeerId, BTreeSet<Hash32>>,
    /// Decisions received, by author.
    pub(crate) decisions: BTreeMap<PeerId, Decision>,
    /// Ids requested from peers.
    pub(crate) requests: BTreeMap<Hash32, Request>,
    pub(crate) proposed: bool,
    /// The Tally step is done (published, or silent).
    pub(crate) tallied: bool,
    /// Whether this node is one of the slot's speakers (computed when its Tally step begins).
    pub(crate) speaker: Option<bool>,
    /// Authors of the Tallies received (at most [`TALLY_AUTHORS_KEPT`]).
    pub(crate) tally_authors: BTreeSet<PeerId>,
    /// The lowest ticket announced in a Tally received.
    pub(crate) announced: Option<u64>,
    /// The own Decision was published, or the node stays silent.
    pub(crate) decision_done: bool,
    /// This node's decision, once made.
    pub(crate) decided: Option<Decision>,
    /// The follow fetch for this slot ran out of tries: it is made final from what is held
    /// (PROTOCOL.md 4.4), and section 9 repairs a wrong choice later.
    pub(crate) follow_given_up: bool,
}

impl SlotState {
    /// Keeps a proposal; past the per-slot limit the highest ticket is dropped.
    pub(crate) fn hold(&mut self, id: Hash32, held: Held) {
        self.by_proposer
            .entry(held.proposal.from)
            .or_default()
            .insert(id);
        self.proposals.insert(id, held);
        while self.proposals.len() > PROPOSALS_PER_SLOT {
            let worst = self
                .proposals
                .iter()
                .max_by(|a, b| {
                    rank_cmp(
                        (a.1.ticket, &a.1.proposal.from),
                        (b.1.ticket, &b.1.proposal.from),
                    )
                })
                .map(|(id, _)| *id);
            match worst {
                Some(id) => self.proposals.remove(&id),
                None => break,
            };
        }
    }

    /// Counts a Tally received: its author and the lowest ticket it announces.
    pub(crate) fn note_tally(&mut self, tally: &Tally) {
        if self.tally_authors.len() < TALLY_AUTHORS_KEPT {
            self.tally_authors.insert(tally.from);
        }
        if let Some(low) = tally.best.iter().map(|(ticket, _)| *ticket).min() {
            self.announced = Some(self.announced.map_or(low, |a| a.min(low)));
        }
    }

    /// Keeps the first decision of each author, at most [`DECISIONS_PER_SLOT`] in all.
    pub(crate) fn add_decision(&mut self, decision: Decision) {
        self.decisions.entry(decision.from).or_insert(decision);
        while self.decisions.len() > DECISIONS_PER_SLOT {
            let worst = self
                .decisions
                .values()
                .max_by(|a, b| {
                    let rank = |d: &Decision| (d.ticket.is_none(), d.ticket, d.from.to_bytes());
                    rank(a).cmp(&rank(b))
                })
                .map(|d| d.from);
            match worst {
                Some(peer) => self.decisions.remove(&peer),
                None => break,
            };
        }
    }

    /// Proposers that sent two or more distinct bodies.
    pub(crate) fn equivocators(&self) -> Vec<PeerId> {
        self.by_proposer
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// Admissible proposals, lowest `(ticket, peer_id bytes)` first.
    pub(crate) fn ranked(&self, chain: &Chain, slot: u64) -> Vec<(Hash32, &Held)> {
        let mut out: Vec<(Hash32, &Held)> = self
            .proposals
            .iter()
            .filter(|(id, held)| self.admissible(chain, slot, id, held))
            .map(|(id, held)| (*id, held))
            .collect();
        out.sort_by(|a, b| {
            rank_cmp(
                (a.1.ticket, &a.1.proposal.from),
                (b.1.ticket, &b.1.proposal.from),
            )
        });
        out
    }

    /// Whether a held proposal is admissible now.
    pub(crate) fn admissible(&self, chain: &Chain, slot: u64, id: &Hash32, held: &Held) -> bool {
        let known = self
            .by_proposer
            .get(&held.proposal.from)
            .into_iter()
            .flatten();
        check_admissible(chain, slot, &held.proposal, id, known).is_ok()
    }
}
