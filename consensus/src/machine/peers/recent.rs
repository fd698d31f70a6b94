//! What a peer's row remembers of its recent slots and heads: values by slot, ascending, for the
//! highest slots only, as a map that drops its first entries past a bound would.
//!
//! Each Status received inserts into both, nearly always after the last slot, so they are kept
//! as small sorted sequences rather than maps: fewer cache lines per Status, and a thousand
//! peers' maps were a large share of a big network's memory.

use std::sync::Arc;

use crate::hash::Hash32;
use crate::message::Status;

/// Divergence flags of the `N` highest slots, stored in the row itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotFlags<const N: usize> {
    /// Slots, ascending; the first `len` are used.
    slots: [u64; N],
    flags: [bool; N],
    len: usize,
}

impl<const N: usize> Default for SlotFlags<N> {
    fn default() -> Self {
        SlotFlags {
            slots: [0; N],
            flags: [false; N],
            len: 0,
        }
    }
}

impl<const N: usize> SlotFlags<N> {
    /// Sets the flag of `slot`; past `N` slots the lowest is dropped (the new one itself if it
    /// is below every kept slot).
    pub(crate) fn insert(&mut self, slot: u64, flag: bool) {
        let used = &self.slots[..self.len];
        let pos = used.partition_point(|s| *s < slot);
        if used.get(pos) == Some(&slot) {
            self.flags[pos] = flag;
            return;
        }
        if self.len < N {
            self.slots.copy_within(pos..self.len, pos + 1);
            self.flags.copy_within(pos..self.len, pos + 1);
            self.slots[pos] = slot;
            self.flags[pos] = flag;
            self.len += 1;
        } else if pos > 0 {
            // Full: the lowest goes, the ones below `slot` move down.
            self.slots.copy_within(1..pos, 0);
            self.flags.copy_within(1..pos, 0);
            self.slots[pos - 1] = slot;
            self.flags[pos - 1] = flag;
        }
    }

    /// The flag of `slot`, if kept.
    pub(crate) fn get(&self, slot: u64) -> Option<bool> {
        let used = &self.slots[..self.len];
        used.binary_search(&slot).ok().map(|i| self.flags[i])
    }

    /// How many slots are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The Status messages that reported a peer's `N` highest heads, by head slot, ascending:
/// slot -> the last Status reporting its head at that slot. A ring in the row itself, of
/// shared Status messages (the slot and chain hash are read from them): a separate buffer
/// cost one more cache miss per Status received.
///
/// `repr(C)`: where the ring starts and ends is known, and what locates the heads comes first
/// (see [`Heads::RING_AT`]).
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub(crate) struct Heads<const N: usize> {
    /// Where the lowest head is.
    first: usize,
    len: usize,
    /// Per place in the ring: how its head compares with the own chain (see
    /// [`super::PeerTable::forks_possible`]).
    checks: [Check; N],
    ring: [Option<Arc<Status>>; N],
}

/// How a kept head compares with the own chain at its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The own chain has the same hash at that slot.
    Agrees,
    /// The own chain has another hash (or none) at that slot.
    Differs,
    /// Not compared yet (the own chain did not reach that slot, or was not at hand).
    Unchecked,
}

/// What [`Heads::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inserted {
    /// Whether the new head is kept (not if it is below every kept head when full).
    pub(crate) kept: bool,
    /// The check of the head it replaced or pushed out, if any.
    pub(crate) dropped: Option<Check>,
}

impl<const N: usize> Heads<N> {
    /// Where the ring starts: a Status received reads what comes before it, and one entry of
    /// the ring.
    pub(crate) const RING_AT: usize = std::mem::offset_of!(Self, ring);
}

impl<const N: usize> Default for Heads<N> {
    fn default() -> Self {
        Heads {
            ring: std::array::from_fn(|_| None),
            checks: [Check::Unchecked; N],
            first: 0,
            len: 0,
        }
    }
}

impl<const N: usize> Heads<N> {
    /// The `k`-th lowest head kept (`k < len`).
    fn at(&self, k: usize) -> Option<&Arc<Status>> {
        self.ring[(self.first + k) % N].as_ref()
    }

    fn slot(&self, k: usize) -> u64 {
        self.at(k).map_or(0, |s| s.head.slot)
    }

    /// Where `slot` is (Ok) or would go (Err) among the kept heads.
    fn search(&self, slot: u64) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.slot(mid).cmp(&slot) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Records `status` as the last report of its head slot, with how its head compares with
    /// the own chain; past `N` heads the lowest is dropped.
    pub(crate) fn insert(&mut self, status: &Arc<Status>, check: Check) -> Inserted {
        let slot = status.head.slot;
        let pos = match self.len.checked_sub(1).map(|last| self.slot(last)) {
            // The usual case: a newer head.
            None => 0,
            Some(last) if last < slot => self.len,
            _ => match self.search(slot) {
                Ok(k) => {
                    let at = (self.first + k) % N;
                    self.ring[at] = Some(Arc::clone(status));
                    let dropped = std::mem::replace(&mut self.checks[at], check);
                    return Inserted {
                        kept: true,
                        dropped: Some(dropped),
                    };
                }
                Err(k) => k,
            },
        };
        let mut pos = pos;
        let mut dropped = None;
        if self.len == N {
            if pos == 0 {
                return Inserted {
                    kept: false,
                    dropped: None,
                };
            }
            self.ring[self.first] = None;
            dropped = Some(self.checks[self.first]);
            self.first = (self.first + 1) % N;
            self.len -= 1;
            pos -= 1;
        }
        // Make room at `pos` by moving the heads above it up by one.
        for k in (pos..self.len).rev() {
            let from = (self.first + k) % N;
            let to = (self.first + k + 1) % N;
            self.ring[to] = self.ring[from].take();
            self.checks[to] = self.checks[from];
        }
        let at = (self.first + pos) % N;
        self.ring[at] = Some(Arc::clone(status));
        self.checks[at] = check;
        self.len += 1;
        Inserted {
            kept: true,
            dropped,
        }
    }

    /// The checks of the kept heads.
    pub(crate) fn checks(&self) -> impl Iterator<Item = Check> + '_ {
        (0..self.len).map(|k| self.checks[(self.first + k) % N])
    }

    /// Compares again the kept heads for which `recheck` says so, with `compare`; returns
    /// how many checks went from `Unchecked`, and from `Differs`, to something else, and how
    /// many went to `Unchecked` and to `Differs` (in that order).
    pub(crate) fn recheck(
        &mut self,
        recheck: impl Fn(Check) -> bool,
        compare: impl Fn(&crate::message::Head) -> Check,
    ) -> [usize; 4] {
        let mut moved = [0; 4];
        for k in 0..self.len {
            let at = (self.first + k) % N;
            let old = self.checks[at];
            if !recheck(old) {
                continue;
            }
            let Some(status) = &self.ring[at] else {
                continue;
            };
            let new = compare(&status.head);
            if new == old {
                continue;
            }
            self.checks[at] = new;
            moved[0] += usize::from(old == Check::Unchecked);
            moved[1] += usize::from(old == Check::Differs);
            moved[2] += usize::from(new == Check::Unchecked);
            moved[3] += usize::from(new == Check::Differs);
        }
        moved
    }

    /// The Status that last reported its head at `slot`, if kept.
    pub(crate) fn get(&self, slot: u64) -> Option<&Arc<Status>> {
        // Nearly always one of the two highest (fork evaluation asks at about the own head):
        // each look at a head reads a shared Status, likely a cache miss.
        let last = self.len.checked_sub(1)?;
        for k in [Some(last), last.checked_sub(1)].into_iter().flatten() {
            match self.slot(k).cmp(&slot) {
                std::cmp::Ordering::Equal => return self.at(k),
                std::cmp::Ordering::Less => return None,
                std::cmp::Ordering::Greater => {}
            }
        }
        self.search(slot).ok().and_then(|k| self.at(k))
    }

    /// The chain hash of the head kept at `slot`.
    pub(crate) fn hash_at(&self, slot: u64) -> Option<Hash32> {
        self.get(slot).map(|s| s.head.chain_hash)
    }

    /// `(head slot, Status)` pairs, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Arc<Status>)> + '_ {
        (0..self.len).filter_map(|k| self.at(k).map(|s| (s.head.slot, s)))
    }

    /// How many heads are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn status(head_slot: u64, tag: u64) -> Arc<Status> {
        Arc::new(Status {
            network_id: crate::hash::Hash32::ZERO,
            from: crate::testing::peer(1),
            sent_ms: tag,
            playing: None,
            consensus_track: None,
            diverged: false,
            head: crate::message::Head {
                slot: head_slot,
                chain_hash: crate::hash::Hash32::digest(&tag.to_be_bytes()),
            },
            queue: vec![],
            version: String::new(),
        })
    }

    /// Both agree with a map trimmed to its highest slots, whatever the order of slots.
    #[test]
    fn agree_with_a_trimmed_map() {
        let mut flags = SlotFlags::<8>::default();
        let mut heads = Heads::<32>::default();
        let (mut map, mut map2) = (BTreeMap::new(), BTreeMap::new());
        let mut x: u64 = 99;
        for step in 0..5_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly rising, sometimes behind, sometimes repeated.
            let slot = (step / 2).saturating_sub(x % 12 + (x % 97) / 90 * 60);
            let flag = x.is_multiple_of(5);
            flags.insert(slot, flag);
            map.insert(slot, flag);
            while map.len() > 8 {
                map.pop_first();
            }
            let kept = heads.insert(&status(slot, step), Check::Unchecked).kept;
            map2.insert(slot, step);
            while map2.len() > 32 {
                map2.pop_first();
            }
            assert_eq!(kept, map2.contains_key(&slot));
            assert_eq!(flags.len(), map.len());
            assert_eq!(heads.len(), map2.len());
            for probe in slot.saturating_sub(80)..slot + 2 {
                assert_eq!(flags.get(probe), map.get(&probe).copied(), "step {step}");
                let got = heads.get(probe).map(|s| s.sent_ms);
                assert_eq!(got, map2.get(&probe).copied(), "step {step}");
                let hash = map2
                    .get(&probe)
                    .map(|tag| status(probe, *tag).head.chain_hash);
                assert_eq!(heads.hash_at(probe), hash, "step {step}");
            }
            assert!(heads.iter().map(|(s, v)| (s, v.sent_ms)).eq(map2.clone()));
        }
    }
}
