//! SHA-256 content hashes: block ids, track hashes and manifest ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 digest. Block ids, segment ids, manifest ids and track hashes are all of this type.
///
/// Its text form is 64 lowercase hex digits; it is parsed strictly (nothing else is accepted), so
/// that a hash can name a file in the store without any risk of path traversal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The 64 lowercase hex digits of the hash.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not a SHA-256 hash (64 lowercase hex digits)")]
pub struct ParseHashError {
    /// The rejected text, cut to 80 characters.
    pub input: String,
}

impl FromStr for Hash32 {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseHashError {
            input: s.chars().take(80).collect(),
        };
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| err())?;
        Ok(Self(out))
    }
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_known_digest() {
        let h = Hash32::of(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_hex().parse::<Hash32>(), Ok(h));
        assert_eq!(h.short(), "ba7816bf");
    }

    #[test]
    fn strict_parsing() {
        let good = Hash32::of(b"x").to_hex();
        assert!(good.to_uppercase().parse::<Hash32>().is_err());
        assert!(good[..63].parse::<Hash32>().is_err());
        assert!(format!("{good}0").parse::<Hash32>().is_err());
        assert!("../../etc/passwd".parse::<Hash32>().is_err());
        assert!(format!("{}/x", &good[..62]).parse::<Hash32>().is_err());
    }
}
