//! Finality (PROTOCOL.md 4.4): the slot `chain.len()` is appended to the chain, and every
//! decision that disagrees with the choice is reported.

use libp2p_identity::PeerId;

use super::slot::SlotState;
use super::{Action, Consensus};
use crate::admissibility::check_admissible;
use crate::chain::Outcome;
use crate::hash::Hash32;
use crate::message::Decision;
use crate::ticket::rank_cmp;

/// Why a decision lost at finality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConflictReason {
    /// Its proposal has a higher ticket than the winner's.
    HigherTicket,
    /// Its proposal is not held (it never arrived).
    ProposalMissing,
    /// Its proposal is held but inadmissible (rules 1 to 3).
    Inadmissible,
    /// Its proposal's author equivocated (rule 4).
    Equivocator,
    /// It is a replay, and a decision backed by an admissible proposal wins, or another replay
    /// winner was computed.
    Replay,
}

/// A decision for a slot (received, or this node's own) that differs from the final choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Its author.
    pub from: PeerId,
    /// The winner it named.
    pub winner: Hash32,
    /// The proposal it named (None: a replay).
    pub proposal_id: Option<Hash32>,
    /// That proposal's ticket.
    pub ticket: Option<u64>,
    /// Why it lost.
    pub reason: ConflictReason,
}

/// What finality chose for a slot and which decisions it overruled, for the log line
/// `final slot=12 winner=... decisions=4 conflicts=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalReport {
    /// The slot.
    pub slot: u64,
    /// Its winner.
    pub winner: Hash32,
    /// The winning proposal (None: a replay).
    pub proposal_id: Option<Hash32>,
    /// The winning proposal's author (None: a replay), as its verified envelope says.
    pub proposer: Option<PeerId>,
    /// How many decisions were compared (this node's own included).
    pub decisions: usize,
    /// The decisions that disagree, by author.
    pub conflicts: Vec<Conflict>,
}

impl Consensus {
    /// Makes slot `slot` (= chain.len()) final (PROTOCOL.md 4.4). False if it cannot now: no
    /// replay candidate, or (for a slot the node only follows) no decision received agrees, or
    /// one names a proposal the node lacks with a ticket at least as low as the outcome's, and
    /// the chain is being fetched instead. The fetch is bounded ([`FOLLOW_TRIES_MAX`]): after
    /// it the slot is made final from what the node holds, so finality always happens.
    ///
    /// [`FOLLOW_TRIES_MAX`]: super::FOLLOW_TRIES_MAX
    pub(super) fn finalize(&mut self, now: u64, slot: u64) -> bool {
        // Lies found in this slot are reported before its state goes.
        self.report_lies();
        let followed = self.followed(slot);
        let state = self.slots.remove(&slot).unwrap_or_default();
        let Some(outcome) = self.outcome(slot, &state) else {
            self.slots.insert(slot, state);
            return false;
        };
        let proposal_id = outcome.proposal.map(|(id, _)| id);
        let winner = outcome.track.track_hash;
        let agrees = |d: &Decision| d.proposal_id == proposal_id && d.winner == winner;
        // A Decision naming a proposal this node lacks, with a ticket no higher than the
        // outcome's, may name the real winner: a node that only follows the slot does not
        // know, and asks for the chain.
        let outranked = |d: &Decision| {
            d.proposal_id
                .is_some_and(|id| !state.proposals.contains_key(&id))
                && d.ticket
                    .is_some_and(|t| outcome.proposal.is_none_or(|(_, best)| t <= best))
        };
        if followed
            && !state.follow_given_up
            && (!state.decisions.values().any(agrees) || state.decisions.values().any(outranked))
            && self.follow_sync(now, slot, &state)
        {
            self.slots.insert(slot, state);
            return false;
        }
        let mut all: Vec<&Decision> = state.decisions.values().collect();
        all.extend(state.decided.as_ref());
        let conflicts = all
            .iter()
            .filter(|d| !agrees(d))
            .map(|d| self.conflict(slot, &state, d))
            .collect();
        let report = FinalReport {
            slot,
            winner,
            proposal_id,
            proposer: proposal_id
                .and_then(|id| state.proposals.get(&id))
                .map(|held| held.proposal.from),
            decisions: all.len(),
            conflicts,
        };
        let decided = self.chain.push(outcome).clone();
        self.slots.retain(|s, _| *s > slot);
        self.actions.push_back(Action::Decided(decided));
        self.actions.push_back(Action::Final(report));
        true
    }

    /// The outcome of 4.4: the lowest ticket among the decisions whose proposal is held and
    /// passes rules 1 to 3; a replay if that proposer equivocated (rule 4) or none qualifies.
    fn outcome(&self, slot: u64, state: &SlotState) -> Option<Outcome> {
        let mut backed: Vec<&Decision> = state.decisions.values().collect();
        backed.extend(state.decided.as_ref());
        let best = backed
            .iter()
            .filter_map(|d| d.proposal_id)
            .filter_map(|id| state.proposals.get(&id).map(|held| (id, held)))
            .filter(|(id, held)| {
                check_admissible(&self.chain, slot, &held.proposal, id, [id]).is_ok()
            })
            .min_by(|a, b| {
                rank_cmp(
                    (a.1.ticket, &a.1.proposal.from),
                    (b.1.ticket, &b.1.proposal.from),
                )
            });
        let equivocators = state.equivocators();
        if let Some((id, held)) = best
            && !equivocators.contains(&held.proposal.from)
        {
            return Some(Outcome {
                track: held.proposal.track.clone(),
                proposal: Some((id, held.ticket)),
                envelope: Some(held.envelope.clone()),
                equivocators,
            });
        }
        let replay = crate::select::replay_winner(&self.chain, slot)?;
        let track = (0..slot).rev().find_map(|j| {
            self.chain
                .winner(j)
                .filter(|t| t.track_hash == replay.winner)
        })?;
        Some(Outcome {
            track: track.clone(),
            proposal: None,
            envelope: None,
            equivocators,
        })
    }

    fn conflict(&self, slot: u64, state: &SlotState, decision: &Decision) -> Conflict {
        let reason = match decision.proposal_id {
            None => ConflictReason::Replay,
            Some(id) => match state.proposals.get(&id) {
                None => ConflictReason::ProposalMissing,
                Some(held) if state.equivocators().contains(&held.proposal.from) => {
                    ConflictReason::Equivocator
                }
                Some(held)
                    if check_admissible(&self.chain, slot, &held.proposal, &id, [&id]).is_err() =>
                {
                    ConflictReason::Inadmissible
                }
                Some(_) => ConflictReason::HigherTicket,
            },
        };
        Conflict {
            from: decision.from,
            winner: decision.winner,
            proposal_id: decision.proposal_id,
            ticket: decision.ticket,
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
