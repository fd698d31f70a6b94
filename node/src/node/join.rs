//! Joining (PROTOCOL.md 11): the genesis from any peer (checked against the network id), and
//! the chain from the peers, the head held by most of them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use chorus_consensus::{Chain, Hash32, SignedGenesis};
use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::net::protocol::{SyncRequest, SyncResponse};
use crate::net::{Client, Event};
use chorus_consensus::limits::CHAIN_RESPONSE_SLOTS;

/// How long a node with peers to dial waits for its first connection before deciding alone.
const FIRST_PEER_WAIT: Duration = Duration::from_secs(5);
/// Peers asked for the chain at most (PROTOCOL.md 12.1).
const CHAIN_PEERS: usize = 8;
/// Peers the joiner waits for, a moment, before asking (PROTOCOL.md 12.1: at least 3 when it
/// has them).
const CHAIN_PEERS_MIN: usize = 3;
/// How long the joiner waits for [`CHAIN_PEERS_MIN`] peers after the first.
const MORE_PEERS_WAIT: Duration = Duration::from_secs(1);
/// How far a peer's chain may be decided ahead of this node's clock (not synced yet).
const AHEAD_SLACK_MS: u64 = 60_000;

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
                super::network::log_listening(&addr);
                self.kept.push(Event::Listening(addr));
            }
            Event::Connected(peer, addr) => {
                if !self.connected.contains(&peer) {
                    self.connected.push(peer);
                }
                self.kept.push(Event::Connected(peer, addr));
            }
            Event::Disconnected(peer) => self.connected.retain(|p| *p != peer),
            // For the driver, in order.
            e @ (Event::Route(..) | Event::Reachability(_)) => self.kept.push(e),
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

    /// Brings `chain` up to the head held by most of the peers asked (PROTOCOL.md 11, 12.1).
    /// True when at least one peer's answer verified (the chain is then known to be current).
    ///
    /// Up to [`CHAIN_PEERS`] connected peers are asked (the joiner waits a moment for
    /// [`CHAIN_PEERS_MIN`] of them). Each answer is verified record by record on a copy of the
    /// chain as it arrives ([`Chain::push_synced`]: every chain hash link and, in protocol 1.1,
    /// every winning proposal's envelope against its TrackRef); a peer whose records fail is
    /// dropped from the count and reported. An answer may hold no slot whose finality lies in
    /// the future (a decided chain cannot run ahead of the clock), which bounds what a peer can
    /// make a joiner fetch and store. The head held by most peers wins; on a tie the longer
    /// chain (the fork rule of section 9 settles the rest once the node runs).
    pub async fn sync_chain(
        &mut self,
        chain: &mut Chain,
        now: u64,
        shutdown: &CancellationToken,
    ) -> bool {
        self.await_peers(FIRST_PEER_WAIT, shutdown).await;
        let until = Instant::now() + MORE_PEERS_WAIT;
        while self.connected.len() < CHAIN_PEERS_MIN
            && Instant::now() < until
            && !shutdown.is_cancelled()
        {
            if !self.pump(until).await {
                break;
            }
        }
        let mut answers: BTreeMap<(u64, Hash32), (usize, Chain)> = BTreeMap::new();
        let peers: Vec<PeerId> = self.connected.iter().copied().take(CHAIN_PEERS).collect();
        for peer in peers {
            match self.fetch_verified(peer, chain.clone(), now).await {
                Ok(Some(candidate)) => {
                    let head = candidate.head();
                    answers
                        .entry((head.slot, head.chain_hash))
                        .or_insert((0, candidate))
                        .0 += 1;
                }
                Ok(None) => {}
                Err(e) => warn!(event = "chain_refused", peer = %peer, reason = %e,
                    "the chain sent by {peer} was refused: {e}; it is not counted"),
            }
        }
        if answers.is_empty() {
            return false;
        }
        let heads = answers.len();
        let Some((count, best)) = answers
            .into_iter()
            .max_by_key(|((slot, _), (count, _))| (*count, *slot))
            .map(|(_, v)| v)
        else {
            return false;
        };
        let appended = best.len().saturating_sub(chain.len());
        *chain = best;
        if appended > 0 {
            info!(
                event = "chain_synced",
                slots = appended,
                head = chain.len(),
                peers = count,
                heads,
                "synced {appended} decided slots from peers ({count} held this head, {heads} heads in all); the chain now holds {} slots",
                chain.len()
            );
        }
        true
    }

    /// `peer`'s chain from `chain.len()` on, verified onto `chain`: `Ok(None)` when the peer
    /// did not answer (not held against it), an error when a record fails or the answer runs
    /// ahead of the clock.
    async fn fetch_verified(
        &mut self,
        peer: PeerId,
        mut chain: Chain,
        now: u64,
    ) -> Result<Option<Chain>, String> {
        let lookahead = chain.lookahead();
        loop {
            let next = chain.len();
            let answer = self
                .request(peer, SyncRequest::Chain { from_slot: next })
                .await;
            let slots = match answer {
                Ok(SyncResponse::Chain(slots)) => slots,
                _ => return Ok(None),
            };
            let n = slots.len();
            if n > CHAIN_RESPONSE_SLOTS {
                return Err(format!(
                    "{n} slots in one answer, more than {CHAIN_RESPONSE_SLOTS}"
                ));
            }
            for slot in slots {
                let k = slot.slot;
                if k != chain.len() {
                    return Err(format!("slot {k} where slot {} was due", chain.len()));
                }
                chain
                    .push_synced(slot)
                    .map_err(|e| format!("slot {k}: {e}"))?;
                // Slot k is final at start(k - 3), so a chain decided through k means that
                // moment has passed; a minute of slack covers clocks not synced yet.
                let final_at = k
                    .checked_sub(lookahead.saturating_sub(2))
                    .and_then(|j| chain.start(j));
                if final_at.is_some_and(|t| t > now.saturating_add(AHEAD_SLACK_MS)) {
                    return Err(format!(
                        "slot {k} would be final only in {} s: decided ahead of the clock",
                        final_at.unwrap_or(now).saturating_sub(now) / 1000
                    ));
                }
            }
            if n < CHAIN_RESPONSE_SLOTS {
                return Ok(Some(chain));
            }
        }
    }
}
