//! Pieces the fuzz targets share: fixed keys and tracks.

use chorus_consensus::track::expected_segments;
use chorus_consensus::{Genesis, Hash32, Rules, SignedGenesis, TrackRef};
use libp2p_identity::Keypair;

/// A fixed ed25519 key per seed.
pub fn key(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).expect("32 bytes are an ed25519 secret")
}

/// A well-formed TrackRef per seed.
pub fn track(seed: u64, duration_ms: u64) -> TrackRef {
    TrackRef {
        track_hash: Hash32::digest(&seed.to_be_bytes()),
        manifest_id: Hash32::digest(&[&seed.to_be_bytes()[..], b"m"].concat()),
        duration_ms,
        segment_count: expected_segments(duration_ms, 6_000),
        title: String::new(),
        artist: String::new(),
        album: String::new(),
        loudness_lufs: None,
    }
}

/// The fuzz network: default rules, five queued tracks, operator `key(0)`.
pub fn genesis() -> SignedGenesis {
    let operator = key(0);
    let queue = (0..5).map(|i| track(i, 60_000 + i * 1_000)).collect();
    Genesis::new(
        "fuzz radio",
        1_700_000_000_000,
        &Rules::default(),
        queue,
        operator.public().to_peer_id(),
        0,
    )
    .and_then(|g| g.sign(&operator))
    .expect("a valid genesis")
}
