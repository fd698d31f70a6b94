//! Property tests of the pure parts of `chorus-consensus`, through its public API only: replay
//! selection, the chain and its schedule, tickets and eligibility (PROTOCOL.md 1, 4 and 5).
//!
//! The state machine's properties need its test harness and live in
//! `src/machine/proptests.rs`. Failing cases are persisted by proptest under
//! `proptest-regressions/` (commit those files) and pinned as regression tests next to the
//! property they broke. `PROPTEST_CASES=n` runs more cases, `PROPTEST_RNG_SEED=s` replays a run,
//! `PROPTEST_VERBOSE=2` logs every case.

mod properties {
    pub mod chain;
    pub mod eligibility;
    pub mod select;
    pub mod tickets;
}

mod strategies {
    use chorus_consensus::rules::Rules;
    use chorus_consensus::track::expected_segments;
    use chorus_consensus::{Chain, Hash32, TrackRef};
    use libp2p_identity::{Keypair, PeerId};
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    /// A config of `cases` cases (or `PROPTEST_CASES` when set); the other settings come from
    /// the environment as proptest reads it.
    pub fn config(cases: u32) -> Config {
        let from_env = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok());
        Config {
            cases: from_env.unwrap_or(cases),
            ..Config::default()
        }
    }

    /// An arbitrary 32-byte hash.
    pub fn hash() -> impl Strategy<Value = Hash32> {
        any::<[u8; 32]>().prop_map(Hash32)
    }

    /// The PeerId of the ed25519 key with secret `seed` (every 32-byte string is a key).
    pub fn peer(seed: [u8; 32]) -> PeerId {
        Keypair::ed25519_from_bytes(seed)
            .expect("every 32-byte string is an ed25519 secret")
            .public()
            .to_peer_id()
    }

    /// A valid track of `duration_ms` whose hashes derive from `seed`.
    pub fn track(seed: u64, duration_ms: u64) -> TrackRef {
        TrackRef {
            track_hash: Hash32::digest(format!("track {seed}").as_bytes()),
            manifest_id: Hash32::digest(format!("manifest {seed}").as_bytes()),
            duration_ms,
            segment_count: expected_segments(duration_ms, Rules::default().segment_ms),
            title: String::new(),
            artist: String::new(),
            album: String::new(),
            loudness_lufs: None,
        }
    }

    /// A duration within the default rules' bounds.
    pub fn duration() -> impl Strategy<Value = u64> {
        let rules = Rules::default();
        rules.min_track_ms..=rules.max_track_ms
    }

    /// A genesis chain: random network id, start, gap and five queued tracks.
    pub fn genesis_chain() -> impl Strategy<Value = Chain> {
        (
            hash(),
            0u64..1 << 50,
            0u64..5_000,
            prop::collection::vec(duration(), 5),
        )
            .prop_map(|(network_id, start_ms, gap_ms, durations)| {
                let rules = Rules {
                    gap_ms,
                    ..Rules::default()
                };
                let queue = durations
                    .into_iter()
                    .enumerate()
                    .map(|(i, d)| track(i as u64, d))
                    .collect();
                let rules_hash = rules.rules_hash();
                Chain::from_parts(network_id, rules, rules_hash, start_ms, queue)
            })
    }
}
