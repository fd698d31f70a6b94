//! What the state machine holds for one target slot while it is being decided.
//!
//! Decisions and proposal requests come from peers that may lie and whose identities cost
//! nothing, so both are bounded by rules that an attacker's fresh keys cannot use to push out
//! what honest peers sent (docs/consensus.md, "Hostile decisions and requests").

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;

use crate::admissibility::check_admissible;
use crate::chain::Chain;
use crate::envelope::Envelope;
use crate::hash::Hash32;
use crate::limits::PROPOSALS_PER_SLOT;
use crate::message::{Decision, Proposal, Tally};
use crate::ticket::rank_cmp;

/// Most decisions kept per slot (PROTOCOL.md 10: bounded memory). Past it the decision that
/// [`SlotState::add_decision`] ranks last is dropped.
pub const DECISIONS_PER_SLOT: usize = 256;

/// Decisions kept per claimed outcome (a proposal id, or a replay's winner) before the others
/// claiming it are the first to go: finality and the speaking rule need one decision per
/// outcome, and a fake id claimed by hundreds of keys then counts as this many.
pub const DECISIONS_PER_CLAIM: usize = 4;

/// Authors remembered per slot as vouched for, suspect or liars (each set bounded).
pub(crate) const AUTHORS_KEPT: usize = DECISIONS_PER_SLOT;

/// Authors of Tallies counted per slot: past the minimum that silences a node, more change
/// nothing.
pub(crate) const TALLY_AUTHORS_KEPT: usize = 64;

/// A proposal id asked for with `FetchProposals` (or waiting for its turn), until it arrives,
/// is no longer needed, or every try failed.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// Peers that announced the id (in a Tally or Decision), at most
    /// [`ANNOUNCERS_KEPT`](super::fetch::ANNOUNCERS_KEPT) (when full, a vouched-for peer
    /// replaces one neither vouched for nor asked).
    pub(crate) announcers: BTreeSet<PeerId>,
    /// Whether a peer the table vouches for announced it.
    pub(crate) vouched: bool,
    /// The lowest ticket claimed for it.
    pub(crate) ticket: u64,
    /// Peers already asked.
    pub(crate) asked: BTreeSet<PeerId>,
    /// The peer asked last, if any.
    pub(crate) peer: Option<PeerId>,
    /// How many times it was asked for.
    pub(crate) tries: u32,
    /// While a request for it is out: when to give that request up.
    pub(crate) due_ms: Option<u64>,
    /// When it stopped being wanted (arrived, beaten, given up); None while wanted.
    pub(crate) done_ms: Option<u64>,
}

impl Request {
    /// A wanted id not asked for at present.
    pub(crate) fn waiting(&self) -> bool {
        self.due_ms.is_none() && self.done_ms.is_none()
    }

    /// Its place in the queue of ids to ask for, best first: announced by a vouched-for peer,
    /// fewer failed tries, lower claimed ticket, then the id.
    pub(crate) fn priority(&self, id: &Hash32) -> (bool, u32, u64, Hash32) {
        (!self.vouched, self.tries, self.ticket, *id)
    }
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
    /// Announcers the peer table vouched for when they announced (`Consensus::vouched`), at
    /// most [`AUTHORS_KEPT`].
    pub(crate) vouched: BTreeSet<PeerId>,
    /// Announcers asked for an id they announced that never arrived (every try failed), at
    /// most [`AUTHORS_KEPT`]: their unbacked decisions go first, their announcements are not
    /// followed.
    pub(crate) suspects: BTreeSet<PeerId>,
    /// Authors found misstating a held proposal, at most [`AUTHORS_KEPT`]: each is reported
    /// once per slot.
    pub(crate) liars: BTreeSet<PeerId>,
    /// Lies found and not yet reported as violations: `(author, what it claimed)`.
    pub(crate) lies: Vec<(PeerId, String)>,
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
        // Decisions kept before the proposal arrived may misstate it.
        let Some(held) = self.proposals.get(&id) else {
            return;
        };
        let lies: Vec<(PeerId, String)> = self
            .decisions
            .values()
            .filter(|d| d.proposal_id == Some(id))
            .filter_map(|d| misstated(&id, held, d).map(|why| (d.from, why)))
            .collect();
        for (author, why) in lies {
            self.decisions.remove(&author);
            self.note_lie(author, why);
        }
    }

    /// After a fork adoption replaced the chain under this slot (PROTOCOL.md 9): gives each
    /// held proposal the ticket `ticket_of` computes for its proposer on the adopted chain.
    /// Under fair tickets (12.3) the ticket of slot k is over `beacon(k - L - 1)`, which the
    /// adoption changes when the fork is older; a proposal keeps the ticket computed on arrival
    /// otherwise, and the record decided from it would carry the replaced chain's ticket.
    ///
    /// If any ticket changed, what was judged against the old tickets goes too: the decisions
    /// (received or this node's own) that name a held proposal with another ticket than its
    /// new one, the lowest ticket announced in Tallies, and the authors found lying (or their
    /// lies not yet reported) about a ticket that was the old chain's. Nobody is counted for
    /// them: they were made or judged on the replaced chain. Eligibility, reveals and
    /// equivocations need nothing here: [`SlotState::ranked`] and finality judge the held
    /// proposals against the current chain at each use. Returns whether a ticket changed.
    pub(crate) fn retick(&mut self, ticket_of: impl Fn(&PeerId) -> u64) -> bool {
        let mut changed = false;
        for held in self.proposals.values_mut() {
            let ticket = ticket_of(&held.proposal.from);
            changed |= ticket != held.ticket;
            held.ticket = ticket;
        }
        if !changed {
            return false;
        }
        let proposals = &self.proposals;
        let stale = |d: &Decision| {
            d.proposal_id
                .and_then(|id| proposals.get(&id))
                .is_some_and(|held| d.ticket != Some(held.ticket))
        };
        self.decisions.retain(|_, d| !stale(d));
        if self.decided.as_ref().is_some_and(stale) {
            self.decided = None;
        }
        self.announced = None;
        self.liars.clear();
        self.lies.clear();
        true
    }

    /// Notes that `author` lied about a held proposal (once per slot; reported by the machine
    /// as a violation) and stops vouching for it.
    pub(crate) fn note_lie(&mut self, author: PeerId, why: String) {
        self.vouched.remove(&author);
        if self.liars.len() < AUTHORS_KEPT && self.liars.insert(author) {
            self.lies.push((author, why));
        }
    }

    /// Notes that the peer table vouched for `peer` when it announced something.
    pub(crate) fn vouch(&mut self, peer: PeerId) {
        let distrusted = self.liars.contains(&peer) || self.suspects.contains(&peer);
        if self.vouched.len() < AUTHORS_KEPT && !distrusted {
            self.vouched.insert(peer);
        }
    }

    /// Notes that `peer` failed to deliver an id it announced.
    pub(crate) fn suspect(&mut self, peer: PeerId) {
        if self.suspects.len() < AUTHORS_KEPT {
            self.suspects.insert(peer);
        }
        self.vouched.remove(&peer);
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
    ///
    /// A decision naming a held proposal must carry that proposal's ticket and winner: else it
    /// is a lie, not kept, and noted for the machine to count as a violation of its author.
    /// Past the limit the decision ranked last by [`SlotState::keep_rank`] goes.
    pub(crate) fn add_decision(&mut self, decision: Decision) {
        if self.decisions.contains_key(&decision.from) {
            return;
        }
        if let Some(id) = decision.proposal_id
            && let Some(held) = self.proposals.get(&id)
            && let Some(why) = misstated(&id, held, &decision)
        {
            self.note_lie(decision.from, why);
            return;
        }
        self.decisions.insert(decision.from, decision);
        while self.decisions.len() > DECISIONS_PER_SLOT {
            match self.last_ranked_decision() {
                Some(peer) => self.decisions.remove(&peer),
                None => break,
            };
        }
    }

    /// The author of the decision that goes first when there are too many.
    fn last_ranked_decision(&self) -> Option<PeerId> {
        // Within each claim: vouched-for authors first, then by PeerId.
        let mut claims: BTreeMap<Claim, Vec<(bool, PeerId)>> = BTreeMap::new();
        for d in self.decisions.values() {
            let vouched = self.vouched.contains(&d.from);
            claims
                .entry(Claim::of(d))
                .or_default()
                .push((!vouched, d.from));
        }
        let mut position: BTreeMap<PeerId, usize> = BTreeMap::new();
        for mut authors in claims.into_values() {
            authors.sort_unstable();
            position.extend(authors.into_iter().enumerate().map(|(i, (_, p))| (p, i)));
        }
        self.decisions
            .values()
            .map(|d| {
                let at = position.get(&d.from).copied().unwrap_or(usize::MAX);
                (self.keep_rank(d, at), d.from)
            })
            .max()
            .map(|(_, peer)| peer)
    }

    /// How long a decision is kept when there are too many, as `(class, order)`: the largest
    /// goes first. `position` is its place among the decisions of the same claim.
    ///
    /// | class | decisions | order within |
    /// |---|---|---|
    /// | 6 | beyond the first [`DECISIONS_PER_CLAIM`] of a claim | position |
    /// | 5 | of a suspect (asked, did not deliver), not backed | claimed ticket |
    /// | 4 | replays | - |
    /// | 3 | not backed | claimed ticket |
    /// | 2 | replays of vouched-for authors | - |
    /// | 1 | not backed, of vouched-for authors | claimed ticket |
    /// | 0 | backed by a held proposal (whose ticket and winner they carry) | its ticket |
    ///
    /// Ties go to the largest author first. Backed decisions are what finality (4.4) uses;
    /// an honest decision whose proposal has not arrived yet is fetched from its author and
    /// then backed, and its author is most often a speaker the table vouches for.
    pub(crate) fn keep_rank(&self, d: &Decision, position: usize) -> (u8, u64) {
        if position >= DECISIONS_PER_CLAIM {
            return (6, u64::try_from(position).unwrap_or(u64::MAX));
        }
        let claimed = d.ticket.unwrap_or(u64::MAX);
        if let Some(held) = d.proposal_id.and_then(|id| self.proposals.get(&id)) {
            return (0, held.ticket);
        }
        if self.suspects.contains(&d.from) {
            return (5, claimed);
        }
        let vouched = self.vouched.contains(&d.from);
        match (d.is_replay(), vouched) {
            (true, false) => (4, claimed),
            (false, false) => (3, claimed),
            (true, true) => (2, claimed),
            (false, true) => (1, claimed),
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

/// What a decision claims: the proposal it names, or for a replay the winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Claim {
    Proposal(Hash32),
    Replay(Hash32),
}

impl Claim {
    fn of(d: &Decision) -> Claim {
        match d.proposal_id {
            Some(id) => Claim::Proposal(id),
            None => Claim::Replay(d.winner),
        }
    }
}

/// Why `decision` misstates the held proposal `id` it names (another ticket or another
/// winner), if it does.
fn misstated(id: &Hash32, held: &Held, decision: &Decision) -> Option<String> {
    let winner = held.proposal.track.track_hash;
    if decision.ticket == Some(held.ticket) && decision.winner == winner {
        return None;
    }
    let ticket = decision
        .ticket
        .map_or_else(|| "none".to_owned(), |t| t.to_string());
    Some(format!(
        "decision for slot {} names proposal {id} with ticket {ticket} and winner {}; \
         the proposal has ticket {} and track {winner}",
        decision.slot, decision.winner, held.ticket
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{chain_to, keypair, peer, proposal};

    /// A slot holding one proposal with ticket 10, a decision naming it (and the own one), a
    /// decision naming a proposal not held, an announced ticket and a liar.
    fn judged_on_the_old_chain() -> (SlotState, Hash32) {
        let chain = chain_to(9);
        let p = proposal(&chain, 10, 1);
        let envelope = Envelope::seal(&p, &keypair(1)).expect("its own key");
        let id = envelope.id();
        let decision = |from: u8, proposal_id: Hash32, ticket: u64| Decision {
            network_id: *chain.network_id(),
            slot: 10,
            from: peer(from),
            winner: p.track.track_hash,
            proposal_id: Some(proposal_id),
            ticket: Some(ticket),
            equivocators: Vec::new(),
            rules_hash: *chain.rules_hash(),
        };
        let mut state = SlotState::default();
        state.hold(
            id,
            Held {
                proposal: p.clone(),
                envelope,
                ticket: 10,
            },
        );
        state.add_decision(decision(2, id, 10));
        state.add_decision(decision(3, Hash32::digest(b"not held"), 5));
        state.decided = Some(decision(4, id, 10));
        state.announced = Some(3);
        state.note_lie(peer(5), "claimed another ticket".to_owned());
        (state, id)
    }

    #[test]
    fn retick_changes_nothing_when_the_tickets_stay() {
        let (mut state, id) = judged_on_the_old_chain();
        assert!(!state.retick(|_| 10));
        assert_eq!(state.proposals[&id].ticket, 10);
        assert_eq!(state.decisions.len(), 2);
        assert!(state.decided.is_some());
        assert_eq!(state.announced, Some(3));
        assert_eq!(state.liars.len(), 1);
    }

    #[test]
    fn retick_drops_what_was_judged_on_the_old_tickets() {
        let (mut state, id) = judged_on_the_old_chain();
        assert!(state.retick(|_| 20));
        assert_eq!(state.proposals[&id].ticket, 20);
        // The decision naming the held proposal with its old ticket goes (the own one too);
        // the one naming a proposal not held cannot be judged and stays.
        let authors: Vec<PeerId> = state.decisions.keys().copied().collect();
        assert_eq!(authors, [peer(3)]);
        assert!(state.decided.is_none());
        assert_eq!(state.announced, None);
        assert!(state.liars.is_empty() && state.lies.is_empty());
        // A decision with the new ticket is kept, one with the old is a lie now.
        let mut fresh = state.decisions[&peer(3)].clone();
        fresh.from = peer(6);
        fresh.proposal_id = Some(id);
        fresh.ticket = Some(20);
        state.add_decision(fresh.clone());
        fresh.from = peer(7);
        fresh.ticket = Some(10);
        state.add_decision(fresh);
        assert!(state.decisions.contains_key(&peer(6)));
        assert!(!state.decisions.contains_key(&peer(7)));
        assert!(state.liars.contains(&peer(7)));
    }
}
