//! What the estimator does with a sample it checks: keeps it, or drops it for a reason and
//! counts it.

use std::fmt;

/// Why [`Estimator::add`](super::Estimator::add) dropped a sample (PROTOCOL.md 12.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The round trip was negative, or the peer's stamps ran backwards (`t2 < t1`).
    NegativeRtt,
    /// The round trip was longer than [`MAX_RTT_US`](super::MAX_RTT_US).
    LongRtt,
    /// The offset was more than [`MAX_CLOCK_OFFSET_MS`](super::MAX_CLOCK_OFFSET_MS) from the local clock.
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
    /// Round trip over [`MAX_RTT_US`](super::MAX_RTT_US).
    pub long_rtt: u64,
    /// Offset beyond [`MAX_CLOCK_OFFSET_MS`](super::MAX_CLOCK_OFFSET_MS).
    pub beyond_bound: u64,
}

impl Rejected {
    /// All dropped samples.
    pub fn total(&self) -> u64 {
        self.negative_rtt + self.long_rtt + self.beyond_bound
    }
}

/// What [`Estimator::add`](super::Estimator::add) did with a sample.
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
