//! One direction of an emulated link as a sans-IO state machine: packets go in with the time
//! they arrived, come out when they are due. `link-emu` owns two of these and does the I/O; the
//! tests below drive them on made-up time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::rng::Rng;
use super::shape::{Jitter, Shape};

/// What a direction did with the packets it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets handed to the direction.
    pub packets_in: u64,
    /// Packets it released.
    pub packets_out: u64,
    /// Packets dropped by random loss.
    pub lost: u64,
    /// Packets dropped because the rate-limited queue was full.
    pub queue_dropped: u64,
    /// Bytes handed to it (whole frames).
    pub bytes_in: u64,
    /// Bytes it released.
    pub bytes_out: u64,
}

/// What became of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Held until the given time.
    Due(Instant),
    /// Dropped by random loss.
    Lost,
    /// Dropped at the tail of a full queue.
    QueueFull,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due: Instant,
    seq: u64,
    packet: Vec<u8>,
}

/// One direction of a link.
///
/// Call [`Pipe::handle_packet`] for each packet as it arrives, then [`Pipe::poll_transmit`]
/// until it returns `None` to collect the packets that are due, and sleep until
/// [`Pipe::poll_timeout`] (or the next arrival).
#[derive(Debug)]
pub struct Pipe {
    shape: Shape,
    queue: Option<u64>,
    rng: Rng,
    /// When the rate limiter finishes sending the last packet it accepted.
    busy_until: Option<Instant>,
    /// The latest release time handed out, for in-order links.
    last_due: Option<Instant>,
    seq: u64,
    held: BinaryHeap<Reverse<Held>>,
    counters: Counters,
}

impl Pipe {
    /// A direction shaped by `shape`, its randomness drawn from `seed`.
    pub fn new(shape: Shape, seed: u64) -> Self {
        Self {
            queue: shape.queue_bytes(),
            shape,
            rng: Rng::new(seed),
            busy_until: None,
            last_due: None,
            seq: 0,
            held: BinaryHeap::new(),
            counters: Counters::default(),
        }
    }

    /// Takes a packet that arrived at `now`.
    pub fn handle_packet(&mut self, now: Instant, packet: Vec<u8>) -> Fate {
        let len = packet.len() as u64;
        self.counters.packets_in += 1;
        self.counters.bytes_in += len;
        if self.rng.chance(self.shape.loss) {
            self.counters.lost += 1;
            return Fate::Lost;
        }
        let sent = match self.shape.rate {
            None => now,
            Some(rate) => {
                let start = self.busy_until.filter(|b| *b > now).unwrap_or(now);
                let backlog = bytes_at(rate, start - now);
                if backlog + len > self.queue.unwrap_or(u64::MAX) {
                    self.counters.queue_dropped += 1;
                    return Fate::QueueFull;
                }
                let done = start + time_for(rate, len);
                self.busy_until = Some(done);
                done
            }
        };
        let mut due = sent + self.draw_delay();
        if !self.shape.reorder {
            due = due.max(self.last_due.unwrap_or(due));
        }
        self.last_due = Some(self.last_due.map_or(due, |d| d.max(due)));
        self.seq += 1;
        self.held.push(Reverse(Held {
            due,
            seq: self.seq,
            packet,
        }));
        Fate::Due(due)
    }

    fn draw_delay(&mut self) -> Duration {
        let delay = self.shape.delay.as_secs_f64();
        let jitter = self.shape.jitter.as_secs_f64();
        if jitter == 0.0 {
            return self.shape.delay;
        }
        let offset = match self.shape.distribution {
            Jitter::Uniform => (2.0 * self.rng.unit() - 1.0) * jitter,
            Jitter::Normal => (self.rng.normal() * jitter).clamp(-4.0 * jitter, 4.0 * jitter),
        };
        Duration::from_secs_f64((delay + offset).max(0.0))
    }

    /// When the next held packet is due, if any is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    /// The next packet due at `now`, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.poll_timeout()? > now {
            return None;
        }
        let Reverse(held) = self.held.pop()?;
        self.counters.packets_out += 1;
        self.counters.bytes_out += held.packet.len() as u64;
        Some(held.packet)
    }

    /// What this direction has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Packets held and not yet released.
    pub fn in_flight(&self) -> usize {
        self.held.len()
    }
}

/// Time to send `bytes` at `rate` bit/s.
fn time_for(rate: u64, bytes: u64) -> Duration {
    let nanos = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(rate);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Bytes sent in `d` at `rate` bit/s.
fn bytes_at(rate: u64, d: Duration) -> u64 {
    let bytes = d.as_nanos() * u128::from(rate) / 8 / 1_000_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(pipe: &mut Pipe, now: Instant) -> Vec<u8> {
        std::iter::from_fn(|| pipe.poll_transmit(now))
            .map(|p| p[0])
            .collect()
    }

    #[test]
    fn delay_holds_packets_exactly_that_long() {
        let t0 = Instant::now();
        let mut pipe = Pipe::new(Shape::wire().delay(40 * MS), 1);
        assert_eq!(pipe.handle_packet(t0, vec![1]), Fate::Due(t0 + 40 * MS));
        pipe.handle_packet(t0 + MS, vec![2]);
        assert_eq!(pipe.poll_timeout(), Some(t0 + 40 * MS));
        assert!(drain(&mut pipe, t0 + 39 * MS).is_empty());
        assert_eq!(drain(&mut pipe, t0 + 40 * MS), [1]);
        assert_eq!(drain(&mut pipe, t0 + 41 * MS), [2]);
        assert_eq!(pipe.poll_timeout(), None);
        let c = pipe.counters();
        assert_eq!((c.packets_in, c.packets_out, c.bytes_out), (2, 2, 2));
    }

    #[test]
    fn rate_spaces_packets_and_drops_at_the_tail() {
        // 8 Mbit/s: a 1000-byte frame takes 1 ms; the queue holds 3 of them.
        let t0 = Instant::now();
        let mut pipe = Pipe::new(Shape::wire().rate(8_000_000).queue(3000), 1);
        let fates: Vec<Fate> = (0..5)
            .map(|_| pipe.handle_packet(t0, vec![0; 1000]))
            .collect();
        assert_eq!(
            fates,
            [
                Fate::Due(t0 + MS),
                Fate::Due(t0 + 2 * MS),
                Fate::Due(t0 + 3 * MS),
                Fate::QueueFull,
                Fate::QueueFull
            ]
        );
        // Once the first frame has left, there is room for one more.
        assert_eq!(
            pipe.handle_packet(t0 + MS, vec![0; 1000]),
            Fate::Due(t0 + 4 * MS)
        );
        assert_eq!(pipe.counters().queue_dropped, 2);
        // An idle link starts sending at once.
        assert_eq!(
            pipe.handle_packet(t0 + 10 * MS, vec![0; 1000]),
            Fate::Due(t0 + 11 * MS)
        );
    }

    #[test]
    fn loss_is_about_the_configured_fraction_and_replays_with_the_seed() {
        let t0 = Instant::now();
        let run = |seed| {
            let mut pipe = Pipe::new(Shape::wire().loss(0.1), seed);
            (0..10_000)
                .map(|_| pipe.handle_packet(t0, vec![0]) == Fate::Lost)
                .collect::<Vec<bool>>()
        };
        let lost = run(5).iter().filter(|l| **l).count();
        assert!((850..=1150).contains(&lost), "{lost}");
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn jitter_stays_in_bounds_and_reorders_only_when_allowed() {
        let t0 = Instant::now();
        for reorder in [true, false] {
            let mut shape = Shape::wire()
                .delay(20 * MS)
                .jitter(10 * MS, Jitter::Uniform);
            shape.reorder = reorder;
            let mut pipe = Pipe::new(shape, 3);
            for i in 0..200u8 {
                let at = t0 + Duration::from_micros(u64::from(i) * 500);
                let Fate::Due(due) = pipe.handle_packet(at, vec![i]) else {
                    panic!("nothing is dropped")
                };
                assert!(due >= at + 10 * MS && due <= at + 30 * MS);
            }
            let out = drain(&mut pipe, t0 + Duration::from_secs(1));
            assert_eq!(out.len(), 200);
            let inversions = out.windows(2).filter(|w| w[0] > w[1]).count();
            assert_eq!(inversions > 0, reorder, "{inversions} inversions");
        }
    }

    #[test]
    fn normal_jitter_has_the_configured_spread() {
        let t0 = Instant::now();
        let shape = Shape::wire().delay(50 * MS).jitter(5 * MS, Jitter::Normal);
        let mut pipe = Pipe::new(shape, 9);
        let delays: Vec<f64> = (0..5000)
            .map(|_| match pipe.handle_packet(t0, vec![0]) {
                Fate::Due(d) => (d - t0).as_secs_f64() * 1e3,
                f => panic!("{f:?}"),
            })
            .collect();
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        let sd =
            (delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / delays.len() as f64).sqrt();
        assert!(
            (mean - 50.0).abs() < 0.5 && (sd - 5.0).abs() < 0.5,
            "{mean} {sd}"
        );
    }
}
