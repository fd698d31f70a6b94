//! Bytes a peer sends as a track's manifest through `Manifest::parse` and, when they parse,
//! `Manifest::check_claim` against a claim read from the input: never a panic. An accepted
//! manifest writes back to itself, stays within `MAX_SEGMENTS`, and its own numbers are a claim
//! whose segment count and duration check.
//!
//! Input: the claim, three little-endian u64 (`duration_ms`, `segment_count`, `segment_ms`), then
//! the manifest bytes; an input shorter than the claim is all manifest. `seeds/manifest_parse/`
//! holds inputs in this form (run `cargo fuzz run manifest_parse corpus/manifest_parse
//! seeds/manifest_parse`).
#![no_main]

use chorus_media::manifest::{MAX_SEGMENTS, Manifest, ManifestError, SEGMENT_MS};
use libfuzzer_sys::fuzz_target;

const CLAIM_BYTES: usize = 24;

fuzz_target!(|data: &[u8]| {
    let (claim, bytes) = if data.len() >= CLAIM_BYTES {
        data.split_at(CLAIM_BYTES)
    } else {
        (&[][..], data)
    };
    let manifest = match Manifest::parse(bytes) {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(manifest.segments.len() <= MAX_SEGMENTS);
    let again = Manifest::parse(manifest.to_playlist().as_bytes());
    assert_eq!(
        again.as_ref().ok(),
        Some(&manifest),
        "writing the manifest back changes it: {again:?}"
    );
    let own = manifest.check_claim(
        manifest.duration_ms(),
        manifest.segments.len() as u64,
        SEGMENT_MS,
    );
    assert!(
        !matches!(
            own,
            Err(ManifestError::ClaimSegments { .. } | ManifestError::ClaimDuration { .. })
        ),
        "a manifest disagrees with its own numbers: {own:?}"
    );
    let word = |i: usize| {
        let bytes: [u8; 8] = claim.get(8 * i..8 * i + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    };
    if let (Some(duration_ms), Some(segment_count), Some(segment_ms)) = (word(0), word(1), word(2))
        && let Err(e) = manifest.check_claim(duration_ms, segment_count, segment_ms)
    {
        let _ = e.to_string();
    }
});
