//! The genesis (PROTOCOL.md 11): creating, signing and verifying it, and the network id.

use libp2p_identity::{Keypair, PeerId};
use serde::{Deserialize, Serialize};

use crate::codec::{self, peer_id_bytes};
use crate::envelope::{Envelope, EnvelopeError, SignError};
use crate::hash::Hash32;
use crate::limits::SYNC_RESPONSE_MAX_BYTES;
use crate::message::Body;
use crate::rules::{Rules, RulesError, rules_hash_of};
use crate::track::TrackRef;

/// The protocol version a genesis of this crate carries.
pub const GENESIS_VERSION: u64 = 1;

/// `Genesis = { version, name, start_ms, rules_bytes, queue, created_by, created_ms }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Genesis {
    /// Protocol version, 1.
    pub version: u64,
    /// The network's human name.
    pub name: String,
    /// `start(0)`, network time in ms.
    pub start_ms: u64,
    /// CBOR of the rules; `rules_hash = SHA-256(rules_bytes)`.
    #[serde(with = "serde_bytes")]
    pub rules_bytes: Vec<u8>,
    /// The tracks of slots 0 .. L-1.
    pub queue: Vec<TrackRef>,
    /// The operator's PeerId, who signs the genesis.
    #[serde(with = "peer_id_bytes")]
    pub created_by: PeerId,
    /// When it was written, ms since the Unix epoch.
    pub created_ms: u64,
}

/// Why a genesis could not be created or was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenesisError {
    /// The rules are invalid or their bytes do not decode.
    #[error("genesis rules: {0}")]
    Rules(#[from] RulesError),
    /// The version is not 1.
    #[error("genesis version {0} is not supported (this node speaks version 1)")]
    Version(u64),
    /// The queue does not hold exactly L tracks.
    #[error("genesis queue holds {got} tracks; the rules need exactly {expected}")]
    QueueLength {
        /// `rules.lookahead`.
        expected: u64,
        /// Tracks in the queue.
        got: usize,
    },
    /// A queued track's duration is outside the rules' bounds.
    #[error("genesis queue track {index} lasts {duration_ms} ms, outside {min_ms}..={max_ms} ms")]
    QueueTrack {
        /// Position in the queue.
        index: usize,
        /// Its duration.
        duration_ms: u64,
        /// `rules.min_track_ms`.
        min_ms: u64,
        /// `rules.max_track_ms`.
        max_ms: u64,
    },
    /// Signing failed, or the keypair is not `created_by`.
    #[error("cannot sign the genesis: {0}")]
    Sign(#[from] SignError),
    /// The envelope failed verification (signature, signer, size, decoding).
    #[error("genesis envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The genesis is valid but of another network than the one asked for.
    #[error("genesis has network id {got}, expected {expected}")]
    NetworkMismatch {
        /// The network id the caller asked for.
        expected: Hash32,
        /// SHA-256 of the body received.
        got: Hash32,
    },
}

impl Body for Genesis {
    const KIND: &'static str = "genesis";

    fn from(&self) -> &PeerId {
        &self.created_by
    }
}

impl Genesis {
    /// Builds and validates a version 1 genesis.
    pub fn new(
        name: impl Into<String>,
        start_ms: u64,
        rules: &Rules,
        queue: Vec<TrackRef>,
        created_by: PeerId,
        created_ms: u64,
    ) -> Result<Genesis, GenesisError> {
        let genesis = Genesis {
            version: GENESIS_VERSION,
            name: name.into(),
            start_ms,
            rules_bytes: rules.to_cbor(),
            queue,
            created_by,
            created_ms,
        };
        genesis.validate()?;
        Ok(genesis)
    }

    /// The body bytes (CBOR).
    pub fn to_cbor(&self) -> Vec<u8> {
        codec::to_cbor(self)
    }

    /// `network_id = SHA-256(genesis body bytes)` of this encoding. A received genesis's id is
    /// that of the bytes received ([`SignedGenesis::network_id`]).
    pub fn network_id(&self) -> Hash32 {
        Hash32::digest(&self.to_cbor())
    }

    /// `SHA-256(rules_bytes)`.
    pub fn rules_hash(&self) -> Hash32 {
        rules_hash_of(&self.rules_bytes)
    }

    /// Checks version, rules and queue; returns the decoded rules.
    pub fn validate(&self) -> Result<Rules, GenesisError> {
        if self.version != GENESIS_VERSION {
            return Err(GenesisError::Version(self.version));
        }
        let rules = Rules::from_cbor(&self.rules_bytes)?;
        if u64::try_from(self.queue.len()).ok() != Some(rules.lookahead) {
            return Err(GenesisError::QueueLength {
                expected: rules.lookahead,
                got: self.queue.len(),
            });
        }
        for (index, track) in self.queue.iter().enumerate() {
            if !(rules.min_track_ms..=rules.max_track_ms).contains(&track.duration_ms) {
                return Err(GenesisError::QueueTrack {
                    index,
                    duration_ms: track.duration_ms,
                    min_ms: rules.min_track_ms,
                    max_ms: rules.max_track_ms,
                });
            }
        }
        Ok(rules)
    }

    /// Signs the genesis with the operator's keypair (which must be `created_by`).
    pub fn sign(self, keypair: &Keypair) -> Result<SignedGenesis, GenesisError> {
        let envelope = Envelope::seal(&self, keypair)?;
        SignedGenesis::verify(envelope, None)
    }
}

/// A genesis whose envelope verified: what a node runs a network from.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedGenesis {
    genesis: Genesis,
    rules: Rules,
    network_id: Hash32,
    envelope: Envelope,
}

impl SignedGenesis {
    /// Verifies a genesis envelope: size (4 MiB), kind `genesis`, signature by `created_by`,
    /// body, version, rules and queue; and, if `expected` is given, the network id.
    pub fn verify(
        envelope: Envelope,
        expected: Option<&Hash32>,
    ) -> Result<SignedGenesis, GenesisError> {
        let genesis: Genesis = envelope.open_as(SYNC_RESPONSE_MAX_BYTES)?;
        let network_id = Hash32::digest(&envelope.body);
        if let Some(expected) = expected.filter(|e| **e != network_id) {
            return Err(GenesisError::NetworkMismatch {
                expected: *expected,
                got: network_id,
            });
        }
        let rules = genesis.validate()?;
        Ok(SignedGenesis {
            genesis,
            rules,
            network_id,
            envelope,
        })
    }

    /// Decodes and verifies the wire bytes of a genesis envelope (a sync response or a file).
    pub fn from_cbor(
        bytes: &[u8],
        expected: Option<&Hash32>,
    ) -> Result<SignedGenesis, GenesisError> {
        let envelope = Envelope::from_cbor(bytes, SYNC_RESPONSE_MAX_BYTES)?;
        SignedGenesis::verify(envelope, expected)
    }

    /// The wire bytes of the envelope.
    pub fn to_cbor(&self) -> Vec<u8> {
        self.envelope.to_cbor()
    }

    /// The genesis body.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The decoded, validated rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// `SHA-256(rules_bytes)`, the rules hash every message of the network carries.
    pub fn rules_hash(&self) -> Hash32 {
        self.genesis.rules_hash()
    }

    /// `SHA-256` of the body bytes as signed.
    pub fn network_id(&self) -> Hash32 {
        self.network_id
    }

    /// The signed envelope (served to `/chorus/sync/1 Genesis` requests).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::track::tests::track;

    /// A keypair from a fixed seed byte.
    pub(crate) fn keypair(seed: u8) -> Keypair {
        Keypair::ed25519_from_bytes([seed; 32]).expect("32 bytes are a valid ed25519 secret")
    }

    /// A valid signed genesis of default rules, operator `keypair(0)`.
    pub(crate) fn signed_genesis() -> SignedGenesis {
        let operator = keypair(0);
        let queue = (0..5)
            .map(|i| track(&format!("g{i}"), 60_000 + i * 1000))
            .collect();
        Genesis::new(
            "test radio",
            1_700_000_000_000,
            &Rules::default(),
            queue,
            operator.public().to_peer_id(),
            1_699_999_000_000,
        )
        .expect("valid genesis")
        .sign(&operator)
        .expect("operator signs")
    }

    #[test]
    fn sign_verify_round_trip_and_network_id() {
        let signed = signed_genesis();
        assert_eq!(signed.network_id(), signed.genesis().network_id());
        assert_eq!(signed.rules_hash(), Rules::default().rules_hash());
        let bytes = signed.to_cbor();
        let again = SignedGenesis::from_cbor(&bytes, Some(&signed.network_id())).expect("verifies");
        assert_eq!(again, signed);
        let other = Hash32::digest(b"other");
        assert!(matches!(
            SignedGenesis::from_cbor(&bytes, Some(&other)),
            Err(GenesisError::NetworkMismatch { .. })
        ));
    }

    #[test]
    fn wrong_signer_and_tampering_are_refused() {
        let genesis = signed_genesis().genesis().clone();
        assert!(matches!(
            genesis.clone().sign(&keypair(9)),
            Err(GenesisError::Sign(SignError::NotOurs { .. }))
        ));
        let mut envelope = signed_genesis().envelope().clone();
        let last = envelope.body.len() - 1;
        envelope.body[last] ^= 1;
        assert!(matches!(
            SignedGenesis::verify(envelope, None),
            Err(GenesisError::Envelope(EnvelopeError::BadSignature))
        ));
    }

    #[test]
    fn invalid_genesis_is_refused() {
        let base = signed_genesis().genesis().clone();
        let mut short = base.clone();
        short.queue.pop();
        assert!(matches!(
            short.validate(),
            Err(GenesisError::QueueLength {
                expected: 5,
                got: 4
            })
        ));
        let mut version = base.clone();
        version.version = 2;
        assert_eq!(version.validate(), Err(GenesisError::Version(2)));
        let mut long = base.clone();
        long.queue[2].duration_ms = 1;
        assert!(matches!(
            long.validate(),
            Err(GenesisError::QueueTrack { index: 2, .. })
        ));
        let mut rules = base;
        rules.rules_bytes = vec![0xff];
        assert!(matches!(rules.validate(), Err(GenesisError::Rules(_))));
    }
}
