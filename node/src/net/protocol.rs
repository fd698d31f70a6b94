//! The request-response protocols of PROTOCOL.md 2 and 6, as CBOR messages. Their limits are
//! the protocol's, declared in `chorus_consensus::limits`.
//!
//! Byte fields go through `serde_bytes` so that cbor4ii writes them as byte strings (a 1 MiB
//! block would otherwise become a 2 MB array of integers).

use chorus_consensus::{DecidedSlot, Hash32};
use serde::{Deserialize, Serialize};

/// `/chorus/sync/1`.
pub const SYNC_PROTOCOL: &str = "/chorus/sync/1";
/// `/chorus/time/1`.
pub const TIME_PROTOCOL: &str = "/chorus/time/1";
/// The want-list block exchange (PROTOCOL.md 6).
pub const BLOCKS_PROTOCOL: &str = "/chorus/blocks/1";
/// Kademlia, on a protocol name of our own so that the node never joins IPFS's public DHT.
pub const KAD_PROTOCOL: &str = "/chorus/kad/1";
/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/chorus/1";

/// A `/chorus/sync/1` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The genesis envelope.
    Genesis,
    /// Up to [`chorus_consensus::limits::CHAIN_RESPONSE_SLOTS`] decided slots from `from_slot` on.
    Chain {
        /// The first slot wanted.
        from_slot: u64,
    },
    /// Proposal envelopes held for `slot` among `ids` (all when empty).
    Proposals {
        /// The slot.
        slot: u64,
        /// The proposal ids.
        ids: Vec<Hash32>,
    },
    /// A manifest's bytes.
    Manifest {
        /// Its id.
        manifest_id: Hash32,
    },
}

/// A `/chorus/sync/1` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The genesis envelope's CBOR.
    Genesis(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Decided slots in order.
    Chain(Vec<DecidedSlot>),
    /// Proposal envelopes, each as its CBOR.
    Proposals(Vec<serde_bytes::ByteBuf>),
    /// The manifest, if held.
    Manifest(Option<serde_bytes::ByteBuf>),
    /// The request could not be answered (unknown network, not held).
    Unavailable(String),
}

/// `/chorus/time/1` request: the client's send time. All four stamps of an exchange are local
/// clocks (system clock at start-up plus monotonic time, no network offset) in microseconds
/// since the Unix epoch: milliseconds would cap agreement at about 1 ms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ping {
    /// Client send time, µs.
    pub t0: u64,
}

/// `/chorus/time/1` answer (PROTOCOL.md 7).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Pong {
    /// The client's send time, echoed.
    pub t0: u64,
    /// Server receive time, µs.
    pub t1: u64,
    /// Server send time, µs.
    pub t2: u64,
}

/// A want list: up to [`chorus_consensus::limits::WANTED_IDS_MAX`] block ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Want {
    /// The ids, most urgent first.
    pub ids: Vec<Hash32>,
}

/// One block of an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Block {
    /// The id the sender claims (the receiver hashes the bytes itself).
    pub id: Hash32,
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The answer to a want list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Have {
    /// Blocks the peer has.
    pub blocks: Vec<Block>,
    /// Ids the peer does not have.
    pub dont_have: Vec<Hash32>,
    /// Ids the peer has but left out to keep the answer small: ask again.
    pub later: Vec<Hash32>,
}
