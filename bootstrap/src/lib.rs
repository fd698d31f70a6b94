//! `chorus-bootstrap`: how a new Chorus network begins (PROTOCOL.md section 11).
//!
//! It will own the seed-queue file (TOML: network name, start time, exactly five tracks, rule
//! overrides), the rules and their defaults as an operator writes them, and creating, signing,
//! verifying and persisting a genesis. Nothing here yet: the node issue brings it.
#![deny(missing_docs)]
