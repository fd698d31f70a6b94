//! The node's clocks, all read from one monotonic `Instant`, and the offset that moves network
//! time toward the estimator's target: a step above [`STEP_US`], a slew at [`SLEW_US_PER_S`]
//! below.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_media::player::TimeBase;

use super::{SLEW_US_PER_S, STEP_US};

/// How long after its first peer a node that has not locked plays by its provisional time all
/// the same (a network of two nodes never locks). Locking takes three samples of each of two
/// peers, 4 to 6 s.
pub const SETTLE_MAX: Duration = Duration::from_secs(10);

/// The node's clocks.
#[derive(Debug)]
pub struct Clock {
    anchor: Instant,
    /// True system time at `anchor`, µs since the Unix epoch.
    system_us: i64,
    /// The testing skew, µs.
    skew_us: i64,
    /// The testing rate error, parts per million: the local clock gains this many µs per second
    /// (an oscillator's error; real ones are within about ±100 ppm).
    rate_ppm: i64,
    offset: Mutex<Slew>,
    /// Time answers refused because they echoed a `t0` this node had not sent.
    false_echoes: AtomicU64,
    /// Whether network time can be played by ([`Clock::settled`]).
    settle: Mutex<Settle>,
}

/// Where the clock stands for playing ([`Clock::settled`]).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Settle {
    /// No peer asked yet: the node's own clock is all there is (a lone bootstrap node).
    Alone,
    /// Peers asked since then, no lock yet.
    Waiting(Instant),
    /// Locked once (or waited [`SETTLE_MAX`]): for good.
    Settled,
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
        Clock::with_rate(skew_ms, 0)
    }

    /// Anchors to the system clock now, shifted by `skew_ms` and running `rate_ppm` parts per
    /// million fast (negative: slow): testing knobs that make one machine's clocks look like
    /// another's.
    pub fn with_rate(skew_ms: i64, rate_ppm: i64) -> Clock {
        let system_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let anchor = Instant::now();
        Clock {
            anchor,
            system_us,
            skew_us: skew_ms.saturating_mul(1000),
            rate_ppm,
            offset: Mutex::new(Slew {
                from_us: 0.0,
                target_us: 0.0,
                since: anchor,
            }),
            false_echoes: AtomicU64::new(0),
            settle: Mutex::new(Settle::Alone),
        }
    }

    /// A peer is asked for its time: until the estimate locks (or [`SETTLE_MAX`] has passed
    /// since the first peer), the clock is not [`Clock::settled`].
    pub fn peer_asked(&self) {
        let mut settle = self.settle.lock().expect("not poisoned");
        if *settle == Settle::Alone {
            *settle = Settle::Waiting(Instant::now());
        }
    }

    /// The estimate locked: the clock is settled for good.
    pub fn locked(&self) {
        *self.settle.lock().expect("not poisoned") = Settle::Settled;
    }

    /// Whether network time is good enough to play by: with no peer asked yet (a lone node
    /// plays by its own clock); once the estimate locked and the offset has slewed to it (a
    /// first lock within 5 ms of the provisional offset slews, for up to a second); or
    /// [`SETTLE_MAX`] after the first peer was asked. The player asks only until it first
    /// plays: later slews never silence it.
    pub fn is_settled(&self) -> bool {
        let mut settle = self.settle.lock().expect("not poisoned");
        match *settle {
            Settle::Alone => true,
            Settle::Settled => {
                let slew = self.offset.lock().expect("not poisoned");
                (slew.at(Instant::now()) - slew.target_us).abs() < 1.0
            }
            Settle::Waiting(since) if since.elapsed() >= SETTLE_MAX => {
                *settle = Settle::Settled;
                true
            }
            Settle::Waiting(_) => false,
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
        let elapsed = self.since_anchor_us(at);
        let gained =
            i64::try_from(i128::from(elapsed) * i128::from(self.rate_ppm) / 1_000_000).unwrap_or(0);
        self.system_us + self.skew_us + elapsed + gained
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

    /// Steps the offset to `target_us` whatever the distance: the node's first locked estimate,
    /// after which slewing from a provisional guess (made from fewer networks) would only keep
    /// it off the network for up to 40 s.
    pub fn step_to(&self, target_us: f64) -> Adjust {
        let now = Instant::now();
        let mut slew = self.offset.lock().expect("not poisoned");
        let current = slew.at(now);
        *slew = Slew {
            from_us: target_us,
            target_us,
            since: now,
        };
        Adjust::Step {
            from_us: current,
            to_us: target_us,
        }
    }

    /// Moves the offset toward `target_us` (PROTOCOL.md 7: step above 200 ms, else slew).
    pub fn adjust(&self, target_us: f64) -> Adjust {
        let now = Instant::now();
        let mut slew = self.offset.lock().expect("not poisoned");
        let current = slew.at(now);
        if (target_us - current).abs() > STEP_US {
            drop(slew);
            self.step_to(target_us)
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

    fn settled(&self) -> bool {
        self.is_settled()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use chorus_media::player::TimeBase;

    use super::{Adjust, Clock};

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
    fn step_to_steps_even_a_small_change() {
        let clock = Clock::new(0);
        assert!(matches!(clock.adjust(-200_000.0), Adjust::Slew { .. }));
        assert!(matches!(clock.step_to(-10_000.0), Adjust::Step { .. }));
        let at = Instant::now() + Duration::from_secs(5);
        assert_eq!(clock.offset_us_at(at), -10_000.0);
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
    fn a_rate_error_makes_the_local_clock_gain_or_lose_time() {
        let fast = Clock::with_rate(0, 100);
        let slow = Clock::with_rate(0, -80);
        let start = Instant::now();
        let later = start + Duration::from_secs(100);
        let gained = |c: &Clock| (c.local_us(later) - c.local_us(start)) - 100_000_000;
        // 100 ppm over 100 s is 10 ms; -80 ppm is -8 ms (give or take the rounding of one µs).
        assert!((gained(&fast) - 10_000).abs() <= 1, "{}", gained(&fast));
        assert!((gained(&slow) + 8_000).abs() <= 1, "{}", gained(&slow));
        // System time is the machine's, whatever the knob says.
        let system = |c: &Clock| c.system_us(later) - c.system_us(start);
        assert_eq!(system(&fast), 100_000_000);
        assert_eq!(system(&slow), 100_000_000);
    }

    #[test]
    fn false_echoes_are_counted() {
        let clock = Clock::new(0);
        clock.note_false_echo();
        clock.note_false_echo();
        assert_eq!(clock.false_echoes(), 2);
    }
}
