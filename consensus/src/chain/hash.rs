//! Chain hashes (PROTOCOL.md 11).

use crate::hash::Hash32;

/// Domain separator of chain hashes.
pub const CHAIN_DOMAIN: &[u8] = b"chorus/chain/v1";

/// `chain_hash(L-1) = SHA-256("chorus/chain/v1" || network_id)`.
pub fn genesis_chain_hash(network_id: &Hash32) -> Hash32 {
    Hash32::digest_parts(&[CHAIN_DOMAIN, network_id.as_bytes()])
}

/// `chain_hash(k) = SHA-256("chorus/chain/v1" || chain_hash(k-1) || u64be(k) || winner(k) || proposal_id(k))`,
/// with 32 zero bytes as the proposal id of a replay (`None`).
pub fn next_chain_hash(
    previous: &Hash32,
    slot: u64,
    winner: &Hash32,
    proposal_id: Option<&Hash32>,
) -> Hash32 {
    let proposal_id = proposal_id.unwrap_or(&Hash32::ZERO);
    Hash32::digest_parts(&[
        CHAIN_DOMAIN,
        previous.as_bytes(),
        &slot.to_be_bytes(),
        winner.as_bytes(),
        proposal_id.as_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_proposal_id_is_a_replay() {
        let prev = Hash32::digest(b"p");
        let w = Hash32::digest(b"w");
        assert_eq!(
            next_chain_hash(&prev, 5, &w, None),
            next_chain_hash(&prev, 5, &w, Some(&Hash32::ZERO))
        );
        assert_ne!(
            next_chain_hash(&prev, 5, &w, None),
            next_chain_hash(&prev, 6, &w, None)
        );
    }
}
