//! What a testbed is made of: public hosts and homes, and the addresses they get.

use std::fmt;

use anyhow::{Result, ensure};

use super::shape::Link;

/// How a home's router translates addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Nat {
    /// Linux's plain masquerade: a socket keeps its source port when that port is free, so it
    /// shows one public address and port to every peer (endpoint-independent mapping), while
    /// inbound packets pass only from peers it has sent to (address- and port-dependent
    /// filtering). Hole punching works through it.
    #[default]
    Cone,
    /// Masquerade with a random port for every new destination (`--random-fully`):
    /// endpoint-dependent mapping, so the port a peer learns from a third party is useless and
    /// hole punching fails.
    Symmetric,
}

/// A host on the public internet.
#[derive(Debug, Clone, Default)]
pub struct PublicSpec {
    /// Its uplink's emulation; `None` joins it with a plain veth (no emulator, no way to add
    /// one later).
    pub link: Option<Link>,
}

/// A home: a router doing NAT with hosts behind it.
#[derive(Debug, Clone)]
pub struct HomeSpec {
    /// How many hosts sit on the home's LAN.
    pub hosts: usize,
    /// The router's NAT.
    pub nat: Nat,
    /// The router's uplink's emulation; `None` joins it with a plain veth.
    pub link: Option<Link>,
}

impl HomeSpec {
    /// A home with `hosts` hosts, a cone NAT and a plain uplink.
    pub fn new(hosts: usize) -> Self {
        Self {
            hosts,
            nat: Nat::Cone,
            link: None,
        }
    }

    /// This home with `nat`.
    #[must_use]
    pub fn nat(mut self, nat: Nat) -> Self {
        self.nat = nat;
        self
    }

    /// This home with its uplink emulated as `link`.
    #[must_use]
    pub fn link(mut self, link: Link) -> Self {
        self.link = Some(link);
        self
    }
}

/// The whole topology of a [`super::Testbed`].
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// The public hosts, `public0`, `public1`, ...
    pub public: Vec<PublicSpec>,
    /// The homes, `home0`, `home1`, ...
    pub homes: Vec<HomeSpec>,
    /// IPv6 beside IPv4 ([`Spec::ipv6`]).
    pub ipv6: bool,
}

impl Spec {
    /// An empty internet.
    pub fn new() -> Self {
        Self::default()
    }

    /// This spec with IPv6 beside IPv4: public hosts and home routers get global addresses
    /// (`plan::public6`, `plan::router_wan6`), each home a ULA /64 on its LAN masqueraded by
    /// its router (NAT66, as NAT44). [`Testbed::cut`](super::Testbed::cut) cuts IPv4 only, so a
    /// testbed with IPv6 refuses it.
    #[must_use]
    pub fn ipv6(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// This spec with one more public host on a plain uplink.
    #[must_use]
    pub fn public(mut self) -> Self {
        self.public.push(PublicSpec::default());
        self
    }

    /// This spec with one more public host on an emulated uplink.
    #[must_use]
    pub fn public_with(mut self, link: Link) -> Self {
        self.public.push(PublicSpec { link: Some(link) });
        self
    }

    /// This spec with one more home.
    #[must_use]
    pub fn home(mut self, home: HomeSpec) -> Self {
        self.homes.push(home);
        self
    }

    /// Checks the sizes (the address plan has room for 250 of each) and the links.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.public.len() <= 250, "at most 250 public hosts");
        ensure!(self.homes.len() <= 250, "at most 250 homes");
        for (i, home) in self.homes.iter().enumerate() {
            ensure!(home.hosts <= 250, "home{i}: at most 250 hosts");
            if let Some(link) = &home.link {
                link.up.validate()?;
                link.down.validate()?;
            }
        }
        for link in self.public.iter().filter_map(|p| p.link.as_ref()) {
            link.up.validate()?;
            link.down.validate()?;
        }
        Ok(())
    }
}

/// An uplink to the internet: a public host's or a home router's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Uplink {
    /// Public host `k`'s.
    Public(usize),
    /// Home `i`'s router's.
    Home(usize),
}

impl fmt::Display for Uplink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uplink::Public(k) => write!(f, "public{k}"),
            Uplink::Home(i) => write!(f, "home{i}"),
        }
    }
}

/// The address plan: the internet is 198.18.0.0/16 (the benchmarking range, never routed on
/// the real internet), homes are 10.(i+1).0.0/24, each home its own subnet so that a packet to
/// another home's private address is unmistakably that.
pub mod plan {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The prefix length of the internet's one subnet.
    pub const INTERNET_PREFIX: u8 = 16;

    fn octet(n: usize) -> u8 {
        u8::try_from(n).expect("Spec::validate keeps indices in range")
    }

    /// Public host `k`: 198.18.1.(k+1).
    pub fn public(k: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 1, octet(k + 1))
    }

    /// Home `i`'s router on the internet: 198.18.(i+2).1, each home in a /24 of its own as
    /// homes on the internet are (time sources count per /24, PROTOCOL.md 12.4).
    pub fn router_wan(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, octet(i + 2), 1)
    }

    /// Home `i`'s router on its LAN: 10.(i+1).0.1.
    pub fn router_lan(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, octet(i + 1), 0, 1)
    }

    /// Host `j` of home `i`: 10.(i+1).0.(j+2).
    pub fn home_host(i: usize, j: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, octet(i + 1), 0, octet(j + 2))
    }

    /// The prefix length of the IPv6 internet's one link (the documentation prefix).
    pub const INTERNET6_PREFIX: u8 = 32;

    fn segment(n: usize) -> u16 {
        u16::try_from(n).expect("Spec::validate keeps indices in range")
    }

    /// Public host `k` over IPv6: 2001:db8:1::(k+1).
    pub fn public6(k: usize) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, segment(k + 1))
    }

    /// Home `i`'s router on the IPv6 internet: 2001:db8:(i+2)::1, each home in a /48 of its
    /// own (time sources count per /48, PROTOCOL.md 12.4).
    pub fn router_wan6(i: usize) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, segment(i + 2), 0, 0, 0, 0, 1)
    }

    /// Home `i`'s router on its LAN over IPv6: fd00:(i+1)::1.
    pub fn router_lan6(i: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, segment(i + 1), 0, 0, 0, 0, 0, 1)
    }

    /// Host `j` of home `i` over IPv6: fd00:(i+1)::(j+2).
    pub fn home_host6(i: usize, j: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, segment(i + 1), 0, 0, 0, 0, 0, segment(j + 2))
    }
}
