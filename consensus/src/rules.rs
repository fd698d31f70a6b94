//! The network's rules (PROTOCOL.md 11): defaults, validation, CBOR bytes and their hash.

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError};
use crate::hash::Hash32;

/// The rules a network runs under, fixed by its genesis.
///
/// The genesis carries them as `rules_bytes` (the CBOR map of this struct, text keys in
/// declaration order) so that `rules_hash = SHA-256(rules_bytes)` is the same everywhere; decode
/// with [`Rules::from_cbor`] and hash the bytes received, not a re-encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rules {
    /// L: slots decided ahead of playback; version 1 requires 5 (the phase table of section 1).
    pub lookahead: u64,
    /// Length of one canonical audio segment, ms.
    pub segment_ms: u64,
    /// Silence between two tracks, ms.
    pub gap_ms: u64,
    /// Upper bound of the proposal window, ms.
    pub proposal_max_ms: u64,
    /// Proposal window as a percentage of the duration of slot k-5.
    pub proposal_pct: u64,
    /// Upper bound of the selection window, ms.
    pub selection_max_ms: u64,
    /// Selection window as a percentage of the duration of slot k-4.
    pub selection_pct: u64,
    /// Shortest admissible track, ms.
    pub min_track_ms: u64,
    /// Longest admissible track, ms.
    pub max_track_ms: u64,
    /// Least interval between two Status messages, ms.
    pub status_interval_ms: u64,
    /// Continuous divergence after which a peer is reported excluded, ms.
    pub exclusion_ms: u64,
    /// Admissible lower-ticket proposals after which a node stays silent.
    pub backup_proposals: u64,
    /// Playback loudness target, LUFS.
    pub target_lufs: f64,
    /// 12.3: slots between a peer's enrollment (slot e) and the first slot it may propose for
    /// (e + enroll_delay); at least L + 2, so that its tickets use reveals published after it
    /// committed.
    pub enroll_delay: u64,
    /// 12.3: most Enroll envelopes one proposal carries (network-wide enrollments per slot).
    pub enroll_per_slot: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            lookahead: 5,
            segment_ms: 6_000,
            gap_ms: 0,
            proposal_max_ms: 30_000,
            proposal_pct: 25,
            selection_max_ms: 60_000,
            selection_pct: 40,
            min_track_ms: 5_000,
            max_track_ms: 900_000,
            status_interval_ms: 5_000,
            exclusion_ms: 600_000,
            backup_proposals: 2,
            target_lufs: -16.0,
            enroll_delay: 8,
            enroll_per_slot: 4,
        }
    }
}

/// Why a set of rules cannot run a version 1 network.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    /// The rules bytes are not a CBOR map of rules.
    #[error("rules bytes do not decode: {0}")]
    Decode(#[from] DecodeError),
    /// Version 1's phases are fixed at k-5, k-4 and k-3: the lookahead must be 5.
    #[error("lookahead must be 5 in protocol version 1, not {0}")]
    Lookahead(u64),
    /// A length that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// A percentage is not within 1..=100.
    #[error("{name} must be within 1..=100, not {value}")]
    Percent {
        /// The rule's name.
        name: &'static str,
        /// Its value.
        value: u64,
    },
    /// The admissible track lengths are empty.
    #[error("min_track_ms ({min}) is above max_track_ms ({max})")]
    TrackBounds {
        /// `min_track_ms`.
        min: u64,
        /// `max_track_ms`.
        max: u64,
    },
    /// `max_track_ms` is above what any node reads a manifest for ([`MAX_TRACK_MS_LIMIT`]).
    #[error(
        "max_track_ms is {0}, more than the {MAX_TRACK_MS_LIMIT} ms (15 minutes) a track may last"
    )]
    TrackTooLong(u64),
    /// The loudness target is not a finite number.
    #[error("target_lufs must be finite")]
    TargetLufs,
    /// 12.3: `enroll_delay` is below L + 2.
    #[error("enroll_delay is {got}, less than lookahead + 2 = {min}")]
    EnrollDelay {
        /// `enroll_delay`.
        got: u64,
        /// L + 2.
        min: u64,
    },
    /// 12.3: `enroll_per_slot` is 0 (nobody could ever enroll) or above what a proposal may
    /// carry.
    #[error("enroll_per_slot is {0}, outside 1..={max}", max = crate::message::ENROLLS_MAX)]
    EnrollPerSlot(u64),
}

impl Rules {
    /// The CBOR encoding carried in the genesis as `rules_bytes`.
    pub fn to_cbor(&self) -> Vec<u8> {
        codec::to_cbor(self)
    }

    /// SHA-256 of [`Rules::to_cbor`]. A network's rules hash is that of its genesis `rules_bytes`
    /// ([`rules_hash_of`]); the two agree for rules this crate encoded.
    pub fn rules_hash(&self) -> Hash32 {
        rules_hash_of(&self.to_cbor())
    }

    /// Decodes and validates rules bytes. Missing keys take their defaults; unknown keys are
    /// ignored.
    pub fn from_cbor(bytes: &[u8]) -> Result<Rules, RulesError> {
        let rules: Rules = codec::from_cbor(bytes)?;
        rules.validate()?;
        Ok(rules)
    }

    /// Checks that the rules can run a version 1 network.
    pub fn validate(&self) -> Result<(), RulesError> {
        if self.lookahead != 5 {
            return Err(RulesError::Lookahead(self.lookahead));
        }
        for (name, value) in [
            ("segment_ms", self.segment_ms),
            ("proposal_max_ms", self.proposal_max_ms),
            ("selection_max_ms", self.selection_max_ms),
            ("min_track_ms", self.min_track_ms),
            ("status_interval_ms", self.status_interval_ms),
        ] {
            if value == 0 {
                return Err(RulesError::Zero(name));
            }
        }
        for (name, value) in [
            ("proposal_pct", self.proposal_pct),
            ("selection_pct", self.selection_pct),
        ] {
            if !(1..=100).contains(&value) {
                return Err(RulesError::Percent { name, value });
            }
        }
        if self.min_track_ms > self.max_track_ms {
            return Err(RulesError::TrackBounds {
                min: self.min_track_ms,
                max: self.max_track_ms,
            });
        }
        if self.max_track_ms > MAX_TRACK_MS_LIMIT {
            return Err(RulesError::TrackTooLong(self.max_track_ms));
        }
        if !self.target_lufs.is_finite() {
            return Err(RulesError::TargetLufs);
        }
        if self.enroll_delay < self.lookahead + 2 {
            return Err(RulesError::EnrollDelay {
                got: self.enroll_delay,
                min: self.lookahead + 2,
            });
        }
        let per_slot_max = crate::message::ENROLLS_MAX as u64;
        if !(1..=per_slot_max).contains(&self.enroll_per_slot) {
            return Err(RulesError::EnrollPerSlot(self.enroll_per_slot));
        }
        Ok(())
    }
}

/// The longest `max_track_ms` a network may set: nodes refuse manifests of more than 151
/// segments (chorus-media's `MAX_SEGMENTS`, 900 s of 6 s segments plus one), so a longer
/// track could win and never be fetched.
pub const MAX_TRACK_MS_LIMIT: u64 = 900_000;

/// `rules_hash = SHA-256(rules_bytes)` (PROTOCOL.md 11).
pub fn rules_hash_of(rules_bytes: &[u8]) -> Hash32 {
    Hash32::digest(rules_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_those_of_section_11() {
        let r = Rules::default();
        assert_eq!(
            (
                r.lookahead,
                r.segment_ms,
                r.gap_ms,
                r.proposal_max_ms,
                r.proposal_pct
            ),
            (5, 6000, 0, 30000, 25)
        );
        assert_eq!(
            (
                r.selection_max_ms,
                r.selection_pct,
                r.min_track_ms,
                r.max_track_ms
            ),
            (60000, 40, 5000, 900000)
        );
        assert_eq!(
            (r.status_interval_ms, r.exclusion_ms, r.backup_proposals),
            (5000, 600000, 2)
        );
        assert_eq!(r.target_lufs, -16.0);
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn tracks_longer_than_any_node_fetches_are_refused() {
        let mut r = Rules {
            max_track_ms: MAX_TRACK_MS_LIMIT,
            ..Rules::default()
        };
        assert_eq!(r.validate(), Ok(()));
        r.max_track_ms = MAX_TRACK_MS_LIMIT + 1;
        assert_eq!(
            r.validate(),
            Err(RulesError::TrackTooLong(MAX_TRACK_MS_LIMIT + 1))
        );
    }

    #[test]
    fn cbor_round_trip_and_stable_hash() {
        let r = Rules::default();
        let bytes = r.to_cbor();
        assert_eq!(Rules::from_cbor(&bytes), Ok(r.clone()));
        assert_eq!(r.rules_hash(), Hash32::digest(&bytes));
        assert_eq!(r.rules_hash(), Rules::default().rules_hash());
        let other = Rules {
            gap_ms: 1,
            ..Rules::default()
        };
        assert_ne!(other.rules_hash(), r.rules_hash());
    }

    #[test]
    fn missing_keys_default_and_unknown_keys_are_ignored() {
        #[derive(Serialize)]
        struct Partial {
            gap_ms: u64,
            future_rule: &'static str,
        }
        let bytes = codec::to_cbor(&Partial {
            gap_ms: 250,
            future_rule: "x",
        });
        let r = Rules::from_cbor(&bytes).expect("partial rules decode");
        assert_eq!(r.gap_ms, 250);
        assert_eq!(r.segment_ms, 6000);
    }

    #[test]
    fn invalid_rules_are_refused() {
        let bad = |f: fn(&mut Rules)| {
            let mut r = Rules::default();
            f(&mut r);
            r.validate()
        };
        assert_eq!(bad(|r| r.lookahead = 4), Err(RulesError::Lookahead(4)));
        assert_eq!(
            bad(|r| r.segment_ms = 0),
            Err(RulesError::Zero("segment_ms"))
        );
        assert!(matches!(
            bad(|r| r.proposal_pct = 101),
            Err(RulesError::Percent { .. })
        ));
        assert!(matches!(
            bad(|r| r.min_track_ms = 1_000_000),
            Err(RulesError::TrackBounds { .. })
        ));
        assert_eq!(
            bad(|r| r.target_lufs = f64::NAN),
            Err(RulesError::TargetLufs)
        );
        assert!(matches!(
            Rules::from_cbor(b"\xff"),
            Err(RulesError::Decode(_))
        ));
    }
}
