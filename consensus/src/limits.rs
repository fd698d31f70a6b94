//! The limits of PROTOCOL.md 10 and the fixed sizes of section 2.

/// Largest encoded gossip message (a Proposal, Tally, Decision or Status envelope), bytes.
pub const GOSSIP_MAX_BYTES: usize = 64 * 1024;
/// Largest sync response (`/chorus/sync/1`), bytes; also bounds a genesis envelope.
pub const SYNC_RESPONSE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest content block, bytes.
pub const BLOCK_MAX_BYTES: usize = 1024 * 1024;
/// Most block ids wanted in one exchange request.
pub const WANTED_IDS_MAX: usize = 64;
/// Most proposals held per slot (the lowest tickets are kept).
pub const PROPOSALS_PER_SLOT: usize = 64;
/// Most `(ticket, proposal_id)` pairs in a Tally.
pub const TALLY_BEST_MAX: usize = 3;
/// Most decided slots in one `Chain{from_slot}` response.
pub const CHAIN_RESPONSE_SLOTS: usize = 256;
/// Longest `Status.version` string, bytes (PROTOCOL.md 12.5).
pub const STATUS_VERSION_MAX_BYTES: usize = 64;
/// Most entries in `Status.queue` (PROTOCOL.md 12.5): the lookahead's slots and some slack.
pub const STATUS_QUEUE_MAX: usize = 8;
