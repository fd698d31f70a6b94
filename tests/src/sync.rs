//! Reading what wav sinks played: their CSVs (`system_us,slot,sample`, one row per buffer) and
//! the offsets between nodes, for the playback tests and `bench-network sync`.

use std::path::Path;

/// Frames per second of the sinks.
pub const RATE: f64 = 48_000.0;

/// One CSV row: when a buffer's first frame was due (true system time, µs), its slot and track
/// sample index (`None`: silence or no slot), and its position in the wav file (frames).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// True system time at which the first frame is due, µs since the Unix epoch.
    pub system_us: i64,
    /// The slot, if the buffer belongs to one.
    pub slot: Option<u64>,
    /// The track sample index of the first frame, for audio.
    pub sample: Option<u64>,
    /// Frames of the buffer (from the next row's time; the last row: 0).
    pub frames: u64,
    /// Frame index of the buffer's first frame in the wav file.
    pub wav_frame: u64,
}

/// Reads a wav sink's CSV (an incomplete last line, from a node still writing, is skipped).
pub fn read_csv(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.split_inclusive('\n');
    if lines.next() != Some("system_us,slot,sample\n") {
        return Err(format!("{}: not a wav sink CSV", path.display()));
    }
    let mut rows: Vec<Row> = Vec::new();
    for (i, line) in lines.enumerate() {
        let Some(line) = line.strip_suffix('\n') else {
            break;
        };
        let f: Vec<i64> = line
            .split(',')
            .map(|x| x.parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} line {}: {e}", path.display(), i + 2))?;
        let [t, slot, sample] = f[..] else {
            return Err(format!("{} line {}: not 3 fields", path.display(), i + 2));
        };
        rows.push(Row {
            system_us: t,
            slot: u64::try_from(slot).ok(),
            sample: u64::try_from(sample).ok(),
            frames: 0,
            wav_frame: 0,
        });
    }
    // The file's timeline is the wall clock's: positions follow from the times exactly
    // (a frame is 20.8 µs, times are whole µs).
    let t0 = rows.first().map_or(0, |r| r.system_us);
    for r in rows.iter_mut() {
        r.wav_frame = ((r.system_us - t0) as f64 * RATE / 1e6).round() as u64;
    }
    for i in 0..rows.len().saturating_sub(1) {
        rows[i].frames = rows[i + 1].wav_frame - rows[i].wav_frame;
    }
    Ok(rows)
}

/// When (true system time, µs, fractional) `rows` played track sample `sample` of `slot`, if
/// they did.
pub fn time_of(rows: &[Row], slot: u64, sample: u64) -> Option<f64> {
    // Rows of a slot are in time order but not in sample order across corrections, so search
    // the slot's audio rows for one that covers the sample.
    let lo = rows.partition_point(|r| r.slot.is_none_or(|s| s < slot));
    rows[lo..]
        .iter()
        .take_while(|r| r.slot.is_none_or(|s| s <= slot))
        .filter(|r| r.slot == Some(slot))
        .find_map(|r| {
            let first = r.sample?;
            (first <= sample && sample < first + r.frames)
                .then(|| r.system_us as f64 + (sample - first) as f64 * 1e6 / RATE)
        })
}

/// Offsets between two nodes: for each audio row of `b` due at or after `from_us`, the time `b`
/// played its first sample minus the time `a` played the same sample (µs), with its slot.
pub fn offsets(a: &[Row], b: &[Row], from_us: i64) -> Vec<(u64, i64, f64)> {
    b.iter()
        .filter(|r| r.system_us >= from_us && r.frames > 0)
        .filter_map(|r| {
            let (slot, sample) = (r.slot?, r.sample?);
            let ta = time_of(a, slot, sample)?;
            Some((slot, r.system_us, r.system_us as f64 - ta))
        })
        .collect()
}

/// The first audio row.
pub fn first_audio(rows: &[Row]) -> Option<Row> {
    rows.iter().find(|r| r.sample.is_some()).copied()
}

/// The `p`-quantile (0..=1) of `v` (sorted in place).
pub fn quantile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system_us: i64, slot: u64, sample: u64) -> Row {
        Row {
            system_us,
            slot: Some(slot),
            sample: Some(sample),
            frames: 480,
            wav_frame: 0,
        }
    }

    #[test]
    fn offsets_interpolate_inside_a_buffer() {
        let a = vec![row(1_000_000, 3, 0), row(1_010_000, 3, 480)];
        // b plays sample 240 at 1_005_100: a played it at 1_005_000.
        let b = vec![row(1_005_100, 3, 240)];
        let o = offsets(&a, &b, 0);
        assert_eq!(o.len(), 1);
        assert!((o[0].2 - 100.0).abs() < 1e-6, "{o:?}");
        assert_eq!(time_of(&a, 3, 960), None);
        assert_eq!(time_of(&a, 4, 0), None);
    }
}
