//! Tally and Decision (PROTOCOL.md 4.3) and when a node publishes them: the erratum found by
//! the simulator (docs/consensus.md, "Errata found by the simulator").
//!
//! PROTOCOL.md 4.3 has every node publish one Tally and one Decision per slot, so each node
//! receives about 2N of them. Instead, as 4.2 keeps proposers silent, a node *speaks* only when
//! its message adds something:
//!
//! - its **rank** for the slot is the number of peers heard from in the last three status
//!   periods whose `(ticket, peer_id bytes)` is lower than its own; the [`SPEAKERS`] lowest
//!   ranked always publish, at the start of the phase (the Tally at the start of the selection
//!   window, the Decision at the decision point);
//! - every other node waits a delay within the first [`SPEAK_SHARE`]th of the window (at least
//!   [`SPEAK_GRACE_MS`], more for higher tickets) and then publishes only if it has news, or if
//!   it received fewer than [`HEARD_MIN`] messages of that kind for the slot.
//!
//! News for a Tally: its best proposal has a lower ticket than every ticket announced in the
//! Tallies received (announcements are only hints to fetch, so claimed tickets are used). News
//! for a Decision: no Decision received names the same outcome or a proposal this node holds,
//! finds admissible and ranks at least as well as its own (verified, so a forged announcement
//! cannot silence the holder of a better proposal). The decision itself is still made at the
//! decision point and kept for finality (4.4) whether published or not; when it names a
//! proposal, the driver hears of it at once ([`Action::Leaning`]) to start fetching the likely
//! winner.

use super::slot::SlotState;
use super::{Action, Consensus, fork};
use crate::hash::Hash32;
use crate::message::{Decision, Tally};
use crate::schedule::{Window, finality_ms};
use crate::select::replay_winner;
use crate::ticket::rank_cmp;

/// The lowest-ranked nodes that always publish their Tally and Decision for a slot.
pub const SPEAKERS: u64 = 3;
/// A node that is no speaker publishes anyway if, by its turn, it has received fewer than this
/// many Tallies (Decisions) for the slot: the speakers may be offline or cut off.
pub const HEARD_MIN: usize = 1;
/// The least delay of a node that is no speaker after the start of the phase, ms: time for the
/// speakers' messages to arrive.
pub const SPEAK_GRACE_MS: u64 = 1_000;
/// Nodes that are no speakers take their turn within the first `1/SPEAK_SHARE` of the
/// selection window after the start of the phase, lower tickets first.
pub const SPEAK_SHARE: u64 = 4;

impl Consensus {
    /// Whether this node is among the [`SPEAKERS`] lowest tickets for `slot` among itself and
    /// the peers heard from recently. Stops counting at [`SPEAKERS`], so that most nodes compute
    /// a few tickets only.
    fn is_speaker(&self, now: u64, slot: u64) -> bool {
        let since = now.saturating_sub(fork::SUPPORT_PERIODS * self.status_period());
        let mine = self.my_ticket(slot);
        let mut lower = 0;
        // Whether three are lower does not depend on the order they are counted in.
        for (peer, _) in self.peers.heard_since_unordered(since) {
            if *peer == self.me {
                continue;
            }
            let theirs = self.ticket_of(slot, peer);
            if rank_cmp((theirs, peer), (mine, &self.me)).is_lt() {
                lower += 1;
                if lower >= SPEAKERS {
                    return false;
                }
            }
        }
        true
    }

    /// The turn of a node that is no speaker, after the start of a phase in `window`:
    /// `g + (limit - g) * ticket / 2^64` with `limit = len / SPEAK_SHARE`, `g = min(grace,
    /// limit)`.
    fn turn_delay(&self, slot: u64, window: Window) -> u64 {
        let limit = window.len_ms() / SPEAK_SHARE;
        let grace = SPEAK_GRACE_MS.min(limit);
        let spread = (u128::from(limit - grace) * u128::from(self.my_ticket(slot))) >> 64;
        grace + u64::try_from(spread).expect("invariant: below limit, a u64")
    }

    /// When the Tally step of `slot` runs: at the start of the selection window (to find out
    /// whether this node is a speaker, and for speakers to publish), else at its turn.
    pub(super) fn tally_time(&self, slot: u64, window: Window, state: Option<&SlotState>) -> u64 {
        match state.and_then(|s| s.speaker) {
            Some(false) => window.start_ms + self.turn_delay(slot, window),
            _ => window.start_ms,
        }
    }

    /// When the Decide step of `slot` runs: at the decision point, and for a node that is no
    /// speaker again at its turn after it (at the latest at finality), to publish or not.
    pub(super) fn decision_time(
        &self,
        slot: u64,
        window: Window,
        state: Option<&SlotState>,
    ) -> u64 {
        let speaker = state.and_then(|s| s.speaker);
        let decided = state.is_some_and(|s| s.decided.is_some());
        if !decided || speaker != Some(false) {
            return window.end_ms;
        }
        let turn = window.end_ms + self.turn_delay(slot, window);
        finality_ms(&self.chain, slot).map_or(turn, |f| turn.min(f).max(window.end_ms))
    }

    fn ensure_speaker(&mut self, now: u64, slot: u64) -> bool {
        if let Some(known) = self.slots.get(&slot).and_then(|s| s.speaker) {
            return known;
        }
        let speaker = self.is_speaker(now, slot);
        self.slots.entry(slot).or_default().speaker = Some(speaker);
        speaker
    }

    /// The Tally step: publishes the best three proposals held if this node is a speaker, has
    /// news, or heard fewer than [`HEARD_MIN`] Tallies by its turn.
    pub(super) fn tally(&mut self, now: u64, slot: u64) {
        let speaker = self.ensure_speaker(now, slot);
        let Some(window) = crate::schedule::selection_window(&self.chain, slot) else {
            return;
        };
        if now < self.tally_time(slot, window, self.slots.get(&slot)) {
            return;
        }
        let chain = &self.chain;
        let state = self.slots.entry(slot).or_default();
        state.tallied = true;
        if state.decided.is_some() {
            return;
        }
        let best: Vec<(u64, Hash32)> = state
            .ranked(chain, slot)
            .iter()
            .take(crate::limits::TALLY_BEST_MAX)
            .map(|(id, held)| (held.ticket, *id))
            .collect();
        let news = best
            .first()
            .is_some_and(|(t, _)| state.announced.is_none_or(|a| *t < a));
        if !(speaker || news || state.tally_authors.len() < HEARD_MIN) {
            return;
        }
        let tally = Tally {
            network_id: *chain.network_id(),
            slot,
            from: self.me,
            best,
        };
        self.publish(&tally);
    }

    /// The Decide step: at the decision point the decision is made (and kept for finality);
    /// it is published by a speaker at once, by another node at its turn if it has news or
    /// heard fewer than [`HEARD_MIN`] Decisions.
    pub(super) fn decide(&mut self, now: u64, slot: u64) {
        let speaker = self.ensure_speaker(now, slot);
        if self.slots.get(&slot).is_none_or(|s| s.decided.is_none()) {
            self.make_decision(slot);
        }
        let Some(window) = crate::schedule::selection_window(&self.chain, slot) else {
            return;
        };
        if now < self.decision_time(slot, window, self.slots.get(&slot)) {
            return;
        }
        let chain = &self.chain;
        let state = self.slots.entry(slot).or_default();
        state.decision_done = true;
        let Some(mine) = state.decided.clone() else {
            return;
        };
        let covered = state
            .decisions
            .values()
            .any(|d| covers(state, chain, slot, d, &mine));
        if speaker || !covered || state.decisions.len() < HEARD_MIN {
            self.publish(&mine);
        }
    }

    /// The decision of 4.3 at the decision point: the lowest admissible proposal held, else
    /// the replay. Made once per slot; a decision for a proposal is also reported as
    /// [`Action::Leaning`] (when `start(slot)` is known), so that the driver can start
    /// fetching the likely winner before finality.
    fn make_decision(&mut self, slot: u64) {
        let chain = &self.chain;
        let state = self.slots.entry(slot).or_default();
        let best = state
            .ranked(chain, slot)
            .first()
            .map(|(id, held)| (*id, held.ticket, held.proposal.from, &held.proposal.track));
        if let Some((_, _, proposer, track)) = best
            && let Some(start_ms) = chain.start(slot)
        {
            self.actions.push_back(Action::Leaning {
                slot,
                track: track.clone(),
                proposer,
                start_ms,
            });
        }
        let best = best.map(|(id, ticket, _, track)| (track.track_hash, id, ticket));
        let (winner, proposal_id, ticket) = match best {
            Some((winner, id, ticket)) => (winner, Some(id), Some(ticket)),
            None => match replay_winner(chain, slot) {
                Some(replay) => (replay.winner, None, None),
                // Only a chain without a single known winner has no replay candidate.
                None => (Hash32::ZERO, None, None),
            },
        };
        state.decided = Some(Decision {
            network_id: *chain.network_id(),
            slot,
            from: self.me,
            winner,
            proposal_id,
            ticket,
            equivocators: state.equivocators(),
            rules_hash: *chain.rules_hash(),
        });
    }
}

/// Whether a received decision makes the own one `mine` redundant: it names the same outcome,
/// or a proposal held and admissible that ranks at least as well.
fn covers(
    state: &SlotState,
    chain: &crate::chain::Chain,
    slot: u64,
    received: &Decision,
    mine: &Decision,
) -> bool {
    if received.proposal_id == mine.proposal_id && received.winner == mine.winner {
        return true;
    }
    let Some(id) = received.proposal_id else {
        return false;
    };
    let Some(held) = state.proposals.get(&id) else {
        return false;
    };
    if !state.admissible(chain, slot, &id, held) {
        return false;
    }
    match mine.proposal_id.and_then(|own| state.proposals.get(&own)) {
        Some(own) => rank_cmp(
            (held.ticket, &held.proposal.from),
            (own.ticket, &own.proposal.from),
        )
        .is_le(),
        // A replay (or a proposal no longer held) loses to any admissible proposal.
        None => true,
    }
}

#[cfg(test)]
mod tests;
