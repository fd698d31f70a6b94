//! Eligibility (PROTOCOL.md 5): may this proposer propose for slot k, judged from the `plays`
//! of its proposal against the chain.

use libp2p_identity::PeerId;

use crate::chain::Chain;
use crate::message::Play;
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
    /// `plays[k-5]` is not `winner(k-5)` (or is null or missing): not in consensus now.
    #[error("not in consensus in slot {slot}")]
    NotInConsensus {
        /// k-5.
        slot: u64,
    },
    /// Slots k-8, k-7 and k-6 were all played, all differently from their winners.
    #[error("diverged in slots {first} to {}", first + 2)]
    Diverged {
        /// k-8.
        first: u64,
    },
    /// The chain records the proposer as an equivocator in one of slots k-L .. k-1.
    #[error("recorded as an equivocator in slot {slot}")]
    Equivocator {
        /// The slot whose decision lists it.
        slot: u64,
    },
}

/// What the proposer played in `slot` according to `plays` (None when null or absent).
fn played(plays: &[Play], slot: u64) -> Option<&crate::hash::Hash32> {
    plays
        .iter()
        .find(|(s, _)| *s == slot)
        .and_then(|(_, track)| track.as_ref())
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

/// Whether `proposer`, whose proposal for slot `slot` (k >= L) carries `plays`, is eligible:
/// in consensus at k-5, not diverged in all of k-8 .. k-6, not an equivocator in k-L .. k-1.
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
    if played(plays, now) != Some(&winner_of(now)?) {
        return Err(Ineligible::NotInConsensus { slot: now });
    }
    if let Some(first) = slot.checked_sub(PLAYS_BACK) {
        let mut diverged = 0;
        for j in first..now {
            let winner = winner_of(j)?;
            if played(plays, j).is_some_and(|track| *track != winner) {
                diverged += 1;
            }
        }
        if diverged == now - first {
            return Err(Ineligible::Diverged { first });
        }
    }
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
