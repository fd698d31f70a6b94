//! `chorus run` and `chorus bootstrap`: ingest the library, then run the node until Ctrl-C.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chorus_bootstrap::{SeedQueue, create_genesis, track_ref};
use chorus_consensus::{Hash32, TrackRef};
use libp2p::Multiaddr;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{ingest, library};
use crate::cli::{DEFAULT_P2P_PORT, NodeArgs};
use crate::node::{self, NodeConfig, Start};
use crate::state;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Ingests `--library` (if given) and returns the tracks the node may propose.
fn prepare_library(
    data_dir: &Path,
    args: &NodeArgs,
    json_logs: bool,
) -> Result<Option<Vec<TrackRef>>> {
    if let Some(dir) = &args.library {
        let summary = ingest::ingest(data_dir, dir, args.jobs, json_logs)?;
        if summary.interrupted {
            return Ok(None);
        }
    }
    let (_, index) = library::load(data_dir)?;
    release_freed_memory();
    Ok(Some(index.tracks().into_iter().map(track_ref).collect()))
}

/// Gives the heap that transcoding freed back to the OS before the node settles in for hours
/// (glibc keeps it otherwise: about 12 MB after a 500-track ingest).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free pages of glibc's heap to the OS; it takes no
        // pointers and is safe to call at any time from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn config(
    data_dir: &Path,
    config_dir: &Path,
    args: &NodeArgs,
    network: Option<Hash32>,
) -> NodeConfig {
    let listen = if args.listen.is_empty() {
        vec![
            format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}"),
            format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"),
            format!("/ip6/::/tcp/{DEFAULT_P2P_PORT}"),
            format!("/ip6/::/udp/{DEFAULT_P2P_PORT}/quic-v1"),
        ]
        .into_iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .collect()
    } else {
        args.listen.clone()
    };
    NodeConfig {
        data_dir: data_dir.to_path_buf(),
        config_dir: config_dir.to_path_buf(),
        network,
        peers: args.peers.clone(),
        listen,
        mdns: !args.no_mdns,
        upnp: !args.no_upnp,
        autonat_any_address: args.autonat_any_address,
        http_listen: args.http_listen,
        store_budget_bytes: args.store_budget_mb.saturating_mul(1024 * 1024),
        clock_skew_ms: args.clock_skew_ms,
        clock_rate_ppm: args.clock_rate_ppm,
        audio: args.audio.clone(),
        volume: f32::from(args.volume) / 100.0,
        muted: args.mute,
        requests: crate::requests::Policy {
            cooldown_ms: args.request_cooldown_minutes.saturating_mul(60_000),
            per_hour: args.requests_per_hour,
            approve: args.approve_requests,
            ..crate::requests::Policy::default()
        },
        corrupt_blocks: args.serve_corrupt_blocks,
        garbage: args.send_garbage,
    }
}

/// Runs the node on a tokio runtime until Ctrl-C (exit 0) or an error.
fn run_node(config: NodeConfig, library: Vec<TrackRef>, start: Start) -> Result<ExitCode> {
    let keypair = state::load_or_create_identity(&config.data_dir)?;
    info!(event = "identity", peer_id = %keypair.public().to_peer_id(), "node identity {}", keypair.public().to_peer_id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                info!("stopping (Ctrl-C)");
                token.cancel();
            }
        });
        node::run(config, keypair, library, start, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `chorus run`.
pub fn run(
    data_dir: &Path,
    config_dir: &Path,
    network: Option<String>,
    args: &NodeArgs,
    json_logs: bool,
) -> Result<ExitCode> {
    let network = match network {
        Some(text) => Some(Hash32::from_hex(text.trim()).map_err(|_| {
            anyhow::anyhow!("--network {text:?} is not a network id (64 hex digits, printed by `chorus bootstrap`)")
        })?),
        None => None,
    };
    if network.is_none() && !chorus_bootstrap::genesis_path(data_dir).exists() {
        bail!(
            "{} has no network yet: pass --network ID and --peer ADDRESS (both printed by the bootstrap node), or start one with `chorus bootstrap`",
            data_dir.display()
        );
    }
    let Some(library) = prepare_library(data_dir, args, json_logs)? else {
        return Ok(ExitCode::from(130));
    };
    run_node(
        config(data_dir, config_dir, args, network),
        library,
        Start::Join,
    )
}

/// `chorus bootstrap`.
pub fn bootstrap(
    data_dir: &Path,
    config_dir: &Path,
    seed_file: &Path,
    args: &NodeArgs,
    json_logs: bool,
) -> Result<ExitCode> {
    let Some(library_dir) = &args.library else {
        bail!(
            "chorus bootstrap needs --library DIR: the seed queue's tracks are paths relative to it"
        );
    };
    let seed = SeedQueue::load(seed_file, library_dir, now_ms())?;
    if chorus_bootstrap::genesis_path(data_dir).exists() {
        bail!(
            "{} already holds a network; use `chorus run` to resume it, or another --data-dir for a new network",
            data_dir.display()
        );
    }
    let Some(library) = prepare_library(data_dir, args, json_logs)? else {
        return Ok(ExitCode::from(130));
    };
    let (_, index) = library::load(data_dir)?;
    let mut queue = Vec::new();
    for path in &seed.tracks {
        let key = chorus_media::index::StoredPath::from_path(path);
        let entry = index.files.get(&key).with_context(|| {
            format!(
                "the seed queue's track {} could not be ingested (see the warnings above)",
                path.display()
            )
        })?;
        queue.push(track_ref(&entry.track));
    }
    let keypair = state::load_or_create_identity(data_dir)?;
    // PROTOCOL.md 12.3: the creator is enrolled in the genesis with its hash chain's commit.
    let (beacon_seed, _) = crate::enrollment::load_or_create_seed(data_dir)?;
    let hash_chain = crate::enrollment::hash_chain(&beacon_seed);
    let enroll = chorus_consensus::GenesisEnroll {
        commit: hash_chain.commit(),
        len: hash_chain.len(),
    };
    let genesis = create_genesis(&keypair, &seed, queue, now_ms(), enroll)?;
    chorus_bootstrap::save_genesis(data_dir, &genesis)?;
    let id = genesis.network_id();
    println!("network {id}");
    info!(event = "bootstrap", network_id = %id, start_ms = seed.start_ms, "created network \"{}\" ({id}); slot 0 starts at {} ms", seed.name, seed.start_ms);
    run_node(
        config(data_dir, config_dir, args, Some(id)),
        library,
        Start::Genesis(Box::new(genesis)),
    )
}
