//! Joining (PROTOCOL.md 11): the genesis from any peer (checked against the network id), and
//! the chain from the peers, the head held by most of them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use chorus_consensus::{Chain, DecidedSlot, Hash32, SignedGenesis};
use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::net::protocol::{CHAIN_BATCH, SyncRequest, SyncResponse};
use crate::net::{Client, Event};

/// How long a node with peers to dial waits for its first connection before deciding alone.
const FIRST_PEER_WAIT: Duration = Duration::from_secs(5);

/// Handles network events while the node is not running consensus yet.
pub struct Joiner {
    client: Client,
    events: mpsc::Receiver<Event>,
    connected: Vec<PeerId>,
    /// Events that the driver must still see (listen addresses, connections).
    kept: Vec<Event>,
    /// The genesis envelope, once known, to answer other joiners.
    genesis: Option<Vec<u8>>,
}

impl Joiner {
    pub fn new(client: Client, events: mpsc::Receiver<Event>) -> Joiner {
        Joiner {
            client,
            events,
            connected: Vec::new(),
            kept: Vec::new(),
            genesis: None,
        }
    }

    /// The genesis to give to peers that ask while this node is still syncing.
    pub fn set_genesis(&mut self, genesis: &SignedGenesis) {
        self.genesis = Some(genesis.to_cbor());
    }

    /// Sends a sync request while still handling events: two joining nodes may be asking each
    /// other at the same moment.
    async fn request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, crate::net::RequestError> {
        let client = self.client.clone();
        let answer = client.sync(peer, request);
        tokio::pin!(answer);
        loop {
            tokio::select! {
                r = &mut answer => return r,
                e = self.events.recv() => match e {
                    Some(e) => self.handle(e).await,
                    None => return Err(crate::net::RequestError::Stopped),
                },
            }
        }
    }

    /// The event stream, with the events the driver must replay first.
    pub fn into_events(self) -> (Vec<Event>, mpsc::Receiver<Event>) {
        (self.kept, self.events)
    }

    /// Handles one event; false when the stream ended.
    async fn pump(&mut self, until: Instant) -> bool {
        let event = tokio::select! {
            e = self.events.recv() => e,
            _ = tokio::time::sleep_until(until) => return true,
        };
        let Some(event) = event else {
            return false;
        };
        self.handle(event).await;
        true
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Listening(addr) => {
                super::driver::log_listening(&addr);
                self.kept.push(Event::Listening(addr));
            }
            Event::Connected(peer, addr) => {
                if !self.connected.contains(&peer) {
                    self.connected.push(peer);
                }
                self.kept.push(Event::Connected(peer, addr));
            }
            Event::Disconnected(peer) => self.connected.retain(|p| *p != peer),
            Event::Gossip { id, source, .. } => {
                self.client
                    .validate(id, source, MessageAcceptance::Ignore)
                    .await
            }
            Event::SyncRequest {
                channel, request, ..
            } => {
                let answer = match (&request, &self.genesis) {
                    (SyncRequest::Genesis, Some(g)) => SyncResponse::Genesis(g.clone()),
                    _ => SyncResponse::Unavailable("this node is still joining".into()),
                };
                self.client.respond_sync(channel, answer).await
            }
        }
    }

    /// Waits until at least one peer is connected or `wait` passed; then a moment more for
    /// the others of the same burst of dials.
    async fn await_peers(&mut self, wait: Duration, shutdown: &CancellationToken) {
        let until = Instant::now() + wait;
        while self.connected.is_empty() && Instant::now() < until && !shutdown.is_cancelled() {
            if !self.pump(until).await {
                return;
            }
        }
        if !self.connected.is_empty() {
            let settle = Instant::now() + Duration::from_millis(300);
            while Instant::now() < settle {
                if !self.pump(settle).await {
                    return;
                }
            }
        }
    }

    /// Fetches the genesis of `network` from the peers, retrying until one answers.
    pub async fn fetch_genesis(
        &mut self,
        network: Hash32,
        shutdown: &CancellationToken,
    ) -> Result<SignedGenesis> {
        info!(event = "joining", network_id = %network, "fetching the genesis of network {network} from peers");
        let mut warned = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                bail!("stopped before the genesis arrived");
            }
            self.await_peers(Duration::from_secs(2), shutdown).await;
            for peer in self.connected.clone() {
                match self.request(peer, SyncRequest::Genesis).await {
                    Ok(SyncResponse::Genesis(bytes)) => {
                        match SignedGenesis::from_cbor(&bytes, Some(&network)) {
                            Ok(g) => return Ok(g),
                            Err(e) => {
                                warn!(event = "bad_genesis", peer = %peer, "peer {peer} sent a genesis that is not network {network}: {e}")
                            }
                        }
                    }
                    Ok(other) => warn!("peer {peer} did not send the genesis: {other:?}"),
                    Err(e) => warn!("genesis request to {peer}: {e}"),
                }
            }
            if warned.elapsed() > Duration::from_secs(10) {
                warned = Instant::now();
                warn!(
                    event = "waiting_for_peers",
                    "no peer has given the genesis of {network} yet; check --peer addresses and that the bootstrap node runs"
                );
            }
            let pause = Instant::now() + Duration::from_secs(1);
            while Instant::now() < pause {
                if !self.pump(pause).await {
                    bail!("the network stopped");
                }
            }
        }
    }

    /// Brings `chain` up to the head held by most connected peers. True when at least one
    /// peer answered (the chain is then known to be current).
    pub async fn sync_chain(
        &mut self,
        chain: &mut Chain,
        _now: u64,
        shutdown: &CancellationToken,
    ) -> bool {
        self.await_peers(FIRST_PEER_WAIT, shutdown).await;
        let base = chain.len();
        let mut answers: BTreeMap<(u64, Option<Hash32>), (usize, Vec<DecidedSlot>)> =
            BTreeMap::new();
        for peer in self.connected.clone() {
            let Some(slots) = self.fetch_tail(peer, base).await else {
                continue;
            };
            let head = slots.last().map(|s| (s.slot, Some(s.chain_hash)));
            let key = head.unwrap_or((base, None));
            let entry = answers.entry(key).or_insert((0, slots));
            entry.0 += 1;
        }
        if answers.is_empty() {
            return false;
        }
        // The head held by most peers; on a tie the longer chain.
        let best = answers
            .into_iter()
            .max_by_key(|((slot, _), (count, _))| (*count, *slot))
            .map(|(_, (_, slots))| slots)
            .unwrap_or_default();
        let mut appended = 0;
        for slot in best {
            let n = slot.slot;
            if let Err(e) = chain.push_synced(slot) {
                warn!(
                    event = "chain_sync_failed",
                    "slot {n} from peers does not follow this node's chain: {e}; the fork rule will settle it"
                );
                break;
            }
            appended += 1;
        }
        if appended > 0 {
            info!(
                event = "chain_synced",
                slots = appended,
                head = chain.len(),
                "synced {appended} decided slots from peers; the chain now holds {} slots",
                chain.len()
            );
        }
        true
    }

    async fn fetch_tail(&mut self, peer: PeerId, from: u64) -> Option<Vec<DecidedSlot>> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let answer = self
                .request(peer, SyncRequest::Chain { from_slot: next })
                .await;
            match answer {
                Ok(SyncResponse::Chain(slots)) => {
                    let n = slots.len();
                    if slots.first().is_some_and(|s| s.slot != next) {
                        return None;
                    }
                    next += n as u64;
                    out.extend(slots);
                    if n < CHAIN_BATCH {
                        return Some(out);
                    }
                }
                _ => return None,
            }
        }
    }
}
