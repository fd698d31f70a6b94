//! `chorus-bootstrap`: how a new Chorus network begins (PROTOCOL.md section 11).
//!
//! An operator writes a seed queue (TOML: the network's name, its start time, exactly five tracks
//! from their library and optional rule overrides). `chorus bootstrap` reads it with
//! [`SeedQueue::load`], which reports each mistake with its file, line and field; ingests the
//! tracks and turns each [`chorus_media::TrackInfo`] into a `TrackRef` with [`track_ref`]; signs
//! the genesis with [`create_genesis`]; and keeps it with [`save_genesis`]. Every later start of a
//! node reads it back, verified, with [`load_genesis`].
//!
//! # Layout
//!
//! - [`seed`]: the seed-queue file: parsing, the start time, track paths under the library, rule
//!   overrides on top of the defaults, and errors that point at a line and a field.
//! - [`genesis`]: `TrackRef`s from ingested tracks; creating and signing the genesis.
//! - [`persist`]: `genesis.cbor` in the data directory, written atomically, verified on load.
#![deny(missing_docs)]

pub mod genesis;
pub mod persist;
pub mod seed;

pub use genesis::{CreateError, create_genesis, track_ref};
pub use persist::{GENESIS_FILE, GenesisFileError, genesis_path, load_genesis, save_genesis};
pub use seed::{Problem, SeedError, SeedQueue};
