//! Network time (PROTOCOL.md 7): a monotonic clock anchored to the system clock at start-up,
//! plus an offset estimated from `/chorus/time/1` samples.
//!
//! Three clocks, all read from one monotonic `Instant`:
//! - the *local* clock: the system clock at start-up (shifted by the hidden `--clock-skew-ms`
//!   testing knob) plus the monotonic time since. `/chorus/time/1` stamps use it, so a sample
//!   measures the difference between two local clocks and never feeds back on itself;
//! - *network* time: local plus the offset. The [`Estimator`] takes the median of `{0}` and the
//!   peers' best offsets; the clock steps to a new target more than 200 ms away and slews toward
//!   a nearer one at 5 ms per second, so audio never jumps for small corrections;
//! - the true *system* time, only for the wav sink's CSV (what a test compares across nodes).
//!
//! Stamps and offsets are in microseconds: milliseconds would limit agreement to about 1 ms, and
//! playback aims at 0.1 ms.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chorus_media::player::TimeBase;
use libp2p::PeerId;

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

/// The node's clocks.
#[derive(Debug)]
pub struct Clock {
    anchor: Instant,
    /// True system time at `anchor`, µs since the Unix epoch.
    system_us: i64,
    /// The testing skew, µs.
    skew_us: i64,
    offset: Mutex<Slew>,
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
        }
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

/// One `/chorus/time/1` exchange, all four stamps on local clocks (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Client send.
    pub t0: i64,
    /// Server receive.
    pub t1: i64,
    /// Server send.
    pub t2: i64,
    /// Client receive.
    pub t3: i64,
}

/// A sample: the peer's clock minus ours, and the round trip, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The peer's local clock minus ours.
    pub offset_us: f64,
    /// Round trip without the peer's own processing time.
    pub rtt_us: i64,
}

impl Exchange {
    /// PROTOCOL.md 7's offset and round trip.
    pub fn sample(&self) -> Sample {
        Sample {
            offset_us: ((self.t1 - self.t0) + (self.t2 - self.t3)) as f64 / 2.0,
            rtt_us: ((self.t3 - self.t0) - (self.t2 - self.t1)).max(0),
        }
    }
}

/// The network offset estimator of PROTOCOL.md 7.
#[derive(Debug, Default)]
pub struct Estimator {
    peers: HashMap<PeerId, VecDeque<Sample>>,
}

impl Estimator {
    /// Records a sample from `peer` (the last 8 are kept).
    pub fn add(&mut self, peer: PeerId, sample: Sample) {
        let samples = self.peers.entry(peer).or_default();
        samples.push_back(sample);
        while samples.len() > SAMPLES_PER_PEER {
            samples.pop_front();
        }
    }

    /// Forgets a peer (disconnected).
    pub fn remove(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// A peer's sample with the smallest round trip, and how many samples it has.
    pub fn best(&self, peer: &PeerId) -> Option<(Sample, usize)> {
        let s = self.peers.get(peer)?;
        let best = s.iter().min_by_key(|s| s.rtt_us)?;
        Some((*best, s.len()))
    }

    /// Peers with a sample.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    /// The target offset, µs: the median of `{0}` and the best offsets of up to 8 peers with at
    /// least 3 samples (the 8 with the smallest round trips; ties by peer id). `None` when no
    /// peer qualifies yet.
    pub fn target_us(&self) -> Option<f64> {
        let mut best: Vec<(i64, PeerId, f64)> = self
            .peers
            .iter()
            .filter(|(_, s)| s.len() >= MIN_SAMPLES)
            .filter_map(|(p, s)| {
                let b = s.iter().min_by_key(|s| s.rtt_us)?;
                Some((b.rtt_us, *p, b.offset_us))
            })
            .collect();
        if best.is_empty() {
            return None;
        }
        best.sort_by_key(|b| (b.0, b.1));
        let mut offsets: Vec<f64> = best.iter().take(MAX_PEERS).map(|b| b.2).collect();
        offsets.push(0.0);
        offsets.sort_by(f64::total_cmp);
        let n = offsets.len();
        Some(if n % 2 == 1 {
            offsets[n / 2]
        } else {
            (offsets[n / 2 - 1] + offsets[n / 2]) / 2.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(offset_us: f64, rtt_us: i64) -> Sample {
        Sample { offset_us, rtt_us }
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
        assert_eq!(e.sample(), sample(400_000.0, 200));
    }

    #[test]
    fn a_peer_counts_from_its_third_sample_with_its_best_round_trip() {
        let mut est = Estimator::default();
        let p = PeerId::random();
        est.add(p, sample(1000.0, 500));
        est.add(p, sample(900.0, 100));
        assert_eq!(est.target_us(), None);
        est.add(p, sample(5000.0, 900));
        // Median of {0, 900}.
        assert_eq!(est.target_us(), Some(450.0));
        for _ in 0..8 {
            est.add(p, sample(2000.0, 300));
        }
        // The 100 µs sample fell out of the last 8.
        assert_eq!(
            est.best(&p).map(|(s, n)| (s.offset_us, n)),
            Some((2000.0, 8))
        );
    }

    #[test]
    fn median_of_self_and_peers_agrees_across_nodes() {
        // Three nodes with local clocks at -400, 0 and +350 ms: each ends on the median clock.
        let clocks = [-400_000.0, 0.0, 350_000.0];
        let ids: Vec<PeerId> = clocks.iter().map(|_| PeerId::random()).collect();
        let mut network = Vec::new();
        for (i, own) in clocks.iter().enumerate() {
            let mut est = Estimator::default();
            for (j, other) in clocks.iter().enumerate() {
                if i != j {
                    for _ in 0..3 {
                        est.add(ids[j], sample(other - own, 200));
                    }
                }
            }
            network.push(own + est.target_us().expect("two peers with 3 samples"));
        }
        assert_eq!(network, vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn at_most_eight_peers_with_the_best_round_trips_count() {
        let mut est = Estimator::default();
        for i in 0..12 {
            let p = PeerId::random();
            // Four far peers with huge offsets and long round trips: left out.
            let (offset, rtt) = if i < 4 {
                (1e9, 10_000)
            } else {
                (100.0, 200 + i)
            };
            for _ in 0..3 {
                est.add(p, sample(offset, rtt));
            }
        }
        assert_eq!(est.target_us(), Some(100.0));
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
}
