//! Building a testbed's topology with `ip` and `iptables`, one piece at a time. Each piece is
//! recorded in the [`Testbed`] as soon as it exists, so that a failure halfway is cleaned up
//! by the same `Drop` as a finished testbed.

use anyhow::{Context, Result};

use super::emulator::{Emulator, End};
use super::host::Host;
use super::netns::{self, ip};
use super::shape::Link;
use super::spec::{HomeSpec, Nat, PublicSpec, Uplink, plan};
use super::{Home, Testbed, UplinkState};

/// The bridge in the internet namespace that every uplink plugs into.
const BRIDGE: &str = "br0";

impl Testbed {
    /// Creates namespace `<prefix>-<suffix>` with loopback up, and bridges that bridge without
    /// passing frames through iptables (br_netfilter, when a container host has loaded it,
    /// would otherwise conntrack the internet's and LANs' frames). Without [`Spec::ipv6`] new
    /// devices get no IPv6 (it would only add router solicitations to the links); with it they
    /// neither solicit nor accept router advertisements (addresses and routes are set here).
    ///
    /// [`Spec::ipv6`]: super::Spec::ipv6
    fn add_namespace(&mut self, suffix: &str) -> Result<String> {
        let name = format!("{}-{suffix}", self.prefix);
        ip(&["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        let ipv6: &[(&str, &str)] = if self.ipv6 {
            &[
                ("net.ipv6.conf.default.accept_ra", "0"),
                ("net.ipv6.conf.default.router_solicitations", "0"),
            ]
        } else {
            &[("net.ipv6.conf.default.disable_ipv6", "1")]
        };
        // Each setting exists only when its feature does; where it is missing, nothing needs it.
        for setting in ipv6
            .iter()
            .chain(&[("net.bridge.bridge-nf-call-iptables", "0")])
        {
            let _ = netns::sysctl(&name, &[*setting]);
        }
        Ok(name)
    }

    /// Adds IPv6 address `addr/prefix` to `dev` in `ns`, usable at once (no duplicate address
    /// detection: the testbed hands out every address itself).
    fn add_addr6(ns: &str, dev: &str, addr: std::net::Ipv6Addr, prefix: u8) -> Result<()> {
        let cidr = format!("{addr}/{prefix}");
        ip(&["-n", ns, "-6", "addr", "add", &cidr, "dev", dev, "nodad"])
    }

    pub(super) fn build_internet(&mut self) -> Result<()> {
        self.internet = self.add_namespace("inet")?;
        let inet = self.internet.clone();
        // Without snooping the bridge floods multicast: IPv6 neighbour discovery needs no
        // querier.
        let bridge = [
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ];
        ip(&[&["-n", inet.as_str()][..], &bridge].concat())?;
        ip(&["-n", &inet, "link", "set", BRIDGE, "up"])
    }

    /// Plugs device `dev` of namespace `ns` into the internet's bridge, through an emulator
    /// when `link` is given, and gives it public address `addr` (and `addr6` on a testbed
    /// with IPv6) and default routes.
    fn attach_uplink(
        &mut self,
        uplink: Uplink,
        ns: &str,
        dev: &str,
        (addr, addr6): (std::net::Ipv4Addr, std::net::Ipv6Addr),
        link: Option<&Link>,
    ) -> Result<()> {
        let inet = self.internet.clone();
        let port = uplink.to_string();
        if link.is_some() {
            ip(&["-n", ns, "tuntap", "add", "dev", dev, "mode", "tap"])?;
            ip(&["-n", &inet, "tuntap", "add", "dev", &port, "mode", "tap"])?;
        } else {
            let peer = ["peer", "name", &port, "netns", &inet];
            ip(&[&["-n", ns, "link", "add", dev, "type", "veth"][..], &peer].concat())?;
        }
        ip(&["-n", &inet, "link", "set", &port, "master", BRIDGE, "up"])?;
        let state = UplinkState {
            inside: End {
                netns: ns.to_owned(),
                dev: dev.to_owned(),
            },
            outside: End {
                netns: inet,
                dev: port,
            },
            emulated: link.is_some(),
            emulator: None,
        };
        self.uplinks.insert(uplink, state);
        if let Some(link) = link {
            self.start_link(uplink, link)?;
        }
        let cidr = format!("{addr}/{}", plan::INTERNET_PREFIX);
        ip(&["-n", ns, "addr", "add", &cidr, "dev", dev])?;
        if self.ipv6 {
            Self::add_addr6(ns, dev, addr6, plan::INTERNET6_PREFIX)?;
        }
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "route", "add", "default", "dev", dev])?;
        if self.ipv6 {
            ip(&["-n", ns, "-6", "route", "add", "default", "dev", dev])?;
        }
        Ok(())
    }

    pub(super) fn build_public(&mut self, k: usize, spec: &PublicSpec) -> Result<()> {
        let ns = self.add_namespace(&format!("p{k}"))?;
        let (addr, addr6) = (plan::public(k), plan::public6(k));
        let link = spec.link.as_ref();
        self.attach_uplink(Uplink::Public(k), &ns, "eth0", (addr, addr6), link)?;
        self.public.push(Host {
            name: format!("public{k}"),
            netns: ns,
            addr,
            public_addr: addr,
            addr6: self.ipv6.then_some((addr6, addr6)),
        });
        Ok(())
    }

    pub(super) fn build_home(&mut self, i: usize, spec: &HomeSpec) -> Result<()> {
        let router = self.add_namespace(&format!("r{i}"))?;
        // A router forwards, and answers ARP on its uplink only for its public address (so
        // that another home's router cannot be reached at its LAN address from outside).
        netns::sysctl(
            &router,
            &[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.all.arp_ignore", "1"),
            ],
        )?;
        if self.ipv6 {
            netns::sysctl(&router, &[("net.ipv6.conf.all.forwarding", "1")])?;
        }
        let (wan, wan6) = (plan::router_wan(i), plan::router_wan6(i));
        self.attach_uplink(
            Uplink::Home(i),
            &router,
            "wan",
            (wan, wan6),
            spec.link.as_ref(),
        )?;
        let lan = format!("{}/24", plan::router_lan(i));
        let bridge = [
            "link",
            "add",
            "lan",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ];
        ip(&[&["-n", router.as_str()][..], &bridge].concat())?;
        ip(&["-n", &router, "addr", "add", &lan, "dev", "lan"])?;
        if self.ipv6 {
            Self::add_addr6(&router, "lan", plan::router_lan6(i), 64)?;
        }
        ip(&["-n", &router, "link", "set", "lan", "up"])?;
        masquerade(&router, spec.nat, self.ipv6)?;
        let mut home = Home {
            router: Host {
                name: format!("home{i}-router"),
                netns: router.clone(),
                addr: plan::router_lan(i),
                public_addr: wan,
                addr6: self.ipv6.then_some((plan::router_lan6(i), wan6)),
            },
            hosts: Vec::new(),
            nat: spec.nat,
        };
        for j in 0..spec.hosts {
            home.hosts.push(self.build_home_host(i, j, &router)?);
        }
        self.homes.push(home);
        Ok(())
    }

    fn build_home_host(&mut self, i: usize, j: usize, router: &str) -> Result<Host> {
        let ns = self.add_namespace(&format!("h{i}-{j}"))?;
        let port = format!("h{j}");
        ip(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
            router,
        ])?;
        ip(&["-n", router, "link", "set", &port, "master", "lan", "up"])?;
        let addr = plan::home_host(i, j);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        let gateway = plan::router_lan(i).to_string();
        ip(&["-n", &ns, "route", "add", "default", "via", &gateway])?;
        let addr6 = plan::home_host6(i, j);
        if self.ipv6 {
            Self::add_addr6(&ns, "eth0", addr6, 64)?;
            let gateway6 = plan::router_lan6(i).to_string();
            ip(&["-n", &ns, "-6", "route", "add", "default", "via", &gateway6])?;
        }
        Ok(Host {
            name: format!("home{i}-host{j}"),
            netns: ns,
            addr,
            public_addr: plan::router_wan(i),
            addr6: self.ipv6.then_some((addr6, plan::router_wan6(i))),
        })
    }

    /// Starts an emulator on `uplink` (which must have been built emulated and have none
    /// running) and returns its seed.
    pub(super) fn spawn_emulator(&mut self, uplink: Uplink, link: &Link) -> Result<u64> {
        let seed = link.seed.unwrap_or_else(fresh_seed);
        let bin = self
            .emu_bin
            .clone()
            .context("start_link finds link-emu first")?;
        let state = self
            .uplinks
            .get_mut(&uplink)
            .with_context(|| format!("the testbed has no uplink {uplink}"))?;
        anyhow::ensure!(
            state.emulated,
            "uplink {uplink} is a plain veth: give it a link in the Spec to emulate it"
        );
        anyhow::ensure!(
            state.emulator.is_none(),
            "uplink {uplink} already has an emulator"
        );
        let emulator = Emulator::spawn(&bin, &state.inside, &state.outside, link, seed)?;
        state.emulator = Some(emulator);
        println!(
            "testbed {}: link {uplink} up=[{}] down=[{}] seed={seed}",
            self.prefix, link.up, link.down
        );
        Ok(seed)
    }
}

/// Makes `router` masquerade everything that leaves through its uplink (IPv6 too with `ipv6`:
/// NAT66, the same rule in ip6tables).
fn masquerade(router: &str, nat: Nat, ipv6: bool) -> Result<()> {
    let tables: &[&str] = if ipv6 {
        &["iptables", "ip6tables"]
    } else {
        &["iptables"]
    };
    for table in tables {
        let mut args = vec!["netns", "exec", router, table, "-w", "-t", "nat"];
        args.extend(["-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]);
        if nat == Nat::Symmetric {
            args.push("--random-fully");
        }
        ip(&args).with_context(|| {
            format!("setting up NAT ({table}, from scripts/install-deps.sh --test)")
        })?;
    }
    Ok(())
}

/// A seed nobody chose: the clock, the process and a counter, mixed.
fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mix =
        nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    super::rng::Rng::new(mix).next_u64()
}
