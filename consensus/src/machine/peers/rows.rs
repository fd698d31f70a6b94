//! The peer table's rows: stored densely, found through a small open-addressed index by key
//! (linear probing, at most half full).
//!
//! The table is looked up on every Status received, a thousand a second per node in a
//! simulation of 1000 nodes, where the peer tables of all nodes far exceed the processor's
//! caches. Rows stored where their key points left half the slots empty (the table is at most
//! half full), doubling the memory each lookup ranges over; the index costs a second access,
//! but a small one (8 bytes per slot), and a caller that knows its next lookups asks for both
//! ahead ([`Rows::prefetch_index`], [`Rows::prefetch`]). Positions are a pure function of the
//! rows inserted and removed; the table's order is kept apart (`order` in
//! [`super::PeerTable`]), so the layout never shows.

use libp2p_identity::PeerId;

use super::Row;
/// Spreads keys over the slots (the golden-ratio multiplier of Fibonacci hashing).
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;
/// The fewest slots of the index once a row is stored.
const MIN_SLOTS: usize = 16;

/// A hint that the cache line at `at` will be read soon (nothing where no such hint exists).
pub(crate) fn prefetch(at: *const u8) {
    // SAFETY: a prefetch reads nothing the program sees and never faults, whatever the
    // address; SSE, which provides it, is part of every x86-64 processor.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// One slot of the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    /// The row's position plus one; 0 for an empty slot.
    place: u32,
    /// The low 32 bits of the row's key: most probes that pass another row end here, without
    /// reading it.
    tag: u32,
}

impl Slot {
    fn pos(self) -> Option<usize> {
        (self.place as usize).checked_sub(1)
    }
}

/// Rows by key; several rows may share a key (their PeerIds differ).
#[derive(Debug, Clone, Default)]
pub(super) struct Rows {
    /// A power of two long (or empty), at most half full.
    index: Vec<Slot>,
    /// The rows, in no particular order.
    rows: Vec<Row>,
}

impl Rows {
    /// How many rows are stored (at positions `0..len()`).
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    fn home(&self, key: u64) -> usize {
        let bits = self.index.len().trailing_zeros();
        // The top bits of the product are the best mixed.
        (key.wrapping_mul(SPREAD) >> (64 - bits)) as usize
    }

    /// The position of `peer`'s row (`key` is its key).
    pub(super) fn find(&self, key: u64, peer: &PeerId) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mut i = self.home(key);
        loop {
            let slot = self.index[i];
            let pos = slot.pos()?;
            if slot.tag == key as u32 {
                let row = &self.rows[pos];
                if row.key == key && row.peer == *peer {
                    return Some(pos);
                }
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Where in the index the row at `pos` is.
    fn slot_of(&self, pos: usize) -> usize {
        let mut i = self.home(self.rows[pos].key);
        while self.index[i].pos() != Some(pos) {
            i = (i + 1) & self.mask();
        }
        i
    }

    /// Asks the processor to bring the index slot of `key` into the cache, without waiting for
    /// it (the first step of a lookup a few lookups ahead). Changes nothing.
    pub(super) fn prefetch_index(&self, key: u64) {
        if !self.index.is_empty() {
            prefetch(std::ptr::from_ref(&self.index[self.home(key)]).cast::<u8>());
        }
    }

    /// Asks the processor to bring the first `bytes` of the row `key` most likely names into
    /// the cache, without waiting for them (reads the index slot, which
    /// [`Rows::prefetch_index`] asked for earlier): a caller that knows its next lookups issues
    /// them early, and their cache misses overlap instead of following each other. Changes
    /// nothing.
    pub(super) fn prefetch(&self, key: u64, bytes: usize) {
        if self.index.is_empty() {
            return;
        }
        let Some(row) = self.index[self.home(key)]
            .pos()
            .and_then(|pos| self.rows.get(pos))
        else {
            return;
        };
        let start = std::ptr::from_ref(row).cast::<u8>();
        for offset in (0..bytes.min(size_of::<Row>())).step_by(64) {
            prefetch(start.wrapping_add(offset));
        }
    }

    /// Asks the processor to bring into the cache where the index and the rows are (what
    /// [`Rows::prefetch_index`] reads first). Changes nothing.
    pub(super) fn prefetch_header(&self) {
        prefetch(std::ptr::from_ref(self).cast::<u8>());
    }

    /// The row at `pos`.
    pub(super) fn get(&self, pos: usize) -> Option<&Row> {
        self.rows.get(pos)
    }

    /// The row at `pos`, to change it.
    pub(super) fn get_mut(&mut self, pos: usize) -> Option<&mut Row> {
        self.rows.get_mut(pos)
    }

    /// Every row with its position, in position order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Row)> {
        self.rows.iter().enumerate()
    }

    /// Every row, in position order, to change them.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Row> {
        self.rows.iter_mut()
    }

    /// Stores `row` (whose peer must be absent). Returns its position; other rows never move.
    pub(super) fn insert(&mut self, row: Row) -> usize {
        let pos = self.rows.len();
        let place = u32::try_from(pos + 1).expect("invariant: fewer than 2^32 rows");
        // At most half full: probes stay short, and a row is nearly always at its home.
        if (pos + 1) * 2 > self.index.len() {
            let size = (self.index.len() * 2).max(MIN_SLOTS);
            self.index = vec![Slot::default(); size];
            for at in 0..self.rows.len() {
                let key = self.rows[at].key;
                let slot = Slot {
                    place: (at + 1) as u32,
                    tag: key as u32,
                };
                self.place(key, slot);
            }
        }
        self.place(
            row.key,
            Slot {
                place,
                tag: row.key as u32,
            },
        );
        self.rows.push(row);
        pos
    }

    fn place(&mut self, key: u64, slot: Slot) {
        let mask = self.mask();
        let mut i = self.home(key);
        while self.index[i].pos().is_some() {
            i = (i + 1) & mask;
        }
        self.index[i] = slot;
    }

    /// Removes the row at `pos`; the last row takes its position.
    pub(super) fn remove(&mut self, pos: usize) -> Option<Row> {
        if pos >= self.rows.len() {
            return None;
        }
        // Backward-shift deletion in the index: later slots of the probe run move up, so that
        // every row stays reachable from its home without tombstones.
        let mask = self.mask();
        let mut hole = self.slot_of(pos);
        self.index[hole] = Slot::default();
        let mut j = (hole + 1) & mask;
        while let Some(at) = self.index[j].pos() {
            let home = self.home(self.rows[at].key);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.index[hole] = std::mem::take(&mut self.index[j]);
                hole = j;
            }
            j = (j + 1) & mask;
        }
        let last = self.rows.len() - 1;
        if pos != last {
            let moved = self.slot_of(last);
            self.index[moved].place = (pos + 1) as u32;
        }
        Some(self.rows.swap_remove(pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::peers::PeerInfo;

    fn row(key: u64, peer: PeerId) -> Row {
        Row {
            key,
            peer,
            indexed: None,
            info: PeerInfo::new(),
        }
    }

    /// Rows stay findable, by the right PeerId, through inserts and removals, with keys that
    /// collide (equal keys, equal homes) and probe runs that wrap around the index.
    #[test]
    fn found_after_inserts_and_removals() {
        let peers: Vec<PeerId> = (0..=255).map(crate::testing::peer).collect();
        let mut rows = Rows::default();
        let mut present: Vec<(u64, u8)> = Vec::new();
        let mut x: u64 = 7;
        for step in 0..3_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct keys: many share a key or a home.
            let key = x % 23;
            let seed = (x % 200) as u8;
            let known = present.iter().position(|&(k, s)| (k, s) == (key, seed));
            match known {
                Some(at) if step % 3 == 0 => {
                    let pos = rows.find(key, &peers[usize::from(seed)]).expect("present");
                    let removed = rows.remove(pos).expect("a row");
                    assert_eq!((removed.key, removed.peer), (key, peers[usize::from(seed)]));
                    present.swap_remove(at);
                }
                Some(_) => {}
                None if present.len() < 150 => {
                    let pos = rows.insert(row(key, peers[usize::from(seed)]));
                    assert_eq!(rows.find(key, &peers[usize::from(seed)]), Some(pos));
                    present.push((key, seed));
                }
                None => {}
            }
            assert_eq!(rows.len(), present.len());
            if step % 50 == 0 {
                for &(k, s) in &present {
                    let pos = rows.find(k, &peers[usize::from(s)]).expect("findable");
                    let r = rows.get(pos).expect("stored");
                    assert_eq!((r.key, r.peer), (k, peers[usize::from(s)]));
                }
                assert_eq!(rows.find(999, &peers[1]), None);
            }
        }
    }
}
