//! The DHT's record store with quotas on what other peers may put in it (PROTOCOL.md 12.5).
//!
//! Kademlia keeps every provider record another peer announces (kad checks that the record
//! names the peer that sent it). A peer with a few thousand fresh keys, or one identity
//! announcing millions of keys, would otherwise fill memory. The node's own records (its
//! library and what it fetched) are never limited here; records from others are capped per
//! announcing peer ([`PER_PROVIDER_MAX`]) and in total ([`REMOTE_MAX`]). A refused record is
//! only one lost hint: fetchers also ask the peers they are connected to.

use std::borrow::Cow;
use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::kad::store::{Error, MemoryStore, MemoryStoreConfig, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};

/// Provider records accepted from one peer.
pub const PER_PROVIDER_MAX: usize = 2_000;
/// Provider records accepted from all other peers together.
pub const REMOTE_MAX: usize = 50_000;
/// Providers kept per key: a track needs a handful of sources, not hundreds.
pub const PROVIDERS_PER_KEY: usize = 32;

/// A [`MemoryStore`] with quotas on other peers' provider records.
pub struct BoundedStore {
    inner: MemoryStore,
    local: PeerId,
    per_provider: HashMap<PeerId, usize>,
    remote: usize,
    refused: u64,
}

impl BoundedStore {
    /// An empty store for the node `local`.
    pub fn new(local: PeerId) -> BoundedStore {
        let config = MemoryStoreConfig {
            // Keys of the own library plus the remote quota.
            max_provided_keys: 1_000_000,
            max_providers_per_key: PROVIDERS_PER_KEY,
            max_records: 1024,
            ..Default::default()
        };
        BoundedStore {
            inner: MemoryStore::with_config(local, config),
            local,
            per_provider: HashMap::new(),
            remote: 0,
            refused: 0,
        }
    }

    /// Provider records from other peers held now.
    pub fn remote_records(&self) -> usize {
        self.remote
    }

    /// Records refused by a quota since start.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    fn holds(&self, key: &RecordKey, provider: &PeerId) -> bool {
        self.inner
            .providers(key)
            .iter()
            .any(|r| r.provider == *provider)
    }
}

impl RecordStore for BoundedStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(k)
    }

    fn put(&mut self, r: Record) -> Result<()> {
        // Chorus stores no values in the DHT; MemoryStore's own limits (1024 records of at
        // most 64 KiB) bound what others can put.
        self.inner.put(r)
    }

    fn remove(&mut self, k: &RecordKey) {
        self.inner.remove(k)
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        let provider = record.provider;
        if provider == self.local || self.holds(&record.key, &provider) {
            return self.inner.add_provider(record);
        }
        let own = self.per_provider.get(&provider).copied().unwrap_or(0);
        if own >= PER_PROVIDER_MAX || self.remote >= REMOTE_MAX {
            self.refused += 1;
            return Err(Error::MaxProvidedKeys);
        }
        let key = record.key.clone();
        self.inner.add_provider(record)?;
        // MemoryStore ignores a provider beyond PROVIDERS_PER_KEY without an error.
        if self.holds(&key, &provider) {
            *self.per_provider.entry(provider).or_default() += 1;
            self.remote += 1;
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        if *p != self.local && self.holds(k, p) {
            self.remote = self.remote.saturating_sub(1);
            if let Some(n) = self.per_provider.get_mut(p) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_provider.remove(p);
                }
            }
        }
        self.inner.remove_provider(k, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize, provider: PeerId) -> ProviderRecord {
        ProviderRecord::new(RecordKey::new(&format!("key {i}")), provider, Vec::new())
    }

    #[test]
    fn one_peer_cannot_fill_the_store_but_the_node_itself_can_announce() {
        let me = PeerId::random();
        let mut store = BoundedStore::new(me);
        let flooder = PeerId::random();
        let refused = (0..PER_PROVIDER_MAX + 500)
            .filter(|&i| store.add_provider(record(i, flooder)).is_err())
            .count();
        assert_eq!(refused, 500);
        assert_eq!(store.remote_records(), PER_PROVIDER_MAX);
        // Re-announcing a held record is an update, not a new one.
        assert!(store.add_provider(record(0, flooder)).is_ok());
        assert_eq!(store.remote_records(), PER_PROVIDER_MAX);
        // Another peer and the node itself still get in.
        assert!(store.add_provider(record(0, PeerId::random())).is_ok());
        for i in 0..5_000 {
            store
                .add_provider(record(i, me))
                .expect("own records are not limited");
        }
        // Expiry frees the quota.
        store.remove_provider(&record(1, flooder).key, &flooder);
        assert_eq!(store.remote_records(), PER_PROVIDER_MAX);
        assert!(store.add_provider(record(99_999, flooder)).is_ok());
    }

    #[test]
    fn many_identities_hit_the_total_cap() {
        let mut store = BoundedStore::new(PeerId::random());
        let mut accepted = 0;
        for n in 0..(REMOTE_MAX / PER_PROVIDER_MAX + 3) {
            let sybil = PeerId::random();
            for i in 0..PER_PROVIDER_MAX {
                if store
                    .add_provider(record(n * PER_PROVIDER_MAX + i, sybil))
                    .is_ok()
                {
                    accepted += 1;
                }
            }
        }
        assert_eq!(accepted, REMOTE_MAX);
        assert_eq!(store.remote_records(), REMOTE_MAX);
        assert!(store.refused() > 0);
    }
}
