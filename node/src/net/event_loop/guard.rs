//! The connection guard (PROTOCOL.md 12.5): graylisted peers are disconnected and refused for
//! [`BAN`], and no IP address holds more than [`MAX_CONNECTIONS_PER_IP`] connections.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tracing::warn;

use super::EventLoop;
use crate::net::behaviour::{GRAYLIST_THRESHOLD, MAX_CONNECTIONS_PER_IP};

/// How long a graylisted peer is refused after being disconnected.
pub const BAN: Duration = Duration::from_secs(600);
/// Most banned identities remembered (identities are free: the per-IP limit is what holds).
const BANNED_MAX: usize = 4096;

impl EventLoop {
    /// PROTOCOL.md 12.5: gossipsub ignores a graylisted peer's messages; here it is also
    /// disconnected and refused for [`BAN`].
    pub(super) fn drop_graylisted(&mut self) {
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
        let graylisted: Vec<(PeerId, f64)> = self
            .swarm
            .connected_peers()
            .filter_map(|p| {
                let score = self.swarm.behaviour().gossipsub.peer_score(p)?;
                (score < GRAYLIST_THRESHOLD).then_some((*p, score))
            })
            .collect();
        for (peer, score) in graylisted {
            if self.banned.len() < BANNED_MAX {
                self.banned.insert(peer, now + BAN);
            }
            warn!(event = "peer_graylisted", peer = %peer, score,
                "peer {peer} sent invalid messages (gossip score {score:.0}): disconnected and refused for {} s", BAN.as_secs());
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Whether a new connection from `peer` at `addr` must be closed: a banned peer, or one
    /// more connection from an IP address that has [`MAX_CONNECTIONS_PER_IP`] (a relayed
    /// connection's IP is the relay's: the relay limits its circuits itself).
    pub(super) fn refuse_connection(
        &self,
        peer: &PeerId,
        addr: &Multiaddr,
        relayed: bool,
    ) -> Option<String> {
        if self
            .banned
            .get(peer)
            .is_some_and(|until| *until > Instant::now())
        {
            return Some("graylisted recently".to_owned());
        }
        let ip = remote_ip(addr)?;
        if relayed || ip.to_canonical().is_loopback() {
            return None;
        }
        let from_ip = self
            .connections
            .values()
            .filter(|c| c.ip == Some(ip))
            .count();
        (from_ip >= MAX_CONNECTIONS_PER_IP)
            .then(|| format!("{from_ip} connections from {ip} already"))
    }
}

/// The IP address of a connection's remote multiaddr (`/ip4/...` or `/ip6/...`).
pub(super) fn remote_ip(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}
