//! Arbitrary bytes as every message body, a track, a decided slot, the rules and a signed
//! genesis: never a panic, and whatever decodes re-encodes to the same bytes after one round.
#![no_main]

use chorus_consensus::codec::{from_cbor, to_cbor};
use chorus_consensus::{
    Body, DecidedSlot, Decision, Genesis, Hash32, Proposal, Rules, SignedGenesis, Status, Tally,
    TrackRef,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `data` as `T`; if it decodes, its encoding is stable under one more round trip.
fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let value: T = from_cbor(data).ok()?;
    let encoded = to_cbor(&value);
    let again: T = from_cbor(&encoded).expect("an encoding of this crate decodes");
    assert_eq!(to_cbor(&again), encoded, "re-encoding is not stable");
    Some(value)
}

fn body<B: Body>(data: &[u8]) {
    if let Some(b) = round_trip::<B>(data) {
        let _ = (b.check(), b.from());
    }
}

fuzz_target!(|data: &[u8]| {
    body::<Proposal>(data);
    body::<Tally>(data);
    body::<Decision>(data);
    body::<Status>(data);
    if let Some(genesis) = round_trip::<Genesis>(data) {
        let _ = (
            genesis.validate(),
            genesis.network_id(),
            genesis.rules_hash(),
        );
    }
    round_trip::<TrackRef>(data);
    round_trip::<DecidedSlot>(data);
    if let Ok(rules) = Rules::from_cbor(data) {
        assert_eq!(rules.validate(), Ok(()));
        assert_eq!(Rules::from_cbor(&rules.to_cbor()), Ok(rules));
    }
    let _ = SignedGenesis::from_cbor(data, None);
    let _ = SignedGenesis::from_cbor(data, Some(&Hash32::digest(b"chorus fuzz network")));
});
