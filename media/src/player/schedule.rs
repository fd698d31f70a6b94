//! What the player is told to play: the schedule of PROTOCOL.md 1 as a list of slots.

use crate::Hash32;

use super::sink::RATE;

/// One slot of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotPlan {
    /// The slot number.
    pub slot: u64,
    /// `start(slot)`, network time in ms.
    pub start_ms: u64,
    /// `start(slot + 1)`: the slot's audio is cut there if it runs longer.
    pub end_ms: u64,
    /// The track to play, or `None` for silence (a blacklisted winner with no substitute).
    pub audio: Option<TrackAudio>,
}

impl SlotPlan {
    /// The slot's length in frames.
    pub fn frames(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms) * u64::from(RATE) / 1000
    }

    /// `start(slot)` in microseconds.
    pub fn start_us(&self) -> i64 {
        self.start_ms as i64 * 1000
    }
}

/// A track and the gain to play it at.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackAudio {
    /// The track's manifest in the block store.
    pub manifest_id: Hash32,
    /// Loudness gain in dB (see [`gain_db`]).
    pub gain_db: f64,
    /// What listeners are told is on air (the live stream's ID3 and ICY metadata).
    pub tags: TrackTags,
    /// Faded out over this many ms before the slot's end (0: cut as it is): a substitute
    /// plays for the slot's length and no more (PROTOCOL.md 5).
    pub fade_out_ms: u32,
}

/// The gain of a fade-out of `fade_frames` ending at `end` (the slot's length in frames) at
/// frame `pos` of the slot: 1 before the fade, then down to 0 at the end, on a quarter sine
/// (equal power: it sounds even, where a straight line seems to drop at the end).
pub fn fade_out_gain(pos: u64, end: u64, fade_frames: u64) -> f32 {
    let left = end.saturating_sub(pos);
    if fade_frames == 0 || left >= fade_frames {
        return 1.0;
    }
    let x = left as f64 / fade_frames as f64;
    (x * std::f64::consts::FRAC_PI_2).sin() as f32
}

/// A track's title, artist and album as a proposal carried them: text a peer wrote, each
/// possibly empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrackTags {
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: String,
    /// Album.
    pub album: String,
}

impl TrackTags {
    /// `Artist - Title` as radio players show it (either alone when the other is empty).
    pub fn stream_title(&self) -> String {
        match (self.artist.trim(), self.title.trim()) {
            ("", title) => title.to_owned(),
            (artist, "") => artist.to_owned(),
            (artist, title) => format!("{artist} - {title}"),
        }
    }
}

/// PROTOCOL.md 6: `gain = target_lufs - loudness_lufs`, limited to [-20 dB, +10 dB]; a track
/// without a measurable loudness (silence) gets no gain.
pub fn gain_db(target_lufs: f64, loudness_lufs: Option<f64>) -> f64 {
    match loudness_lufs {
        Some(l) if l.is_finite() => (target_lufs - l).clamp(-20.0, 10.0),
        _ => 0.0,
    }
}

/// The linear factor of a gain in dB.
pub fn linear(gain_db: f64) -> f32 {
    10f64.powf(gain_db / 20.0) as f32
}

/// The slot playing at network time `t_us` and the position in it, in frames (fractional).
pub fn locate(plans: &[SlotPlan], t_us: i64) -> Option<(usize, f64)> {
    let i = plans
        .partition_point(|p| p.start_us() <= t_us)
        .checked_sub(1)?;
    let p = &plans[i];
    let pos = (t_us - p.start_us()) as f64 * f64::from(RATE) / 1e6;
    (pos < p.frames() as f64).then_some((i, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(slot: u64, start_ms: u64, end_ms: u64) -> SlotPlan {
        SlotPlan {
            slot,
            start_ms,
            end_ms,
            audio: None,
        }
    }

    #[test]
    fn locate_finds_the_slot_and_position() {
        let plans = [plan(3, 1000, 2000), plan(4, 2000, 3500)];
        assert_eq!(locate(&plans, 999_999), None);
        assert_eq!(locate(&plans, 1_000_000), Some((0, 0.0)));
        assert_eq!(locate(&plans, 1_500_000), Some((0, 24_000.0)));
        assert_eq!(locate(&plans, 2_000_000), Some((1, 0.0)));
        assert_eq!(locate(&plans, 2_000_500), Some((1, 24.0)));
        assert_eq!(locate(&plans, 3_500_000), None);
    }

    #[test]
    fn gain_is_limited() {
        assert_eq!(gain_db(-14.0, Some(-20.0)), 6.0);
        assert_eq!(gain_db(-14.0, Some(-40.0)), 10.0);
        assert_eq!(gain_db(-14.0, Some(0.0)), -14.0);
        assert_eq!(gain_db(-14.0, Some(20.0)), -20.0);
        assert_eq!(gain_db(-14.0, None), 0.0);
        assert!((linear(6.0) - 1.9953).abs() < 1e-3);
    }
}
