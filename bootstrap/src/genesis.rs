//! Creating and signing the genesis of a new network from a seed queue and its ingested tracks.

use std::path::PathBuf;

use chorus_consensus::{Genesis, GenesisEnroll, GenesisError, SignedGenesis, TrackRef};
use chorus_media::TrackInfo;
use libp2p_identity::Keypair;

use crate::seed::SeedQueue;

/// Why a genesis could not be created from a seed queue.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The caller gave a different number of tracks than the seed queue names.
    #[error("the seed queue names {tracks} tracks but {refs} ingested tracks were given for it")]
    QueueLength {
        /// Tracks in the seed queue.
        tracks: usize,
        /// Track references given.
        refs: usize,
    },
    /// A seed track is shorter or longer than the rules allow.
    #[error(
        "track {} of the seed queue, {}, lasts {} s; the rules allow {} s to {} s \
         (min_track_ms, max_track_ms): choose another track or change the rules",
        .index + 1,
        .path.display(),
        .duration_ms / 1000,
        .min_ms / 1000,
        .max_ms / 1000
    )]
    TrackLength {
        /// 0-based position in the queue.
        index: usize,
        /// The track's file.
        path: PathBuf,
        /// Its duration.
        duration_ms: u64,
        /// `rules.min_track_ms`.
        min_ms: u64,
        /// `rules.max_track_ms`.
        max_ms: u64,
    },
    /// The genesis could not be built or signed.
    #[error("cannot create the genesis: {0}")]
    Genesis(#[from] GenesisError),
}

/// The protocol's view of an ingested track (PROTOCOL.md 2).
pub fn track_ref(info: &TrackInfo) -> TrackRef {
    TrackRef {
        track_hash: info.track_hash,
        manifest_id: info.manifest_id,
        duration_ms: info.duration_ms,
        segment_count: u64::from(info.segment_count),
        title: info.title.clone(),
        artist: info.artist.clone(),
        album: info.album.clone(),
        loudness_lufs: info.loudness_lufs,
    }
}

/// Builds and signs the genesis of `seed` with the operator's `keypair` (its `created_by`).
/// `queue` holds the seed's tracks after ingest, in the seed's order; `created_ms` is now, ms
/// since the Unix epoch; `enroll` is the operator's commitment (PROTOCOL.md 12.3: the creator
/// is enrolled at slot 0, so that its proposals can enroll the others).
pub fn create_genesis(
    keypair: &Keypair,
    seed: &SeedQueue,
    queue: Vec<TrackRef>,
    created_ms: u64,
    enroll: GenesisEnroll,
) -> Result<SignedGenesis, CreateError> {
    if queue.len() != seed.tracks.len() {
        return Err(CreateError::QueueLength {
            tracks: seed.tracks.len(),
            refs: queue.len(),
        });
    }
    // Genesis::new checks this too, but by index only; the operator needs the file's name.
    let (min_ms, max_ms) = (seed.rules.min_track_ms, seed.rules.max_track_ms);
    for (index, (track, path)) in queue.iter().zip(&seed.tracks).enumerate() {
        if !(min_ms..=max_ms).contains(&track.duration_ms) {
            return Err(CreateError::TrackLength {
                index,
                path: path.clone(),
                duration_ms: track.duration_ms,
                min_ms,
                max_ms,
            });
        }
    }
    let genesis = Genesis::new(
        seed.name.clone(),
        seed.start_ms,
        &seed.rules,
        queue,
        keypair.public().to_peer_id(),
        created_ms,
    )?
    .with_enroll(enroll.commit, enroll.len);
    Ok(genesis.sign(keypair)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use chorus_consensus::Rules;

    /// An ingested track of `duration_ms` whose hashes derive from `seed`.
    pub(crate) fn info(seed: &str, duration_ms: u64) -> TrackInfo {
        TrackInfo {
            track_hash: chorus_media::Hash32::digest(format!("track {seed}").as_bytes()),
            manifest_id: chorus_media::Hash32::digest(format!("manifest {seed}").as_bytes()),
            duration_ms,
            segment_count: u32::try_from(duration_ms.div_ceil(6000)).expect("short"),
            title: format!("Song {seed}"),
            artist: "Artist".into(),
            album: String::new(),
            loudness_lufs: Some(-15.5),
            samples: duration_ms * 48,
            priming: 1024,
            padding: 0,
            not_proposable: None,
        }
    }

    /// A commitment for test genesis files (no chain behind it: nothing here proposes).
    pub(crate) fn enroll() -> GenesisEnroll {
        GenesisEnroll {
            commit: chorus_consensus::Hash32::digest(b"test commit"),
            len: 1024,
        }
    }

    pub(crate) fn keypair() -> Keypair {
        Keypair::ed25519_from_bytes([7; 32]).expect("32 bytes are an ed25519 secret")
    }

    fn seed() -> SeedQueue {
        SeedQueue {
            name: "Test Radio".into(),
            start_ms: 1_800_000_000_000,
            tracks: (0..5)
                .map(|i| PathBuf::from(format!("/lib/{i}.flac")))
                .collect(),
            rules: Rules::default(),
        }
    }

    #[test]
    fn track_ref_carries_every_field() {
        let info = info("a", 61_000);
        let track = track_ref(&info);
        assert_eq!(track.track_hash.0, info.track_hash.0);
        assert_eq!(track.manifest_id.0, info.manifest_id.0);
        assert_eq!((track.duration_ms, track.segment_count), (61_000, 11));
        assert_eq!(
            (track.title.as_str(), track.artist.as_str()),
            ("Song a", "Artist")
        );
        assert_eq!(track.loudness_lufs, Some(-15.5));
    }

    #[test]
    fn genesis_is_signed_by_the_operator() {
        let queue = (0..5)
            .map(|i| track_ref(&info(&i.to_string(), 60_000)))
            .collect();
        let signed = create_genesis(&keypair(), &seed(), queue, 1_799_999_000_000, enroll())
            .expect("valid genesis");
        let genesis = signed.genesis();
        assert_eq!(genesis.name, "Test Radio");
        assert_eq!(genesis.start_ms, 1_800_000_000_000);
        assert_eq!(genesis.created_by, keypair().public().to_peer_id());
        assert_eq!(signed.rules(), &Rules::default());
        assert_eq!(signed.network_id(), genesis.network_id());
    }

    #[test]
    fn wrong_queue_and_bad_lengths_are_refused() {
        let short: Vec<TrackRef> = (0..4)
            .map(|i| track_ref(&info(&i.to_string(), 60_000)))
            .collect();
        let err = create_genesis(&keypair(), &seed(), short, 0, enroll()).expect_err("4 of 5");
        assert!(
            matches!(err, CreateError::QueueLength { tracks: 5, refs: 4 }),
            "{err}"
        );

        let mut queue: Vec<TrackRef> = (0..5)
            .map(|i| track_ref(&info(&i.to_string(), 60_000)))
            .collect();
        queue[2].duration_ms = 3_000;
        let err = create_genesis(&keypair(), &seed(), queue, 0, enroll()).expect_err("too short");
        assert_eq!(
            err.to_string(),
            "track 3 of the seed queue, /lib/2.flac, lasts 3 s; the rules allow 5 s to 900 s \
             (min_track_ms, max_track_ms): choose another track or change the rules"
        );
    }
}
