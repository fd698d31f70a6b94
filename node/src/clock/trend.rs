//! A peer's offset as a line over time, fitted to all its samples with a fading memory: the
//! estimate a node follows once a peer has given enough samples ([`Trend::MIN_SAMPLES`]).
//!
//! Why: PROTOCOL.md 7's estimate (the best of the last 8 samples; here the middle of what they
//! allow together, `least_error`) uses a few seconds of samples. On a jittery path its error
//! is the jitter's, and it changes with every sample: each home of the testbed (links of 40 ms
//! +- 10 ms between homes) wandered by about ±2.5 ms, where the goal is 1 ms between any two
//! nodes. Each sample's offset is the truth plus half the difference of its two legs' delays,
//! so averaging many samples reduces that error as `1 / sqrt(n)`. But two clocks drift apart
//! (up to 200 ppm), so samples of the last minute lie on a line, not a point: the fit is a
//! weighted least-squares line, each sample weighted by its round trip (`1 / (rtt / 2 +
//! 50 µs)²`: a sample that spent long on the way may be off by half of it), older samples
//! fading with [`Trend::TAU_S`]. Its slope has a prior (zero, standard deviation
//! [`Trend::PRIOR_PPM`]), so that a few samples close in time cannot claim a wild drift, and it
//! never exceeds [`super::DRIFT_PPM`].
//!
//! Simulated (the testbed's home-to-home path, a sample every 250 ms, clocks 180 ppm apart):
//! the line's value now is off by 0.4 ms (standard deviation) 30 to 90 s in, where the middle
//! of the last 8 samples' intervals is off by 1.5 ms.
//!
//! A sample whose round trip is more than twice the shortest of the peer's last 8 plus 1 ms
//! (a loaded machine, a retransmission) is left out. The memory is a handful of sums: a peer
//! costs the same however long it stays.

/// The line's value at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// The peer's offset, µs.
    pub offset_us: f64,
    /// Its drift against this node's clock, ppm.
    pub drift_ppm: f64,
    /// The offset's standard error, µs: the noise of the samples about the line, over their
    /// number, and the slope's error carried from the samples' mean time to this moment.
    pub se_us: f64,
}

/// See the module's documentation.
#[derive(Debug, Clone, Default)]
pub struct Trend {
    /// The first sample's arrival (local µs) and offset (µs): times and offsets are kept
    /// relative to them, so that the sums stay small.
    origin: Option<(i64, f64)>,
    /// The last sample's arrival, s since `origin`.
    last_s: f64,
    /// Faded sums: of 1 (the samples' count), of the weights, and of the weighted `t`, `t²`,
    /// `o`, `t·o` and `o²` (`t` in s, `o` in µs, both relative to `origin`).
    n: f64,
    w: f64,
    t: f64,
    tt: f64,
    o: f64,
    to: f64,
    oo: f64,
    /// Samples taken in all.
    taken: u64,
}

impl Trend {
    /// Samples the line needs before it is used.
    pub const MIN_SAMPLES: u64 = 16;
    /// The memory's time constant, s: a sample's weight halves every 125 s. A line over a few
    /// minutes holds for real oscillators, whose rates wander by a fraction of a ppm per
    /// minute (1 ppm per minute bends a 3-minute line by about 70 µs).
    pub const TAU_S: f64 = 180.0;
    /// The prior's standard deviation of the drift, ppm (µs per s): two oscillators within
    /// about ±100 ppm.
    pub const PRIOR_PPM: f64 = 100.0;

    /// Adds a sample: `offset_us` measured with round trip `rtt_us`, arriving at local time
    /// `at_us`.
    pub fn add(&mut self, at_us: i64, offset_us: f64, rtt_us: i64) {
        let (t0, o0) = *self.origin.get_or_insert((at_us, offset_us));
        let t = (at_us - t0) as f64 / 1e6;
        let fade = (-(t - self.last_s).max(0.0) / Self::TAU_S).exp();
        self.last_s = self.last_s.max(t);
        for sum in [
            &mut self.n,
            &mut self.w,
            &mut self.t,
            &mut self.tt,
            &mut self.o,
            &mut self.to,
            &mut self.oo,
        ] {
            *sum *= fade;
        }
        // Weights relative to a 1 ms half round trip, so that the sums keep a sane scale.
        let w = (1000.0 / (rtt_us.max(0) as f64 / 2.0 + 50.0)).powi(2);
        let o = offset_us - o0;
        self.n += 1.0;
        self.taken += 1;
        self.w += w;
        self.t += w * t;
        self.tt += w * t * t;
        self.o += w * o;
        self.to += w * t * o;
        self.oo += w * o * o;
    }

    /// Samples counted, faded by their age.
    pub fn samples(&self) -> f64 {
        self.n
    }

    /// Samples taken in all.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// The line at local time `at_us`; `None` before [`Trend::MIN_SAMPLES`].
    pub fn at(&self, at_us: i64) -> Option<Fit> {
        let (t0, o0) = self.origin?;
        if self.taken < Self::MIN_SAMPLES || self.w <= 0.0 {
            return None;
        }
        let mean_t = self.t / self.w;
        let mean_o = self.o / self.w;
        let var_t = (self.tt - self.w * mean_t * mean_t).max(0.0);
        let cov = self.to - self.w * mean_t * mean_o;
        let var_o = (self.oo - self.w * mean_o * mean_o).max(0.0);
        // The residuals of the plain fit give the noise of a sample of weight 1, which sets
        // how much the prior counts against the samples' own slope.
        let residual = if var_t > 0.0 {
            (var_o - cov * cov / var_t).max(0.0)
        } else {
            var_o
        };
        let noise = residual / (self.n - 2.0).max(1.0);
        let slope_precision = var_t + noise / Self::PRIOR_PPM.powi(2);
        let slope = (cov / slope_precision).clamp(-super::DRIFT_PPM, super::DRIFT_PPM);
        let dt = (at_us - t0) as f64 / 1e6 - mean_t;
        Some(Fit {
            offset_us: o0 + mean_o + slope * dt,
            drift_ppm: slope,
            // The mean's error and the slope's, carried over `dt`.
            se_us: (noise / self.w + dt * dt * noise / slope_precision).sqrt(),
        })
    }

    /// Whether a sample with round trip `rtt_us` belongs in the line, given the shortest round
    /// trip of the peer's last samples (this one included).
    pub fn takes(rtt_us: i64, shortest_us: i64) -> bool {
        rtt_us <= 2 * shortest_us + 1000
    }
}

#[cfg(test)]
mod tests {
    use super::Trend;
    use crate::clock::tests::Rng;

    /// A sample at true time `t_us` of a peer `drift_ppm` fast and `skew_us` ahead, over legs
    /// `up` and `down`: (arrival on our clock, offset, round trip).
    fn sample(t_us: f64, skew_us: f64, drift_ppm: f64, up: f64, down: f64) -> (i64, f64, i64) {
        let peer = |t: f64| t + skew_us + drift_ppm * t / 1e6;
        let (t0, t1) = (t_us, peer(t_us + up));
        let (t2, t3) = (t1 + 30.0, t_us + up + 30.0 + down);
        (
            (t3) as i64,
            ((t1 - t0) + (t2 - t3)) / 2.0,
            (t3 - t0 - 30.0) as i64,
        )
    }

    #[test]
    fn the_line_follows_a_drifting_peer_through_jitter_better_than_any_one_sample() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (skew, drift) = (400_000.0, 180.0);
        let mut trend = Trend::default();
        let (mut line_sq, mut sample_sq, mut se_sum, mut n) = (0.0, 0.0, 0.0, 0.0);
        for k in 0..360 {
            let t = 1e9 + k as f64 * 250_000.0;
            let (at, offset, rtt) = sample(t, skew, drift, rng.leg(), rng.leg());
            trend.add(at, offset, rtt);
            let truth = skew + drift * t / 1e6;
            if k >= 120 {
                let fit = trend.at(at).expect("enough samples");
                let (est, slope) = (fit.offset_us, fit.drift_ppm);
                se_sum += fit.se_us;
                line_sq += (est - truth).powi(2);
                sample_sq += (offset - truth).powi(2);
                n += 1.0;
                assert!((slope - drift).abs() < 60.0, "slope {slope} at sample {k}");
            }
        }
        let (line, one) = ((line_sq / n).sqrt(), (sample_sq / n).sqrt());
        // One sample is off by about 2.9 ms (rms); the line by well under 1 ms.
        assert!(one > 2000.0, "one sample's error {one} µs");
        assert!(line < 700.0, "the line's error {line} µs");
        // The standard error the line claims is about what it makes.
        let se = se_sum / n;
        assert!(
            line / 2.0 < se && se < 2.0 * line,
            "claimed {se} µs, made {line} µs"
        );
    }

    #[test]
    fn a_few_samples_close_in_time_claim_no_wild_drift() {
        let mut trend = Trend::default();
        // Jitter of ±3 ms over 4 s would be a slope of 1500 ppm taken at its word.
        for k in 0..16 {
            let noise = if k < 8 { -3000.0 } else { 3000.0 };
            trend.add(1_000_000 + k * 250_000, 50_000.0 + noise, 80_000);
        }
        let slope = trend.at(5_000_000).expect("16 samples").drift_ppm;
        // The plain fit says about 2300 ppm; the prior brings it to about 170, under the clamp
        // of 200 (so the clamp is not what holds it).
        assert!(slope.abs() < 190.0, "{slope}");
    }

    #[test]
    fn it_waits_for_enough_samples_and_leaves_out_long_round_trips() {
        let mut trend = Trend::default();
        for k in 0..15 {
            trend.add(k * 250_000, 1000.0, 200);
        }
        assert_eq!(trend.at(4_000_000), None);
        trend.add(15 * 250_000, 1000.0, 200);
        let est = trend.at(4_000_000).expect("16 samples").offset_us;
        assert!((est - 1000.0).abs() < 1.0, "{est}");
        assert!(Trend::takes(1400, 200));
        assert!(!Trend::takes(1401, 200));
    }

    #[test]
    fn old_samples_fade() {
        let mut trend = Trend::default();
        for k in 0..20 {
            trend.add(k * 250_000, 0.0, 200);
        }
        // Six minutes later: the old samples weigh e^-2 each.
        let later = 365_000_000;
        trend.add(later, 0.0, 200);
        assert!(trend.samples() < 1.0 + 20.0 * (-2.0f64).exp() + 0.01);
    }
}
