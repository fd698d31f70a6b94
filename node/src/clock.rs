//! Network time (PROTOCOL.md 7): a monotonic clock anchored to the system clock at start-up,
//! plus an offset. The offset estimator from `/chorus/time/1` samples comes with synchronized
//! playback; until then the offset stays at zero and samples are only reported.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The node's view of network time.
#[derive(Debug)]
pub struct Clock {
    anchor: Instant,
    anchor_ms: i64,
    offset_ms: AtomicI64,
}

impl Clock {
    /// Anchors to the system clock now, shifted by `skew_ms` (a testing knob).
    pub fn new(skew_ms: i64) -> Clock {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Clock {
            anchor: Instant::now(),
            anchor_ms: system.saturating_add(skew_ms),
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Network time, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let elapsed = i64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(i64::MAX);
        let t = self
            .anchor_ms
            .saturating_add(elapsed)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed));
        u64::try_from(t).unwrap_or(0)
    }

    /// The instant at which network time reaches `t_ms` (now if it has passed).
    pub fn instant_at(&self, t_ms: u64) -> tokio::time::Instant {
        let now = self.now_ms();
        tokio::time::Instant::now() + std::time::Duration::from_millis(t_ms.saturating_sub(now))
    }

    /// The offset currently applied, ms.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }
}
