//! A network partition: the internet cut in two, as a backhoe or a failing exchange point
//! would. Each public host and home router drops every packet to or from the public address
//! of a place on the other side (iptables, in a chain of its own), so each side keeps working
//! inside itself and the connections across the cut go silent; [`Testbed::heal`] flushes the
//! chains and the same connections carry packets again.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};

use super::netns::ip;
use super::{Testbed, Uplink};

/// The chain each place's rules live in.
const CHAIN: &str = "chorus-cut";

impl Testbed {
    /// Cuts the internet between `side` and every other public host and home: neither
    /// reaches the other until [`Testbed::heal`]. Replaces an earlier cut.
    pub fn cut(&mut self, side: &[Uplink]) -> Result<()> {
        anyhow::ensure!(
            !self.ipv6,
            "cut separates IPv4 addresses only: this testbed has IPv6 too"
        );
        let places = self.places();
        for uplink in side {
            if !places.iter().any(|(u, _, _)| u == uplink) {
                bail!("no {uplink} to cut off");
            }
        }
        self.heal()?;
        let inside = |u: &Uplink| side.contains(u);
        for (uplink, netns, _) in &places {
            let others: Vec<String> = places
                .iter()
                .filter(|(other, _, _)| inside(other) != inside(uplink))
                .map(|(_, _, addr)| addr.to_string())
                .collect();
            if others.is_empty() {
                continue;
            }
            // One command per direction (iptables expands the list): a cut of ten places is
            // in place within a few tens of milliseconds, not one command per address.
            let others = others.join(",");
            for dir in ["-s", "-d"] {
                iptables(netns, &["-A", CHAIN, dir, &others, "-j", "DROP"])?;
            }
        }
        Ok(())
    }

    /// Ends a cut (nothing to do when there is none).
    pub fn heal(&mut self) -> Result<()> {
        for (uplink, netns, _) in self.places() {
            if !self.cut_chains.contains(&uplink) {
                // First use: the chain, hooked in front of everything that crosses the place.
                iptables(&netns, &["-N", CHAIN])?;
                for hook in ["INPUT", "OUTPUT", "FORWARD"] {
                    iptables(&netns, &["-I", hook, "-j", CHAIN])?;
                }
                self.cut_chains.insert(uplink);
            }
            iptables(&netns, &["-F", CHAIN])?;
        }
        Ok(())
    }

    /// Every public host and home router: its uplink, namespace and public address.
    fn places(&self) -> Vec<(Uplink, String, Ipv4Addr)> {
        let public = self
            .public
            .iter()
            .enumerate()
            .map(|(k, h)| (Uplink::Public(k), h.netns.clone(), h.public_addr));
        let homes = self.homes.iter().enumerate().map(|(i, h)| {
            (
                Uplink::Home(i),
                h.router.netns.clone(),
                h.router.public_addr,
            )
        });
        public.chain(homes).collect()
    }
}

fn iptables(netns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["netns", "exec", netns, "iptables", "-w"];
    all.extend_from_slice(args);
    ip(&all).with_context(|| format!("iptables {} in {netns}", args.join(" ")))
}
