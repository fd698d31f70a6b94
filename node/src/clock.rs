//! Network time (PROTOCOL.md 7 and 12.4): a monotonic clock anchored to the system clock at
//! start-up, plus an offset estimated from `/chorus/time/1` samples.
//!
//! Three clocks, all read from one monotonic `Instant`:
//! - the *local* clock: the system clock at start-up (shifted by the hidden `--clock-skew-ms`
//!   testing knob) plus the monotonic time since. `/chorus/time/1` stamps use it, so a sample
//!   measures the difference between two local clocks and never feeds back on itself;
//! - *network* time: local plus the offset. The [`Estimator`] chooses the target offset from
//!   the peers' samples (below); the clock steps to a new target more than 200 ms away and
//!   slews toward a nearer one at 5 ms per second, so audio never jumps for small corrections;
//! - the true *system* time, only for the wav sink's CSV (what a test compares across nodes).
//!
//! Stamps and offsets are in microseconds: milliseconds would limit agreement to about 1 ms, and
//! playback aims at 0.1 ms.
//!
//! # Time sources under lying peers (PROTOCOL.md 12.4)
//!
//! Where each rule is enforced:
//! - *Our own `t0`*: the codec (`net/time_codec.rs`) keeps the `t0` it wrote and puts it into
//!   the answer it reads; an answer that echoes another `t0` is refused there and counted
//!   ([`Clock::false_echoes`]).
//! - *Round trip*: [`Estimator::add`] drops a sample whose round trip is negative (or whose
//!   server stamps run backwards) or longer than [`MAX_RTT_US`]. A negative round trip is never
//!   read as 0: that was exactly the lie that won the smallest-round-trip choice.
//! - *Bound*: [`Estimator::add`] drops a sample more than [`MAX_CLOCK_OFFSET_MS`] from the local
//!   clock. Dropped samples are counted by reason ([`Estimator::rejected`]); the [`Verdict`] says
//!   whether it is the peer's first, so that the caller warns once per peer and logs the rest
//!   at debug level.
//! - *Direct peers, two per network*: the caller gives each sample the [`SourceNet`] of the
//!   peer's connection ([`SourceNet::of`], `None` for a relayed one: no source). Of each network
//!   at most [`SOURCES_PER_NETWORK`] peers count, and at most [`MAX_PEERS`] peers in all, those
//!   with the shortest round trip *as this node measured it* (`t3 - t0`, which a peer can
//!   lengthen but never shorten; the `rtt` of a sample subtracts the peer's own claim
//!   `t2 - t1`, so a liar could make it as small as it likes).
//! - *Agreement*: [`Estimator::select`].
//!
//! # Selection
//!
//! The sources are this node's own clock (offset 0, network [`SourceNet::Local`]) and the
//! counted peers with at least [`MIN_SAMPLES`] samples. Each is the interval
//! `[offset - w, offset + w]` of its best sample (smallest `rtt`), `w = max(rtt / 2,
//! MIN_HALF_WIDTH_US)`: a floor of 1 ms, so that honest peers on one machine or one LAN, whose
//! round trips are a few hundred microseconds, still overlap despite the asymmetry of their
//! paths. [`Estimator::select`] then takes, in order:
//! 1. [`Rule::Agreement`] (the intersection of NTP's selection, after Marzullo): the largest set
//!    of sources whose intervals share a point, if it holds a strict majority of the sources
//!    and spans at least [`MIN_NETWORKS`] networks. The target is the median of their offsets,
//!    clamped into their common interval. The node *locks*.
//! 2. Before the node has locked, the median of all the sources (PROTOCOL.md 7's rule):
//!    [`Rule::Acquisition`], which locks, once they span three networks and every peer that has
//!    sent a sample has its three; [`Rule::Provisional`], which does not lock, before.
//! 3. Once locked, without agreement, [`Rule::Refinement`]: the median again, but only with
//!    three networks and only if it lies within the median source's own interval plus 1 ms of
//!    the last accepted offset (it still agrees with it). Otherwise `None`: the node keeps its
//!    last accepted offset.
//!
//! Why the local clock is a source: in a network of three nodes each has two peers, and with
//! itself as the third network it can reach three-network agreement; and its own clock is the
//! one source a node knows to be honest.
//!
//! Why not agreement alone: samples compare *local* clocks, and honest clocks that differ by
//! more than their round trips (unsynchronized system clocks; the `--clock-skew-ms` knob) never
//! agree, yet the network must find one time. Acquisition finds it as version 1 did: every node
//! takes the median clock (with skews -400, 0 and +350 ms, all three end on the middle one's).
//! Once locked such a node moves only to an agreement or by refining that median within round
//! trips. With system clocks kept by NTP honest sources agree, and agreement decides.
//!
//! What the rules guarantee:
//! - The offset never leaves `±MAX_CLOCK_OFFSET_MS` around the local clock, whatever peers
//!   claim (every sample outside is dropped and every target lies among the sources).
//! - While fewer than half of the sources lie (so while fewer than a third do, as 12.4 asks):
//!   an agreement holds an honest source, so the target lies inside an honest interval, and a
//!   median lies between the smallest and the largest honest offset. Liars move the estimate
//!   only within the spread of the honest sources (and their round trips): when the honest
//!   sources agree, they are the agreement and the target lies inside their common interval.
//! - Liars that are most of a node's sources (five fresh identities in five networks against a
//!   node with two honest peers) win, within the bound: no rule can tell them apart from the
//!   honest ones by their samples. The per-network limit and the measured-round-trip ranking
//!   raise their price; the bound limits what they win.
//! - A node that never sees three networks (a network of two nodes; a LAN whose peers all share
//!   one /24, of which two count) stays provisional: it follows the median of itself and its
//!   counted peers, which converges (two nodes meet halfway), but there a single lying peer is
//!   half the sources and moves the node by up to half the bound. PROTOCOL.md 12.4 would keep
//!   the last offset instead, so such nodes would never agree: a deliberate deviation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chorus_media::player::TimeBase;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Time samples kept per peer (PROTOCOL.md 7).
pub const SAMPLES_PER_PEER: usize = 8;
/// Samples a peer needs before its offset counts.
pub const MIN_SAMPLES: usize = 3;
/// Peers whose offsets count at most.
pub const MAX_PEERS: usize = 8;
/// Offset changes larger than this step at once (µs).
pub const STEP_US: f64 = 200_000.0;
/// Slew rate for smaller changes: µs of offset per second.
pub const SLEW_US_PER_S: f64 = 5_000.0;
/// `rules.max_clock_offset_ms` of PROTOCOL.md 12.4: a peer's offset further than this from the
/// local clock is ignored (and counted).
pub const MAX_CLOCK_OFFSET_MS: i64 = 2000;
/// [`MAX_CLOCK_OFFSET_MS`] in µs.
pub const MAX_CLOCK_OFFSET_US: f64 = MAX_CLOCK_OFFSET_MS as f64 * 1000.0;
/// A sample with a round trip longer than this is dropped (PROTOCOL.md 12.4), µs.
pub const MAX_RTT_US: i64 = 2_000_000;
/// Peers of one network (IPv4 /24, IPv6 /48) that count as sources at most (PROTOCOL.md 12.4).
pub const SOURCES_PER_NETWORK: usize = 2;
/// Networks that must agree before the estimate moves (PROTOCOL.md 12.4); this node's own
/// clock is one of them.
pub const MIN_NETWORKS: usize = 3;
/// The smallest half-width of a source's interval, µs: honest sources on one machine or LAN,
/// a few hundred µs of round trip apart, still overlap.
pub const MIN_HALF_WIDTH_US: f64 = 1000.0;

/// The node's clocks.
#[derive(Debug)]
pub struct Clock {
    anchor: Instant,
    /// True system time at `anchor`, µs since the Unix epoch.
    system_us: i64,
    /// The testing skew, µs.
    skew_us: i64,
    offset: Mutex<Slew>,
    /// Time answers refused because they echoed a `t0` this node had not sent.
    false_echoes: AtomicU64,
}

/// The offset, moving from `from_us` at `since` toward `target_us` at the slew rate.
#[derive(Debug, Clone, Copy)]
struct Slew {
    from_us: f64,
    target_us: f64,
    since: Instant,
}

impl Slew {
    fn at(&self, at: Instant) -> f64 {
        let dt = at.saturating_duration_since(self.since).as_secs_f64();
        let max = SLEW_US_PER_S * dt;
        self.from_us + (self.target_us - self.from_us).clamp(-max, max)
    }
}

/// What a new target did to the offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Adjust {
    /// The offset jumped to the target (more than 200 ms away).
    Step {
        /// The offset before, µs.
        from_us: f64,
        /// The offset now, µs.
        to_us: f64,
    },
    /// The offset moves toward the target at 5 ms/s.
    Slew {
        /// The target, µs.
        to_us: f64,
    },
}

impl Clock {
    /// Anchors to the system clock now, shifted by `skew_ms` (a testing knob).
    pub fn new(skew_ms: i64) -> Clock {
        let system_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let anchor = Instant::now();
        Clock {
            anchor,
            system_us,
            skew_us: skew_ms.saturating_mul(1000),
            offset: Mutex::new(Slew {
                from_us: 0.0,
                target_us: 0.0,
                since: anchor,
            }),
            false_echoes: AtomicU64::new(0),
        }
    }

    /// Counts a time answer refused because it echoed a `t0` this node had not sent (the
    /// `/chorus/time/1` codec calls it; the clock is what the codec and the driver share).
    pub fn note_false_echo(&self) {
        self.false_echoes.fetch_add(1, Ordering::Relaxed);
    }

    /// Time answers refused since start-up because they echoed another `t0` (PROTOCOL.md 12.4).
    pub fn false_echoes(&self) -> u64 {
        self.false_echoes.load(Ordering::Relaxed)
    }

    fn since_anchor_us(&self, at: Instant) -> i64 {
        if at >= self.anchor {
            (at - self.anchor).as_micros() as i64
        } else {
            -((self.anchor - at).as_micros() as i64)
        }
    }

    /// The local clock at `at`, µs: what `/chorus/time/1` stamps carry.
    pub fn local_us(&self, at: Instant) -> i64 {
        self.system_us + self.skew_us + self.since_anchor_us(at)
    }

    /// The offset applied at `at`, µs.
    pub fn offset_us_at(&self, at: Instant) -> f64 {
        self.offset.lock().expect("not poisoned").at(at)
    }

    /// Network time now, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.network_us(Instant::now()).div_euclid(1000)).unwrap_or(0)
    }

    /// The instant at which network time reaches `t_ms` (now if it has passed).
    pub fn instant_at(&self, t_ms: u64) -> tokio::time::Instant {
        let now = self.now_ms();
        tokio::time::Instant::now() + std::time::Duration::from_millis(t_ms.saturating_sub(now))
    }

    /// Moves the offset toward `target_us` (PROTOCOL.md 7: step above 200 ms, else slew).
    pub fn adjust(&self, target_us: f64) -> Adjust {
        let now = Instant::now();
        let mut slew = self.offset.lock().expect("not poisoned");
        let current = slew.at(now);
        if (target_us - current).abs() > STEP_US {
            *slew = Slew {
                from_us: target_us,
                target_us,
                since: now,
            };
            Adjust::Step {
                from_us: current,
                to_us: target_us,
            }
        } else {
            *slew = Slew {
                from_us: current,
                target_us,
                since: now,
            };
            Adjust::Slew { to_us: target_us }
        }
    }
}

impl TimeBase for Clock {
    fn network_us(&self, at: Instant) -> i64 {
        self.local_us(at) + self.offset_us_at(at).round() as i64
    }

    fn system_us(&self, at: Instant) -> i64 {
        self.system_us + self.since_anchor_us(at)
    }
}

/// One `/chorus/time/1` exchange, all four stamps on local clocks (µs). `t0` and `t3` are this
/// node's own; `t1` and `t2` are whatever the peer claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Client send (as this node recorded it, never as the peer echoed it).
    pub t0: i64,
    /// Server receive.
    pub t1: i64,
    /// Server send.
    pub t2: i64,
    /// Client receive.
    pub t3: i64,
}

/// A sample: the peer's clock minus ours, and the round trips, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The peer's local clock minus ours.
    pub offset_us: f64,
    /// Round trip without the peer's own processing time, `(t3 - t0) - (t2 - t1)`: it rests on
    /// the peer's claim `t2 - t1`, so it may come out negative (a lie, or stamps gone wrong).
    pub rtt_us: i64,
    /// Round trip as this node measured it, `t3 - t0`: a peer can lengthen it, never shorten it.
    pub elapsed_us: i64,
}

impl Exchange {
    /// PROTOCOL.md 7's offset and round trip, as they come (checked by [`Estimator::add`]).
    /// Computed without overflow whatever the peer's stamps are.
    pub fn sample(&self) -> Sample {
        let [t0, t1, t2, t3] = [self.t0, self.t1, self.t2, self.t3].map(i128::from);
        let saturate =
            |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
        Sample {
            offset_us: ((t1 - t0) + (t2 - t3)) as f64 / 2.0,
            rtt_us: saturate((t3 - t0) - (t2 - t1)),
            elapsed_us: saturate(t3 - t0),
        }
    }
}

/// The network a time source belongs to (PROTOCOL.md 12.4): at most [`SOURCES_PER_NETWORK`]
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

/// Why [`Estimator::add`] dropped a sample (PROTOCOL.md 12.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The round trip was negative, or the peer's stamps ran backwards (`t2 < t1`).
    NegativeRtt,
    /// The round trip was longer than [`MAX_RTT_US`].
    LongRtt,
    /// The offset was more than [`MAX_CLOCK_OFFSET_MS`] from the local clock.
    BeyondBound,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NegativeRtt => "negative round trip",
            Refusal::LongRtt => "round trip over 2 s",
            Refusal::BeyondBound => "offset beyond the 2000 ms bound",
        })
    }
}

/// Samples dropped since start-up, by reason (for status and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejected {
    /// Negative round trip (or server stamps running backwards).
    pub negative_rtt: u64,
    /// Round trip over [`MAX_RTT_US`].
    pub long_rtt: u64,
    /// Offset beyond [`MAX_CLOCK_OFFSET_MS`].
    pub beyond_bound: u64,
}

impl Rejected {
    /// All dropped samples.
    pub fn total(&self) -> u64 {
        self.negative_rtt + self.long_rtt + self.beyond_bound
    }
}

/// What [`Estimator::add`] did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Kept among the peer's last samples.
    Kept,
    /// Dropped and counted.
    Dropped {
        /// Why.
        reason: Refusal,
        /// The first sample of this peer dropped since it connected: worth a warning; later ones
        /// are worth a debug line at most.
        first: bool,
    },
}

/// Which rule of [`Estimator::select`] chose a target (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A strict majority of the sources, from at least three networks, agree within their
    /// round trips.
    Agreement,
    /// The median of the sources, from at least three networks, before the node locked; it
    /// locks now.
    Acquisition,
    /// The median of fewer than three networks' sources (or while a peer still lacks its three
    /// samples), before the node locked.
    Provisional,
    /// The median, after locking, within a round trip of the last accepted offset.
    Refinement,
}

/// A target offset and how it was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// The target offset, µs.
    pub offset_us: f64,
    /// The rule that chose it.
    pub rule: Rule,
    /// Sources counted, this node included.
    pub sources: usize,
    /// Distinct networks among them, this node's own included.
    pub networks: usize,
    /// Sources whose offsets the target is the median of (those of the agreement, or all).
    pub agreeing: usize,
}

/// The state of the time sources, for a log line and the status ([`Estimator::take_report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Sources counted now, this node included.
    pub sources: usize,
    /// Distinct networks among them, this node's own included.
    pub networks: usize,
    /// Whether the estimator has locked (acquisition or agreement accepted).
    pub locked: bool,
    /// Samples dropped since start-up, by reason.
    pub rejected: Rejected,
}

/// One peer's samples.
#[derive(Debug)]
struct PeerSamples {
    net: SourceNet,
    samples: VecDeque<Sample>,
    /// A dropped sample of this peer was reported as `first` already.
    warned: bool,
}

/// A source as selection sees it.
#[derive(Debug, Clone)]
struct Source {
    net: SourceNet,
    offset_us: f64,
    half_us: f64,
}

impl Source {
    fn lo(&self) -> f64 {
        self.offset_us - self.half_us
    }

    fn hi(&self) -> f64 {
        self.offset_us + self.half_us
    }
}

/// The network offset estimator of PROTOCOL.md 7 under the rules of 12.4 (the module's
/// documentation says how it selects). Sans-IO: feed it samples with [`Estimator::add`], forget
/// disconnected peers with [`Estimator::remove`], and after each sample ask
/// [`Estimator::select`] for a target to hand to [`Clock::adjust`]; `None` means keep the
/// current one.
#[derive(Debug, Default)]
pub struct Estimator {
    peers: HashMap<PeerId, PeerSamples>,
    rejected: Rejected,
    /// An acquisition or an agreement has been accepted: from now on the estimate moves only by
    /// agreement or refinement.
    locked: bool,
    /// The last target returned, µs.
    last_us: Option<f64>,
    /// What the last report said of the sources: (sources, networks, locked).
    reported: Option<(usize, usize, bool)>,
    /// The next total of dropped samples worth a report (1, 2, 4, 8, ...).
    next_refusal_report: u64,
}

impl Estimator {
    /// Checks a sample from `peer`, connected in `net`, and keeps it among the peer's last 8, or
    /// drops and counts it (negative or over-2-s round trip; offset beyond the bound).
    pub fn add(&mut self, peer: PeerId, net: SourceNet, sample: Sample) -> Verdict {
        let entry = self.peers.entry(peer).or_insert_with(|| PeerSamples {
            net: net.clone(),
            samples: VecDeque::new(),
            warned: false,
        });
        entry.net = net;
        let refusal = if sample.rtt_us < 0 || sample.rtt_us > sample.elapsed_us {
            Some(Refusal::NegativeRtt)
        } else if sample.rtt_us > MAX_RTT_US {
            Some(Refusal::LongRtt)
        } else if !sample.offset_us.is_finite() || sample.offset_us.abs() > MAX_CLOCK_OFFSET_US {
            Some(Refusal::BeyondBound)
        } else {
            None
        };
        let Some(reason) = refusal else {
            entry.samples.push_back(sample);
            while entry.samples.len() > SAMPLES_PER_PEER {
                entry.samples.pop_front();
            }
            return Verdict::Kept;
        };
        let first = !std::mem::replace(&mut entry.warned, true);
        let counter = match reason {
            Refusal::NegativeRtt => &mut self.rejected.negative_rtt,
            Refusal::LongRtt => &mut self.rejected.long_rtt,
            Refusal::BeyondBound => &mut self.rejected.beyond_bound,
        };
        *counter += 1;
        Verdict::Dropped { reason, first }
    }

    /// Forgets a peer (disconnected).
    pub fn remove(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// A peer's kept sample with the smallest round trip, and how many it has kept.
    pub fn best(&self, peer: &PeerId) -> Option<(Sample, usize)> {
        let s = &self.peers.get(peer)?.samples;
        let best = s.iter().min_by_key(|s| s.rtt_us)?;
        Some((*best, s.len()))
    }

    /// Peers with a kept sample.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.samples.is_empty())
            .map(|(id, _)| id)
    }

    /// Samples dropped since start-up, by reason.
    pub fn rejected(&self) -> Rejected {
        self.rejected
    }

    /// A report when it says something new: the counted sources or networks changed, the
    /// estimator locked, or the dropped samples reached a power of two (1, 2, 4, ...), so that
    /// a flood of lies gives a few lines and not one per sample. Call it after each sample.
    pub fn take_report(&mut self) -> Option<Report> {
        let sources = self.sources();
        let state = (sources.len(), count_networks(&sources), self.locked);
        let total = self.rejected.total();
        let refusals_due = total >= self.next_refusal_report.max(1);
        if self.reported == Some(state) && !refusals_due {
            return None;
        }
        self.reported = Some(state);
        if refusals_due {
            self.next_refusal_report = total.saturating_mul(2).max(1);
        }
        Some(Report {
            sources: state.0,
            networks: state.1,
            locked: state.2,
            rejected: self.rejected,
        })
    }

    /// Whether an acquisition or agreement has been accepted (from then on only agreement or
    /// refinement moves the estimate).
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The target offset, µs, as [`Estimator::select`] chooses it.
    pub fn target_us(&mut self) -> Option<f64> {
        self.select().map(|s| s.offset_us)
    }

    /// Chooses the target offset by the rules of the module's documentation; `None` when no
    /// peer counts yet, or when the node must keep its last accepted offset.
    pub fn select(&mut self) -> Option<Selection> {
        let sources = self.sources();
        if sources.len() < 2 {
            return None;
        }
        let networks = count_networks(&sources);
        if let Some((offset_us, agreeing)) = agreement(&sources, self.last_us.unwrap_or(0.0)) {
            self.locked = true;
            self.last_us = Some(offset_us);
            return Some(Selection {
                offset_us,
                rule: Rule::Agreement,
                sources: sources.len(),
                networks,
                agreeing,
            });
        }
        let offset_us = median(sources.iter().map(|s| s.offset_us).collect());
        let rule = if !self.locked {
            if networks >= MIN_NETWORKS && self.all_counted() {
                self.locked = true;
                Rule::Acquisition
            } else {
                Rule::Provisional
            }
        } else if networks >= MIN_NETWORKS
            && self
                .last_us
                .is_some_and(|last| (offset_us - last).abs() <= refinement_tolerance(&sources))
        {
            Rule::Refinement
        } else {
            return None;
        };
        self.last_us = Some(offset_us);
        Some(Selection {
            offset_us,
            rule,
            sources: sources.len(),
            networks,
            agreeing: sources.len(),
        })
    }

    /// Every peer with a kept sample has the three it needs to count, so that acquisition
    /// sees all the peers there are rather than the first few.
    fn all_counted(&self) -> bool {
        self.peers
            .values()
            .all(|p| p.samples.is_empty() || p.samples.len() >= MIN_SAMPLES)
    }

    /// This node's clock first, then the counted peers: those with three samples, at most
    /// [`SOURCES_PER_NETWORK`] per network and [`MAX_PEERS`] in all, by the shortest measured
    /// round trip (ties by peer id).
    fn sources(&self) -> Vec<Source> {
        let mut candidates: Vec<(i64, PeerId, &SourceNet, Sample)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.samples.len() >= MIN_SAMPLES && p.net != SourceNet::Local)
            .filter_map(|(id, p)| {
                let best = p.samples.iter().min_by_key(|s| s.rtt_us)?;
                let elapsed = p.samples.iter().map(|s| s.elapsed_us).min()?;
                Some((elapsed, *id, &p.net, *best))
            })
            .collect();
        candidates.sort_by_key(|c| (c.0, c.1));
        let mut per_net: HashMap<&SourceNet, usize> = HashMap::new();
        let mut sources = vec![Source {
            net: SourceNet::Local,
            offset_us: 0.0,
            half_us: MIN_HALF_WIDTH_US,
        }];
        for (_, _, net, best) in candidates {
            if sources.len() > MAX_PEERS {
                break;
            }
            let n = per_net.entry(net).or_default();
            if *n >= SOURCES_PER_NETWORK {
                continue;
            }
            *n += 1;
            sources.push(Source {
                net: net.clone(),
                offset_us: best.offset_us,
                half_us: (best.rtt_us as f64 / 2.0).max(MIN_HALF_WIDTH_US),
            });
        }
        sources
    }
}

fn count_networks<'a>(sources: impl IntoIterator<Item = &'a Source>) -> usize {
    sources
        .into_iter()
        .map(|s| &s.net)
        .collect::<HashSet<_>>()
        .len()
}

/// The median of a non-empty list (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The intersection step: among the points where sources' intervals overlap (every maximal
/// overlap begins at some interval's low end), the set of sources covering one that is a strict
/// majority of all the sources and spans at least [`MIN_NETWORKS`] networks; the largest such
/// set wins, then the one with more networks, then the one whose target is nearest `near` (the
/// last accepted offset). Returns the median of its offsets clamped into its common interval,
/// and its size.
fn agreement(sources: &[Source], near: f64) -> Option<(f64, usize)> {
    let n = sources.len();
    let mut best: Option<(usize, usize, f64, f64)> = None;
    for point in sources.iter().map(Source::lo) {
        let members: Vec<&Source> = sources
            .iter()
            .filter(|s| s.lo() <= point && point <= s.hi())
            .collect();
        let size = members.len();
        if 2 * size <= n {
            continue;
        }
        let networks = count_networks(members.iter().copied());
        if networks < MIN_NETWORKS {
            continue;
        }
        let lo = members.iter().map(|s| s.lo()).fold(f64::MIN, f64::max);
        let hi = members.iter().map(|s| s.hi()).fold(f64::MAX, f64::min);
        if lo > hi {
            continue;
        }
        let target = median(members.iter().map(|s| s.offset_us).collect()).clamp(lo, hi);
        let distance = (target - near).abs();
        let better = best.is_none_or(|(s, w, d, _)| {
            (size, networks) > (s, w) || ((size, networks) == (s, w) && distance < d)
        });
        if better {
            best = Some((size, networks, distance, target));
        }
    }
    best.map(|(size, _, _, target)| (target, size))
}

/// How far the median may move from the last accepted offset once locked: the median source's
/// own half-width (the smaller of the middle two for an even count) plus the 1 ms floor, so that
/// the new median still agrees with the old one within its round trip.
fn refinement_tolerance(sources: &[Source]) -> f64 {
    let mut by_offset: Vec<&Source> = sources.iter().collect();
    by_offset.sort_by(|a, b| a.offset_us.total_cmp(&b.offset_us));
    let n = by_offset.len();
    let half = match n {
        0 => 0.0,
        _ if n % 2 == 1 => by_offset[n / 2].half_us,
        _ => by_offset[n / 2 - 1].half_us.min(by_offset[n / 2].half_us),
    };
    half + MIN_HALF_WIDTH_US
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A sample with 30 µs spent in the peer.
    fn sample(offset_us: f64, rtt_us: i64) -> Sample {
        Sample {
            offset_us,
            rtt_us,
            elapsed_us: rtt_us + 30,
        }
    }

    /// A peer on loopback: a network of its own.
    fn looped() -> (PeerId, SourceNet) {
        let p = PeerId::random();
        (p, SourceNet::Peer(p))
    }

    fn add_n(est: &mut Estimator, peer: (PeerId, SourceNet), n: usize, s: Sample) {
        for _ in 0..n {
            assert_eq!(est.add(peer.0, peer.1.clone(), s), Verdict::Kept);
        }
    }

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("a valid multiaddr")
    }

    /// Two-way simulation: node clocks at `true time + skew`, a path of `out` µs there and
    /// `back` µs back, 30 µs in the server.
    fn exchange(client_skew: i64, server_skew: i64, at: i64, out: i64, back: i64) -> Exchange {
        Exchange {
            t0: at + client_skew,
            t1: at + out + server_skew,
            t2: at + out + 30 + server_skew,
            t3: at + out + 30 + back + client_skew,
        }
    }

    #[test]
    fn exchange_gives_offset_and_rtt() {
        // Peer 400 ms ahead, 100 µs each way, 30 µs in the peer.
        let e = Exchange {
            t0: 1_000_000,
            t1: 1_400_100,
            t2: 1_400_130,
            t3: 1_000_230,
        };
        assert_eq!(
            e.sample(),
            Sample {
                offset_us: 400_000.0,
                rtt_us: 200,
                elapsed_us: 230
            }
        );
        // Hostile stamps do not overflow.
        let wild = Exchange {
            t0: 0,
            t1: i64::MAX,
            t2: i64::MIN,
            t3: 1,
        };
        assert_eq!(wild.sample().rtt_us, i64::MAX);
    }

    #[test]
    fn a_peer_counts_from_its_third_sample_with_its_best_round_trip() {
        let mut est = Estimator::default();
        let p = looped();
        add_n(&mut est, p.clone(), 1, sample(1000.0, 500));
        add_n(&mut est, p.clone(), 1, sample(900.0, 100));
        assert_eq!(est.target_us(), None);
        add_n(&mut est, p.clone(), 1, sample(5000.0, 900));
        // Two networks (this node and the peer): provisional median of {0, 900}.
        let s = est.select().expect("a provisional target");
        assert_eq!((s.offset_us, s.rule), (450.0, Rule::Provisional));
        assert!(!est.is_locked());
        add_n(&mut est, p.clone(), 8, sample(2000.0, 300));
        // The 100 µs sample fell out of the last 8.
        assert_eq!(
            est.best(&p.0).map(|(s, n)| (s.offset_us, n)),
            Some((2000.0, 8))
        );
    }

    /// Rule 1 lives in the codec (net/time_codec.rs tests); here: the attack of a liar that
    /// answers with a 5 s lie and a round trip that looks like 0 when computed from the `t0` it
    /// echoes. With the `t0` this node recorded, the offset is 5 s and beyond the bound.
    #[test]
    fn with_our_own_t0_the_zero_round_trip_lie_is_beyond_the_bound() {
        let mut est = Estimator::default();
        let liar = looped();
        // Our t0 = 1 s; true path 100 µs each way. The liar echoes t0' = t3 and stamps
        // t1 = t2 = t0' + 5 s: from the echo, rtt 0 and offset 5 s.
        let (t0, t3) = (1_000_000, 1_000_200);
        let lie = Exchange {
            t0,
            t1: t3 + 5_000_000,
            t2: t3 + 5_000_000,
            t3,
        };
        let s = lie.sample();
        assert_eq!(s.rtt_us, 200);
        assert!(s.offset_us > MAX_CLOCK_OFFSET_US);
        assert!(matches!(
            est.add(liar.0, liar.1, s),
            Verdict::Dropped {
                reason: Refusal::BeyondBound,
                first: true
            }
        ));
    }

    #[test]
    fn a_negative_round_trip_drops_the_sample_instead_of_counting_as_zero() {
        let mut est = Estimator::default();
        let (liar, honest) = (looped(), looped());
        // The liar claims 500 µs in its own hands on a 200 µs round trip: rtt -300 µs, which
        // version 1 clamped to 0, the best round trip of all.
        let claim = Exchange {
            t0: 0,
            t1: 1_000_000,
            t2: 1_000_500,
            t3: 200,
        };
        assert_eq!(claim.sample().rtt_us, -300);
        for _ in 0..5 {
            let v = est.add(liar.0, liar.1.clone(), claim.sample());
            assert!(matches!(
                v,
                Verdict::Dropped {
                    reason: Refusal::NegativeRtt,
                    ..
                }
            ));
        }
        // Stamps running backwards in the peer (t2 < t1) are the same lie.
        let backwards = Exchange {
            t0: 0,
            t1: 1_000_500,
            t2: 1_000_000,
            t3: 200,
        };
        assert!(matches!(
            est.add(liar.0, liar.1.clone(), backwards.sample()),
            Verdict::Dropped {
                reason: Refusal::NegativeRtt,
                ..
            }
        ));
        assert_eq!(est.best(&liar.0), None);
        assert_eq!(est.rejected().negative_rtt, 6);
        add_n(&mut est, honest.clone(), 3, sample(100.0, 200));
        assert_eq!(est.select().map(|s| s.sources), Some(2));
    }

    #[test]
    fn a_round_trip_over_2_s_drops_the_sample() {
        let mut est = Estimator::default();
        let p = looped();
        let slow = sample(1000.0, MAX_RTT_US + 1);
        assert_eq!(
            est.add(p.0, p.1.clone(), slow),
            Verdict::Dropped {
                reason: Refusal::LongRtt,
                first: true
            }
        );
        assert_eq!(
            est.add(p.0, p.1.clone(), sample(1000.0, MAX_RTT_US)),
            Verdict::Kept
        );
        assert_eq!(est.rejected().long_rtt, 1);
    }

    #[test]
    fn an_offset_beyond_2000_ms_is_ignored_counted_and_warned_once_per_peer() {
        let mut est = Estimator::default();
        let (a, b) = (looped(), looped());
        let far = sample(-(MAX_CLOCK_OFFSET_US + 1.0), 200);
        let firsts: Vec<bool> = (0..4)
            .map(|_| match est.add(a.0, a.1.clone(), far) {
                Verdict::Dropped {
                    reason: Refusal::BeyondBound,
                    first,
                } => first,
                v => panic!("kept a sample beyond the bound: {v:?}"),
            })
            .collect();
        assert_eq!(firsts, vec![true, false, false, false]);
        assert_eq!(
            est.add(b.0, b.1.clone(), far),
            Verdict::Dropped {
                reason: Refusal::BeyondBound,
                first: true
            }
        );
        // Exactly at the bound is kept.
        assert_eq!(
            est.add(b.0, b.1.clone(), sample(MAX_CLOCK_OFFSET_US, 200)),
            Verdict::Kept
        );
        assert_eq!(est.rejected().beyond_bound, 5);
        assert_eq!(est.rejected().total(), 5);
        assert_eq!(est.select(), None);
        // Reconnected, a peer may be warned about once more.
        est.remove(&a.0);
        assert!(matches!(
            est.add(a.0, a.1, far),
            Verdict::Dropped { first: true, .. }
        ));
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

    #[test]
    fn a_third_source_in_one_slash_24_is_ignored() {
        let net = SourceNet::of(&addr("/ip4/192.0.2.10/tcp/1"), &PeerId::random())
            .expect("a direct address");
        let mut est = Estimator::default();
        // Two honest peers elsewhere agree with this node's clock...
        let (h1, h2) = (looped(), looped());
        add_n(&mut est, h1, 3, sample(0.0, 400));
        add_n(&mut est, h2, 3, sample(0.0, 400));
        // ...and three identities in one /24 claim +1.5 s, all with shorter round trips.
        for _ in 0..3 {
            add_n(
                &mut est,
                (PeerId::random(), net.clone()),
                3,
                sample(1_500_000.0, 100),
            );
        }
        // Counted: this node, the two honest peers, two of the three (a third of one /24 is
        // left out): three agree at 0, a strict majority of five from three networks.
        let s = est.select().expect("a target");
        assert_eq!((s.sources, s.networks), (5, 4));
        assert_eq!((s.rule, s.agreeing, s.offset_us), (Rule::Agreement, 3, 0.0));
    }

    #[test]
    fn five_liars_at_5_s_do_not_move_a_node_with_two_honest_peers() {
        // The attack: five fresh identities on loopback, each its own network, answer with a
        // 5 s lie; two honest peers run clocks 150 µs and -80 µs off this node's.
        let mut est = Estimator::default();
        let honest = [(looped(), 150), (looped(), -80)];
        let liars: Vec<_> = (0..5).map(|_| looped()).collect();
        for round in 0..8 {
            let at = 1_000_000 * round;
            for (peer, skew) in &honest {
                let e = exchange(0, *skew, at, 120, 110);
                est.add(peer.0, peer.1.clone(), e.sample());
            }
            for liar in &liars {
                let e = exchange(0, 5_000_000, at, 100, 100);
                est.add(liar.0, liar.1.clone(), e.sample());
            }
            if let Some(s) = est.select() {
                assert!(s.offset_us.abs() <= 150.0, "moved to {s:?}");
            }
        }
        let s = est.select().expect("the honest agreement");
        assert_eq!((s.rule, s.sources, s.networks), (Rule::Agreement, 3, 3));
        assert!((s.offset_us - 5.0).abs() <= 150.0, "{s:?}");
        assert_eq!(est.rejected().beyond_bound, 40);
    }

    #[test]
    fn two_liars_among_seven_honest_stay_inside_the_honest_interval() {
        // Seven honest peers within 150 µs of each other (300 µs round trips) and this node
        // among them; the two liars (a fifth of ten sources) claim what they like within the
        // bound, including the very edge of the honest intervals.
        let honest: Vec<f64> = vec![-150.0, -100.0, -20.0, 0.0, 40.0, 90.0, 150.0];
        for claim in [1_900_000.0, -1_999_000.0, 1_150.0, -1_150.0, 900.0] {
            let mut est = Estimator::default();
            for off in &honest {
                add_n(&mut est, looped(), 3, sample(*off, 300));
            }
            for _ in 0..2 {
                add_n(&mut est, looped(), 3, sample(claim, 1));
            }
            let s = est.select().expect("a target");
            assert_eq!(s.rule, Rule::Agreement, "claim {claim}: {s:?}");
            assert!(
                (-150.0..=150.0).contains(&s.offset_us),
                "claim {claim}: moved to {s:?}"
            );
        }
    }

    #[test]
    fn two_liars_within_the_bound_against_two_honest_peers_do_not_move_it() {
        // Liars are two of five sources (more than a third): the honest three still agree.
        let mut est = Estimator::default();
        add_n(&mut est, looped(), 3, sample(100.0, 200));
        add_n(&mut est, looped(), 3, sample(-60.0, 200));
        for _ in 0..2 {
            add_n(&mut est, looped(), 3, sample(1_900_000.0, 1));
        }
        let s = est.select().expect("a target");
        assert_eq!((s.rule, s.agreeing, s.offset_us), (Rule::Agreement, 3, 0.0));
    }

    #[test]
    fn liars_in_the_majority_move_it_no_further_than_the_bound() {
        // Five liars against this node and two honest peers are five of eight sources: they
        // win, but only within the bound; a claim beyond it is never kept.
        let mut est = Estimator::default();
        add_n(&mut est, looped(), 3, sample(0.0, 200));
        add_n(&mut est, looped(), 3, sample(0.0, 200));
        let liars: Vec<_> = (0..5).map(|_| looped()).collect();
        for liar in &liars {
            add_n(&mut est, liar.clone(), 3, sample(1_999_000.0, 1));
            est.add(liar.0, liar.1.clone(), sample(4_000_000.0, 1));
        }
        let s = est.select().expect("a target");
        assert_eq!((s.rule, s.agreeing), (Rule::Agreement, 5));
        assert!(s.offset_us <= MAX_CLOCK_OFFSET_US, "{s:?}");
    }

    #[test]
    fn liars_that_agree_among_themselves_do_not_outvote_disagreeing_honest_clocks() {
        // Five honest peers with unsynchronized clocks (no two agree) and three liars in three
        // networks that agree on +1.9 s: three of nine sources, not a majority, so no
        // agreement; the median stays among the honest clocks.
        let mut est = Estimator::default();
        for off in [-600_000.0, -300_000.0, 200_000.0, 800_000.0, 1_200_000.0] {
            add_n(&mut est, looped(), 3, sample(off, 200));
        }
        for _ in 0..3 {
            add_n(&mut est, looped(), 3, sample(1_900_000.0, 1));
        }
        let s = est.select().expect("a target");
        assert_eq!((s.rule, s.sources), (Rule::Acquisition, 9));
        assert_eq!(s.offset_us, 800_000.0);
    }

    #[test]
    fn without_agreement_of_three_networks_a_locked_node_keeps_its_offset() {
        let mut est = Estimator::default();
        let (b, c, d) = (looped(), looped(), looped());
        // Clocks 400 and 750 ms ahead: no agreement; acquisition takes the median and locks.
        add_n(&mut est, b.clone(), 3, sample(400_000.0, 200));
        add_n(&mut est, c.clone(), 3, sample(750_000.0, 200));
        let s = est.select().expect("acquisition");
        assert_eq!((s.rule, s.offset_us), (Rule::Acquisition, 400_000.0));
        assert!(est.is_locked());
        // A better sample of the same median source refines it (within its round trip).
        add_n(&mut est, b.clone(), 1, sample(400_080.0, 150));
        let s = est.select().expect("refinement");
        assert_eq!((s.rule, s.offset_us), (Rule::Refinement, 400_080.0));
        // The median source leaves and another arrives 300 ms away: the median jumps without
        // any agreement of three networks, so the node keeps its offset.
        est.remove(&b.0);
        add_n(&mut est, d.clone(), 3, sample(100_000.0, 200));
        assert_eq!(est.select(), None);
        // Down to two networks: kept as well.
        est.remove(&d.0);
        assert_eq!(est.select(), None);
        // Three sources from three networks that agree move it at once.
        let (e, f) = (looped(), looped());
        add_n(&mut est, e, 3, sample(750_100.0, 200));
        add_n(&mut est, f, 3, sample(749_900.0, 200));
        let s = est.select().expect("agreement");
        assert_eq!((s.rule, s.agreeing), (Rule::Agreement, 3));
        assert!((s.offset_us - 750_000.0).abs() <= 100.0, "{s:?}");
    }

    #[test]
    fn acquisition_waits_until_every_sampled_peer_counts() {
        let mut est = Estimator::default();
        let (b, c, d) = (looped(), looped(), looped());
        add_n(&mut est, b, 3, sample(400_000.0, 200));
        add_n(&mut est, c, 3, sample(750_000.0, 200));
        add_n(&mut est, d.clone(), 2, sample(0.0, 200));
        // Three networks, but d is still on its way: provisional, not locked.
        let s = est.select().expect("provisional");
        assert_eq!((s.rule, s.offset_us), (Rule::Provisional, 400_000.0));
        assert!(!est.is_locked());
        add_n(&mut est, d, 1, sample(0.0, 200));
        // Median of {0, 0, 400, 750} ms.
        let s = est.select().expect("acquisition");
        assert_eq!((s.rule, s.offset_us), (Rule::Acquisition, 200_000.0));
    }

    /// Runs `rounds` of every node sampling every other over paths with asymmetric delays;
    /// returns each node's network time minus true time (µs) and its last selection.
    fn simulate(skews: &[i64], rounds: i64) -> Vec<(f64, Option<Selection>)> {
        let ids: Vec<(PeerId, SourceNet)> = skews.iter().map(|_| looped()).collect();
        let mut nodes: Vec<(Estimator, f64, Option<Selection>)> = skews
            .iter()
            .map(|_| (Estimator::default(), 0.0, None))
            .collect();
        for round in 0..rounds {
            for (i, node) in nodes.iter_mut().enumerate() {
                for (j, peer) in ids.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    // 80 to 200 µs out, 100 µs back, varying by pair and round.
                    let out = 80 + (13 * (i + 2 * j) as i64 + 29 * round) % 120;
                    let at = round * 2_000_000 + (i * 10 + j) as i64 * 1000;
                    let e = exchange(skews[i], skews[j], at, out, 100);
                    node.0.add(peer.0, peer.1.clone(), e.sample());
                    if let Some(s) = node.0.select() {
                        node.1 = s.offset_us;
                        node.2 = Some(s);
                    }
                }
            }
        }
        nodes
            .iter()
            .zip(skews)
            .map(|((_, offset, s), skew)| (*skew as f64 + offset, *s))
            .collect()
    }

    #[test]
    fn three_honest_skewed_nodes_converge_on_the_median_clock() {
        // Clocks -400, 0 and +350 ms: every node ends within the path asymmetry (< 100 µs) of
        // the middle clock, locked.
        let result = simulate(&[-400_000, 0, 350_000], 6);
        for (network, s) in &result {
            assert!(network.abs() < 100.0, "{result:?}");
            let rule = s.expect("a selection").rule;
            assert!(
                matches!(rule, Rule::Acquisition | Rule::Refinement),
                "{result:?}"
            );
        }
    }

    #[test]
    fn two_honest_skewed_nodes_meet_halfway() {
        // Two networks only: provisional, both on the mean of the two clocks.
        let result = simulate(&[-400_000, 300_000], 4);
        for (network, s) in &result {
            assert!((network + 50_000.0).abs() < 100.0, "{result:?}");
            assert_eq!(s.expect("a selection").rule, Rule::Provisional);
        }
    }

    #[test]
    fn honest_nodes_with_synchronized_clocks_agree() {
        // Clocks within 300 µs of each other: agreement from the first selection with three
        // networks on.
        let result = simulate(&[-120, 0, 90, 300, -300], 5);
        let times: Vec<f64> = result.iter().map(|r| r.0).collect();
        let spread = times.iter().fold(f64::MIN, |a, b| a.max(*b))
            - times.iter().fold(f64::MAX, |a, b| a.min(*b));
        assert!(spread < 200.0, "{result:?}");
        for (_, s) in &result {
            assert_eq!(s.expect("a selection").rule, Rule::Agreement);
        }
    }

    #[test]
    fn at_most_eight_peers_with_the_shortest_measured_round_trips_count() {
        let mut est = Estimator::default();
        for i in 0..14 {
            // Six far peers that claim tiny round trips (1 µs) but took 10 ms as measured:
            // left out, their claims do not rank them (ranked by them they would be six of the
            // nine sources).
            let s = if i < 6 {
                Sample {
                    offset_us: 1_500_000.0,
                    rtt_us: 1,
                    elapsed_us: 10_000,
                }
            } else {
                sample(100.0, 200 + i)
            };
            add_n(&mut est, looped(), 3, s);
        }
        let s = est.select().expect("a target");
        assert_eq!((s.sources, s.rule), (9, Rule::Agreement));
        assert_eq!(s.offset_us, 100.0);
    }

    #[test]
    fn large_changes_step_and_small_ones_slew_at_5_ms_per_second() {
        let clock = Clock::new(0);
        assert!(matches!(clock.adjust(400_000.0), Adjust::Step { .. }));
        assert!((clock.offset_us_at(Instant::now()) - 400_000.0).abs() < 1e-6);
        assert!(matches!(clock.adjust(410_000.0), Adjust::Slew { .. }));
        let now = Instant::now();
        let in_1s = clock.offset_us_at(now + Duration::from_secs(1));
        assert!((in_1s - 405_000.0).abs() < 10.0, "{in_1s}");
        let in_3s = clock.offset_us_at(now + Duration::from_secs(3));
        assert_eq!(in_3s, 410_000.0);
    }

    #[test]
    fn skew_moves_network_time_but_not_system_time() {
        let clock = Clock::new(-400);
        let now = Instant::now();
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_micros() as i64;
        assert!((clock.system_us(now) - real).abs() < 5_000);
        assert!((clock.network_us(now) - (real - 400_000)).abs() < 5_000);
        assert_eq!(clock.local_us(now), clock.network_us(now));
    }

    #[test]
    fn reports_come_on_changes_and_at_powers_of_two_of_refusals() {
        let mut est = Estimator::default();
        assert!(est.take_report().is_some(), "the first report");
        assert_eq!(est.take_report(), None);
        let liar = looped();
        let far = sample(5_000_000.0, 200);
        let mut reported_at = Vec::new();
        for n in 1..=20u64 {
            est.add(liar.0, liar.1.clone(), far);
            if let Some(r) = est.take_report() {
                assert_eq!(r.rejected.beyond_bound, n);
                reported_at.push(n);
            }
        }
        assert_eq!(reported_at, vec![1, 2, 4, 8, 16]);
        let honest = looped();
        add_n(&mut est, honest, 3, sample(0.0, 200));
        let r = est.take_report().expect("a new source");
        assert_eq!((r.sources, r.networks, r.locked), (2, 2, false));
        assert_eq!(est.take_report(), None);
    }

    #[test]
    fn false_echoes_are_counted() {
        let clock = Clock::new(0);
        clock.note_false_echo();
        clock.note_false_echo();
        assert_eq!(clock.false_echoes(), 2);
    }
}
