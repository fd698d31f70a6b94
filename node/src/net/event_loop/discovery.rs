//! Finding peers beyond the ones given. A joiner is given one address; without discovery the
//! network is a star around it. Three ways out: gossipsub's peer exchange (on in the
//! behaviour), a DHT bootstrap (random walks fill the routing table with public peers), and the
//! authors of gossip we verified: while we have fewer than [`TARGET_PEERS`] peers, a few of
//! them are dialed each round, at the addresses the DHT knows and through each relay we are
//! connected to (a private author keeps a reservation on one; the relayed connection is then
//! upgraded by hole punching).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p::kad::{self, GetClosestPeersOk, QueryId};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use tracing::debug;

use super::EventLoop;

/// Peers a node wants to be connected to.
pub const TARGET_PEERS: usize = 12;
/// Authors dialed per round (every [`super::MAINTENANCE`]).
const DIALS_PER_ROUND: usize = 3;
/// How long before an author that could not be dialed is tried again, every round (at most
/// [`DIALS_PER_ROUND`] a round: a peer that just joined is found in the DHT only once AutoNAT
/// has made it a server, a few seconds in).
const REDIAL: Duration = Duration::from_secs(2);
/// While it holds a relay reservation, the peer with the larger id leaves the relayed dial to
/// a new author to the other (which reaches it through its reservation), and dials through
/// relays itself only this often, in case the other cannot. When both dial through a relay at
/// once, each relayed connection starts a hole punch, and the two punches (simultaneous TCP
/// opens between the same ports) make each other fail: seen on the testbed, both sides
/// "hole-punching as dialer" and "as listener" at once and all three attempts failing.
const RELAYED_DIAL_FALLBACK: Duration = Duration::from_secs(15);
/// Authors remembered (identities are free: the oldest are forgotten).
const AUTHORS_MAX: usize = 512;
/// DHT lookups of authors at once.
const LOOKUPS_MAX: usize = 8;
/// How often the DHT is bootstrapped once it has a peer.
const BOOTSTRAP_EVERY: Duration = Duration::from_secs(300);
/// The first bootstraps, after the first: a joiner's first walk finds only the peers that
/// were DHT servers when it came, and the others of a young network become servers seconds
/// later.
const BOOTSTRAP_EARLY: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(15)];

/// Candidate peers and the DHT's upkeep.
#[derive(Debug, Default)]
pub(super) struct Discovery {
    /// Authors of verified gossip, most recent last.
    authors: VecDeque<PeerId>,
    /// When each was last dialed.
    dialed: HashMap<PeerId, Instant>,
    /// The last DHT bootstrap.
    bootstrapped: Option<Instant>,
    /// The first DHT bootstrap.
    first_bootstrap: Option<Instant>,
    /// DHT lookups of authors under way.
    lookups: HashMap<QueryId, PeerId>,
    /// When we last dialed through relays each author with a smaller id than ours, or first
    /// held back such a dial ([`RELAYED_DIAL_FALLBACK`]).
    relayed_dialed: HashMap<PeerId, Instant>,
}

impl Discovery {
    /// `peer` signed a gossip message we received; true the first time.
    pub(super) fn heard(&mut self, peer: PeerId) -> bool {
        if self.authors.back() == Some(&peer) {
            return false;
        }
        let new = !self.authors.contains(&peer);
        self.authors.retain(|p| *p != peer);
        self.authors.push_back(peer);
        while self.authors.len() > AUTHORS_MAX {
            if let Some(old) = self.authors.pop_front() {
                self.dialed.remove(&old);
                self.relayed_dialed.remove(&old);
            }
        }
        new
    }

    /// Whether to dial `peer` through relays now (`me` dialing, at `now`, holding a relay
    /// reservation or not): the peer with the smaller id dials at once, and so does one that
    /// holds no reservation (nobody can reach it through a relay); otherwise the larger leaves
    /// it to the other and dials itself at most every [`RELAYED_DIAL_FALLBACK`], the first time
    /// that long after it first held back.
    pub(super) fn relayed_dial_now(
        &mut self,
        me: &PeerId,
        peer: PeerId,
        reserved: bool,
        now: Instant,
    ) -> bool {
        if me < &peer || !reserved {
            return true;
        }
        let last = *self.relayed_dialed.entry(peer).or_insert(now);
        if now.duration_since(last) >= RELAYED_DIAL_FALLBACK {
            self.relayed_dialed.insert(peer, now);
            return true;
        }
        false
    }
}

impl EventLoop {
    /// One round: bootstrap the DHT when due, and dial a few authors while short of peers.
    pub(super) fn discover(&mut self) {
        let now = Instant::now();
        self.bootstrap_dht(now);
        let me = *self.swarm.local_peer_id();
        let connected: HashSet<PeerId> = self.connections.values().map(|c| c.peer).collect();
        if connected.len() >= TARGET_PEERS {
            return;
        }
        self.discovery
            .dialed
            .retain(|_, at| now.duration_since(*at) < REDIAL);
        let due: Vec<PeerId> = self
            .discovery
            .authors
            .iter()
            .rev()
            .filter(|p| **p != me && !connected.contains(p))
            .filter(|p| !self.discovery.dialed.contains_key(p))
            .filter(|p| !self.banned.contains_key(p))
            .take(DIALS_PER_ROUND.min(TARGET_PEERS - connected.len()))
            .copied()
            .collect();
        for peer in due {
            self.discovery.dialed.insert(peer, now);
            self.dial_author(peer);
        }
    }

    /// A new author was heard: dialed at once (not at the next round) while short of peers.
    pub(super) fn new_author(&mut self, peer: PeerId) {
        let me = *self.swarm.local_peer_id();
        let connected: HashSet<PeerId> = self.connections.values().map(|c| c.peer).collect();
        if peer == me || connected.contains(&peer) || connected.len() >= TARGET_PEERS {
            return;
        }
        if self.banned.contains_key(&peer) {
            return;
        }
        self.discovery.dialed.insert(peer, Instant::now());
        self.dial_author(peer);
    }

    /// Dials `peer` at whatever the behaviours know (the DHT) and through every relay we hold
    /// a direct connection to.
    fn dial_author(&mut self, peer: PeerId) {
        let me = *self.swarm.local_peer_id();
        let reserved = self.holds_reservation();
        let circuits = if self
            .discovery
            .relayed_dial_now(&me, peer, reserved, Instant::now())
        {
            self.circuits_to(peer)
        } else {
            Vec::new()
        };
        debug!(
            "dialing {peer}, heard in gossip ({} relays)",
            circuits.len()
        );
        // The DHT may know where it is reachable directly: look it up, and dial what it finds.
        if self.discovery.lookups.len() < LOOKUPS_MAX {
            let id = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            self.discovery.lookups.insert(id, peer);
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(circuits)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!("cannot dial {peer}: {e}");
        }
    }

    /// `peer`'s circuit address at each relay we hold a direct connection to (that we dialed:
    /// its address is one the relay listens on).
    pub(super) fn circuits_to(&self, peer: PeerId) -> Vec<Multiaddr> {
        self.connections
            .values()
            .filter(|c| c.dialer && !c.relayed && c.peer != peer && self.nat_relay(&c.peer))
            .map(|c| {
                let mut a = c.addr.clone();
                if !matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                    a.push(Protocol::P2p(c.peer));
                }
                a.with(Protocol::P2pCircuit).with(Protocol::P2p(peer))
            })
            .collect()
    }

    /// A DHT lookup ended (or made progress): an author found with addresses is dialed there
    /// directly, even while a relayed dial to it runs (the relayed connection is closed once a
    /// direct one exists).
    pub(super) fn looked_up(
        &mut self,
        id: QueryId,
        result: kad::GetClosestPeersResult,
        last: bool,
    ) {
        let Some(author) = self.discovery.lookups.get(&id).copied() else {
            return;
        };
        if last {
            self.discovery.lookups.remove(&id);
        }
        let Ok(GetClosestPeersOk { peers, .. }) = result else {
            return;
        };
        let Some(found) = peers.into_iter().find(|p| p.peer_id == author) else {
            return;
        };
        let ours = self.own_scopes();
        let addrs: Vec<Multiaddr> = found
            .addrs
            .into_iter()
            .filter(|a| !crate::net::is_relayed(a) && crate::net::worth_dialing(a, ours.clone()))
            .collect();
        if addrs.is_empty() || self.has_direct(&author) {
            return;
        }
        self.discovery.lookups.remove(&id);
        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
            q.finish();
        }
        debug!("dialing {author} directly at {addrs:?} (found in the DHT)");
        let opts = DialOpts::peer_id(author)
            .addresses(addrs)
            .condition(PeerCondition::Always)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!("cannot dial {author}: {e}");
        }
    }

    /// Bootstraps the DHT once it knows a peer, again [`BOOTSTRAP_EARLY`] after that, then
    /// every [`BOOTSTRAP_EVERY`].
    fn bootstrap_dht(&mut self, now: Instant) {
        let due = match (self.discovery.first_bootstrap, self.discovery.bootstrapped) {
            (None, _) | (_, None) => true,
            (Some(first), Some(last)) => {
                let early = BOOTSTRAP_EARLY
                    .iter()
                    .any(|after| first + *after <= now && last < first + *after);
                early || now.duration_since(last) >= BOOTSTRAP_EVERY
            }
        };
        if !due {
            return;
        }
        if self.swarm.behaviour_mut().kad.bootstrap().is_ok() {
            debug!("DHT bootstrap started");
            self.discovery.first_bootstrap.get_or_insert(now);
            self.discovery.bootstrapped = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_two_reserved_authors_the_smaller_id_dials_through_relays_the_larger_every_15_s() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let (small, large) = if a < b { (a, b) } else { (b, a) };
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut d = Discovery::default();
        assert!(
            d.relayed_dial_now(&small, large, true, now),
            "the smaller dials at once"
        );
        assert!(
            d.relayed_dial_now(&large, small, false, now),
            "without a reservation nobody can reach the larger: it dials"
        );
        assert!(
            !d.relayed_dial_now(&large, small, true, now),
            "the larger holds back"
        );
        assert!(!d.relayed_dial_now(&large, small, true, now + s(14)));
        assert!(
            d.relayed_dial_now(&large, small, true, now + s(15)),
            "its fallback"
        );
        assert!(!d.relayed_dial_now(&large, small, true, now + s(16)));
        assert!(d.relayed_dial_now(&large, small, true, now + s(30)));
        // Forgotten with the author.
        d.heard(small);
        for _ in 0..AUTHORS_MAX {
            d.heard(PeerId::random());
        }
        assert!(!d.relayed_dialed.contains_key(&small));
    }
}
