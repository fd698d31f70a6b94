//! `chorus-media`: everything Chorus does with audio bytes, and nothing with the network.
//!
//! A node plays only what it has pre-chunked: `ingest` turns a music library into canonical
//! segments (AAC-LC, 48 kHz, stereo, about 160 kbit/s, about 6 s each; PROTOCOL.md section 6) and
//! an HLS manifest per track, stored by SHA-256 in the block store.
//!
//! # Layout
//! - [`Hash32`]: SHA-256 ids, the one type of `chorus-consensus` (re-exported), with a strict
//!   hex form.
//! - [`fsutil`]: atomic file writes.
//! - [`store`]: the content-addressed block store; reads verify.
//! - [`sniff`]: recognising audio by content.
//! - [`transcode`]: ffmpeg-next decode, resample and AAC encode.
//! - [`loudness`]: integrated loudness per EBU R128.
//! - [`adts`]: the segment container (ID3 timestamp tag + ADTS frames).
//! - [`manifest`]: HLS media playlists with `hls_m3u8`.
//! - [`track`]: ingesting one file; [`TrackInfo`].
//! - [`index`]: the library index.
//! - [`ingest`]: ingesting a whole library, in parallel and incrementally.
//! - [`decode`]: decoding segments with symphonia.
//! - [`export`]: writing a track as plain HLS files.
//! - [`live`]: the live HLS playlist of what a node plays.
//! - [`synth`]: generated music in many formats, for the demo, tests and benchmarks.
#![deny(missing_docs)]

pub mod adts;
pub mod decode;
pub mod export;
pub mod fsutil;
pub mod index;
pub mod ingest;
pub mod live;
pub mod loudness;
pub mod manifest;
pub mod player;
pub mod sniff;
pub mod store;
pub mod synth;
pub mod track;
pub mod transcode;

pub use chorus_consensus::Hash32;
pub use index::LibraryIndex;
pub use ingest::{IngestEvent, IngestOptions, IngestSummary, Library, ingest_library};
pub use manifest::Manifest;
pub use store::BlockStore;
pub use track::{TrackInfo, TrackLimits};

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TrackInfo {
        TrackInfo {
            track_hash: Hash32::digest(b"track"),
            manifest_id: Hash32::digest(b"manifest"),
            duration_ms: 6000,
            segment_count: 1,
            title: "T".into(),
            artist: "A".into(),
            album: String::new(),
            loudness_lufs: None,
            samples: 288_000,
            priming: 1024,
            padding: 0,
            not_proposable: None,
        }
    }

    /// The library index and other JSON files name hashes by their hex text, as before
    /// `Hash32` came from `chorus-consensus`.
    #[test]
    fn json_and_toml_hold_hashes_as_lowercase_hex() {
        let info = info();
        let json: serde_json::Value = serde_json::to_value(&info).unwrap();
        assert_eq!(json["track_hash"], info.track_hash.to_hex());
        assert_eq!(json["manifest_id"], info.manifest_id.to_hex());
        assert_eq!(serde_json::from_value::<TrackInfo>(json).unwrap(), info);
        let text = toml::to_string(&info).unwrap();
        assert!(
            text.contains(&format!("track_hash = \"{}\"", info.track_hash)),
            "{text}"
        );
        assert_eq!(toml::from_str::<TrackInfo>(&text).unwrap(), info);
    }

    /// JSON names a hash only in its canonical form: a path or uppercase text never loads.
    #[test]
    fn json_hashes_are_parsed_strictly() {
        let mut json = serde_json::to_value(info()).unwrap();
        json["manifest_id"] = "../../etc/passwd".into();
        assert!(serde_json::from_value::<TrackInfo>(json.clone()).is_err());
        json["manifest_id"] = info().manifest_id.to_hex().to_uppercase().into();
        assert!(serde_json::from_value::<TrackInfo>(json).is_err());
    }

    /// In CBOR a hash is a 32-byte string, the protocol's form.
    #[test]
    fn cbor_holds_hashes_as_byte_strings() {
        let info = info();
        let mut bytes = Vec::new();
        ciborium::into_writer(&info, &mut bytes).unwrap();
        let value: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        let fields = value.as_map().unwrap();
        let track_hash = fields
            .iter()
            .find(|(k, _)| k.as_text() == Some("track_hash"))
            .map(|(_, v)| v.clone());
        assert_eq!(
            track_hash,
            Some(ciborium::Value::Bytes(info.track_hash.0.to_vec()))
        );
        assert_eq!(
            ciborium::from_reader::<TrackInfo, _>(bytes.as_slice()).unwrap(),
            info
        );
    }
}
