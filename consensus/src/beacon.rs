//! Protocol 1.1's fair tickets (PROTOCOL.md 12.3), the pure parts: a node's hash chain and its
//! reveals, the randomness beacon, and ticket v2 over the beacon. Enrollment, the roster and
//! eligibility build on these (not wired into the machine yet: the network runs protocol 1).
//!
//! - A node's chain from its secret seed `s` of length `len`: `v(i) = H^(len - i)(s)`, so
//!   `commit = v(0) = H^len(s)` and `H(v(i)) = v(i - 1)`. Its proposal for slot `k` reveals
//!   `v(k - e)` (enrolled at `e`); anyone checks it against the latest value known of it.
//! - `beacon(L - 1) = H("chorus/beacon/v1" || network_id)`, `beacon(k) = H("chorus/beacon/v1" ||
//!   beacon(k - 1) || u64be(k) || reveal of winner(k))`, 32 zero bytes for a replay.
//! - `ticket(p, k) = u64be(H("chorus/ticket/v2" || network_id || u64be(k) ||
//!   beacon(max(k - L - 1, L - 1)) || peer_id)[0..8])`.
//!
//! Conformance vectors: `vectors/beacon.json`, written by `scripts/vectors/beacon.py`, an
//! implementation in Python of the same text.

use libp2p_identity::PeerId;

use crate::hash::Hash32;

/// Domain separator of the beacon.
pub const BEACON_DOMAIN: &[u8] = b"chorus/beacon/v1";
/// Domain separator of ticket v2.
pub const TICKET_V2_DOMAIN: &[u8] = b"chorus/ticket/v2";
/// The default length of a node's hash chain (PROTOCOL.md 12.3): a reveal per slot for two
/// million slots.
pub const CHAIN_LEN: u64 = 1 << 20;
/// Values of a chain kept in memory: one every `CHECKPOINT_EVERY` steps from the seed, so any
/// value costs at most that many hashes (1024 checkpoints, 32 KiB, for a chain of 2^20).
pub const CHECKPOINT_EVERY: u64 = 1024;

/// `H^n(x)`.
pub fn hash_n(x: &Hash32, n: u64) -> Hash32 {
    let mut v = *x;
    for _ in 0..n {
        v = Hash32::digest(v.as_bytes());
    }
    v
}

/// A node's hash chain (see the module's doc), with checkpoints so that each reveal costs at
/// most [`CHECKPOINT_EVERY`] hashes after the chain is built once (`len` hashes).
#[derive(Clone)]
pub struct HashChain {
    len: u64,
    /// `H^(j * CHECKPOINT_EVERY)(s)` for `j = 0, 1, ...` up to `len`.
    checkpoints: Vec<Hash32>,
}

impl std::fmt::Debug for HashChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The checkpoints reveal the chain's future values: never in a log line.
        f.debug_struct("HashChain")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl HashChain {
    /// The chain of `seed` of length `len` (at least 1).
    pub fn new(seed: &Hash32, len: u64) -> HashChain {
        let len = len.max(1);
        let mut checkpoints = vec![*seed];
        let mut v = *seed;
        let mut done = 0;
        while done + CHECKPOINT_EVERY <= len {
            v = hash_n(&v, CHECKPOINT_EVERY);
            done += CHECKPOINT_EVERY;
            checkpoints.push(v);
        }
        HashChain { len, checkpoints }
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no values to reveal (never: a chain is at least 1 long).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `v(0) = H^len(s)`, published in the node's Enroll.
    pub fn commit(&self) -> Hash32 {
        self.value(0).unwrap_or_default()
    }

    /// `v(i) = H^(len - i)(s)`; `None` past the chain's end (`i > len`).
    pub fn value(&self, i: u64) -> Option<Hash32> {
        let steps = self.len.checked_sub(i)?;
        let at = usize::try_from(steps / CHECKPOINT_EVERY).ok()?;
        let from = self.checkpoints.get(at)?;
        Some(hash_n(from, steps % CHECKPOINT_EVERY))
    }
}

/// Whether `reveal` is `v(i)` of the chain whose `v(j)` is `known` (`j < i`): `H^(i - j)(reveal)
/// == known`. The walk is at most `max_walk` hashes (a verifier bounds its work; a longer claim
/// is refused), and a reveal at or before the known index is refused (it reveals nothing new).
pub fn verify_reveal(reveal: &Hash32, i: u64, known: &Hash32, j: u64, max_walk: u64) -> bool {
    match i.checked_sub(j) {
        Some(walk) if walk > 0 && walk <= max_walk => hash_n(reveal, walk) == *known,
        _ => false,
    }
}

/// `beacon(L - 1)`: where the beacon starts, from the network id alone.
pub fn beacon_genesis(network_id: &Hash32) -> Hash32 {
    Hash32::digest_parts(&[BEACON_DOMAIN, network_id.as_bytes()])
}

/// `beacon(k)` from `beacon(k - 1)` and the reveal in the winning proposal of `k` (`None` for
/// a replay, which stands for 32 zero bytes).
pub fn beacon_next(previous: &Hash32, slot: u64, reveal: Option<&Hash32>) -> Hash32 {
    let zero = Hash32::ZERO;
    Hash32::digest_parts(&[
        BEACON_DOMAIN,
        previous.as_bytes(),
        &slot.to_be_bytes(),
        reveal.unwrap_or(&zero).as_bytes(),
    ])
}

/// The slot of the beacon a ticket for `slot` uses: `max(k - L - 1, L - 1)`, final at
/// `start(k - 9)` with `L = 5`, before the proposal window of `k`.
pub fn ticket_beacon_slot(slot: u64, lookahead: u64) -> u64 {
    slot.saturating_sub(lookahead + 1)
        .max(lookahead.saturating_sub(1))
}

/// Ticket v2 of `peer` for `slot` over `beacon` (that of [`ticket_beacon_slot`]).
pub fn ticket_v2(network_id: &Hash32, slot: u64, beacon: &Hash32, peer: &PeerId) -> u64 {
    let digest = Hash32::digest_parts(&[
        TICKET_V2_DOMAIN,
        network_id.as_bytes(),
        &slot.to_be_bytes(),
        beacon.as_bytes(),
        &peer.to_bytes(),
    ]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(n: u8) -> Hash32 {
        Hash32::digest(&[n; 7])
    }

    #[test]
    fn every_value_hashes_to_the_one_before_and_the_commit_is_the_end() {
        for len in [
            1,
            5,
            CHECKPOINT_EVERY - 1,
            CHECKPOINT_EVERY,
            3 * CHECKPOINT_EVERY + 7,
        ] {
            let chain = HashChain::new(&seed(1), len);
            assert_eq!(chain.commit(), hash_n(&seed(1), len), "len {len}");
            assert_eq!(chain.value(len), Some(seed(1)), "v(len) is the seed");
            assert_eq!(chain.value(len + 1), None);
            for i in [1, (len / 2).max(1), len] {
                let v = chain.value(i).expect("in the chain");
                let before = chain.value(i - 1).expect("in the chain");
                assert_eq!(Hash32::digest(v.as_bytes()), before, "len {len} i {i}");
            }
        }
    }

    #[test]
    fn reveals_check_against_any_earlier_value_and_nothing_else() {
        let chain = HashChain::new(&seed(2), 3000);
        let v = |i| chain.value(i).expect("in the chain");
        assert!(verify_reveal(&v(5), 5, &chain.commit(), 0, 3000));
        assert!(verify_reveal(&v(2000), 2000, &v(1999), 1999, 3000));
        assert!(verify_reveal(&v(2000), 2000, &v(3), 3, 3000));
        // Another chain's value, the right value at the wrong index, a value already known,
        // an index before the known one, a walk beyond the verifier's bound.
        let other = HashChain::new(&seed(3), 3000);
        assert!(!verify_reveal(
            &other.value(5).expect("v"),
            5,
            &chain.commit(),
            0,
            3000
        ));
        assert!(!verify_reveal(&v(6), 5, &chain.commit(), 0, 3000));
        assert!(!verify_reveal(&v(3), 3, &v(3), 3, 3000));
        assert!(!verify_reveal(&v(2), 2, &v(3), 3, 3000));
        assert!(!verify_reveal(&v(2000), 2000, &chain.commit(), 0, 1000));
    }

    #[test]
    fn the_beacon_moves_with_every_reveal_and_a_replay() {
        let net = Hash32::digest(b"net");
        let b0 = beacon_genesis(&net);
        let r = Hash32::digest(b"reveal");
        let b1 = beacon_next(&b0, 5, Some(&r));
        assert_ne!(b1, beacon_next(&b0, 5, None));
        assert_ne!(b1, beacon_next(&b0, 6, Some(&r)));
        assert_eq!(
            beacon_next(&b0, 5, None),
            beacon_next(&b0, 5, Some(&Hash32::ZERO))
        );
        assert_ne!(beacon_genesis(&Hash32::digest(b"other")), b0);
    }

    #[test]
    fn a_ticket_uses_the_beacon_six_slots_back_and_never_before_the_seed_queue() {
        assert_eq!(ticket_beacon_slot(5, 5), 4);
        assert_eq!(ticket_beacon_slot(10, 5), 4);
        assert_eq!(ticket_beacon_slot(11, 5), 5);
        assert_eq!(ticket_beacon_slot(100, 5), 94);
        let net = Hash32::digest(b"net");
        let peer = crate::genesis::tests::keypair(1).public().to_peer_id();
        let (b1, b2) = (Hash32::digest(b"1"), Hash32::digest(b"2"));
        assert_ne!(
            ticket_v2(&net, 9, &b1, &peer),
            ticket_v2(&net, 9, &b2, &peer)
        );
        assert_ne!(
            ticket_v2(&net, 9, &b1, &peer),
            ticket_v2(&net, 10, &b1, &peer)
        );
    }
}
