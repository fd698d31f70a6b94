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
//!   the first locked target (below) is stepped to when more than 5 ms away: the provisional
//!   offset before it is a guess from fewer than three networks;
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
//! `[offset - w, offset + w]`: `w` is half the width of what its last 8 samples allow together
//! (about half the shortest round trip), at least [`MIN_HALF_WIDTH_US`], so that honest peers
//! on one machine or one LAN, whose round trips are a few hundred microseconds, still overlap
//! despite the asymmetry of their paths; `offset` is the value now of the line through all the
//! peer's samples ([`Trend`], from its 16th sample), held within that bound. A liar's samples
//! move its own line and nothing else. [`Estimator::select`] then takes, in order:
//! 1. [`Rule::Agreement`] (the intersection of NTP's selection, after Marzullo): the largest set
//!    of sources whose intervals share a point, if it holds a strict majority of the sources
//!    and spans at least [`MIN_NETWORKS`] networks. The target is the median of their offsets,
//!    clamped into their common interval. The node *locks*.
//! 2. Before the node has locked, the median of all the sources (PROTOCOL.md 7's rule):
//!    [`Rule::Acquisition`], which locks, once they span three networks and every peer that has
//!    sent a sample has its three; [`Rule::Provisional`], which does not lock, before.
//! 3. Once locked, without agreement, [`Rule::Refinement`]: the median again, but only with
//!    three networks and only if its interval (the median source's) overlaps that of the last
//!    accepted offset, which keeps the half-width it was chosen with, at least 1 ms (the new
//!    median still agrees with the old one). Otherwise `None`: the node keeps its last
//!    accepted offset. An offset locked on a median source whose first samples had long round
//!    trips is thus corrected when that source's round trips shorten.
//!
//! Each rule's median is refined by NTP's cluster and combine steps (`selection::combine`):
//! the sources within three standard errors of it are averaged, weighted by `1 / se²`, and the
//! result is held between the median's neighbours, so that estimates of one clock share out
//! their noise while liars gain no more than with the median.
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
//!
//! # Layout
//! - `network_time`: the [`Clock`]: local, network and system time, and the offset that steps
//!   or slews.
//! - `exchange`: one `/chorus/time/1` [`Exchange`] and the [`Sample`] it gives.
//! - `source_net`: the [`SourceNet`] a peer's samples count in.
//! - `refusal`: why a sample is dropped ([`Refusal`], [`Rejected`], [`Verdict`]).
//! - `trend`: the [`Trend`], a peer's offset as a line through all its samples.
//! - `estimator`: the [`Estimator`], which keeps samples per peer and chooses the sources.
//! - `selection`: the rules that turn sources into a target ([`Rule`], [`Selection`]).

mod estimator;
mod exchange;
mod network_time;
mod refusal;
mod selection;
mod source_net;
#[cfg(test)]
mod tests;
mod trend;

pub use estimator::{Estimator, Report};
pub use exchange::{Exchange, Sample};
pub use network_time::{Adjust, Clock};
pub use refusal::{Refusal, Rejected, Verdict};
pub use selection::{Rule, Selection};
pub use source_net::SourceNet;
pub use trend::{Fit, Trend};

/// How fast two honest clocks may drift apart, µs per second (ppm): two oscillators each
/// within ±100 ppm. A peer's measured drift is held within it.
pub const DRIFT_PPM: f64 = 200.0;
/// What remains of the drift once it is measured and corrected, ppm: a sample's error bound
/// grows by this much per second of its age (as RFC 5905's dispersion does). Eight samples over
/// 14 s with 50 µs of noise measure a slope to about 4 ppm.
pub const RESIDUAL_DRIFT_PPM: f64 = 5.0;
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
