//! `TrackRef`: what the protocol knows of a track (PROTOCOL.md 2).

use serde::{Deserialize, Serialize};

use crate::hash::Hash32;

/// A reference to one track: enough to schedule it, fetch it and show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackRef {
    /// SHA-256 of the source file's bytes: the track's identity.
    pub track_hash: Hash32,
    /// SHA-256 of the track's HLS manifest.
    pub manifest_id: Hash32,
    /// Playing time, ms: a slot lasts exactly this long (plus `gap_ms`).
    pub duration_ms: u64,
    /// Number of segments in the manifest.
    pub segment_count: u64,
    /// Title; may be empty.
    #[serde(default)]
    pub title: String,
    /// Artist; may be empty.
    #[serde(default)]
    pub artist: String,
    /// Album; may be empty.
    #[serde(default)]
    pub album: String,
    /// Integrated loudness (EBU R128), LUFS; null when unmeasured.
    #[serde(default)]
    pub loudness_lufs: Option<f64>,
}

/// `ceil(duration_ms / segment_ms)`, the segment count a track of that length has
/// (PROTOCOL.md 3 rule 2). A zero `segment_ms` gives 0.
pub fn expected_segments(duration_ms: u64, segment_ms: u64) -> u64 {
    duration_ms.checked_div(segment_ms).map_or(0, |whole| {
        whole + u64::from(!duration_ms.is_multiple_of(segment_ms))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A track of `duration_ms` whose hashes derive from `seed`.
    pub(crate) fn track(seed: &str, duration_ms: u64) -> TrackRef {
        TrackRef {
            track_hash: Hash32::digest(format!("track {seed}").as_bytes()),
            manifest_id: Hash32::digest(format!("manifest {seed}").as_bytes()),
            duration_ms,
            segment_count: expected_segments(duration_ms, 6000),
            title: format!("Title {seed}"),
            artist: String::new(),
            album: String::new(),
            loudness_lufs: Some(-14.5),
        }
    }

    #[test]
    fn segment_count_is_a_ceiling() {
        assert_eq!(expected_segments(6000, 6000), 1);
        assert_eq!(expected_segments(6001, 6000), 2);
        assert_eq!(expected_segments(1, 6000), 1);
        assert_eq!(expected_segments(0, 6000), 0);
        assert_eq!(expected_segments(10, 0), 0);
        assert_eq!(expected_segments(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn cbor_round_trip() {
        let t = track("a", 180_000);
        let back: TrackRef =
            crate::codec::from_cbor(&crate::codec::to_cbor(&t)).expect("round trip");
        assert_eq!(back, t);
    }
}
