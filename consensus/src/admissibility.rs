//! Admissibility (PROTOCOL.md 3): the deterministic verdict on a proposal, the same on every
//! node given the same proposal bytes and the same chain.

use crate::beacon::verify_reveal;
use crate::chain::{Chain, Tickets};
use crate::eligibility::{Ineligible, check_eligible};
use crate::envelope::Validation;
use crate::hash::Hash32;
use crate::limits::GOSSIP_MAX_BYTES;
use crate::message::Enroll;
use crate::message::Proposal;
use crate::track::expected_segments;

/// Why a proposal is not admissible; the variants follow the rules of PROTOCOL.md 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inadmissible {
    /// Rule 1: the proposal is for another network.
    #[error("proposal of network {got}, expected {expected}")]
    WrongNetwork {
        /// This chain's network id.
        expected: Hash32,
        /// The proposal's.
        got: Hash32,
    },
    /// Rule 1: `P.slot` is not the slot being judged.
    #[error("proposal for slot {got} judged for slot {expected}")]
    WrongSlot {
        /// The slot being judged.
        expected: u64,
        /// `P.slot`.
        got: u64,
    },
    /// Rule 1: slots 0 .. L-1 come from the genesis and are never proposed.
    #[error("slot {0} is a genesis slot")]
    GenesisSlot(u64),
    /// Rule 1: `P.rules_hash` is not the network's.
    #[error("proposal runs rules {got}, the network runs {expected}")]
    RulesHash {
        /// The network's rules hash.
        expected: Hash32,
        /// `P.rules_hash`.
        got: Hash32,
    },
    /// Rule 2: the duration is outside `min_track_ms ..= max_track_ms`.
    #[error("track lasts {duration_ms} ms, outside {min_ms}..={max_ms} ms")]
    Duration {
        /// `P.track.duration_ms`.
        duration_ms: u64,
        /// `rules.min_track_ms`.
        min_ms: u64,
        /// `rules.max_track_ms`.
        max_ms: u64,
    },
    /// Rule 2: the segment count is off by more than one segment.
    #[error("track has {got} segments, expected {expected} (plus or minus one)")]
    SegmentCount {
        /// `ceil(duration_ms / segment_ms)`.
        expected: u64,
        /// `P.track.segment_count`.
        got: u64,
    },
    /// 12.3: the Enroll envelopes carried are too many, do not verify, are of another network,
    /// or name one peer twice.
    #[error("enrolls: {0}")]
    Enrolls(String),
    /// 12.3: the reveal is missing, or is not the next value of the proposer's committed chain.
    #[error("reveal_invalid: {0}")]
    Reveal(String),
    /// Rule 3: the proposer is not eligible.
    #[error("proposer not eligible: {0}")]
    Ineligible(#[from] Ineligible),
    /// Rule 4: another body from the same proposer for this slot is known.
    #[error("proposer sent {bodies} distinct proposals for this slot")]
    Equivocation {
        /// Distinct bodies known from the proposer, this one included.
        bodies: usize,
    },
}

impl Inadmissible {
    /// Rules 1 and 2 are violations: answered Reject and counted against the sender.
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            Inadmissible::WrongNetwork { .. }
                | Inadmissible::WrongSlot { .. }
                | Inadmissible::GenesisSlot(_)
                | Inadmissible::RulesHash { .. }
                | Inadmissible::Duration { .. }
                | Inadmissible::SegmentCount { .. }
                | Inadmissible::Enrolls(_)
                | Inadmissible::Reveal(_)
        )
    }

    /// The gossipsub verdict: Reject for violations (rules 1 and 2); Accept for an
    /// equivocation, so that every node learns both bodies and drops both; Ignore for an
    /// ineligible proposer (not counted, not punished: the sender may judge from a chain that
    /// differs only transiently).
    pub fn validation(&self) -> Validation {
        match self {
            _ if self.is_violation() => Validation::Reject,
            Inadmissible::Equivocation { .. } => Validation::Accept,
            _ => Validation::Ignore,
        }
    }
}

/// Rules 1 and 2: the checks on the proposal alone (no chain beyond network id and rules).
pub fn check_static(chain: &Chain, slot: u64, proposal: &Proposal) -> Result<(), Inadmissible> {
    if proposal.network_id != *chain.network_id() {
        return Err(Inadmissible::WrongNetwork {
            expected: *chain.network_id(),
            got: proposal.network_id,
        });
    }
    if proposal.slot != slot {
        return Err(Inadmissible::WrongSlot {
            expected: slot,
            got: proposal.slot,
        });
    }
    if slot < chain.lookahead() {
        return Err(Inadmissible::GenesisSlot(slot));
    }
    if proposal.rules_hash != *chain.rules_hash() {
        return Err(Inadmissible::RulesHash {
            expected: *chain.rules_hash(),
            got: proposal.rules_hash,
        });
    }
    let rules = chain.rules();
    let track = &proposal.track;
    if !(rules.min_track_ms..=rules.max_track_ms).contains(&track.duration_ms) {
        return Err(Inadmissible::Duration {
            duration_ms: track.duration_ms,
            min_ms: rules.min_track_ms,
            max_ms: rules.max_track_ms,
        });
    }
    let expected = expected_segments(track.duration_ms, rules.segment_ms);
    if track.segment_count.abs_diff(expected) > 1 {
        return Err(Inadmissible::SegmentCount {
            expected,
            got: track.segment_count,
        });
    }
    if chain.tickets() == Tickets::Fair {
        check_enrolls(chain, proposal)?;
    }
    Ok(())
}

/// 12.3: at most `rules.enroll_per_slot` Enroll envelopes, each verified (signature, body,
/// signer), of this network, one per peer.
fn check_enrolls(chain: &Chain, proposal: &Proposal) -> Result<(), Inadmissible> {
    let max = chain.rules().enroll_per_slot;
    if proposal.enrolls.len() as u64 > max {
        return Err(Inadmissible::Enrolls(format!(
            "{} carried, at most {max}",
            proposal.enrolls.len()
        )));
    }
    let mut peers = std::collections::BTreeSet::new();
    for envelope in &proposal.enrolls {
        let enroll: Enroll = envelope
            .open_as(GOSSIP_MAX_BYTES)
            .map_err(|e| Inadmissible::Enrolls(e.to_string()))?;
        if enroll.network_id != *chain.network_id() {
            return Err(Inadmissible::Enrolls(format!(
                "an Enroll of network {}",
                enroll.network_id
            )));
        }
        if !peers.insert(enroll.from) {
            return Err(Inadmissible::Enrolls(format!(
                "{} enrolls twice",
                enroll.from
            )));
        }
    }
    Ok(())
}

/// 12.3: the proposal's reveal is `v(k - e)` of its proposer's committed chain, checked by
/// walking down to the latest value known: the chain's (its last winning reveal, else its
/// commit), or `cached` when that is a later verified value of the same commit at or before
/// this reveal's index. Returns the
/// value verified, `(k - e, reveal)`, for the caller's cache. Under open tickets there is
/// nothing to check (the value returned is then meaningless). An unenrolled proposer is
/// ineligible (rule 3); eligibility is checked before this.
pub fn check_reveal(
    chain: &Chain,
    slot: u64,
    proposal: &Proposal,
    cached: Option<(Hash32, u64, Hash32)>,
) -> Result<(u64, Hash32), Inadmissible> {
    if chain.tickets() == Tickets::Open {
        return Ok((0, Hash32::ZERO));
    }
    let enrolled = chain
        .enrollment(&proposal.from)
        .ok_or(Ineligible::NotEnrolled)?;
    let reveal = proposal
        .reveal
        .ok_or_else(|| Inadmissible::Reveal("no reveal".to_owned()))?;
    let index = enrolled.reveal_index(slot).ok_or_else(|| {
        Inadmissible::Reveal(format!(
            "slot {slot} is outside the chain enrolled at slot {} (len {})",
            enrolled.slot, enrolled.len
        ))
    })?;
    // The cache helps only when it lies between the chain's latest value and this reveal: a
    // node may verify the author's proposal for k + 1 before it fetches the one for k.
    let (known_index, known) = match cached {
        Some((commit, i, v))
            if commit == enrolled.commit && i > enrolled.latest.0 && i <= index =>
        {
            (i, v)
        }
        _ => enrolled.latest,
    };
    if index == known_index && reveal == known {
        return Ok((index, reveal));
    }
    if !verify_reveal(&reveal, index, &known, known_index, enrolled.len) {
        return Err(Inadmissible::Reveal(format!(
            "{} is not v({index}) of the chain committed at slot {}",
            reveal.short(),
            enrolled.slot
        )));
    }
    Ok((index, reveal))
}

/// The full verdict on proposal `proposal` (id `proposal_id`, its envelope already verified)
/// for slot `slot`: rules 1 to 4, in order. `known_from_proposer` are the ids of every proposal
/// body from the same proposer for this slot that the node knows (this one may be among them).
pub fn check_admissible<'a>(
    chain: &Chain,
    slot: u64,
    proposal: &Proposal,
    proposal_id: &Hash32,
    known_from_proposer: impl IntoIterator<Item = &'a Hash32>,
) -> Result<(), Inadmissible> {
    check_static(chain, slot, proposal)?;
    check_eligible(chain, slot, &proposal.from, &proposal.plays)?;
    check_reveal(chain, slot, proposal, None)?;
    let others = known_from_proposer
        .into_iter()
        .filter(|id| *id != proposal_id)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if others > 0 {
        return Err(Inadmissible::Equivocation { bodies: others + 1 });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
