//! The node's clocks, all read from one monotonic `Instant`, and the offset that moves network
//! time toward the estimator's target: a step above [`STEP_US`], a slew at [`SLEW_US_PER_S`]
//! below [`STEP_US`] and above [`CAPTURE_US`], and within [`CAPTURE_US`] a phase- and
//! frequency-locked loop (NTP's clock discipline, RFC 5905 section 11.3, in its simplest form):
//! each target moves the offset by a fraction of its distance and the offset's rate by a smaller
//! one, so that the noise of single targets (a median that changes source, a round trip's
//! jitter) averages out over the loop's time constant while the local oscillator's rate error
//! (up to ±100 ppm) is followed without lag.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_media::player::TimeBase;

use super::{DRIFT_PPM, SLEW_US_PER_S, STEP_US};

/// Targets within this distance of the offset go through the loop; further ones are slewed to
/// (a new source set, a correction the loop would take minutes to make).
pub const CAPTURE_US: f64 = 20_000.0;
/// The loop's time constant right after a step or slew: short, so that the rate is learned in
/// seconds.
const TAU_MIN: Duration = Duration::from_secs(4);
/// The loop's time constant once it has run for a while: long, so that a target's noise
/// averages over many.
const TAU_MAX: Duration = Duration::from_secs(32);
/// A target goes through the loop only once what remains of a slew is below this, µs: the
/// loop's own small corrections are slewed too, and a slew to a far target runs to its end.
const LOOP_REMAINDER_US: f64 = 1_000.0;
/// Time between two targets counted at most (a node that heard nothing for a while must not
/// take a whole correction from one target).
const LOOP_DT_MAX: Duration = Duration::from_secs(4);

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

/// The offset: from `from_us` at `since` it moves toward `target_us` at the slew rate, and by
/// `rate` µs per second besides (the loop's estimate of the local oscillator's error).
#[derive(Debug, Clone, Copy)]
struct Slew {
    from_us: f64,
    target_us: f64,
    since: Instant,
    /// µs of offset per second.
    rate: f64,
    /// When the loop started (the last step or slew) and took its last target; `None` while the
    /// next small target is to be slewed to.
    looping: Option<(Instant, Instant)>,
}

impl Slew {
    fn new(offset_us: f64, at: Instant) -> Slew {
        Slew {
            from_us: offset_us,
            target_us: offset_us,
            since: at,
            rate: 0.0,
            looping: None,
        }
    }

    fn at(&self, at: Instant) -> f64 {
        let dt = at.saturating_duration_since(self.since).as_secs_f64();
        let max = SLEW_US_PER_S * dt;
        self.from_us + (self.target_us - self.from_us).clamp(-max, max) + self.rate * dt
    }

    /// What remains to be slewed at `at`, µs.
    fn remaining_us(&self, at: Instant) -> f64 {
        let dt = at.saturating_duration_since(self.since).as_secs_f64();
        ((self.target_us - self.from_us).abs() - SLEW_US_PER_S * dt).max(0.0)
    }

    /// Whether a slew is still under way at `at`.
    fn slewing(&self, at: Instant) -> bool {
        self.remaining_us(at) > 1.0
    }

    /// Slews from where the offset is at `now` to `target_us`; the loop starts again from it.
    fn slew_to(&mut self, target_us: f64, now: Instant) {
        self.from_us = self.at(now);
        self.target_us = target_us;
        self.since = now;
        self.looping = Some((now, now));
    }

    /// One target through the loop at `now`: the offset moves by `2 dt / tau` of the distance
    /// (critically damped; slewed, as every change below 200 ms) and its rate by `dt / tau²` of
    /// it per second, `dt` the time since the last target, `tau` growing from [`TAU_MIN`] to
    /// [`TAU_MAX`] as the loop runs.
    fn track(&mut self, target_us: f64, now: Instant, started: Instant, last: Instant) {
        let current = self.at(now);
        let error = target_us - current;
        let dt = now
            .saturating_duration_since(last)
            .min(LOOP_DT_MAX)
            .as_secs_f64();
        let running = now.saturating_duration_since(started).as_secs_f64();
        let tau = (TAU_MIN.as_secs_f64() + running / 4.0).min(TAU_MAX.as_secs_f64());
        let k = (dt / tau).min(0.5);
        self.rate = (self.rate + error * k / tau).clamp(-DRIFT_PPM, DRIFT_PPM);
        self.from_us = current;
        self.target_us = current + 2.0 * k * error;
        self.since = now;
        self.looping = Some((started, now));
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
    /// The target went through the loop: the offset moves by a fraction of the distance.
    Track {
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
            offset: Mutex::new(Slew::new(0.0, anchor)),
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
            Settle::Settled => !self
                .offset
                .lock()
                .expect("not poisoned")
                .slewing(Instant::now()),
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
    /// it off the network for up to 40 s. The loop starts again from it.
    pub fn step_to(&self, target_us: f64) -> Adjust {
        self.step_to_at(target_us, Instant::now())
    }

    fn step_to_at(&self, target_us: f64, now: Instant) -> Adjust {
        let mut slew = self.offset.lock().expect("not poisoned");
        let current = slew.at(now);
        *slew = Slew {
            rate: slew.rate,
            ..Slew::new(target_us, now)
        };
        Adjust::Step {
            from_us: current,
            to_us: target_us,
        }
    }

    /// Moves the offset toward `target_us` (PROTOCOL.md 7: step above 200 ms, else slew; within
    /// [`CAPTURE_US`] once a slew ended, through the loop).
    pub fn adjust(&self, target_us: f64) -> Adjust {
        self.adjust_at(target_us, Instant::now())
    }

    fn adjust_at(&self, target_us: f64, now: Instant) -> Adjust {
        let mut slew = self.offset.lock().expect("not poisoned");
        let current = slew.at(now);
        let distance = (target_us - current).abs();
        if distance > STEP_US {
            drop(slew);
            return self.step_to_at(target_us, now);
        }
        match slew.looping {
            Some((started, last))
                if distance <= CAPTURE_US && slew.remaining_us(now) <= LOOP_REMAINDER_US =>
            {
                slew.track(target_us, now, started, last);
                Adjust::Track { to_us: target_us }
            }
            _ => {
                slew.slew_to(target_us, now);
                Adjust::Slew { to_us: target_us }
            }
        }
    }

    /// The loop's estimate of how fast the offset must move, µs per second (ppm): minus the
    /// local oscillator's rate error against the network's.
    pub fn rate_ppm(&self) -> f64 {
        self.offset.lock().expect("not poisoned").rate
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

    /// Targets every 0.5 s for `secs` around a truth that moves at `rate` µs/s, with a noise of
    /// ±`noise` µs (uniform, from a fixed generator); returns the RMS error of the offset over
    /// the last half and the clock.
    fn follow(rate: f64, noise: f64, secs: u64) -> (f64, Clock) {
        let clock = Clock::new(0);
        let start = Instant::now();
        let truth = |t: f64| 5_000.0 + rate * t;
        let mut seed = 12345u64;
        let mut uniform = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        clock.step_to_at(truth(0.0), start);
        let (mut sum, mut n) = (0.0, 0);
        for i in 1..=secs * 2 {
            let t = i as f64 / 2.0;
            let now = start + Duration::from_millis(i * 500);
            clock.adjust_at(truth(t) + noise * uniform(), now);
            if t > secs as f64 / 2.0 {
                let err = clock.offset_us_at(now + Duration::from_millis(250)) - truth(t + 0.25);
                sum += err * err;
                n += 1;
            }
        }
        ((sum / n as f64).sqrt(), clock)
    }

    #[test]
    fn the_loop_follows_an_oscillators_rate_and_averages_the_targets_noise() {
        // A local clock 100 ppm fast: the offset must fall by 100 µs each second. Targets carry
        // ±2 ms of noise (an RMS of 1.15 ms), as a median between homes does.
        let (rms, clock) = follow(-100.0, 2_000.0, 180);
        assert!(rms < 400.0, "RMS error {rms:.0} µs");
        assert!(
            (clock.rate_ppm() + 100.0).abs() < 25.0,
            "rate {}",
            clock.rate_ppm()
        );
        // Without noise the loop locks onto the rate with no lag.
        let (rms, clock) = follow(80.0, 0.0, 180);
        assert!(rms < 20.0, "RMS error {rms:.1} µs");
        assert!(
            (clock.rate_ppm() - 80.0).abs() < 1.0,
            "rate {}",
            clock.rate_ppm()
        );
    }

    #[test]
    fn a_target_beyond_the_capture_range_is_slewed_to_and_the_loop_starts_after() {
        let clock = Clock::new(0);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        clock.step_to_at(0.0, t0);
        // Right after a step: slewed to (the loop starts from there).
        assert!(matches!(
            clock.adjust_at(1_000.0, at(0)),
            Adjust::Slew { .. }
        ));
        // Once the slew ended: tracked.
        assert!(matches!(
            clock.adjust_at(1_500.0, at(1_000)),
            Adjust::Track { .. }
        ));
        // 30 ms away: slewed again, at 5 ms/s.
        assert!(matches!(
            clock.adjust_at(31_000.0, at(1_500)),
            Adjust::Slew { .. }
        ));
        let moved = clock.offset_us_at(at(2_500)) - clock.offset_us_at(at(1_500));
        assert!((moved - 5_000.0).abs() < 100.0, "{moved}");
        assert!(
            clock.offset.lock().unwrap().slewing(at(2_500)),
            "still slewing"
        );
        assert!(
            !clock.offset.lock().unwrap().slewing(at(8_000)),
            "done in 6 s"
        );
    }

    #[test]
    fn the_loops_corrections_are_slewed_at_5_ms_per_second_at_most() {
        let clock = Clock::new(0);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        clock.step_to_at(0.0, t0);
        clock.adjust_at(0.0, at(0));
        // 4 s later, a target 15 ms away: the loop takes all of it (dt / tau = 1, capped at
        // one half, doubled), yet the offset does not jump.
        assert!(matches!(
            clock.adjust_at(15_000.0, at(4_000)),
            Adjust::Track { .. }
        ));
        let before = clock.offset_us_at(at(4_000));
        let after_1s = clock.offset_us_at(at(5_000));
        assert!(before.abs() < 1.0, "{before}");
        assert!(
            after_1s - before <= 5_000.0 + 200.0,
            "{}",
            after_1s - before
        );
        assert!(after_1s - before >= 4_000.0, "{}", after_1s - before);
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
