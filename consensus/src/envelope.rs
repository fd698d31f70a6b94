//! The signed envelope around every protocol message (PROTOCOL.md 2).

use libp2p_identity::{Keypair, PeerId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError};
use crate::hash::Hash32;
use crate::limits::GOSSIP_MAX_BYTES;
use crate::message::{Body, Message, Verified};

/// Domain prefix of every envelope signature: `sig` signs `"chorus/v1/" || kind || body`.
pub const SIGNING_PREFIX: &[u8] = b"chorus/v1/";

/// `Envelope { kind, body, key, sig }`: a CBOR body signed by a libp2p identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The body's kind: `proposal`, `tally`, `decision`, `status` (or `genesis` in sync).
    pub kind: String,
    /// The CBOR body; its SHA-256 is the message id.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The signer's public key, libp2p protobuf encoding.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Signature over `"chorus/v1/" || kind || body`.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// Why an envelope could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The keypair refused to sign (only possible for key types Chorus does not use).
    #[error("the keypair could not sign: {0}")]
    Signing(String),
    /// The body's `from` is not the keypair's PeerId: receivers would drop it.
    #[error("body is from {from} but the keypair is {signer}")]
    NotOurs {
        /// The body's `from` (base58).
        from: String,
        /// The keypair's PeerId (base58).
        signer: String,
    },
}

/// Why a received envelope was dropped (PROTOCOL.md 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The encoded envelope exceeds the limit of PROTOCOL.md 10.
    #[error("envelope of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit that applies.
        limit: usize,
    },
    /// The bytes are not an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(DecodeError),
    /// The kind is not one this version knows (dropped for forward compatibility, not punished).
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// The kind is known but not expected here (e.g. a genesis on the gossip topic).
    #[error("message kind {got:?} where {expected:?} was expected")]
    WrongKind {
        /// The kind expected.
        expected: &'static str,
        /// The kind received.
        got: String,
    },
    /// `key` is not a libp2p public key.
    #[error("bad public key: {0}")]
    BadKey(String),
    /// The signature does not verify under `key`.
    #[error("signature does not verify")]
    BadSignature,
    /// The body does not decode as its kind.
    #[error("{kind} body does not decode: {source}")]
    Body {
        /// The envelope's kind.
        kind: String,
        /// The decoding failure.
        source: DecodeError,
    },
    /// The body decodes but breaks a structural rule of section 2.
    #[error("{kind} body is invalid: {reason}")]
    Invalid {
        /// The envelope's kind.
        kind: String,
        /// The rule broken.
        reason: String,
    },
    /// The signer is not the body's `from`.
    #[error("body claims to be from {from} but is signed by {signer}")]
    SenderMismatch {
        /// The body's `from` (base58).
        from: String,
        /// PeerId of `key` (base58).
        signer: String,
    },
    /// The body's `network_id` is another network's.
    #[error("message of network {got}, this node is on {expected}")]
    WrongNetwork {
        /// This node's network id.
        expected: Hash32,
        /// The body's network id.
        got: Hash32,
    },
}

/// The verdict reported to gossipsub for a message (PROTOCOL.md 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Valid: forward it.
    Accept,
    /// Not forwarded, sender not punished (unknown kinds, stale or duplicate messages).
    Ignore,
    /// Invalid: not forwarded, the engine's peer scoring punishes the sender.
    Reject,
}

impl EnvelopeError {
    /// How gossipsub should treat a message that failed this way: unknown kinds are ignored
    /// (forward compatibility), everything else is rejected.
    pub fn validation(&self) -> Validation {
        match self {
            EnvelopeError::UnknownKind(_) => Validation::Ignore,
            _ => Validation::Reject,
        }
    }
}

/// The bytes a signature covers.
pub fn signing_payload(kind: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNING_PREFIX.len() + kind.len() + body.len());
    out.extend_from_slice(SIGNING_PREFIX);
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// Signs raw body bytes of `kind` with `keypair`.
    pub fn sign_bytes(kind: &str, body: Vec<u8>, keypair: &Keypair) -> Result<Envelope, SignError> {
        let sig = keypair
            .sign(&signing_payload(kind, &body))
            .map_err(|e| SignError::Signing(e.to_string()))?;
        Ok(Envelope {
            kind: kind.to_owned(),
            body,
            key: keypair.public().encode_protobuf(),
            sig,
        })
    }

    /// Encodes `body` and signs it; refuses a body whose `from` is not the keypair's PeerId.
    pub fn seal<B: Body>(body: &B, keypair: &Keypair) -> Result<Envelope, SignError> {
        let signer = keypair.public().to_peer_id();
        if *body.from() != signer {
            return Err(SignError::NotOurs {
                from: body.from().to_base58(),
                signer: signer.to_base58(),
            });
        }
        Envelope::sign_bytes(B::KIND, codec::to_cbor(body), keypair)
    }

    /// The message id: `SHA-256(body)`.
    pub fn id(&self) -> Hash32 {
        Hash32::digest(&self.body)
    }

    /// The CBOR encoding sent on the wire.
    pub fn to_cbor(&self) -> Vec<u8> {
        codec::to_cbor(self)
    }

    /// Decodes wire bytes of at most `max_bytes` into an (unverified) envelope.
    pub fn from_cbor(bytes: &[u8], max_bytes: usize) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > max_bytes {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                limit: max_bytes,
            });
        }
        codec::from_cbor(bytes).map_err(EnvelopeError::Malformed)
    }

    /// The PeerId of `key`, the signer's, *without* checking the signature (None if `key` is
    /// not a public key): the author of an envelope that was verified before, e.g. the winning
    /// proposal a decided slot carries. Only decodes the key, far cheaper than
    /// [`Envelope::verify_signature`].
    pub fn signer(&self) -> Option<PeerId> {
        PublicKey::try_decode_protobuf(&self.key)
            .ok()
            .map(|key| key.to_peer_id())
    }

    /// Checks the signature and returns the signer's PeerId.
    pub fn verify_signature(&self) -> Result<PeerId, EnvelopeError> {
        let key = PublicKey::try_decode_protobuf(&self.key)
            .map_err(|e| EnvelopeError::BadKey(e.to_string()))?;
        if !key.verify(&signing_payload(&self.kind, &self.body), &self.sig) {
            return Err(EnvelopeError::BadSignature);
        }
        Ok(key.to_peer_id())
    }

    /// Verifies the signature and decodes the body as `B`: kind, structure and sender checked,
    /// the network id left to the caller.
    pub fn open_as<B: Body>(&self, max_bytes: usize) -> Result<B, EnvelopeError> {
        let size = self.to_cbor().len();
        if size > max_bytes {
            return Err(EnvelopeError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        if self.kind != B::KIND {
            return Err(EnvelopeError::WrongKind {
                expected: B::KIND,
                got: self.kind.clone(),
            });
        }
        let signer = self.verify_signature()?;
        let body: B = codec::from_cbor(&self.body).map_err(|source| EnvelopeError::Body {
            kind: self.kind.clone(),
            source,
        })?;
        body.check().map_err(|reason| EnvelopeError::Invalid {
            kind: self.kind.clone(),
            reason,
        })?;
        if *body.from() != signer {
            return Err(EnvelopeError::SenderMismatch {
                from: body.from().to_base58(),
                signer: signer.to_base58(),
            });
        }
        Ok(body)
    }

    /// Verifies a gossip message of network `network_id` and decodes its body: every check of
    /// PROTOCOL.md 2, in the order cheapest first.
    pub fn open(self, network_id: &Hash32) -> Result<Verified, EnvelopeError> {
        let message = match self.kind.as_str() {
            crate::message::Proposal::KIND => Message::Proposal(self.open_as(GOSSIP_MAX_BYTES)?),
            crate::message::Tally::KIND => Message::Tally(self.open_as(GOSSIP_MAX_BYTES)?),
            crate::message::Decision::KIND => Message::Decision(self.open_as(GOSSIP_MAX_BYTES)?),
            crate::message::Status::KIND => Message::Status(self.open_as(GOSSIP_MAX_BYTES)?),
            crate::message::Enroll::KIND => Message::Enroll(self.open_as(GOSSIP_MAX_BYTES)?),
            _ => return Err(EnvelopeError::UnknownKind(self.kind.clone())),
        };
        if message.network_id() != network_id {
            return Err(EnvelopeError::WrongNetwork {
                expected: *network_id,
                got: *message.network_id(),
            });
        }
        Ok(Verified {
            id: self.id(),
            message,
            envelope: self,
        })
    }
}

/// Decodes and verifies gossip bytes in one step (what the node calls per gossipsub message).
pub fn open_gossip(bytes: &[u8], network_id: &Hash32) -> Result<Verified, EnvelopeError> {
    Envelope::from_cbor(bytes, GOSSIP_MAX_BYTES)?.open(network_id)
}

#[cfg(test)]
mod tests;
