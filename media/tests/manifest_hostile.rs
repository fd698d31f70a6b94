//! Manifests from hostile peers, against manifests real ingest writes: the attack texts are
//! refused without a panic, and `check_claim` accepts exactly what ingest claims for a track
//! (the `TrackRef` fields a node proposes come from `TrackInfo`) and refuses any other count or
//! duration.

use std::path::Path;

use chorus_media::manifest::{
    CLAIM_DURATION_TOLERANCE_MS, MAX_SEGMENTS, Manifest, ManifestError, SEGMENT_MS, SegmentEntry,
};
use chorus_media::synth::{FileTags, Format, Tune, write_tune};
use chorus_media::track::ingest_file;
use chorus_media::{BlockStore, Hash32, TrackInfo, TrackLimits};

/// Ingests `tune` (written as `format`) into `store`; returns what ingest claims and the
/// manifest's bytes as the store holds them.
fn ingest(dir: &Path, store: &BlockStore, name: &str, format: Format, tune: &Tune) -> TrackInfo {
    let file = dir.join(format!("{name}.{}", format.extension()));
    write_tune(&file, format, tune, &FileTags::default()).expect("tune");
    ingest_file(&file, store, &TrackLimits::default(), &|| false).expect("ingest")
}

fn claim_of(m: &Manifest, info: &TrackInfo) -> Result<(), ManifestError> {
    m.check_claim(info.duration_ms, u64::from(info.segment_count), SEGMENT_MS)
}

#[test]
fn check_claim_accepts_what_ingest_claims_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path().join("store")).expect("store");
    let mono = Tune {
        seed: 9,
        seconds: 13.3,
        rate: 44_100,
        channels: 1,
        amplitude: 0.3,
    };
    let tracks = [
        ("five", Format::Wav, Tune::new(1, 5.0)),
        ("six", Format::Wav, Tune::new(2, 6.0)),
        ("seven", Format::Flac, Tune::new(3, 7.3)),
        ("twelve", Format::Wav, Tune::new(4, 12.0)),
        ("nineteen", Format::Mp3, Tune::new(5, 18.77)),
        ("mono", Format::Flac, mono),
    ];
    for (name, format, tune) in &tracks {
        let info = ingest(dir.path(), &store, name, *format, tune);
        let bytes = store.get(&info.manifest_id).expect("manifest");
        let m = Manifest::parse(&bytes).expect("ingest's own manifest parses");
        // Ingest claims from the same samples the manifest counts: exact, not within tolerance.
        assert_eq!(m.segments.len(), info.segment_count as usize, "{name}");
        assert_eq!(m.track_samples(), info.samples, "{name}");
        assert_eq!(m.duration_ms(), info.duration_ms, "{name}");
        claim_of(&m, &info).unwrap_or_else(|e| panic!("{name}: {e}"));

        let count = u64::from(info.segment_count);
        for wrong in [0, count - 1, count + 1, count * 10] {
            let e = m
                .check_claim(info.duration_ms, wrong, SEGMENT_MS)
                .expect_err(name);
            assert!(
                matches!(e, ManifestError::ClaimSegments { claimed, held } if claimed == wrong && held == count),
                "{name}: {e}"
            );
        }
        let d = info.duration_ms;
        let off = CLAIM_DURATION_TOLERANCE_MS + 1;
        for wrong in [
            d - off,
            d + off,
            d + SEGMENT_MS,
            d.saturating_sub(SEGMENT_MS),
            240_000,
        ] {
            let e = m.check_claim(wrong, count, SEGMENT_MS).expect_err(name);
            assert!(
                matches!(e, ManifestError::ClaimDuration { claimed_ms, held_ms } if claimed_ms == wrong && held_ms == d),
                "{name}: {e}"
            );
        }
        // Checked against another segment length, its segments are too long.
        assert!(
            matches!(
                m.check_claim(d, count, 3_000),
                Err(ManifestError::ClaimSegmentLength { index: 0, .. })
            ),
            "{name}"
        );
    }
}

/// The attack of the bug report: a real manifest with its first `#EXTINF` replaced by a value
/// that made `hls_m3u8` panic inside the node's fetch task.
#[test]
fn hostile_segment_durations_are_refused_without_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path().join("store")).expect("store");
    let info = ingest(dir.path(), &store, "t", Format::Wav, &Tune::new(7, 8.0));
    let text = String::from_utf8(store.get(&info.manifest_id).expect("manifest")).expect("utf8");
    let first = text
        .lines()
        .position(|l| l.starts_with("#EXTINF:"))
        .expect("a segment");
    for value in ["-1", "NaN", "inf", "-inf", "1e308", "0", ""] {
        let hostile: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == first {
                    format!("#EXTINF:{value},")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        let hostile = hostile.join("\n") + "\n";
        // As the node would: stored under the hash the attacker chose, read back, parsed.
        let id = store.put(hostile.as_bytes()).expect("put");
        let bytes = store.get(&id).expect("get");
        match Manifest::parse(&bytes) {
            Err(ManifestError::BadLine { line, .. }) => assert_eq!(line, first + 1, "{value}"),
            other => panic!("{value}: {other:?}"),
        }
    }
}

/// The other attack: a manifest listing thousands of 1 MiB blocks for a track that claims four
/// minutes. Past [`MAX_SEGMENTS`] it does not parse; within it, the claim gives it away.
#[test]
fn a_manifest_longer_than_its_claim_is_refused() {
    let manifest = |n: usize| Manifest {
        segments: (0..n)
            .map(|i| SegmentEntry {
                id: Hash32::digest(&i.to_le_bytes()),
                frames: if i == 0 { 283 } else { 281 },
            })
            .collect(),
        priming: 1024,
        padding: 0,
    };
    let big = manifest(5000).to_playlist();
    assert!(matches!(
        Manifest::parse(big.as_bytes()),
        Err(ManifestError::BadLine { ref reason, .. }) if reason.contains("segments")
    ));
    let m = Manifest::parse(manifest(MAX_SEGMENTS).to_playlist().as_bytes()).expect("parses");
    // A 4-minute track has 40 segments.
    assert!(matches!(
        m.check_claim(240_000, 40, SEGMENT_MS),
        Err(ManifestError::ClaimSegments { claimed: 40, held }) if held == MAX_SEGMENTS as u64
    ));
    assert!(matches!(
        m.check_claim(240_000, MAX_SEGMENTS as u64, SEGMENT_MS),
        Err(ManifestError::ClaimDuration {
            claimed_ms: 240_000,
            ..
        })
    ));
    m.check_claim(m.duration_ms(), MAX_SEGMENTS as u64, SEGMENT_MS)
        .expect("the honest claim of a 15-minute track");
}
