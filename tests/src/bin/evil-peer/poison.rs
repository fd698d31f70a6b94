//! `poison`: join as an enrolled node and propose tracks with hostile manifests in every slot
//! it may.
//! (Protocol 1's tickets let it grind a key that won a chosen slot; 1.1's cannot be ground.)

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chorus::node::{NodeConfig, Start};
use chorus_consensus::{Hash32, TrackRef};
use chorus_media::ingest::Library;
use chorus_media::player::SinkSpec;
use clap::ValueEnum;
use libp2p_identity::Keypair;
use tokio_util::sync::CancellationToken;

use crate::{Poison, hex};

/// A manifest in the node's own format, then spoiled as `poison` says.
fn hostile_manifest(poison: Poison, duration_ms: u64) -> (Vec<u8>, u64) {
    let segments = duration_ms.div_ceil(6000).max(1);
    let listed = match poison {
        Poison::ManyBlocks => 3000,
        _ => segments,
    };
    let mut text = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n",
    );
    for i in 0..listed {
        let extinf = match (poison, i) {
            (Poison::NegativeExtinf, 0) => "-1".to_owned(),
            (Poison::NanExtinf, 0) => "NaN".to_owned(),
            _ => "5.973333".to_owned(),
        };
        let id = Hash32::digest(format!("evil block {i}").as_bytes());
        text.push_str(&format!("#EXTINF:{extinf},\n{}\n", hex(&id)));
    }
    text.push_str("#EXT-X-CHORUS-AUDIO:PRIMING=1024,PADDING=0\n#EXT-X-ENDLIST\n");
    (text.into_bytes(), segments)
}

pub(crate) async fn poison(
    data_dir: PathBuf,
    network: &str,
    peer: &str,
    poisons: &[Poison],
    duration_ms: u64,
) -> Result<()> {
    let network_id: Hash32 = network.parse().context("--network is 64 hex digits")?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let key = Keypair::generate_ed25519();
    println!("identity {}", key.public().to_peer_id());
    chorus::state::save_identity(&data_dir, &key)?;

    let lib = Library::open(&data_dir).context("cannot open the attacker's store")?;
    let mut tracks = Vec::new();
    for poison in poisons {
        let (bytes, segments) = hostile_manifest(*poison, duration_ms);
        let manifest_id = Hash32::digest(&bytes);
        if !matches!(poison, Poison::Withhold) {
            lib.store
                .put_with_id(manifest_id, &bytes)
                .context("cannot store the hostile manifest")?;
        }
        let track = TrackRef {
            track_hash: Hash32::digest(format!("evil track {manifest_id}").as_bytes()),
            manifest_id,
            duration_ms,
            segment_count: segments,
            title: "Evil".to_owned(),
            artist: "Attacker".to_owned(),
            album: String::new(),
            loudness_lufs: None,
        };
        let name = poison
            .to_possible_value()
            .map_or_else(|| format!("{poison:?}"), |v| v.get_name().to_owned());
        println!(
            "proposing {name} track {} manifest {}",
            hex(&track.track_hash),
            hex(&manifest_id)
        );
        tracks.push(track);
    }
    let config = NodeConfig {
        data_dir: data_dir.clone(),
        config_dir: data_dir.join("config"),
        network: Some(network_id),
        peers: vec![peer.parse().context("--peer is a multiaddr")?],
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
        mdns: false,
        upnp: false,
        autonat_any_address: false,
        http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        store_budget_bytes: 1 << 30,
        clock_skew_ms: 0,
        clock_rate_ppm: 0,
        audio: SinkSpec::Null,
        volume: 0.0,
        muted: true,
        requests: chorus::requests::Policy::default(),
        corrupt_blocks: false,
        garbage: false,
    };
    let shutdown = CancellationToken::new();
    chorus::node::run(config, key, tracks, Start::Join, shutdown).await
}
