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

/// The genesis version this crate writes and the only one it accepts: 2, protocol 1.1
/// (PROTOCOL.md 12). Version 1 was protocol 1.0, whose chain records cannot be verified (12.1).
pub const GENESIS_VERSION: u64 = 2;

/// The protocol a genesis version stands for, for error messages.
fn protocol_of(version: u64) -> Option<&'static str> {
    match version {
        1 => Some("1.0"),
        2 => Some("1.1"),
        _ => None,
    }
}

/// The message of [`GenesisError::Version`].
fn version_message(version: &u64) -> String {
    match protocol_of(*version) {
        Some(protocol) => format!(
            "genesis version {version} is protocol {protocol}, which this node no longer speaks \
             (it speaks protocol 1.1, genesis version {GENESIS_VERSION}); start a new network \
             with `chorus bootstrap`"
        ),
        None => format!(
            "genesis version {version} is unknown to this node (it speaks protocol 1.1, genesis \
             version {GENESIS_VERSION}); a newer chorus may speak it"
        ),
    }
}

/// `Genesis = { version, name, start_ms, rules_bytes, queue, created_by, created_ms }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Genesis {
    /// Genesis version: 2 (protocol 1.1), [`GENESIS_VERSION`].
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
    /// 12.3: the creator's enrollment at slot 0, its commit and chain length. (Not an Enroll
    /// envelope: an Enroll names the network id, which is the hash of this very body.) A
    /// network of fair tickets needs it, or nobody could ever win a slot to enroll others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll: Option<GenesisEnroll>,
}

/// The genesis creator's commitment (PROTOCOL.md 12.3), enrolled at slot 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisEnroll {
    /// `H^len(s)` of the creator's seed.
    pub commit: Hash32,
    /// The chain's length.
    pub len: u64,
}

/// Why a genesis could not be created or was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenesisError {
    /// The rules are invalid or their bytes do not decode.
    #[error("genesis rules: {0}")]
    Rules(#[from] RulesError),
    /// The version is not [`GENESIS_VERSION`]; the message names the protocol it stands for.
    #[error("{}", version_message(.0))]
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
    /// The creator's enrollment names a chain length outside `1 ..= ENROLL_LEN_MAX`.
    #[error("genesis enroll len is {0}, outside 1..={max}", max = crate::message::ENROLL_LEN_MAX)]
    EnrollLen(u64),
    /// The genesis has no creator enrollment: under fair tickets (12.3) nobody could ever win.
    #[error(
        "the genesis enrolls no creator (written before protocol 1.1's fair tickets); nobody \
         could ever propose on it: start a new network with `chorus bootstrap`"
    )]
    NoEnroll,
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
    /// Builds and validates a genesis of [`GENESIS_VERSION`].
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
            enroll: None,
        };
        genesis.validate()?;
        Ok(genesis)
    }

    /// The same genesis with its creator enrolled at slot 0 with `commit` of a chain of `len`
    /// (PROTOCOL.md 12.3).
    pub fn with_enroll(mut self, commit: Hash32, len: u64) -> Genesis {
        self.enroll = Some(GenesisEnroll { commit, len });
        self
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
        if let Some(enroll) = &self.enroll
            && !(1..=crate::message::ENROLL_LEN_MAX).contains(&enroll.len)
        {
            return Err(GenesisError::EnrollLen(enroll.len));
        }
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
    fn a_version_1_genesis_is_refused_naming_protocol_1_0() {
        let operator = keypair(0);
        let mut old = signed_genesis().genesis().clone();
        assert_eq!(old.version, 2, "this crate writes protocol 1.1");
        old.version = 1;
        let envelope = Envelope::seal(&old, &operator).expect("signs");
        let err = SignedGenesis::verify(envelope, None).expect_err("version 1 is refused");
        assert_eq!(err, GenesisError::Version(1));
        let text = err.to_string();
        assert!(text.contains("genesis version 1 is protocol 1.0"), "{text}");
        assert!(text.contains("start a new network"), "{text}");
        let unknown = GenesisError::Version(7).to_string();
        assert!(
            unknown.contains("genesis version 7 is unknown"),
            "{unknown}"
        );
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
        version.version = 3;
        assert_eq!(version.validate(), Err(GenesisError::Version(3)));
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
