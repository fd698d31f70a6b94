//! Integrated loudness per EBU R128 / ITU-R BS.1770-4, measured on canonical audio (48 kHz
//! stereo) as it is encoded: K-weighting, 400 ms blocks with 75 % overlap, the absolute gate at
//! -70 LUFS and the relative gate 10 LU below the ungated mean.
//!
//! Measured here rather than with FFmpeg's `ebur128` filter: that filter works on doubles, so it
//! costs two sample-format conversions per sample on top of the measurement itself; this meter
//! reads the float planes the encoder gets anyway.

/// Samples per channel in a 100 ms sub-block at 48 kHz.
const SUB_BLOCK: usize = 4800;

/// One biquad section (direct form II transposed), in f64.
#[derive(Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    const fn new(b: [f64; 3], a: [f64; 2]) -> Self {
        Self { b, a, z: [0.0; 2] }
    }

    #[inline]
    fn run(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// The K-weighting filter of BS.1770 at 48 kHz: a high shelf, then a high pass.
fn k_weighting() -> [Biquad; 2] {
    [
        Biquad::new(
            [
                1.535_124_859_586_97,
                -2.691_696_189_406_38,
                1.198_392_810_852_85,
            ],
            [-1.690_659_293_182_41, 0.732_480_774_215_85],
        ),
        Biquad::new(
            [1.0, -2.0, 1.0],
            [-1.990_047_454_833_98, 0.990_072_250_366_21],
        ),
    ]
}

/// A running loudness meter for 48 kHz stereo.
pub struct LoudnessMeter {
    filters: [[Biquad; 2]; 2],
    /// Sum of squares of both K-weighted channels in each finished 100 ms sub-block.
    sub_blocks: Vec<f64>,
    acc: f64,
    in_sub_block: usize,
}

impl Default for LoudnessMeter {
    fn default() -> Self {
        Self {
            filters: [k_weighting(), k_weighting()],
            sub_blocks: Vec::new(),
            acc: 0.0,
            in_sub_block: 0,
        }
    }
}

impl LoudnessMeter {
    /// A meter with nothing measured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds planar samples of the left and right channels (equal lengths).
    pub fn push(&mut self, left: &[f32], right: &[f32]) {
        for (&l, &r) in left.iter().zip(right) {
            let l = self.filters[0]
                .iter_mut()
                .fold(f64::from(l), |x, f| f.run(x));
            let r = self.filters[1]
                .iter_mut()
                .fold(f64::from(r), |x, f| f.run(x));
            self.acc += l * l + r * r;
            self.in_sub_block += 1;
            if self.in_sub_block == SUB_BLOCK {
                self.sub_blocks.push(self.acc);
                self.acc = 0.0;
                self.in_sub_block = 0;
            }
        }
    }

    /// Integrated loudness in LUFS, or `None` when no 400 ms block is above the absolute gate
    /// (silence, or less than 400 ms of audio): such a track gets no loudness gain at all.
    pub fn integrated(&self) -> Option<f64> {
        let blocks: Vec<f64> = self
            .sub_blocks
            .windows(4)
            .map(|w| w.iter().sum::<f64>() / (4 * SUB_BLOCK) as f64)
            .collect();
        let lufs = |z: f64| -0.691 + 10.0 * z.log10();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let above_abs: Vec<f64> = blocks
            .into_iter()
            .filter(|&z| z > 0.0 && lufs(z) > -70.0)
            .collect();
        if above_abs.is_empty() {
            return None;
        }
        let relative_gate = lufs(mean(&above_abs)) - 10.0;
        let gated: Vec<f64> = above_abs
            .into_iter()
            .filter(|&z| lufs(z) > relative_gate)
            .collect();
        let l = lufs(mean(&gated));
        l.is_finite().then_some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amp: f64, secs: f64) -> Vec<f32> {
        (0..(secs * 48_000.0) as usize)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 48_000.0).sin()) as f32)
            .collect()
    }

    #[test]
    fn calibration_sine() {
        // BS.1770: a 997 Hz sine at 0 dBFS in one channel reads -3.01 LKFS; in both, 0.
        let s = sine(997.0, 0.1, 5.0);
        let mut m = LoudnessMeter::new();
        m.push(&s, &s);
        let l = m.integrated().unwrap();
        assert!((l - -20.0).abs() < 0.05, "{l}");
        let mut m = LoudnessMeter::new();
        m.push(&s, &vec![0.0; s.len()]);
        let l = m.integrated().unwrap();
        assert!((l - -23.01).abs() < 0.05, "{l}");
    }

    #[test]
    fn silence_and_gating() {
        let mut m = LoudnessMeter::new();
        let zeros = vec![0.0f32; 48_000 * 3];
        m.push(&zeros, &zeros);
        assert_eq!(m.integrated(), None);
        // 3 s of tone between 6 s of silence: an ungated mean would read 4.8 dB low; the gates
        // leave only the few blocks that straddle the edges to pull it down a little.
        let s = sine(997.0, 0.1, 3.0);
        m.push(&s, &s);
        m.push(&zeros, &zeros);
        let l = m.integrated().unwrap();
        assert!((l - -20.0).abs() < 0.5, "{l}");
    }
}
