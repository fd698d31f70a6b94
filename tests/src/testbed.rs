//! A testbed of real network namespaces: one public internet, homes behind NAT, hosts in the
//! homes, and links that add delay, jitter, loss and a bandwidth cap (docs/testbed.md).
//!
//! ```text
//!                     <prefix>-inet: bridge br0 (198.18.0.0/16, no address of its own)
//!        +-----------------+-------------------+---------------------+
//!    port public0      port public1        port home0             port home1
//!        | veth            | tap               | tap                  | veth
//!        |              link-emu            link-emu                  |
//!        |                 | tap               | tap                  |
//!   public0 eth0      public1 eth0      home0-router wan       home1-router wan
//!   198.18.1.1        198.18.1.2        198.18.2.1             198.18.3.1
//!                                       MASQUERADE             MASQUERADE --random-fully
//!                                       lan 10.1.0.1/24        lan 10.2.0.1/24
//!                                        |          |           |
//!                                  home0-host0  home0-host1  home1-host0
//!                                  10.1.0.2     10.1.0.3     10.2.0.2
//! ```
//!
//! Every box is a network namespace named `chorus-tb-<pid>-<n>-<test>-<role>`, so tests run
//! in parallel without meeting, and leftovers of a killed run (whose pid is gone) are removed
//! by the next testbed. An emulated uplink is a pair of TAP devices joined by a `link-emu`
//! process: the emulator is the cable, so NAT, ARP and routing stay the kernel's own.
//!
//! # Layout
//! - this file: [`Testbed`] (build, reach, re-link, clean up) and [`Home`].
//! - `spec`: what to build ([`Spec`], [`HomeSpec`], [`Nat`], [`Uplink`]) and the address plan.
//! - `shape`: what a link does ([`Shape`], [`Link`]) and its text form (`link-emu`'s arguments).
//! - `pipe`: one direction of a link as a sans-IO state machine (`link-emu`'s core).
//! - `rng`: the seeded generator behind loss and jitter.
//! - `emulator`: a running `link-emu` process and its [`Report`].
//! - `host`: [`Host`]: commands and sockets inside a namespace.
//! - `netns`: `ip`, entering namespaces from a thread, leftovers.
//! - `build`: creating the namespaces, devices, addresses, routes and NAT.
//! - `cut`: a partition of the internet ([`Testbed::cut`], [`Testbed::heal`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{Context, Result};

mod build;
mod cut;
pub mod emulator;
mod host;
pub mod netns;
pub mod pipe;
pub mod rng;
pub mod shape;
pub mod spec;

pub use emulator::{DirectionReport, Report};
pub use host::Host;
pub use shape::{Jitter, Link, Shape};
pub use spec::{HomeSpec, Nat, PublicSpec, Spec, Uplink};

/// Every namespace of every testbed starts with this.
const PREFIX: &str = "chorus-tb-";

/// Setup is serialized within a process: `ip netns add` races with itself on a fresh system,
/// and two testbeds built at once on two cores only slow each other down.
static SETUP: Mutex<()> = Mutex::new(());

/// A home: its router and the hosts on its LAN.
#[derive(Debug)]
pub struct Home {
    router: Host,
    hosts: Vec<Host>,
    nat: Nat,
}

impl Home {
    /// The router (its [`Host::addr`] is its LAN address, its [`Host::public_addr`] its
    /// public one).
    pub fn router(&self) -> &Host {
        &self.router
    }

    /// The hosts on the LAN.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The router's NAT.
    pub fn nat(&self) -> Nat {
        self.nat
    }
}

#[derive(Debug)]
struct UplinkState {
    /// The public host's or router's device.
    inside: emulator::End,
    /// Its port on the internet's bridge.
    outside: emulator::End,
    /// Whether the two are TAP devices for an emulator (rather than a veth pair).
    emulated: bool,
    emulator: Option<emulator::Emulator>,
}

/// A running testbed. Dropping it (also while a test panics) stops its emulators and deletes
/// its namespaces; processes a test started inside them are the test's to stop.
#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    internet: String,
    public: Vec<Host>,
    homes: Vec<Home>,
    uplinks: BTreeMap<Uplink, UplinkState>,
    /// In order of creation; deleted in reverse.
    namespaces: Vec<String>,
    emu_bin: Option<PathBuf>,
    /// Places whose partition chain exists (`cut`).
    cut_chains: std::collections::BTreeSet<Uplink>,
    /// Built with IPv6 beside IPv4 ([`Spec::ipv6`]).
    ipv6: bool,
}

impl Testbed {
    /// Builds `spec` under a prefix made of this process's id, a counter and `name` (the
    /// test's name), after removing leftovers of dead processes' testbeds.
    pub fn new(name: &str, spec: &Spec) -> Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        spec.validate()?;
        let _setup = SETUP.lock().unwrap_or_else(PoisonError::into_inner);
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(32)
            .collect();
        let started = std::time::Instant::now();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}{}-{n}-{name}", std::process::id());
        remove_leftovers(&prefix);
        let mut tb = Testbed {
            prefix,
            internet: String::new(),
            public: Vec::new(),
            homes: Vec::new(),
            uplinks: BTreeMap::new(),
            namespaces: Vec::new(),
            emu_bin: None,
            cut_chains: std::collections::BTreeSet::new(),
            ipv6: spec.ipv6,
        };
        tb.build_internet()?;
        for (k, public) in spec.public.iter().enumerate() {
            tb.build_public(k, public)
                .with_context(|| format!("building public{k}"))?;
        }
        for (i, home) in spec.homes.iter().enumerate() {
            tb.build_home(i, home)
                .with_context(|| format!("building home{i}"))?;
        }
        println!("{} (built in {:.0?})", tb.describe(), started.elapsed());
        Ok(tb)
    }

    /// [`Testbed::new`], or `None` after saying why on stderr when this machine cannot run a
    /// testbed (not root, no `ip`, `iptables` or `/dev/net/tun`). Where the environment
    /// variable `CI` is set the testbed must run, so there it panics instead.
    pub fn new_or_skip(name: &str, spec: &Spec) -> Option<Self> {
        if let Some(why) = unavailable() {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(!ci, "CI must run the testbed, but {why}");
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let _ = writeln!(std::io::stderr(), "SKIPPED {name}: {why}");
            return None;
        }
        Some(Self::new(name, spec).unwrap_or_else(|e| panic!("testbed {name}: {e:#}")))
    }

    /// The prefix of all its namespaces.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Its namespaces, the internet's first.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// The namespace of the internet's bridge.
    pub fn internet_netns(&self) -> &str {
        &self.internet
    }

    /// Public host `k`.
    pub fn public(&self, k: usize) -> &Host {
        &self.public[k]
    }

    /// Home `i`.
    pub fn home(&self, i: usize) -> &Home {
        &self.homes[i]
    }

    /// Host `j` of home `i`.
    pub fn host(&self, i: usize, j: usize) -> &Host {
        &self.homes[i].hosts[j]
    }

    /// Starts an emulator shaped by `link` on `uplink` (built with a link in the [`Spec`], and
    /// stopped with [`Testbed::stop_link`] if it ran one); returns its seed.
    pub fn start_link(&mut self, uplink: Uplink, link: &Link) -> Result<u64> {
        link.up.validate()?;
        link.down.validate()?;
        if self.emu_bin.is_none() {
            self.emu_bin = Some(emulator::link_emu_bin()?);
        }
        self.spawn_emulator(uplink, link)
    }

    /// Stops `uplink`'s emulator and returns its report. Until another starts, the cable is
    /// pulled: the uplink carries nothing.
    pub fn stop_link(&mut self, uplink: Uplink) -> Result<Report> {
        let emulator = self
            .uplinks
            .get_mut(&uplink)
            .and_then(|s| s.emulator.take())
            .with_context(|| format!("uplink {uplink} has no emulator running"))?;
        emulator.stop()
    }

    /// Replaces `uplink`'s emulation with `link`; returns the old emulator's report, if one
    /// ran.
    pub fn set_link(&mut self, uplink: Uplink, link: &Link) -> Result<Option<Report>> {
        let running = self
            .uplinks
            .get(&uplink)
            .is_some_and(|s| s.emulator.is_some());
        let report = if running {
            Some(self.stop_link(uplink)?)
        } else {
            None
        };
        self.start_link(uplink, link)?;
        Ok(report)
    }

    fn describe(&self) -> String {
        let mut s = format!("testbed {}:", self.prefix);
        for p in &self.public {
            s.push_str(&format!(" {} {};", p.name, p.addr));
        }
        for h in &self.homes {
            let hosts: Vec<String> = h.hosts.iter().map(|x| x.addr.to_string()).collect();
            s.push_str(&format!(
                " {} {} {:?} [{}];",
                h.router.name,
                h.router.public_addr,
                h.nat,
                hosts.join(" ")
            ));
        }
        s
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for state in self.uplinks.values_mut() {
            drop(state.emulator.take());
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = netns::delete(ns) {
                let _ = writeln!(std::io::stderr(), "testbed cleanup: {e:#}");
            }
        }
    }
}

/// Why this machine cannot run a testbed, if it cannot (checked once per process).
pub fn unavailable() -> Option<String> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(check_available).clone()
}

fn check_available() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the testbed needs root (network namespaces, TAP devices, NAT)".into());
    }
    if !crate::has_program("ip") {
        return Some("the testbed needs `ip` (Debian package iproute2)".into());
    }
    if !crate::has_program("iptables") {
        return Some("the testbed needs `iptables` (scripts/install-deps.sh --test)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("the testbed needs /dev/net/tun (TUN/TAP devices)".into());
    }
    let probe = format!("{PREFIX}{}-probe", std::process::id());
    if let Err(e) = netns::ip(&["netns", "add", &probe]) {
        return Some(format!("network namespaces are unavailable: {e:#}"));
    }
    let _ = netns::delete(&probe);
    None
}

/// Deletes namespaces left by testbeds of processes that no longer run, and any with our own
/// prefix.
fn remove_leftovers(own_prefix: &str) {
    for ns in netns::list() {
        let Some(rest) = ns.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        let dead = !pid.is_empty() && !Path::new("/proc").join(pid).exists();
        if (dead || ns.starts_with(&format!("{own_prefix}-")))
            && let Err(e) = netns::delete(&ns)
        {
            let _ = writeln!(std::io::stderr(), "testbed: leftover {ns}: {e:#}");
        }
    }
}
