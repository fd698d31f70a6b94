//! A network partition: the internet cut in two, as a backhoe or a failing exchange point
//! would. Each public host and home router drops every packet to or from the public address
//! of a place on the other side (iptables, in a chain of its own), so each side keeps working
//! inside itself and the connections across the cut go silent; [`Testbed::heal`] flushes the
//! chains and the same connections carry packets again. On a testbed with IPv6 the same rules
//! cut the IPv6 addresses too (ip6tables).

use std::net::IpAddr;

use anyhow::{Context, Result, bail};

use super::netns::ip;
use super::{Testbed, Uplink};

/// The chain each place's rules live in.
const CHAIN: &str = "chorus-cut";

impl Testbed {
    /// Cuts the internet between `side` and every other public host and home: neither
    /// reaches the other until [`Testbed::heal`]. Replaces an earlier cut.
    pub fn cut(&mut self, side: &[Uplink]) -> Result<()> {
        let places = self.places();
        for uplink in side {
            if !places.iter().any(|(u, _, _)| u == uplink) {
                bail!("no {uplink} to cut off");
            }
        }
        self.heal()?;
        let inside = |u: &Uplink| side.contains(u);
        for (uplink, netns, _) in &places {
            for family in self.families() {
                let others: Vec<String> = places
                    .iter()
                    .filter(|(other, _, _)| inside(other) != inside(uplink))
                    .flat_map(|(_, _, addrs)| addrs)
                    .filter(|addr| addr.is_ipv6() == (family == IP6TABLES))
                    .map(IpAddr::to_string)
                    .collect();
                if others.is_empty() {
                    continue;
                }
                // One command per direction (iptables expands the list): a cut of ten places
                // is in place within a few tens of milliseconds, not one command per address.
                let others = others.join(",");
                for dir in ["-s", "-d"] {
                    iptables(family, netns, &["-A", CHAIN, dir, &others, "-j", "DROP"])?;
                }
            }
        }
        Ok(())
    }

    /// Ends a cut (nothing to do when there is none).
    pub fn heal(&mut self) -> Result<()> {
        for (uplink, netns, _) in self.places() {
            for family in self.families() {
                if !self.cut_chains.contains(&uplink) {
                    // First use: the chain, hooked in front of everything that crosses the
                    // place.
                    iptables(family, &netns, &["-N", CHAIN])?;
                    for hook in ["INPUT", "OUTPUT", "FORWARD"] {
                        iptables(family, &netns, &["-I", hook, "-j", CHAIN])?;
                    }
                }
                iptables(family, &netns, &["-F", CHAIN])?;
            }
            self.cut_chains.insert(uplink);
        }
        Ok(())
    }

    /// The iptables programs this testbed's addresses need.
    fn families(&self) -> Vec<&'static str> {
        if self.ipv6 {
            vec![IPTABLES, IP6TABLES]
        } else {
            vec![IPTABLES]
        }
    }

    /// Every public host and home router: its uplink, namespace and public addresses (IPv4,
    /// and IPv6 on a testbed with it).
    fn places(&self) -> Vec<(Uplink, String, Vec<IpAddr>)> {
        let addrs = |h: &super::Host| {
            let mut all = vec![IpAddr::V4(h.public_addr)];
            all.extend(h.public_addr6().map(IpAddr::V6));
            all
        };
        let public = self
            .public
            .iter()
            .enumerate()
            .map(|(k, h)| (Uplink::Public(k), h.netns.clone(), addrs(h)));
        let homes = self
            .homes
            .iter()
            .enumerate()
            .map(|(i, h)| (Uplink::Home(i), h.router.netns.clone(), addrs(&h.router)));
        public.chain(homes).collect()
    }
}

const IPTABLES: &str = "iptables";
const IP6TABLES: &str = "ip6tables";

/// Runs `program` (iptables or ip6tables) with `args` inside `netns`.
fn iptables(program: &str, netns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["netns", "exec", netns, program, "-w"];
    all.extend_from_slice(args);
    ip(&all).with_context(|| format!("{program} {} in {netns}", args.join(" ")))
}
