//! The peer table's rows, open-addressed by key (linear probing, at most half full).
//!
//! The table is looked up on every Status received, a thousand a second per node in a
//! simulation of 1000 nodes. Rows stored where their key points are found with one cache miss;
//! a separate index costs a second one, which the row's address depends on. Positions are a
//! pure function of the rows inserted and removed; the table's order is kept apart (`order`
//! in [`super::PeerTable`]), so the layout never shows.

use libp2p_identity::PeerId;

use super::Row;
/// Spreads keys over the slots (the golden-ratio multiplier of Fibonacci hashing).
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;
/// The fewest slots once a row is stored.
const MIN_SLOTS: usize = 16;

/// A hint that the cache line at `at` will be read soon (nothing where no such hint exists).
fn prefetch(at: *const u8) {
    // SAFETY: a prefetch reads nothing the program sees and never faults, whatever the
    // address; SSE, which provides it, is part of every x86-64 processor.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Rows by key; several rows may share a key (their PeerIds differ).
#[derive(Debug, Clone, Default)]
pub(super) struct Rows {
    /// A power of two long (or empty).
    slots: Vec<Option<Row>>,
    len: usize,
}

impl Rows {
    /// How many rows are stored.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, key: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        // The top bits of the product are the best mixed.
        (key.wrapping_mul(SPREAD) >> (64 - bits)) as usize
    }

    /// The position of `peer`'s row (`key` is its key).
    pub(super) fn find(&self, key: u64, peer: &PeerId) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.home(key);
        loop {
            match &self.slots[i] {
                None => return None,
                Some(row) if row.key == key && row.peer == *peer => return Some(i),
                Some(_) => i = (i + 1) & self.mask(),
            }
        }
    }

    /// Asks the processor to bring the first `bytes` of the row `key` most likely points to into
    /// the cache, without waiting for them: a caller that knows its next lookups issues them
    /// early, and their cache misses overlap instead of following each other. Changes nothing.
    pub(super) fn prefetch(&self, key: u64, bytes: usize) {
        if self.slots.is_empty() {
            return;
        }
        let row = &self.slots[self.home(key)];
        let start = std::ptr::from_ref(row).cast::<u8>();
        for offset in (0..bytes.min(size_of::<Option<Row>>())).step_by(64) {
            prefetch(start.wrapping_add(offset));
        }
    }

    /// Asks the processor to bring into the cache where the rows are (what [`Rows::prefetch`]
    /// reads first). Changes nothing.
    pub(super) fn prefetch_header(&self) {
        prefetch(std::ptr::from_ref(&self.slots).cast::<u8>());
    }

    /// How many positions there are (rows are at some of `0..capacity()`).
    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The row at `pos`.
    pub(super) fn get(&self, pos: usize) -> Option<&Row> {
        self.slots.get(pos).and_then(Option::as_ref)
    }

    /// The row at `pos`, to change it.
    pub(super) fn get_mut(&mut self, pos: usize) -> Option<&mut Row> {
        self.slots.get_mut(pos).and_then(Option::as_mut)
    }

    /// Every row with its position, in position order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Row)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
    }

    /// Stores `row` (whose peer must be absent). Returns its position, and whether the other
    /// rows moved (the table grew).
    pub(super) fn insert(&mut self, row: Row) -> (usize, bool) {
        // At most half full: probes stay short, and a row is nearly always at its home.
        let grew = (self.len + 1) * 2 > self.slots.len();
        if grew {
            let size = (self.slots.len() * 2).max(MIN_SLOTS);
            let old = std::mem::replace(
                &mut self.slots,
                std::iter::repeat_with(|| None).take(size).collect(),
            );
            self.len = 0;
            for row in old.into_iter().flatten() {
                self.place(row);
            }
        }
        (self.place(row), grew)
    }

    fn place(&mut self, row: Row) -> usize {
        let mask = self.mask();
        let mut i = self.home(row.key);
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Some(row);
        self.len += 1;
        i
    }

    /// Removes the row at `pos`; other rows may move.
    pub(super) fn remove(&mut self, pos: usize) -> Option<Row> {
        let removed = self.slots.get_mut(pos)?.take()?;
        self.len -= 1;
        // Backward-shift deletion: later rows of the probe run move up, so that every row
        // stays reachable from its home without tombstones.
        let mask = self.mask();
        let mut hole = pos;
        let mut j = (pos + 1) & mask;
        while let Some(row) = &self.slots[j] {
            let home = self.home(row.key);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
            j = (j + 1) & mask;
        }
        Some(removed)
    }
}
