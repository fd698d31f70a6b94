//! The limits of PROTOCOL.md 10, the bounds of the `/chorus/sync/1` and `/chorus/blocks/1`
//! requests of sections 2 and 6, and the fixed sizes of section 2: the one place where the
//! protocol's limits are declared. The node's wire codecs and the simulator take them from here.

/// Largest encoded gossip message (a Proposal, Tally, Decision or Status envelope), bytes.
pub const GOSSIP_MAX_BYTES: usize = 64 * 1024;
/// Largest sync response (`/chorus/sync/1`), bytes; also bounds a genesis envelope.
pub const SYNC_RESPONSE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest sync request (`/chorus/sync/1`), bytes: the biggest, a `Proposals` request of
/// [`PROPOSAL_IDS_MAX`] ids, takes little over 2 KiB.
pub const SYNC_REQUEST_MAX_BYTES: usize = 64 * 1024;
/// Largest content block, bytes.
pub const BLOCK_MAX_BYTES: usize = 1024 * 1024;
/// Most block ids wanted in one exchange request.
pub const WANTED_IDS_MAX: usize = 64;
/// Bytes of blocks one exchange answer (`/chorus/blocks/1`) carries at most; the blocks left
/// out are answered `later` and asked for again. A full want list of 64 segments of 160 kbit/s
/// audio is about 8 MB, more than one answer should hold.
pub const WANT_RESPONSE_BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// Largest exchange request or answer on the wire, bytes: the answer budget, plus the one block
/// that may cross it, plus framing.
pub const BLOCKS_MESSAGE_MAX_BYTES: usize =
    WANT_RESPONSE_BUDGET_BYTES + BLOCK_MAX_BYTES + 64 * 1024;
/// Most proposals held per slot (the lowest tickets are kept).
pub const PROPOSALS_PER_SLOT: usize = 64;
/// Most proposal ids a `Proposals{slot, ids}` request is answered for; the ids after them are
/// ignored. As many as a slot holds ([`PROPOSALS_PER_SLOT`]).
pub const PROPOSAL_IDS_MAX: usize = 64;
/// Most `(ticket, proposal_id)` pairs in a Tally.
pub const TALLY_BEST_MAX: usize = 3;
/// Most decided slots in one `Chain{from_slot}` response.
pub const CHAIN_RESPONSE_SLOTS: usize = 256;
/// Longest `Status.version` string, bytes (PROTOCOL.md 12.5).
pub const STATUS_VERSION_MAX_BYTES: usize = 64;
/// Most entries in `Status.queue` (PROTOCOL.md 12.5): the lookahead's slots and some slack.
pub const STATUS_QUEUE_MAX: usize = 8;
