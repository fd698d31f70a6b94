//! Eligibility (PROTOCOL.md 5 and 12.2): may this proposer propose for slot k, judged from the
//! `plays` of its proposal against the chain.
//!
//! 12.2: a `plays` entry may be the mark `unavailable` (the proposer asked every provider it
//! knew for the winner and got nothing by its slot). The mark counts as in consensus at k-5 and
//! as no divergence in k-8 .. k-6, so that a winner whose content is withheld costs the network
//! a slot of silence, never its proposers' eligibility.

use libp2p_identity::PeerId;

use crate::chain::{Chain, Tickets};
use crate::hash::Hash32;
use crate::message::{Play, Played};
use crate::schedule::PROPOSAL_OFFSET;

/// The first slot `plays` covers, relative to k (k-8).
const PLAYS_BACK: u64 = 8;

/// Why a proposer is not eligible for a slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    /// The local chain does not hold a winner the verdict needs: the node cannot judge yet.
    #[error("the chain does not reach slot {slot} yet")]
    ChainTooShort {
        /// The slot whose winner is missing.
        slot: u64,
    },
    /// `plays` names a slot outside k-8 .. k-5, or is not strictly ascending.
    #[error("plays is malformed: {0}")]
    BadPlays(String),
    /// `plays[k-5]` is neither `winner(k-5)` nor `unavailable` (another track, null or
    /// missing): not in consensus now.
    #[error("not in consensus in slot {slot}")]
    NotInConsensus {
        /// k-5.
        slot: u64,
    },
    /// Slots k-8, k-7 and k-6 were all played, all differently from their winners (null and
    /// `unavailable` are no divergence).
    #[error("diverged in slots {first} to {}", first + 2)]
    Diverged {
        /// k-8.
        first: u64,
    },
    /// 12.3: the proposer is not enrolled on the chain.
    #[error("not enrolled")]
    NotEnrolled,
    /// 12.3: enrolled at `enrolled`, it may propose from slot `eligible_from` only.
    #[error("enrolled at slot {enrolled}, eligible from slot {eligible_from}")]
    EnrollDelay {
        /// The slot it was enrolled at.
        enrolled: u64,
        /// `enrolled + rules.enroll_delay`.
        eligible_from: u64,
    },
    /// The chain records the proposer as an equivocator in one of slots k-L .. k-1.
    #[error("recorded as an equivocator in slot {slot}")]
    Equivocator {
        /// The slot whose decision lists it.
        slot: u64,
    },
}

/// How one `plays` entry compares with its slot's winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The winner was played, or was unavailable to the proposer (12.2): in consensus.
    InConsensus,
    /// Another track was played: a divergence.
    Diverged,
    /// Null or absent: not a member yet, or nothing played. Neither in consensus nor a
    /// divergence.
    Nothing,
}

/// The entry of `plays` for `slot` (None when null or absent) against `winner`.
fn verdict(plays: &[Play], slot: u64, winner: &Hash32) -> Verdict {
    match plays.iter().find(|(s, _)| *s == slot).and_then(|(_, p)| *p) {
        Some(Played::Track(track)) if track == *winner => Verdict::InConsensus,
        Some(Played::Unavailable) => Verdict::InConsensus,
        Some(Played::Track(_)) => Verdict::Diverged,
        None => Verdict::Nothing,
    }
}

/// Checks that `plays` only names slots `max(0, k-8) ..= k-5`, strictly ascending.
fn check_plays(slot: u64, plays: &[Play]) -> Result<(), Ineligible> {
    let first = slot.saturating_sub(PLAYS_BACK);
    let last = slot.saturating_sub(PROPOSAL_OFFSET);
    if let Some((s, _)) = plays.iter().find(|(s, _)| !(first..=last).contains(s)) {
        return Err(Ineligible::BadPlays(format!(
            "slot {s} is outside {first}..={last}"
        )));
    }
    if plays.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(Ineligible::BadPlays(
            "slots are not strictly ascending".to_owned(),
        ));
    }
    Ok(())
}

/// 12.3 (fair tickets only): the proposer is enrolled at some e with `k >= e + enroll_delay`.
pub fn check_enrolled(chain: &Chain, slot: u64, proposer: &PeerId) -> Result<(), Ineligible> {
    if chain.tickets() == Tickets::Open {
        return Ok(());
    }
    let enrolled = chain.enrollment(proposer).ok_or(Ineligible::NotEnrolled)?;
    let eligible_from = enrolled.eligible_from(chain.rules().enroll_delay);
    if slot < eligible_from {
        return Err(Ineligible::EnrollDelay {
            enrolled: enrolled.slot,
            eligible_from,
        });
    }
    Ok(())
}

/// Whether `proposer`, whose proposal for slot `slot` (k >= L) carries `plays`, is eligible:
/// in consensus at k-5 (the winner or `unavailable`), not diverged (another track) in all of
/// k-8 .. k-6, not an equivocator in k-L .. k-1.
pub fn check_eligible(
    chain: &Chain,
    slot: u64,
    proposer: &PeerId,
    plays: &[Play],
) -> Result<(), Ineligible> {
    let now = slot
        .checked_sub(PROPOSAL_OFFSET)
        .ok_or(Ineligible::ChainTooShort { slot: 0 })?;
    check_plays(slot, plays)?;
    let winner_of = |j: u64| {
        chain
            .winner(j)
            .map(|t| t.track_hash)
            .ok_or(Ineligible::ChainTooShort { slot: j })
    };
    if verdict(plays, now, &winner_of(now)?) != Verdict::InConsensus {
        return Err(Ineligible::NotInConsensus { slot: now });
    }
    if let Some(first) = slot.checked_sub(PLAYS_BACK) {
        let mut diverged = 0;
        for j in first..now {
            if verdict(plays, j, &winner_of(j)?) == Verdict::Diverged {
                diverged += 1;
            }
        }
        if diverged == now - first {
            return Err(Ineligible::Diverged { first });
        }
    }
    check_enrolled(chain, slot, proposer)?;
    let since = slot.saturating_sub(chain.lookahead());
    for j in since..slot {
        if chain
            .decided(j)
            .is_some_and(|d| d.equivocators.contains(proposer))
        {
            return Err(Ineligible::Equivocator { slot: j });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
