//! NAT traversal (issue: the real internet). AutoNAT v2 tells whether peers can dial our
//! observed addresses: with one confirmed we are public (Kademlia serves, the relay server
//! advertises itself); with every test failed we are private, and reserve a slot on up to
//! [`RELAYS`] public peers that offer a relay, so that others reach us through them. A relayed
//! connection is upgraded by DCUtR hole punching; once a direct connection to a peer exists its
//! relayed ones are closed, and the block exchange never runs over a relay (circuits are small
//! and short: they carry control traffic and the hole punch).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, autonat, dcutr, identify, relay, upnp};
use tracing::{debug, info, warn};

use super::EventLoop;
use crate::net::protocol::KAD_PROTOCOL;
use crate::net::{Event, Reachability, is_relayed};

/// Relays a private node keeps a reservation on.
pub const RELAYS: usize = 2;
/// How long a relay that refused us or dropped the reservation is left alone the first time; the
/// wait doubles with each failure in a row, up to [`RELAY_RETRY_MAX`]. A new network's bootstrap
/// node refuses every reservation until a peer confirms its address (libp2p's relay client
/// fails a reservation that lists no address of the relay), which takes a few seconds: with a
/// first wait of 60 s the homes of a new network met each other only a minute in.
const RELAY_RETRY: Duration = Duration::from_secs(5);
/// The longest wait before asking a relay again.
const RELAY_RETRY_MAX: Duration = Duration::from_secs(60);
/// After a failed hole punch (libp2p's three attempts), the first wait before the peer is
/// dialed through a relay again, which starts a new hole punch; it doubles with each failure.
const PUNCH_RETRY: Duration = Duration::from_secs(10);
/// How much later the peer with the larger id retries a failed hole punch than the other.
const PUNCH_RETRY_LATER: Duration = Duration::from_secs(5);
/// Failed hole punches to one peer before it is left to the relay (a symmetric NAT never
/// lets one through): four rounds over about 70 s.
const PUNCH_ROUNDS: u32 = 4;

/// What the event loop knows of its own reachability and its relays.
#[derive(Debug, Default)]
pub(super) struct Nat {
    /// Our addresses peers dialed back (or a UPnP router mapped).
    confirmed: BTreeSet<Multiaddr>,
    /// AutoNAT tests that failed since the last confirmed address.
    failed: usize,
    /// What was last reported.
    reported: Reachability,
    /// Peers whose identify lists the relay server protocol and the DHT (they are public).
    relay_capable: HashSet<PeerId>,
    /// Relays we asked for a reservation (or hold one on): the circuit address asked and
    /// its listener.
    reservations: HashMap<PeerId, (Multiaddr, ListenerId)>,
    /// Relays that refused or dropped us, until when they are left alone.
    refused: HashMap<PeerId, Instant>,
    /// Failures in a row per relay (reset by a reservation it accepts).
    relay_failures: HashMap<PeerId, u32>,
    /// Peers whose hole punch failed.
    punches: HashMap<PeerId, Punch>,
}

/// Hole punching to one peer after a failure.
#[derive(Debug, Default)]
struct Punch {
    /// Rounds that failed.
    failed: u32,
    /// When to try again (`None` while a retry is under way, or after the last round).
    next: Option<Instant>,
    /// The relayed connections open when the retry dialed a new one: closed once it is up.
    old: Vec<ConnectionId>,
}

impl Punch {
    /// A round failed at `now`: the wait before the next one ([`PUNCH_RETRY`], doubling), or
    /// `None` after [`PUNCH_ROUNDS`].
    fn round_failed(&mut self, now: Instant) -> Option<Duration> {
        self.failed += 1;
        let again = (self.failed < PUNCH_ROUNDS).then(|| PUNCH_RETRY * 2u32.pow(self.failed - 1));
        self.next = again.map(|wait| now + wait);
        again
    }
}

impl Nat {
    /// `relay` refused or dropped us at `now`: it is left alone for [`RELAY_RETRY`], doubling
    /// with each failure in a row up to [`RELAY_RETRY_MAX`]. Returns the wait.
    fn relay_failed(&mut self, relay: PeerId, now: Instant) -> Duration {
        let failures = self.relay_failures.entry(relay).or_default();
        *failures = failures.saturating_add(1);
        let wait = RELAY_RETRY
            .saturating_mul(2u32.saturating_pow(*failures - 1))
            .min(RELAY_RETRY_MAX);
        self.refused.insert(relay, now + wait);
        wait
    }

    fn reachability(&self) -> Reachability {
        if !self.confirmed.is_empty() {
            Reachability::Public
        } else if self.failed > 0 {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }
}

impl EventLoop {
    /// Reports our reachability when it changed.
    fn reachability_changed(&mut self) {
        let now = self.nat.reachability();
        if now == self.nat.reported {
            return;
        }
        self.nat.reported = now;
        let addresses: Vec<String> = self.nat.confirmed.iter().map(|a| a.to_string()).collect();
        info!(event = "reachability", status = now.as_str(), addresses = %addresses.join(","),
            "reachability: {} (confirmed addresses: {})", now.as_str(),
            if addresses.is_empty() { "none".to_owned() } else { addresses.join(", ") });
        self.emit(Event::Reachability(now));
        self.set_dht_mode(now);
        // A node that turns public keeps the reservations it holds (no new ones are asked for:
        // `maintain_relays`); they end with their relay's connection. Removing their listeners
        // is not safe in libp2p-relay 0.22: the client forgets the reservation at once, and an
        // answer to a request or renewal already on its way then panics its behaviour
        // ("Relay connection exist"), which ends the swarm. Seen once when ten nodes started
        // on the testbed.
    }

    /// Kademlia's mode from our reachability: a client once AutoNAT found us private (nobody
    /// puts our unreachable addresses in their routing table, and our peers do not take us for
    /// a relay: `relay_capable`), a server otherwise (`behaviour.rs` starts it as one, so that
    /// the first nodes of a network serve the DHT before any test of theirs ended). libp2p's
    /// own automatic mode is not used: it counts a relay circuit's confirmed address, which
    /// made every home a server.
    fn set_dht_mode(&mut self, reachability: Reachability) {
        let (mode, name) = if reachability == Reachability::Private {
            (libp2p::kad::Mode::Client, "client")
        } else {
            (libp2p::kad::Mode::Server, "server")
        };
        let kad = &mut self.swarm.behaviour_mut().kad;
        if kad.mode() != mode {
            kad.set_mode(Some(mode));
            info!(
                event = "dht_mode",
                mode = name,
                "DHT mode: {name} (reachability {})",
                reachability.as_str()
            );
        }
    }

    pub(super) fn address_confirmed(&mut self, address: Multiaddr) {
        if is_relayed(&address) {
            return;
        }
        self.nat.confirmed.insert(address);
        self.nat.failed = 0;
        self.reachability_changed();
    }

    pub(super) fn address_expired(&mut self, address: &Multiaddr) {
        self.nat.confirmed.remove(address);
        self.reachability_changed();
    }

    /// One AutoNAT v2 test ended.
    pub(super) fn autonat_tested(&mut self, event: autonat::v2::client::Event) {
        match &event.result {
            Ok(()) => debug!(
                "AutoNAT: {} reached us at {}",
                event.server, event.tested_addr
            ),
            Err(e) => {
                debug!(
                    "AutoNAT: {} could not reach us at {}: {e}",
                    event.server, event.tested_addr
                );
                if !self.nat.confirmed.contains(&event.tested_addr) {
                    self.nat.failed += 1;
                }
            }
        }
        self.reachability_changed();
    }

    /// AutoNAT v1's verdict (a public one also confirms the address, through the swarm).
    pub(super) fn autonat_v1(&mut self, event: autonat::v1::Event) {
        if let autonat::v1::Event::StatusChanged { new, .. } = event {
            debug!("AutoNAT v1: {new:?}");
            match new {
                autonat::v1::NatStatus::Public(addr) => self.address_confirmed(addr),
                autonat::v1::NatStatus::Private => {
                    self.nat.failed += 1;
                    self.reachability_changed();
                }
                autonat::v1::NatStatus::Unknown => {}
            }
        }
    }

    /// A peer's identify: its listen addresses go into the DHT only when it serves the DHT
    /// (a private peer's addresses are unreachable), and it is remembered as a possible relay
    /// when it offers the relay protocol.
    pub(super) fn identified(&mut self, peer: PeerId, info: identify::Info) {
        let kad = info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL);
        if kad {
            let ours = self.own_scopes();
            let useful =
                |a: &&Multiaddr| !is_relayed(a) && crate::net::worth_dialing(a, ours.clone());
            for addr in info.listen_addrs.iter().filter(useful) {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
        }
        // A relay must be public: libp2p's relay server accepts reservations whatever its
        // reachability, so a NATed peer may list the protocol too; a DHT server (mode chosen
        // by confirmed reachability) is public.
        if kad && info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
            self.nat.relay_capable.insert(peer);
        } else {
            self.nat.relay_capable.remove(&peer);
        }
    }

    /// The scopes of the addresses our direct connections reach peers at (with
    /// [`crate::net::worth_dialing`]: a peer's loopback and LAN addresses are used only where
    /// we reach peers that way).
    pub(super) fn own_scopes(&self) -> Vec<crate::net::Scope> {
        let mut scopes: Vec<crate::net::Scope> = Vec::new();
        for c in self.connections.values().filter(|c| !c.relayed) {
            let s = crate::net::scope(&c.addr);
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        scopes
    }

    /// Whether we hold (or are asking for) a reservation on a relay: peers can dial us through
    /// it.
    pub(super) fn holds_reservation(&self) -> bool {
        !self.nat.reservations.is_empty()
    }

    /// The hubs `requester`'s want list waits for (`Uploads::set_hubs`): the public peers
    /// (relay-capable DHT servers) we reach directly. None when the requester is on our LAN
    /// (or machine: it fetches over the LAN, never through the internet), nor when no more
    /// private peers reach us over the internet than a seed's first copies serve anyway (two
    /// homes fetch each other's tracks directly; a hub only helps a crowd).
    pub(super) fn hubs_for(&self, requester: &PeerId) -> Vec<PeerId> {
        if self.lan_peers().contains(requester) {
            return Vec::new();
        }
        self.hubs().into_iter().collect()
    }

    /// The public peers (relay-capable) we reach directly over the internet, when more
    /// private peers than a seed's first copies reach us there too (a crowd); else none.
    pub(super) fn hubs(&self) -> BTreeSet<PeerId> {
        let lan = self.lan_peers();
        let (hubs, crowd): (BTreeSet<PeerId>, BTreeSet<PeerId>) = self
            .connections
            .values()
            .filter(|c| !c.relayed && !lan.contains(&c.peer))
            .map(|c| c.peer)
            .partition(|p| self.nat.relay_capable.contains(p));
        if crowd.len() <= crate::net::uploads::COPIES {
            return BTreeSet::new();
        }
        hubs
    }

    /// The peers with a direct connection over our LAN (or machine).
    pub(super) fn lan_peers(&self) -> BTreeSet<PeerId> {
        self.connections
            .values()
            .filter(|c| {
                !c.relayed
                    && matches!(
                        crate::net::scope(&c.addr),
                        crate::net::Scope::Private | crate::net::Scope::Loopback
                    )
            })
            .map(|c| c.peer)
            .collect()
    }

    /// Whether `peer` offers a relay (it is public).
    pub(super) fn nat_relay(&self, peer: &PeerId) -> bool {
        self.nat.relay_capable.contains(peer)
    }

    /// While private: a reservation on each of up to [`RELAYS`] relays we dialed directly.
    /// Also closes relayed connections to peers we now reach directly.
    pub(super) fn maintain_relays(&mut self) {
        self.close_redundant_relayed();
        self.retry_hole_punches();
        let now = Instant::now();
        self.nat.refused.retain(|_, until| *until > now);
        // Failure counts of relays we are no longer connected to are forgotten (a peer id
        // costs nothing: the count must not grow with them).
        let connected: HashSet<PeerId> = self.connections.values().map(|c| c.peer).collect();
        self.nat.relay_failures.retain(|p, _| connected.contains(p));
        if self.nat.reachability() != Reachability::Private {
            return;
        }
        // Reservations on relays we are no longer connected to are gone.
        self.nat.reservations.retain(|p, _| connected.contains(p));
        let candidates: Vec<(PeerId, Multiaddr)> = self
            .connections
            .values()
            .filter(|c| c.dialer && !c.relayed && self.nat.relay_capable.contains(&c.peer))
            .filter(|c| {
                !self.nat.reservations.contains_key(&c.peer)
                    && !self.nat.refused.contains_key(&c.peer)
            })
            .map(|c| (c.peer, c.addr.clone()))
            .collect();
        for (relay, addr) in candidates {
            if self.nat.reservations.len() >= RELAYS {
                break;
            }
            let mut circuit = addr;
            if !matches!(circuit.iter().last(), Some(Protocol::P2p(_))) {
                circuit.push(Protocol::P2p(relay));
            }
            circuit.push(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    debug!("asking {relay} for a relay reservation ({circuit})");
                    self.nat.reservations.insert(relay, (circuit, listener));
                }
                Err(e) => {
                    warn!("cannot listen through relay {relay}: {e}");
                    self.nat.relay_failed(relay, now);
                }
            }
        }
    }

    /// A relayed connection to `peer` is up: if a hole punch's retry dialed it, the relayed
    /// connections open before are closed (only the side that retried closes them, so the
    /// two ends never close both).
    pub(super) fn relayed_established(&mut self, peer: PeerId, id: ConnectionId) {
        let Some(punch) = self.nat.punches.get_mut(&peer) else {
            return;
        };
        if punch.old.contains(&id) {
            return;
        }
        for old in std::mem::take(&mut punch.old) {
            self.swarm.close_connection(old);
        }
    }

    /// Closes the relayed connections of every peer that also has a direct one.
    fn close_redundant_relayed(&mut self) {
        let redundant: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.relayed && self.has_direct(&c.peer))
            .map(|(id, _)| *id)
            .collect();
        for id in redundant {
            self.swarm.close_connection(id);
        }
    }

    /// A relay listener ended: the reservation was refused or lost.
    pub(super) fn listener_closed(&mut self, listener: ListenerId, reason: Option<std::io::Error>) {
        let Some(relay) = self
            .nat
            .reservations
            .iter()
            .find(|(_, (_, id))| *id == listener)
            .map(|(p, _)| *p)
        else {
            return;
        };
        let why = reason.map_or_else(|| "closed".to_owned(), |e| e.to_string());
        self.nat.reservations.remove(&relay);
        let wait = self.nat.relay_failed(relay, Instant::now());
        info!(event = "relay_lost", relay = %relay, reason = %why, retry_s = wait.as_secs(),
            "the relay reservation on {relay} ended: {why}; asking again in {} s", wait.as_secs());
    }

    pub(super) fn relay_client_event(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                self.nat.relay_failures.remove(&relay_peer_id);
                if !renewal {
                    info!(event = "relay_reserved", relay = %relay_peer_id,
                        "reserved a slot on relay {relay_peer_id}: peers can reach us through it");
                }
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                debug!("circuit through {relay_peer_id} established");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                debug!("{src_peer_id} reached us through a relay");
            }
        }
    }

    /// The end of a DCUtR hole punch.
    pub(super) fn hole_punch(&mut self, event: dcutr::Event) {
        let peer = event.remote_peer_id;
        match event.result {
            Ok(_) => {
                let rounds = self.nat.punches.remove(&peer).map_or(0, |p| p.failed);
                info!(event = "hole_punched", peer = %peer, failed_before = rounds,
                    "hole punched: a direct connection to {peer}{}",
                    if rounds > 0 { format!(" (after {rounds} failed rounds)") } else { String::new() });
                self.close_redundant_relayed();
            }
            Err(e) => {
                let me = *self.swarm.local_peer_id();
                let punch = self.nat.punches.entry(peer).or_default();
                let mut again = punch.round_failed(Instant::now());
                if me > peer {
                    // Both sides retry: the smaller id first, so that the two retries' relayed
                    // connections do not punch at once (the two punches make each other fail).
                    again = again.map(|wait| wait + PUNCH_RETRY_LATER);
                    punch.next = punch.next.map(|at| at + PUNCH_RETRY_LATER);
                }
                let failed = punch.failed;
                match again {
                    Some(wait) => info!(event = "hole_punch_failed", peer = %peer, error = %e,
                        "hole punching to {peer} failed: {e}; it stays reachable through the relay, and a new hole punch starts in {} s", wait.as_secs()),
                    None => info!(event = "hole_punch_failed", peer = %peer, error = %e,
                        "hole punching to {peer} failed: {e}; {failed} rounds failed, it stays reachable through the relay only"),
                }
            }
        }
    }

    /// Peers whose hole punch failed and are due for another: each is dialed again through
    /// our relays, and the new relayed connection starts a new hole punch (DCUtR runs once per
    /// relayed connection); the older relayed connections are closed once the new one is up
    /// ([`EventLoop::relayed_established`]). A NAT that maps a port only after some
    /// traffic, a lost packet in the punch, or both homes punching at a busy moment fail once
    /// and succeed later.
    fn retry_hole_punches(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .nat
            .punches
            .iter()
            .filter(|(_, punch)| punch.next.is_some_and(|at| at <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            let relayed_only =
                self.connections.values().any(|c| c.peer == peer) && !self.has_direct(&peer);
            if !relayed_only {
                // Gone, or reached directly some other way: nothing to punch.
                self.nat.punches.remove(&peer);
                continue;
            }
            let circuits = self.circuits_to(peer);
            let old: Vec<ConnectionId> = self
                .connections
                .iter()
                .filter(|(_, c)| c.peer == peer && c.relayed)
                .map(|(id, _)| *id)
                .collect();
            let Some(punch) = self.nat.punches.get_mut(&peer) else {
                continue;
            };
            punch.next = None;
            if circuits.is_empty() {
                continue;
            }
            punch.old = old;
            debug!(
                "dialing {peer} through {} relays again for a new hole punch",
                circuits.len()
            );
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(circuits)
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!("cannot dial {peer} through a relay: {e}");
            }
        }
    }

    pub(super) fn upnp_event(&mut self, event: upnp::Event) {
        match event {
            upnp::Event::NewExternalAddr { external_addr, .. } => {
                info!(event = "upnp_mapped", address = %external_addr,
                    "the router forwards {external_addr} to us (UPnP)");
                self.address_confirmed(external_addr);
            }
            upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                self.address_expired(&external_addr);
            }
            upnp::Event::GatewayNotFound => debug!("no UPnP router found"),
            upnp::Event::NonRoutableGateway => {
                debug!("the UPnP router is not on the public internet")
            }
        }
    }
}

/// The relay server's events: only worth a debug line.
pub(super) fn relay_server_event(event: &relay::Event) {
    debug!("relay server: {event:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_hole_punch_is_retried_three_times_with_doubling_waits_then_left_to_the_relay() {
        let now = Instant::now();
        let mut punch = Punch::default();
        let waits: Vec<Option<Duration>> = (0..5).map(|_| punch.round_failed(now)).collect();
        let s = Duration::from_secs;
        assert_eq!(waits, [Some(s(10)), Some(s(20)), Some(s(40)), None, None]);
        assert_eq!(punch.next, None, "no round after the last");
        let mut punch = Punch::default();
        punch.round_failed(now);
        assert_eq!(punch.next, Some(now + s(10)));
    }

    #[test]
    fn a_relay_that_refused_is_asked_again_after_5_s_doubling_to_a_minute() {
        let now = Instant::now();
        let mut nat = Nat::default();
        let relay = PeerId::random();
        let other = PeerId::random();
        let waits: Vec<u64> = (0..6)
            .map(|_| nat.relay_failed(relay, now).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(nat.refused[&relay], now + Duration::from_secs(60));
        assert_eq!(
            nat.relay_failed(other, now).as_secs(),
            5,
            "counted per relay"
        );
        // A reservation it accepts starts the count again.
        nat.relay_failures.remove(&relay);
        assert_eq!(nat.relay_failed(relay, now).as_secs(), 5);
    }

    #[test]
    fn reachability_is_public_with_a_confirmed_address_private_after_a_failure_else_unknown() {
        let mut nat = Nat::default();
        assert_eq!(nat.reachability(), Reachability::Unknown);
        nat.failed = 1;
        assert_eq!(nat.reachability(), Reachability::Private);
        nat.confirmed
            .insert("/ip4/198.18.1.1/tcp/4747".parse().unwrap());
        assert_eq!(
            nat.reachability(),
            Reachability::Public,
            "a confirmation outweighs failures"
        );
        nat.confirmed.clear();
        nat.failed = 0;
        assert_eq!(nat.reachability(), Reachability::Unknown);
    }
}
