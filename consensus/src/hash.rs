//! `Hash32`, the SHA-256 digest used for every id of Chorus, and its hex form.
//!
//! One type serves the protocol (proposal ids, network ids, chain hashes) and the media (block
//! ids, segment ids, manifest ids, track hashes), so no crate converts between two of them.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest: track hashes, manifest ids, block ids, proposal ids, network ids,
/// chain hashes.
///
/// Displays (and debugs) as 64 lowercase hex digits. Its text form is parsed strictly by
/// [`FromStr`] (64 lowercase hex digits and nothing else), so that a hash can name a file in the
/// store without any risk of path traversal; [`Hash32::from_hex`] accepts either case.
///
/// With serde it is a byte string of 32 bytes in formats that are not human-readable (CBOR, the
/// wire and the chain file) and the 64 lowercase hex digits in human-readable ones (JSON, TOML).
/// Deserializing accepts the hex text, a byte string or an array of 32 integers in either kind
/// of format, so that files written by earlier versions still load.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero value (the proposal id of a replay in chain hashes, PROTOCOL.md 11).
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Hash32 {
        Hash32(Sha256::digest(bytes).into())
    }

    /// SHA-256 of the concatenation of `parts` (the `||` of PROTOCOL.md).
    pub fn digest_parts(parts: &[&[u8]]) -> Hash32 {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash32(hasher.finalize().into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 digits.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// The first 8 hex digits, for log lines.
    pub fn short(&self) -> String {
        to_hex(&self.0[..4])
    }

    /// Parses 64 hex digits (either case). Use [`FromStr`] where only the canonical lowercase
    /// form may pass (file names).
    pub fn from_hex(text: &str) -> Result<Hash32, HexError> {
        let bytes = from_hex(text)?;
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| HexError::Length {
            expected: 32,
            got: bytes.len(),
        })?;
        Ok(Hash32(array))
    }
}

impl From<[u8; 32]> for Hash32 {
    fn from(bytes: [u8; 32]) -> Self {
        Hash32(bytes)
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not a SHA-256 hash (64 lowercase hex digits)")]
pub struct ParseHashError {
    /// The rejected text, cut to 80 characters.
    pub input: String,
}

impl FromStr for Hash32 {
    type Err = ParseHashError;

    /// Accepts exactly 64 lowercase hex digits: the form [`Hash32::to_hex`] writes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let canonical = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match canonical.then(|| Hash32::from_hex(text)) {
            Some(Ok(hash)) => Ok(hash),
            _ => Err(ParseHashError {
                input: text.chars().take(80).collect(),
            }),
        }
    }
}

/// Why a hex string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The text has an odd number of digits.
    #[error("hex text has an odd number of digits ({0})")]
    OddLength(usize),
    /// A character is not a hex digit.
    #[error("{0:?} at position {1} is not a hex digit")]
    BadDigit(char, usize),
    /// The decoded value has the wrong number of bytes.
    #[error("expected {expected} bytes of hex, got {got}")]
    Length {
        /// Bytes the value needs.
        expected: usize,
        /// Bytes the text held.
        got: usize,
    },
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Decodes hex text (either case) into bytes.
pub fn from_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let chars: Vec<char> = text.chars().collect();
    if !chars.len().is_multiple_of(2) {
        return Err(HexError::OddLength(chars.len()));
    }
    let digit = |i: usize| -> Result<u8, HexError> {
        let c = chars[i];
        c.to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or(HexError::BadDigit(c, i))
    };
    (0..chars.len() / 2)
        .map(|i| Ok((digit(2 * i)? << 4) | digit(2 * i + 1)?))
        .collect()
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The visitor takes every form in either kind of format: serde's buffering (untagged
        // enums, `flatten`) reports "human-readable" even over CBOR.
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(Hash32Visitor)
        } else {
            deserializer.deserialize_bytes(Hash32Visitor)
        }
    }
}

struct Hash32Visitor;

impl<'de> Visitor<'de> for Hash32Visitor {
    type Value = Hash32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string of 32 bytes or 64 lowercase hex digits")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Hash32, E> {
        v.parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Hash32, E> {
        let array: [u8; 32] = v
            .try_into()
            .map_err(|_| E::invalid_length(v.len(), &self))?;
        Ok(Hash32(array))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hash32, A::Error> {
        // Some encoders write small byte arrays as arrays of integers (and JSON written before
        // the hex form held them so); accept them.
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
        }
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(33, &self));
        }
        Ok(Hash32(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            Hash32::digest(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Hash32::digest(b"ab"), Hash32::digest_parts(&[b"a", b"b"]));
    }

    #[test]
    fn known_digest_and_short_form() {
        let h = Hash32::digest(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.short(), "ba7816bf");
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash32::digest(b"x");
        assert_eq!(h.to_hex().parse::<Hash32>(), Ok(h));
        assert_eq!(format!("{h:?}"), h.to_hex());
        assert_eq!(
            Hash32::from_hex(&h.to_hex().to_uppercase()),
            Ok(h),
            "from_hex takes either case"
        );
        assert_eq!(Hash32::from_hex("abc"), Err(HexError::OddLength(3)));
        assert_eq!(Hash32::from_hex("zz"), Err(HexError::BadDigit('z', 0)));
        assert_eq!(
            Hash32::from_hex("abcd"),
            Err(HexError::Length {
                expected: 32,
                got: 2
            })
        );
        assert!(from_hex("é0").is_err(), "non-ascii never panics");
    }

    #[test]
    fn from_str_is_strict() {
        let good = Hash32::digest(b"x").to_hex();
        assert!(good.to_uppercase().parse::<Hash32>().is_err());
        assert!(good[..63].parse::<Hash32>().is_err());
        assert!(format!("{good}0").parse::<Hash32>().is_err());
        assert!(format!(" {}", &good[1..]).parse::<Hash32>().is_err());
        assert!("../../etc/passwd".parse::<Hash32>().is_err());
        assert!(format!("{}/x", &good[..62]).parse::<Hash32>().is_err());
        assert!(format!("{}é", &good[..62]).parse::<Hash32>().is_err());
        let err = "x".repeat(100).parse::<Hash32>().expect_err("not hex");
        assert_eq!(
            err.input.len(),
            80,
            "the error quotes at most 80 characters"
        );
    }

    #[test]
    fn cbor_is_a_32_byte_string() {
        let h = Hash32::digest(b"x");
        let mut bytes = Vec::new();
        ciborium::into_writer(&h, &mut bytes).expect("encoding into a Vec cannot fail");
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[..2], &[0x58, 32]);
        assert_eq!(&bytes[2..], h.as_bytes());
        let back: Hash32 = ciborium::from_reader(bytes.as_slice()).expect("round trip");
        assert_eq!(back, h);
        let mut short = Vec::new();
        ciborium::into_writer(&serde_bytes::Bytes::new(&[1, 2]), &mut short)
            .expect("encoding into a Vec cannot fail");
        assert!(ciborium::from_reader::<Hash32, _>(short.as_slice()).is_err());
        let value = ciborium::Value::serialized(&h).expect("into a CBOR value");
        assert_eq!(value, ciborium::Value::Bytes(h.0.to_vec()));
    }

    #[test]
    fn json_is_lowercase_hex() {
        let h = Hash32::digest(b"x");
        let text = serde_json::to_string(&h).expect("JSON encodes");
        assert_eq!(text, format!("\"{}\"", h.to_hex()));
        assert_eq!(
            serde_json::from_str::<Hash32>(&text).expect("round trip"),
            h
        );
        let upper = format!("\"{}\"", h.to_hex().to_uppercase());
        assert!(
            serde_json::from_str::<Hash32>(&upper).is_err(),
            "strict in JSON too"
        );
        assert!(serde_json::from_str::<Hash32>("\"../etc/passwd\"").is_err());
        // Keys of a map are text too.
        let map = std::collections::BTreeMap::from([(h, 1u8)]);
        let text = serde_json::to_string(&map).expect("JSON encodes");
        assert_eq!(text, format!("{{\"{}\":1}}", h.to_hex()));
        let back: std::collections::BTreeMap<Hash32, u8> =
            serde_json::from_str(&text).expect("round trip");
        assert_eq!(back, map);
    }

    #[test]
    fn json_accepts_the_old_integer_array() {
        let h = Hash32::digest(b"x");
        let old = serde_json::to_string(&h.0.to_vec()).expect("JSON encodes");
        assert_eq!(serde_json::from_str::<Hash32>(&old).expect("old form"), h);
        assert!(serde_json::from_str::<Hash32>("[1,2,3]").is_err());
        let long = serde_json::to_string(&[0u8; 33].to_vec()).expect("JSON encodes");
        assert!(serde_json::from_str::<Hash32>(&long).is_err());
    }
}
