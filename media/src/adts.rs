//! The segment container: packed audio, that is an ID3v2.4 tag carrying the HLS
//! `com.apple.streaming.transportStreamTimestamp` PRIV frame, followed by ADTS-framed AAC-LC.
//! docs/segments.md explains why this container and not MPEG-TS or fMP4.

/// Sample rate of canonical audio.
pub const SAMPLE_RATE: u32 = 48_000;
/// Channels of canonical audio.
pub const CHANNELS: u16 = 2;
/// Samples per channel in one AAC-LC frame.
pub const FRAME_SAMPLES: u32 = 1024;

const ADTS_HEADER_LEN: usize = 7;
const MAX_ADTS_FRAME: usize = (1 << 13) - 1;
const PRIV_OWNER: &[u8] = b"com.apple.streaming.transportStreamTimestamp";
/// Ticks per second of the MPEG-TS clock used by the PRIV timestamp.
pub const TS_CLOCK: u64 = 90_000;

/// Appends one ADTS frame (header without CRC, then the raw AAC-LC payload) for 48 kHz stereo.
/// Returns `false` (appending nothing) if the payload does not fit in an ADTS frame.
pub fn push_adts_frame(out: &mut Vec<u8>, payload: &[u8]) -> bool {
    let len = ADTS_HEADER_LEN + payload.len();
    if len > MAX_ADTS_FRAME {
        return false;
    }
    const PROFILE_LC: u8 = 1; // audio object type 2, minus one
    const FREQ_INDEX_48K: u8 = 3;
    const CHANNEL_CONFIG: u8 = 2;
    out.extend_from_slice(&[
        0xFF,
        0xF1, // sync, MPEG-4, layer 0, no CRC
        (PROFILE_LC << 6) | (FREQ_INDEX_48K << 2) | (CHANNEL_CONFIG >> 2),
        ((CHANNEL_CONFIG & 3) << 6) | ((len >> 11) as u8 & 0x03),
        (len >> 3) as u8,
        (((len & 7) as u8) << 5) | 0x1F, // buffer fullness 0x7FF: variable bit rate
        0xFC,                            // fullness continued, one raw data block
    ]);
    out.extend_from_slice(payload);
    true
}

/// Appends the ID3v2.4 tag whose PRIV frame carries the 33-bit MPEG-TS timestamp (90 kHz) of
/// the segment's first sample, as HLS requires in front of packed audio.
pub fn push_timestamp_tag(out: &mut Vec<u8>, ts_90k: u64) {
    let frame_len = PRIV_OWNER.len() + 1 + 8;
    let tag_len = 10 + frame_len;
    out.extend_from_slice(b"ID3\x04\x00\x00");
    out.extend_from_slice(&synchsafe(tag_len as u32));
    out.extend_from_slice(b"PRIV");
    out.extend_from_slice(&synchsafe(frame_len as u32));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(PRIV_OWNER);
    out.push(0);
    out.extend_from_slice(&(ts_90k & ((1 << 33) - 1)).to_be_bytes());
}

/// Text frames of a now-playing tag are cut to this many bytes each (at a character boundary):
/// a peer's text never makes a tag larger than a few kilobytes.
pub const MAX_TEXT_FRAME: usize = 1024;

/// The segment with its leading tag replaced by one that carries the same PRIV timestamp first,
/// then `TIT2`, `TPE1` and `TALB` text frames (UTF-8) for each non-empty `(frame, text)` of
/// `texts`: HLS timed metadata of packed audio, which a player applies at the segment's first
/// sample. `None` when the segment does not start with a tag holding a timestamp or the ADTS
/// stream behind it is malformed: a segment is a peer's bytes, and is then served as it is.
pub fn with_text_frames(segment: &[u8], texts: &[([u8; 4], &str)]) -> Option<Vec<u8>> {
    let (Some(ts), adts) = split_id3(segment)? else {
        return None;
    };
    adts_payloads(adts)?;
    let mut frames = Vec::new();
    let priv_len = PRIV_OWNER.len() + 1 + 8;
    frames.extend_from_slice(b"PRIV");
    frames.extend_from_slice(&synchsafe(priv_len as u32));
    frames.extend_from_slice(&[0, 0]);
    frames.extend_from_slice(PRIV_OWNER);
    frames.push(0);
    frames.extend_from_slice(&(ts & ((1 << 33) - 1)).to_be_bytes());
    for (id, text) in texts {
        let text = clean_text(text, MAX_TEXT_FRAME);
        if text.is_empty() {
            continue;
        }
        frames.extend_from_slice(id);
        frames.extend_from_slice(&synchsafe(text.len() as u32 + 1));
        frames.extend_from_slice(&[0, 0, 3]); // flags; encoding 3: UTF-8
        frames.extend_from_slice(text.as_bytes());
    }
    let mut out = Vec::with_capacity(10 + frames.len() + adts.len());
    out.extend_from_slice(b"ID3\x04\x00\x00");
    out.extend_from_slice(&synchsafe(frames.len() as u32));
    out.extend_from_slice(&frames);
    out.extend_from_slice(adts);
    Some(out)
}

/// `text` without control characters, cut to at most `max` bytes at a character boundary.
pub fn clean_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// The text frames of a segment's leading tag, `(frame id, text)`, for tests and tools: UTF-8
/// (encoding 3) and ISO-8859-1 (0) text frames; others are skipped.
pub fn text_frames(segment: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if segment.len() < 10 || &segment[..3] != b"ID3" {
        return out;
    }
    let size = segment[6..10]
        .iter()
        .fold(0usize, |acc, b| (acc << 7) | usize::from(b & 0x7F));
    let Some(mut tag) = segment.get(10..10 + size) else {
        return out;
    };
    while tag.len() >= 10 && tag[0] != 0 {
        let len = tag[4..8]
            .iter()
            .fold(0usize, |acc, b| (acc << 7) | usize::from(b & 0x7F));
        let Some(body) = tag.get(10..10 + len) else {
            break;
        };
        if tag[0] == b'T' && !body.is_empty() {
            let text = match body[0] {
                3 => String::from_utf8_lossy(&body[1..]).into_owned(),
                0 => body[1..].iter().map(|&b| char::from(b)).collect(),
                _ => String::new(),
            };
            let id = String::from_utf8_lossy(&tag[..4]).into_owned();
            out.push((id, text.trim_end_matches('\0').to_owned()));
        }
        tag = &tag[10 + len..];
    }
    out
}

fn synchsafe(v: u32) -> [u8; 4] {
    [
        (v >> 21) as u8 & 0x7F,
        (v >> 14) as u8 & 0x7F,
        (v >> 7) as u8 & 0x7F,
        v as u8 & 0x7F,
    ]
}

/// Splits a segment into its leading ID3v2 tag (if any) and the ADTS stream behind it, and reads
/// the PRIV timestamp from the tag. Returns `None` if an ID3 header claims more bytes than exist.
pub fn split_id3(segment: &[u8]) -> Option<(Option<u64>, &[u8])> {
    if segment.len() < 10 || &segment[..3] != b"ID3" {
        return Some((None, segment));
    }
    let size = segment[6..10]
        .iter()
        .fold(0usize, |acc, b| (acc << 7) | usize::from(b & 0x7F));
    let has_footer = segment[5] & 0x10 != 0;
    let end = 10 + size + if has_footer { 10 } else { 0 };
    if end > segment.len() {
        return None;
    }
    let tag = &segment[10..10 + size];
    let ts = tag
        .windows(PRIV_OWNER.len() + 1)
        .position(|w| &w[..PRIV_OWNER.len()] == PRIV_OWNER && w[PRIV_OWNER.len()] == 0)
        .and_then(|pos| {
            let start = pos + PRIV_OWNER.len() + 1;
            tag.get(start..start + 8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("slice of 8 bytes")))
        });
    Some((ts, &segment[end..]))
}

/// Splits an ADTS stream into its raw AAC payloads, checking every header. Returns `None` on the
/// first malformed header.
pub fn adts_payloads(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < ADTS_HEADER_LEN || data[0] != 0xFF || data[1] & 0xF6 != 0xF0 {
            return None;
        }
        let header = if data[1] & 1 == 0 { 9 } else { 7 };
        let len = (usize::from(data[3] & 3) << 11)
            | (usize::from(data[4]) << 3)
            | usize::from(data[5] >> 5);
        if len < header || len > data.len() {
            return None;
        }
        out.push(&data[header..len]);
        data = &data[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_round_trip() {
        let mut out = Vec::new();
        let a = vec![1u8; 300];
        let b = vec![2u8; 2000];
        assert!(push_adts_frame(&mut out, &a));
        assert!(push_adts_frame(&mut out, &b));
        assert_eq!(out.len(), 2 * 7 + 2300);
        let payloads = adts_payloads(&out).unwrap();
        assert_eq!(payloads, vec![&a[..], &b[..]]);
        assert!(!push_adts_frame(&mut out, &vec![0u8; 9000]));
    }

    #[test]
    fn id3_timestamp_round_trip() {
        let mut seg = Vec::new();
        push_timestamp_tag(&mut seg, 563_040);
        push_adts_frame(&mut seg, &[9, 9, 9]);
        let (ts, rest) = split_id3(&seg).unwrap();
        assert_eq!(ts, Some(563_040));
        assert_eq!(adts_payloads(rest).unwrap(), vec![&[9u8, 9, 9][..]]);
    }

    #[test]
    fn now_playing_frames_follow_the_timestamp_and_leave_the_audio_alone() {
        let mut seg = Vec::new();
        push_timestamp_tag(&mut seg, 563_040);
        push_adts_frame(&mut seg, &[9, 9, 9]);
        let title = "Caf\u{e9} \u{2018}Noir\u{2019}\n";
        let out = with_text_frames(
            &seg,
            &[(*b"TIT2", title), (*b"TPE1", ""), (*b"TALB", "Album")],
        )
        .expect("a tag");
        let (ts, rest) = split_id3(&out).expect("well formed");
        assert_eq!(ts, Some(563_040));
        assert_eq!(rest, split_id3(&seg).expect("well formed").1);
        // The PRIV frame comes first (HLS packed audio), the empty artist is left out, and the
        // line feed is gone.
        assert_eq!(&out[10..14], b"PRIV");
        assert_eq!(
            text_frames(&out),
            [
                (
                    "TIT2".to_owned(),
                    "Caf\u{e9} \u{2018}Noir\u{2019}".to_owned()
                ),
                ("TALB".to_owned(), "Album".to_owned())
            ]
        );
        // Overlong text is cut at a character boundary.
        let long = "\u{e9}".repeat(MAX_TEXT_FRAME);
        let out = with_text_frames(&seg, &[(*b"TIT2", &long)]).expect("a tag");
        assert_eq!(text_frames(&out)[0].1.len(), MAX_TEXT_FRAME);
        // A segment without a timestamp tag, or with garbage behind it, gets none.
        assert!(with_text_frames(&[0xFF, 0xF1, 1, 2], &[(*b"TIT2", "x")]).is_none());
        let mut bad = Vec::new();
        push_timestamp_tag(&mut bad, 1);
        bad.extend_from_slice(b"not adts");
        assert!(with_text_frames(&bad, &[(*b"TIT2", "x")]).is_none());
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        assert!(adts_payloads(&[0xFF, 0xF1, 0, 0, 0xFF]).is_none());
        assert!(adts_payloads(b"not adts at all").is_none());
        assert!(split_id3(b"ID3\x04\x00\x00\x00\x00\x7F\x7Fshort").is_none());
    }
}
