//! What a link emulator does to one direction of a link ([`Shape`]) and to both ([`Link`]), and
//! their text form, which is also `link-emu`'s command line (`--up`/`--down`).
//!
//! The text form is a comma-separated list of `key=value`:
//! `delay=40ms,jitter=5ms,dist=normal,loss=0.1,rate=5mbit,queue=62500,order=keep`.
//! Durations take `us`, `ms` or `s`; loss is a probability (`0.1`) or a percentage (`10%`);
//! rate is in bits per second with an optional `kbit`, `mbit` or `gbit`; queue is in bytes.
//! Keys left out keep their defaults; `none` is a perfect wire.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

/// How a packet's jitter is drawn around the link's delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Uniform in `[delay - jitter, delay + jitter]`.
    #[default]
    Uniform,
    /// Normal with mean `delay` and standard deviation `jitter`, cut at zero delay.
    Normal,
}

/// What happens to the packets of one direction of a link, in this order: random loss, then a
/// rate-limited queue with tail drop, then the delay plus jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// One-way delay added to every packet.
    pub delay: Duration,
    /// Spread of the delay (see [`Jitter`]); zero for none.
    pub jitter: Duration,
    /// How the jitter is distributed.
    pub distribution: Jitter,
    /// Probability that a packet is lost, in `[0, 1]`.
    pub loss: f64,
    /// Bandwidth cap in bits per second, counting whole Ethernet frames; `None` for no cap.
    pub rate: Option<u64>,
    /// Bytes the rate-limited queue holds before it drops new packets (tail drop); `None` for
    /// [`Shape::default_queue`]. Meaningless without a rate.
    pub queue: Option<u64>,
    /// Whether jitter may reorder packets (as on a real path with several routes); when false,
    /// a packet is never released before the one in front of it.
    pub reorder: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            distribution: Jitter::Uniform,
            loss: 0.0,
            rate: None,
            queue: None,
            reorder: true,
        }
    }
}

impl Shape {
    /// A perfect wire: no delay, no loss, no cap.
    pub fn wire() -> Self {
        Self::default()
    }

    /// This shape with a fixed one-way `delay`.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// This shape with a jitter of `jitter` drawn from `distribution`.
    #[must_use]
    pub fn jitter(mut self, jitter: Duration, distribution: Jitter) -> Self {
        self.jitter = jitter;
        self.distribution = distribution;
        self
    }

    /// This shape losing each packet with probability `loss`.
    #[must_use]
    pub fn loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// This shape capped at `bits_per_second`.
    #[must_use]
    pub fn rate(mut self, bits_per_second: u64) -> Self {
        self.rate = Some(bits_per_second);
        self
    }

    /// This shape with a queue of `bytes` in front of the rate cap.
    #[must_use]
    pub fn queue(mut self, bytes: u64) -> Self {
        self.queue = Some(bytes);
        self
    }

    /// This shape keeping packets in order whatever the jitter.
    #[must_use]
    pub fn in_order(mut self) -> Self {
        self.reorder = false;
        self
    }

    /// The queue when none is given: 100 ms at the rate (as a home router's buffer), and never
    /// less than two full-size frames.
    pub fn default_queue(rate: u64) -> u64 {
        (rate / 8 / 10).max(2 * 1514)
    }

    /// The queue in bytes this shape uses, if it has a rate.
    pub fn queue_bytes(&self) -> Option<u64> {
        self.rate
            .map(|r| self.queue.unwrap_or_else(|| Self::default_queue(r)))
    }

    /// Checks that the numbers make sense.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (0.0..=1.0).contains(&self.loss),
            "loss {} is not a probability in [0, 1]",
            self.loss
        );
        ensure!(self.rate != Some(0), "a rate of 0 bit/s passes nothing");
        ensure!(self.queue != Some(0), "a queue of 0 bytes passes nothing");
        Ok(())
    }
}

fn write_duration(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    if d.as_micros().is_multiple_of(1000) {
        write!(f, "{}ms", d.as_millis())
    } else {
        write!(f, "{}us", d.as_micros())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("delay=")?;
        write_duration(f, self.delay)?;
        if !self.jitter.is_zero() {
            f.write_str(",jitter=")?;
            write_duration(f, self.jitter)?;
            let dist = match self.distribution {
                Jitter::Uniform => "uniform",
                Jitter::Normal => "normal",
            };
            write!(f, ",dist={dist}")?;
        }
        if self.loss > 0.0 {
            write!(f, ",loss={}", self.loss)?;
        }
        if let Some(rate) = self.rate {
            write!(f, ",rate={rate}")?;
        }
        if let Some(queue) = self.queue {
            write!(f, ",queue={queue}")?;
        }
        if !self.reorder {
            f.write_str(",order=keep")?;
        }
        Ok(())
    }
}

fn parse_duration(s: &str) -> Result<Duration> {
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("duration {s:?} needs a unit: us, ms or s")
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("duration {s:?} is not a number"))?;
    ensure!(
        value >= 0.0 && value.is_finite(),
        "duration {s:?} is negative"
    );
    Ok(Duration::from_secs_f64(value * scale))
}

fn parse_rate(s: &str) -> Result<u64> {
    let lower = s.to_ascii_lowercase();
    let (number, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(unit, scale)| lower.strip_suffix(unit).map(|n| (n, *scale)))
        .unwrap_or((lower.as_str(), 1.0));
    let value: f64 = number
        .parse()
        .with_context(|| format!("rate {s:?} is not a number of bit/s"))?;
    ensure!(value >= 1.0, "rate {s:?} is below 1 bit/s");
    Ok((value * scale) as u64)
}

fn parse_loss(s: &str) -> Result<f64> {
    let value = match s.strip_suffix('%') {
        Some(p) => p.parse::<f64>().map(|p| p / 100.0),
        None => s.parse(),
    };
    value.with_context(|| format!("loss {s:?} is not a probability or a percentage"))
}

impl FromStr for Shape {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut shape = Shape::default();
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(shape);
        }
        for item in s.split(',') {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("{item:?} is not key=value"))?;
            match key.trim() {
                "delay" => shape.delay = parse_duration(value)?,
                "jitter" => shape.jitter = parse_duration(value)?,
                "dist" => {
                    shape.distribution = match value {
                        "uniform" => Jitter::Uniform,
                        "normal" => Jitter::Normal,
                        _ => bail!("dist {value:?} is neither uniform nor normal"),
                    }
                }
                "loss" => shape.loss = parse_loss(value)?,
                "rate" => shape.rate = Some(parse_rate(value)?),
                "queue" => {
                    shape.queue = Some(
                        value
                            .parse()
                            .with_context(|| format!("queue {value:?} is not a number of bytes"))?,
                    )
                }
                "order" => {
                    shape.reorder = match value {
                        "keep" => false,
                        "any" => true,
                        _ => bail!("order {value:?} is neither keep nor any"),
                    }
                }
                other => bail!(
                    "unknown key {other:?} (known: delay, jitter, dist, loss, rate, queue, order)"
                ),
            }
        }
        shape.validate()?;
        Ok(shape)
    }
}

/// Both directions of an emulated link. `up` runs from the inside (a home's router, a public
/// host) towards the internet, `down` back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Link {
    /// Towards the internet.
    pub up: Shape,
    /// From the internet.
    pub down: Shape,
    /// The emulator's seed; `None` draws one (the testbed prints it, so a failure can be
    /// replayed by pinning it here).
    pub seed: Option<u64>,
}

impl Link {
    /// A link with `up` and `down`.
    pub fn new(up: Shape, down: Shape) -> Self {
        Self {
            up,
            down,
            seed: None,
        }
    }

    /// A link with the same shape both ways.
    pub fn both(shape: Shape) -> Self {
        Self::new(shape.clone(), shape)
    }

    /// This link with a pinned seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let shape = Shape::wire()
            .delay(Duration::from_millis(40))
            .jitter(Duration::from_micros(2500), Jitter::Normal)
            .loss(0.1)
            .rate(5_000_000)
            .queue(30_000)
            .in_order();
        let text = shape.to_string();
        assert_eq!(
            text,
            "delay=40ms,jitter=2500us,dist=normal,loss=0.1,rate=5000000,queue=30000,order=keep"
        );
        assert_eq!(text.parse::<Shape>().unwrap(), shape);
        assert_eq!("none".parse::<Shape>().unwrap(), Shape::wire());
        assert_eq!(
            Shape::wire().to_string().parse::<Shape>().unwrap(),
            Shape::wire()
        );
    }

    #[test]
    fn units_and_errors() {
        let s: Shape = "delay=1.5s,loss=10%,rate=5mbit".parse().unwrap();
        assert_eq!(s.delay, Duration::from_millis(1500));
        assert!((s.loss - 0.1).abs() < 1e-12);
        assert_eq!(s.rate, Some(5_000_000));
        assert_eq!(s.queue_bytes(), Some(62_500));
        assert!("delay=40".parse::<Shape>().is_err());
        assert!("loss=1.5".parse::<Shape>().is_err());
        assert!("rate=0".parse::<Shape>().is_err());
        assert!("speed=1".parse::<Shape>().is_err());
    }
}
