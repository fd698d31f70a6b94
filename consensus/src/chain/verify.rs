//! The checks of a decided slot received from a peer (PROTOCOL.md 12.1): the chain hash link,
//! and that the record's TrackRef is what the winning proposer signed, or for a replay the
//! TrackRef of the earlier winner that the replay rule chooses.

use super::{Chain, ChainError, DecidedSlot, next_chain_hash};
use crate::admissibility::{Inadmissible, check_reveal, check_static};
use crate::eligibility::check_enrolled;
use crate::envelope::Envelope;
use crate::hash::Hash32;
use crate::limits::GOSSIP_MAX_BYTES;
use crate::message::Proposal;
use crate::ticket::{SlotContext, ticket};
use crate::track::TrackRef;

/// The first field in which two TrackRefs differ, None if they are the same. Loudness is
/// compared by its bits, so that a NaN a proposer signed still matches itself.
fn track_difference(a: &TrackRef, b: &TrackRef) -> Option<&'static str> {
    let loudness = |t: &TrackRef| t.loudness_lufs.map(f64::to_bits);
    [
        ("track_hash", a.track_hash == b.track_hash),
        ("manifest_id", a.manifest_id == b.manifest_id),
        ("duration_ms", a.duration_ms == b.duration_ms),
        ("segment_count", a.segment_count == b.segment_count),
        ("title", a.title == b.title),
        ("artist", a.artist == b.artist),
        ("album", a.album == b.album),
        ("loudness_lufs", loudness(a) == loudness(b)),
    ]
    .into_iter()
    .find_map(|(field, same)| (!same).then_some(field))
}

/// Whether two TrackRefs are the same in every field (loudness compared by its bits).
pub fn same_track(a: &TrackRef, b: &TrackRef) -> bool {
    track_difference(a, b).is_none()
}

impl Chain {
    /// Checks a slot received from a peer as the next slot of this chain, without appending it
    /// (PROTOCOL.md 12.1), cheapest checks first:
    ///
    /// 1. it is slot `len()`; proposal id, ticket and envelope are all set or all null;
    /// 2. its chain hash follows from the head's;
    /// 3. won by a proposal: `proposal_id = SHA-256(body)` of the envelope; the envelope
    ///    verifies as a proposal (size, signature, body, signer = `from`); the proposal passes
    ///    admissibility rules 1 and 2 for this slot (network, slot, rules hash, duration and
    ///    segment bounds); the TrackRef is the signed `body.track`; the ticket is the
    ///    proposer's;
    /// 4. a replay: its TrackRef is that of an earlier winner, the one the replay rule of 4.3
    ///    chooses ([`Chain::replay_track`]).
    ///
    /// Under fair tickets (12.3) the proposer must be enrolled `enroll_delay` slots before and
    /// its reveal must be the next value of its committed chain. The rest of eligibility
    /// (rule 3) is not checked: `plays` are claims about playback, and the chain hash with a
    /// majority of heads (section 9, 12.1) is what binds the winner.
    pub fn verify_synced(&self, slot: &DecidedSlot) -> Result<(), ChainError> {
        let k = slot.slot;
        if k != self.len() {
            return Err(ChainError::NotNext {
                expected: self.len(),
                got: k,
            });
        }
        let won = match (slot.proposal_id, slot.ticket, &slot.proposal) {
            (Some(id), Some(ticket), Some(envelope)) => Some((id, ticket, envelope)),
            (None, None, None) => None,
            (Some(_), Some(_), None) => return Err(ChainError::MissingProposal(k)),
            (None, None, Some(_)) => return Err(ChainError::ReplayWithProposal(k)),
            _ => return Err(ChainError::HalfReplay(k)),
        };
        let computed = next_chain_hash(
            &self.head().chain_hash,
            k,
            &slot.track.track_hash,
            slot.proposal_id.as_ref(),
        );
        if computed != slot.chain_hash {
            return Err(ChainError::HashMismatch {
                slot: k,
                claimed: slot.chain_hash,
                computed,
            });
        }
        match won {
            Some((id, claimed_ticket, envelope)) => {
                self.verify_won(k, &slot.track, id, claimed_ticket, envelope)
            }
            None => self.verify_replay(k, &slot.track),
        }
    }

    fn verify_won(
        &self,
        k: u64,
        track: &TrackRef,
        id: Hash32,
        claimed_ticket: u64,
        envelope: &Envelope,
    ) -> Result<(), ChainError> {
        let computed = envelope.id();
        if computed != id {
            return Err(ChainError::ProposalId {
                slot: k,
                claimed: id,
                computed,
            });
        }
        let proposal: Proposal = envelope
            .open_as(GOSSIP_MAX_BYTES)
            .map_err(|source| ChainError::Envelope { slot: k, source })?;
        check_static(self, k, &proposal)
            .map_err(|source| ChainError::Inadmissible { slot: k, source })?;
        check_enrolled(self, k, &proposal.from)
            .map_err(Inadmissible::from)
            .and_then(|()| check_reveal(self, k, &proposal, None))
            .map_err(|source| ChainError::Inadmissible { slot: k, source })?;
        if let Some(field) = track_difference(track, &proposal.track) {
            return Err(ChainError::TrackMismatch { slot: k, field });
        }
        let computed = ticket(&SlotContext::on_chain(self, k), &proposal.from);
        if computed != claimed_ticket {
            return Err(ChainError::Ticket {
                slot: k,
                claimed: claimed_ticket,
                computed,
            });
        }
        Ok(())
    }

    fn verify_replay(&self, k: u64, track: &TrackRef) -> Result<(), ChainError> {
        let choice = self.replay_track();
        if choice.is_some_and(|c| same_track(c, track)) {
            return Ok(());
        }
        let earlier = (0..k).any(|j| self.winner(j).is_some_and(|w| same_track(w, track)));
        if !earlier {
            return Err(ChainError::ReplayTrack {
                slot: k,
                track_hash: track.track_hash,
            });
        }
        Err(ChainError::ReplayChoice {
            slot: k,
            expected: choice.map_or(Hash32::ZERO, |c| c.track_hash),
            got: track.track_hash,
        })
    }
}
