//! The network a time source belongs to, from the address of its connection.

use std::net::{Ipv4Addr, Ipv6Addr};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// The network a time source belongs to (PROTOCOL.md 12.4): at most [`SOURCES_PER_NETWORK`](super::SOURCES_PER_NETWORK)
/// peers of one network count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceNet {
    /// This node's own clock (never a peer).
    Local,
    /// An IPv4 /24: its first three octets.
    V4([u8; 3]),
    /// An IPv6 /48: its first six bytes.
    V6([u8; 6]),
    /// A network of its own: a peer on loopback (so that tests on one machine still see
    /// several networks), or one whose address names no IP (a DNS name as dialed: the swarm does
    /// not report what it resolved to).
    Peer(PeerId),
}

impl SourceNet {
    /// The network of `peer` connected at `addr` (the remote address of the connection);
    /// `None` for a relayed connection (`/p2p-circuit`): only directly connected peers are time
    /// sources. An IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn of(addr: &Multiaddr, peer: &PeerId) -> Option<SourceNet> {
        if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            return None;
        }
        let net = addr
            .iter()
            .find_map(|p| match p {
                Protocol::Ip4(ip) => Some(SourceNet::v4(ip, peer)),
                Protocol::Ip6(ip) => Some(SourceNet::v6(ip, peer)),
                _ => None,
            })
            .unwrap_or(SourceNet::Peer(*peer));
        Some(net)
    }

    fn v4(ip: Ipv4Addr, peer: &PeerId) -> SourceNet {
        if ip.is_loopback() || ip.is_unspecified() {
            SourceNet::Peer(*peer)
        } else {
            let [a, b, c, _] = ip.octets();
            SourceNet::V4([a, b, c])
        }
    }

    fn v6(ip: Ipv6Addr, peer: &PeerId) -> SourceNet {
        if let Some(v4) = ip.to_ipv4_mapped() {
            return SourceNet::v4(v4, peer);
        }
        if ip.is_loopback() || ip.is_unspecified() {
            return SourceNet::Peer(*peer);
        }
        let o = ip.octets();
        SourceNet::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
    }
}

#[cfg(test)]
mod tests {
    use libp2p::{Multiaddr, PeerId};

    use super::SourceNet;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("a valid multiaddr")
    }

    #[test]
    fn loopback_peers_are_each_their_own_network_and_ip_prefixes_group() {
        let (p, q) = (PeerId::random(), PeerId::random());
        let of = |a: &str, peer: &PeerId| SourceNet::of(&addr(a), peer);
        // Loopback, v4 and v6: one network per peer.
        assert_eq!(of("/ip4/127.0.0.1/tcp/4001", &p), Some(SourceNet::Peer(p)));
        assert_ne!(
            of("/ip4/127.0.0.1/tcp/4001", &p),
            of("/ip4/127.0.0.1/tcp/4002", &q)
        );
        assert_eq!(
            of("/ip6/::1/udp/4001/quic-v1", &q),
            Some(SourceNet::Peer(q))
        );
        // IPv4 /24.
        assert_eq!(
            of("/ip4/10.1.2.3/tcp/4001", &p),
            of("/ip4/10.1.2.200/udp/9/quic-v1", &q)
        );
        assert_eq!(
            of("/ip4/10.1.2.3/tcp/4001", &p),
            Some(SourceNet::V4([10, 1, 2]))
        );
        assert_ne!(
            of("/ip4/10.1.2.3/tcp/4001", &p),
            of("/ip4/10.1.3.3/tcp/4001", &q)
        );
        // An IPv4-mapped IPv6 address is its IPv4 address.
        assert_eq!(
            of("/ip6/::ffff:10.1.2.9/tcp/4001", &q),
            Some(SourceNet::V4([10, 1, 2]))
        );
        // IPv6 /48.
        assert_eq!(
            of("/ip6/2001:db8:1::1/tcp/4001", &p),
            of("/ip6/2001:db8:1:ffff::2/tcp/4001", &q)
        );
        assert_ne!(
            of("/ip6/2001:db8:1::1/tcp/4001", &p),
            of("/ip6/2001:db8:2::1/tcp/4001", &q)
        );
        // No IP in the address: a network of its own. Relayed: no source at all.
        assert_eq!(
            of("/dns4/radio.example/tcp/4001", &p),
            Some(SourceNet::Peer(p))
        );
        assert_eq!(
            of(
                &format!("/ip4/10.1.2.3/tcp/4001/p2p/{q}/p2p-circuit/p2p/{p}"),
                &p
            ),
            None
        );
    }
}
