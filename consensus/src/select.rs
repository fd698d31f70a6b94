//! Replay selection (PROTOCOL.md 4.3): the track a slot replays when no proposal is admissible.

use std::collections::BTreeSet;

use crate::chain::Chain;
use crate::hash::Hash32;

/// Domain of replay selection.
pub const REPLAY_DOMAIN: &str = "chorus/replay/v1";

/// The result of [`select`], every intermediate value included (the vectors pin them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Number of distinct candidates.
    pub n: u32,
    /// `SHA-256(domain || network_id || u64be(k) || u64be(start_ms) || u32be(n) || c_1 || ... || c_n)`.
    pub seed: Hash32,
    /// `u64be(seed[0..8]) mod n`.
    pub index: u64,
    /// The candidate at `index` among the distinct candidates sorted ascending.
    pub winner: Hash32,
}

/// `select(domain, network_id, k, start_ms, c)`: picks one of the distinct `candidates`
/// (given in any order, duplicates allowed). None when there is no candidate (or more than
/// `u32::MAX`, which no chain can hold).
pub fn select(
    domain: &str,
    network_id: &Hash32,
    slot: u64,
    start_ms: u64,
    candidates: &[Hash32],
) -> Option<Selection> {
    let sorted: Vec<&Hash32> = candidates
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let n = u32::try_from(sorted.len()).ok().filter(|n| *n > 0)?;
    let slot_bytes = slot.to_be_bytes();
    let start_bytes = start_ms.to_be_bytes();
    let n_bytes = n.to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![
        domain.as_bytes(),
        network_id.as_bytes(),
        &slot_bytes,
        &start_bytes,
        &n_bytes,
    ];
    parts.extend(sorted.iter().map(|c| c.as_bytes().as_slice()));
    let seed = Hash32::digest_parts(&parts);
    let mut first = [0u8; 8];
    first.copy_from_slice(&seed.0[..8]);
    let index = u64::from_be_bytes(first) % u64::from(n);
    let winner =
        *sorted[usize::try_from(index).expect("invariant: index < n <= u32::MAX fits usize")];
    Some(Selection {
        n,
        seed,
        index,
        winner,
    })
}

/// Replay candidates for slot k: the distinct winners of slots `max(0, k-25) ..= k-6`, or, if
/// that is empty, of every slot before k. Slots the chain does not hold are skipped.
pub fn replay_candidates(chain: &Chain, slot: u64) -> BTreeSet<Hash32> {
    let recent: BTreeSet<Hash32> = match slot.checked_sub(6) {
        Some(last) => (slot.saturating_sub(25)..=last)
            .filter_map(|j| chain.winner(j).map(|t| t.track_hash))
            .collect(),
        None => BTreeSet::new(),
    };
    if !recent.is_empty() {
        return recent;
    }
    (0..slot)
        .map_while(|j| chain.winner(j).map(|t| t.track_hash))
        .collect()
}

/// The replay winner of slot k on `chain` (which must know `start(k)`); None if the chain is
/// too short to tell.
pub fn replay_winner(chain: &Chain, slot: u64) -> Option<Selection> {
    let start = chain.start(slot)?;
    let candidates: Vec<Hash32> = replay_candidates(chain, slot).into_iter().collect();
    select(REPLAY_DOMAIN, chain.network_id(), slot, start, &candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_candidate_always_wins_and_empty_is_none() {
        let c = Hash32::digest(b"c");
        let s = select(REPLAY_DOMAIN, &Hash32::ZERO, 7, 1, &[c, c]).expect("one candidate");
        assert_eq!((s.n, s.index, s.winner), (1, 0, c));
        assert!(select(REPLAY_DOMAIN, &Hash32::ZERO, 7, 1, &[]).is_none());
    }

    #[test]
    fn order_and_duplicates_do_not_matter() {
        let cs: Vec<Hash32> = (0u8..6).map(|i| Hash32::digest(&[i])).collect();
        let mut shuffled = cs.clone();
        shuffled.reverse();
        shuffled.push(cs[2]);
        assert_eq!(
            select(REPLAY_DOMAIN, &Hash32::ZERO, 9, 2, &cs),
            select(REPLAY_DOMAIN, &Hash32::ZERO, 9, 2, &shuffled)
        );
    }
}
