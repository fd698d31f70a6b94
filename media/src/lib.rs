//! `chorus-media`: everything Chorus does with audio bytes, and nothing with the network.
//!
//! A node plays only what it has pre-chunked: `ingest` turns a music library into canonical
//! segments (AAC-LC, 48 kHz, stereo, about 160 kbit/s, about 6 s each; PROTOCOL.md section 6) and
//! an HLS manifest per track, stored by SHA-256 in the block store.
//!
//! # Layout
//! - [`hash`]: SHA-256 ids ([`Hash32`]) with a strict hex form.
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
//! - [`synth`]: generated music in many formats, for the demo, tests and benchmarks.
#![deny(missing_docs)]

pub mod adts;
pub mod decode;
pub mod export;
pub mod fsutil;
pub mod hash;
pub mod index;
pub mod ingest;
pub mod loudness;
pub mod manifest;
pub mod player;
pub mod sniff;
pub mod store;
pub mod synth;
pub mod track;
pub mod transcode;

pub use hash::Hash32;
pub use index::LibraryIndex;
pub use ingest::{IngestEvent, IngestOptions, IngestSummary, Library, ingest_library};
pub use manifest::Manifest;
pub use store::BlockStore;
pub use track::{TrackInfo, TrackLimits};
