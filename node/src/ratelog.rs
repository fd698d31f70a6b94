//! Log lines under a budget: a peer that sends a thousand invalid messages a second must not
//! write a thousand warnings a second (PROTOCOL.md 12.5). Every event is still counted in the
//! metrics; only the lines are limited, and the next line says how many were left out.

use std::time::{Duration, Instant};

/// At most `lines` log lines per `window`.
#[derive(Debug)]
pub struct LogBudget {
    lines: u32,
    window: Duration,
    start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// A budget of `lines` per `window`.
    pub const fn new(lines: u32, window: Duration) -> LogBudget {
        LogBudget {
            lines,
            window,
            start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(lines left out since the last line)` when a line may be written now.
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        let start = *self.start.get_or_insert(now);
        if now.saturating_duration_since(start) >= self.window {
            self.start = Some(now);
            self.used = 0;
        }
        if self.used < self.lines {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// " (N similar lines left out)" when N > 0, for the end of a line.
pub fn left_out(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines left out)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_a_few_lines_and_counts_the_rest() {
        let mut b = LogBudget::new(3, Duration::from_secs(10));
        let t = Instant::now();
        let written: Vec<Option<u64>> = (0..1000).map(|_| b.take(t)).collect();
        assert_eq!(written.iter().flatten().count(), 3);
        assert_eq!(b.take(t + Duration::from_secs(10)), Some(997));
        assert_eq!(b.take(t + Duration::from_secs(11)), Some(0));
    }
}
