//! Arbitrary gossip bytes through `Envelope::from_cbor` and `open_gossip` against a fixed
//! network id: never a panic, and a decoded envelope re-encodes to an equal one.
#![no_main]

use chorus_consensus::limits::GOSSIP_MAX_BYTES;
use chorus_consensus::{Envelope, Hash32, open_gossip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let network_id = Hash32::digest(b"chorus fuzz network");
    let opened = open_gossip(data, &network_id);
    match Envelope::from_cbor(data, GOSSIP_MAX_BYTES) {
        Ok(envelope) => {
            let again = Envelope::from_cbor(&envelope.to_cbor(), usize::MAX);
            assert_eq!(
                again.as_ref(),
                Ok(&envelope),
                "re-encoding changes the envelope"
            );
            assert_eq!(envelope.clone().open(&network_id), opened);
            let _ = envelope.id();
        }
        Err(e) => {
            assert!(opened.is_err());
            let _ = (e.validation(), e.to_string());
        }
    }
    if let Err(e) = opened {
        let _ = (e.validation(), e.to_string());
    }
});
