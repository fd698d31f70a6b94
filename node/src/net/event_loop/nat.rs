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
/// How long a relay that refused us or dropped the reservation is left alone.
const RELAY_RETRY: Duration = Duration::from_secs(60);

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
}

impl Nat {
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
        info!(event = "reachability", status = now.as_str(), addresses = ?addresses,
            "reachability: {} (confirmed addresses: {})", now.as_str(),
            if addresses.is_empty() { "none".to_owned() } else { addresses.join(", ") });
        self.emit(Event::Reachability(now));
        // A node that turns public keeps the reservations it holds (no new ones are asked for:
        // `maintain_relays`); they end with their relay's connection. Removing their listeners
        // is not safe in libp2p-relay 0.22: the client forgets the reservation at once, and an
        // answer to a request or renewal already on its way then panics its behaviour
        // ("Relay connection exist"), which ends the swarm. Seen once when ten nodes started
        // on the testbed.
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

    /// Whether `peer` offers a relay (it is public).
    pub(super) fn nat_relay(&self, peer: &PeerId) -> bool {
        self.nat.relay_capable.contains(peer)
    }

    /// While private: a reservation on each of up to [`RELAYS`] relays we dialed directly.
    /// Also closes relayed connections to peers we now reach directly.
    pub(super) fn maintain_relays(&mut self) {
        self.close_redundant_relayed();
        let now = Instant::now();
        self.nat.refused.retain(|_, until| *until > now);
        if self.nat.reachability() != Reachability::Private {
            return;
        }
        // Reservations on relays we are no longer connected to are gone.
        let connected: HashSet<PeerId> = self.connections.values().map(|c| c.peer).collect();
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
                    self.nat.refused.insert(relay, now + RELAY_RETRY);
                }
            }
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
        info!(event = "relay_lost", relay = %relay, reason = %why,
            "the relay reservation on {relay} ended: {why}");
        self.nat.reservations.remove(&relay);
        self.nat.refused.insert(relay, Instant::now() + RELAY_RETRY);
    }

    pub(super) fn relay_client_event(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
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
                info!(event = "hole_punched", peer = %peer,
                    "hole punched: a direct connection to {peer}");
                self.close_redundant_relayed();
            }
            Err(e) => {
                info!(event = "hole_punch_failed", peer = %peer, error = %e,
                    "hole punching to {peer} failed: {e}; it stays reachable through the relay");
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
