//! The shell's store work, run on blocking threads: reading what the store holds of a track,
//! checking a manifest against the TrackRef before storing it, and hashing every received block
//! before storing it (PROTOCOL.md 6).

use chorus_consensus::{Hash32, TrackRef};
use chorus_media::Manifest;
use chorus_media::manifest::ManifestError;
use chorus_media::store::BlockStore;
use libp2p::PeerId;
use tracing::warn;

use super::planner::{Contents, Delivery, Local, ManifestOutcome};
use crate::net::protocol::Have;

/// What the store holds of `track`: its manifest, checked, and which segments.
pub(super) fn read_local(
    store: &BlockStore,
    track: &TrackRef,
    slot: u64,
    segment_ms: u64,
) -> Local {
    let Ok(bytes) = store.get(&track.manifest_id) else {
        return Local::Absent;
    };
    match check_manifest(&bytes, track, segment_ms) {
        Ok(segments) => Local::Held(contents(store, segments)),
        Err(e) => {
            // Held manifest bytes are whatever the id names; a TrackRef that claims another
            // duration or segment count for them lies about the schedule.
            warn!(event = "manifest_refused", track_hash = %track.track_hash, slot, reason = %e,
                "refused the manifest of \"{}\" (slot {slot}): {e}; the track will not be fetched", track.title);
            Local::Refused
        }
    }
}

/// Checks manifest bytes that hash to `track.manifest_id`, received from `peer`, and stores them.
pub(super) fn accept_manifest(
    store: &BlockStore,
    track: &TrackRef,
    slot: u64,
    segment_ms: u64,
    peer: PeerId,
    bytes: &[u8],
) -> ManifestOutcome {
    match check_manifest(bytes, track, segment_ms) {
        Ok(segments) => {
            if let Err(e) = store.put_with_id(track.manifest_id, bytes) {
                warn!(
                    event = "store_error",
                    "cannot store the manifest of {}: {e}", track.title
                );
                return ManifestOutcome::NotStored;
            }
            ManifestOutcome::Valid(contents(store, segments))
        }
        Err(e) => {
            warn!(event = "manifest_refused", peer = %peer,
                track_hash = %track.track_hash, slot, reason = %e,
                "refused the manifest of \"{}\" (slot {slot}) from {peer}: {e}; the track will not be fetched",
                track.title);
            ManifestOutcome::Refused
        }
    }
}

/// Hashes every block received before storing it; only ids that were asked for are taken.
/// The holdings of `track` (the manifest id the want list named) come along.
pub(super) fn verify_and_store(
    store: &BlockStore,
    asked: &[Hash32],
    track: Option<Hash32>,
    have: Have,
) -> Delivery {
    let mut delivery = Delivery {
        dont_have: have.dont_have,
        later: have.later,
        holding: track.zip(have.holding),
        referrals: have
            .referrals
            .into_iter()
            .take(crate::net::uploads::REFERRALS_MAX)
            .collect(),
        ..Delivery::default()
    };
    for block in have.blocks {
        if !asked.contains(&block.id) {
            continue;
        }
        if Hash32::digest(&block.data) != block.id {
            delivery.corrupt.push(block.id);
            continue;
        }
        match store.put_fetched(block.id, &block.data) {
            Ok(()) => delivery.stored.push((block.id, block.data.len() as u64)),
            // Neither stored nor listed: asked again, of anyone.
            Err(e) => {
                warn!(event = "store_error", block = %block.id, "cannot store block {}: {e}", block.id)
            }
        }
    }
    delivery
}

/// The segment ids of a manifest that agrees with `track` (its duration and segment count, with
/// the tolerance admissibility allows).
pub(super) fn check_manifest(
    bytes: &[u8],
    track: &TrackRef,
    segment_ms: u64,
) -> Result<Vec<Hash32>, ManifestError> {
    let m = claimed_segments(bytes, track)?;
    m.check_claim(track.duration_ms, track.segment_count, segment_ms)?;
    Ok(m.segments.iter().map(|s| s.id).collect())
}

/// Parses a manifest reading no more segments than the TrackRef claims (plus the one of
/// tolerance admissibility allows): a manifest listing thousands is refused unread.
fn claimed_segments(bytes: &[u8], track: &TrackRef) -> Result<Manifest, ManifestError> {
    let bound = usize::try_from(track.segment_count.saturating_add(1)).unwrap_or(usize::MAX);
    Manifest::parse_with_max_segments(bytes, bound.min(chorus_media::manifest::MAX_SEGMENTS))
}

fn contents(store: &BlockStore, segments: Vec<Hash32>) -> Contents {
    let held = segments
        .iter()
        .filter(|id| store.contains(id))
        .copied()
        .collect();
    Contents { segments, held }
}
