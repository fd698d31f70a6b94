//! One `/chorus/time/1` exchange and the sample (offset and round trips) it gives.

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
    /// When the answer arrived, this node's local clock (`t3`), µs: a sample's offset grows
    /// stale as the two clocks drift apart ([`Sample::error_us`]).
    pub at_us: i64,
}

impl Sample {
    /// How far the offset may be off at local time `now_us`, once moved by the measured drift:
    /// half the round trip (the answer may have spent it all on either leg) plus what is left of
    /// the drift, `residual_ppm` per second of age (RFC 5905's clock filter grows a sample's
    /// dispersion the same way): at least [`super::RESIDUAL_DRIFT_PPM`], more when the drift
    /// could not be measured that well.
    pub fn error_us(&self, now_us: i64, residual_ppm: f64) -> f64 {
        let age_s = now_us.saturating_sub(self.at_us).max(0) as f64 / 1e6;
        self.rtt_us as f64 / 2.0 + residual_ppm * age_s
    }
}

impl Exchange {
    /// PROTOCOL.md 7's offset and round trip, as they come (checked by [`Estimator::add`](super::Estimator::add)).
    /// Computed without overflow whatever the peer's stamps are.
    pub fn sample(&self) -> Sample {
        let [t0, t1, t2, t3] = [self.t0, self.t1, self.t2, self.t3].map(i128::from);
        let saturate =
            |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
        Sample {
            offset_us: ((t1 - t0) + (t2 - t3)) as f64 / 2.0,
            rtt_us: saturate((t3 - t0) - (t2 - t1)),
            elapsed_us: saturate(t3 - t0),
            at_us: self.t3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Exchange, Sample};

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
                elapsed_us: 230,
                at_us: 1_000_230,
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
}
