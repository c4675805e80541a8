//! Broker start-up and shutdown: checks, one pinned executor per core, recovery, serving,
//! and a graceful stop on SIGINT/SIGTERM.

use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use super::limits::{self, MemlockOutcome};
use crate::cluster::mesh::{ShardMsg, MESH_CHANNEL_CAPACITY};
use crate::cluster::Shard;
use crate::cluster::{store, MetadataImage};
use crate::config::Config;
use crate::net::listener;

/// Set by the signal thread; every shard watches it.
static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);
/// How often shards look at the shutdown flag (signals cannot wake a glommio reactor).
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// How long shutdown waits for in-flight requests and peers before closing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often each shard enforces retention (Kafka's `log.retention.check.interval.ms` is
/// 5 minutes; checking is cheap here because segment metadata is in memory).
const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// io_uring rings per shard that register the I/O buffer (main, poll, latency).
const RINGS_PER_SHARD: u64 = 3;

/// Why a [`HostCheck`] refused the start, e.g. `tune::ProductionRefused`; shown as it
/// displays itself.
pub type HostCheckError = Box<dyn std::error::Error + Send + Sync>;

/// The host checks [`run`] performs once the data directory is locked and before any port is
/// probed. `sluice start` passes `tune::check_at_start`: the checks belong to `sluice tune`,
/// which sits above start-up, so start-up is handed them instead of reaching up for them.
pub type HostCheck<'a> = &'a dyn Fn(&Config) -> Result<(), HostCheckError>;

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--production` and a host tuning check FAILed; names each setting and its fix.
    #[error(transparent)]
    Tuning(HostCheckError),
    /// A start-up check failed (data dir in use, port busy).
    #[error(transparent)]
    Limits(#[from] limits::LimitsError),
    /// The metadata image could not be read or written.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A shard's executor could not be created (io_uring unavailable, bad CPU).
    #[error("starting shard {shard} on CPU {cpu}: {reason}")]
    Executor {
        /// The shard index.
        shard: usize,
        /// The CPU it was pinned to.
        cpu: usize,
        /// glommio's error.
        reason: String,
    },
    /// A shard failed while starting (recovery, binding).
    #[error("shard {shard} failed: {reason}")]
    Shard {
        /// The shard index.
        shard: usize,
        /// What failed.
        reason: String,
    },
}

/// Runs the broker until SIGINT/SIGTERM, then shuts down cleanly; `host_check` runs once the
/// data directory is locked and may refuse the start.
pub fn run(config: Config, host_check: HostCheck<'_>) -> Result<(), StartError> {
    let _lock = limits::lock_data_dir(&config.data_dir)?;
    host_check(&config).map_err(StartError::Tuning)?;
    limits::probe_port_free(config.kafka_addr)?;
    limits::probe_named_port_free("admin", config.admin_addr)?;
    crate::net::admin::mark_start();
    limits::raise_nofile();
    let config = Arc::new(size_io_memory(config));
    apply_io_profile(&config);
    let image = Arc::new(load_image(&config)?);
    sweep_deleted_topics(&config.data_dir, &image);
    install_signal_handler();

    let shards = config.cores.len();
    let mesh: MeshBuilder<ShardMsg, _> = MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY);
    let mut handles = Vec::with_capacity(shards);
    for (shard_id, &cpu) in config.cores.iter().enumerate() {
        let (config, mesh, image) = (config.clone(), mesh.clone(), image.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{shard_id}"))
            .io_memory(config.io_memory_per_shard_bytes)
            .spawn(move || async move { shard_main(shard_id, cpu, config, mesh, image).await })
            .map_err(|e| StartError::Executor {
                shard: shard_id,
                cpu,
                reason: e.to_string(),
            })?;
        handles.push(handle);
    }
    let mut first_error = None;
    for (shard, handle) in handles.into_iter().enumerate() {
        let outcome = match handle.join() {
            Ok(Ok(())) => continue,
            Ok(Err(reason)) => reason,
            Err(e) => e.to_string(),
        };
        tracing::error!(shard, reason = %outcome, "shard stopped with an error");
        // One shard failing must stop the others too.
        SHUTDOWN_REQUESTED.store(true, Ordering::SeqCst);
        first_error.get_or_insert(StartError::Shard {
            shard,
            reason: outcome,
        });
    }
    match first_error {
        Some(e) => Err(e),
        None => {
            tracing::info!("sluice stopped cleanly");
            Ok(())
        }
    }
}

/// Sizes the storage engine's write chunks from `io-profile.json` (written by
/// `sluice iotune`) when the data directory has one: a chunk holds what the disk writes
/// during one median fdatasync, so while a flush is in flight the next write round fills
/// whole chunks instead of rewriting a small tail many times. fdatasync needs no coalescing
/// window: every waiter that arrives during a flush shares the next one.
fn apply_io_profile(config: &Config) {
    use crate::storage::appender::{set_chunk_size_bytes, CHUNK_SIZE_BYTES_DEFAULT};
    match crate::storage::io_profile::load_profile(&config.data_dir) {
        Some(profile) => {
            let per_sync = profile
                .seq_write_bytes_per_sec
                .saturating_mul(profile.fdatasync_latency.p50_ns)
                / 1_000_000_000;
            let chunk = set_chunk_size_bytes(per_sync);
            tracing::info!(
                fdatasync_p99_us = profile.fdatasync_latency.p99_ns / 1000,
                seq_write_mib_per_sec = profile.seq_write_bytes_per_sec >> 20,
                write_chunk_bytes = chunk,
                "using the measured I/O profile"
            );
        }
        None => {
            let chunk = set_chunk_size_bytes(CHUNK_SIZE_BYTES_DEFAULT);
            tracing::info!(
                write_chunk_bytes = chunk,
                "no io-profile.json in the data directory (run `sluice iotune`); using default write chunks"
            );
        }
    }
}

/// Raises RLIMIT_MEMLOCK for the registered buffers, or shrinks them to fit the limit.
fn size_io_memory(mut config: Config) -> Config {
    let shards = config.cores.len() as u64;
    let wanted = config.io_memory_per_shard_bytes as u64 * shards * RINGS_PER_SHARD + (1 << 20);
    if let MemlockOutcome::Insufficient { limit_bytes } = limits::raise_memlock(wanted) {
        let fit = (limit_bytes.saturating_sub(1 << 20) / (shards * RINGS_PER_SHARD)) as usize;
        let fit = fit / 4096 * 4096;
        config.io_memory_per_shard_bytes = fit.max(64 * 1024);
        tracing::warn!(
            io_memory_per_shard_bytes = config.io_memory_per_shard_bytes,
            "registered io_uring buffers shrunk to fit RLIMIT_MEMLOCK; DMA writes beyond them use unregistered memory"
        );
    }
    config
}

fn load_image(config: &Config) -> Result<MetadataImage, StartError> {
    let mut image = store::load(&config.data_dir)?;
    if image.cluster_id.is_empty() {
        image.cluster_id = uuid::Uuid::new_v4().simple().to_string();
        store::save(&config.data_dir, &image)?;
    }
    Ok(image)
}

/// Removes partition directories of topics deleted while the broker was down or mid-way
/// through their deletion (a crash between the metadata change and the removal), before
/// any shard could open them. A failure is logged: `Partition::open` checks the topic id
/// again and never serves another topic's data.
fn sweep_deleted_topics(data_dir: &Path, image: &MetadataImage) {
    let live = |name: &str, index: i32| {
        image
            .topic(name)
            .filter(|t| index < t.partitions)
            .map(|t| t.id)
    };
    for dir in crate::partition::identity::orphans(data_dir, live) {
        tracing::info!(dir = %dir.display(), "removing the data of a deleted topic");
        if let Err(e) = crate::partition::identity::remove_durably(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the data of a deleted topic");
        }
    }
}

fn install_signal_handler() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    tracing::info!(signal, "shutting down: finishing in-flight requests");
                    SHUTDOWN_REQUESTED.store(true, Ordering::SeqCst);
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot install signal handlers; SIGTERM will kill without a flush")
        }
    }
}

/// The life of one shard.
async fn shard_main(
    shard_id: usize,
    cpu: usize,
    config: Arc<Config>,
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    image: Arc<MetadataImage>,
) -> Result<(), String> {
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|_| String::from("joining the shard mesh"))?;
    let shard = Rc::new(Shard::new(
        shard_id,
        config.cores.len(),
        config.clone(),
        senders,
        image.clone(),
    ));
    for (_, receiver) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(call) = receiver.recv().await {
                glommio::spawn_local(call(shard.clone())).detach();
            }
        })
        .detach();
    }
    // Recovery runs before the listener opens: nothing is served from an unchecked log.
    shard
        .install_image(image)
        .await
        .map_err(|e| format!("recovering partitions: {e}"))?;
    // Every shard recovers before any shard accepts a client, so no request finds a
    // partition still opening on its owner.
    crate::cluster::barrier::arrive_and_wait(&shard, |s| &s.peers_ready, None).await;
    // Transaction coordinators load their partitions and start their timeout task.
    crate::txn::driver::start(&shard);
    let listener = listener::bind(config.kafka_addr)
        .map_err(|e| format!("binding {}: {e}", config.kafka_addr))?;
    tracing::info!(
        shard = shard_id,
        cpu,
        partitions = shard.partitions.len(),
        kafka_addr = %listener::local_addr(&listener).map(|a| a.to_string()).unwrap_or_default(),
        "shard ready"
    );
    if shard_id == 0 {
        let admin = listener::bind(config.admin_addr)
            .map_err(|e| format!("binding admin address {}: {e}", config.admin_addr))?;
        tracing::info!(admin_addr = %config.admin_addr, "admin API ready (/metrics, /v1/status, /v1/partitions, /v1/health)");
        glommio::spawn_local(crate::net::admin::serve(shard.clone(), admin)).detach();
    }
    // Rebuild the group coordinators of this shard's __consumer_offsets partitions now
    // rather than on first use (requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS).
    let loader = shard.clone();
    glommio::spawn_local(async move {
        let _ = crate::groups::driver::committed_offsets_local(&loader).await;
    })
    .detach();
    glommio::spawn_local(watch_for_shutdown(shard.clone())).detach();
    glommio::spawn_local(measure_task_queue_delay(shard.clone())).detach();
    glommio::spawn_local(retention_loop(shard.clone())).detach();
    listener::accept_loop(shard.clone(), listener).await;
    drain(&shard).await;
    shard.partitions.close_all().await;
    tracing::info!(shard = shard_id, "shard stopped");
    Ok(())
}

async fn watch_for_shutdown(shard: Rc<Shard>) {
    while !SHUTDOWN_REQUESTED.load(Ordering::SeqCst) {
        glommio::timer::sleep(SHUTDOWN_POLL).await;
    }
    shard.begin_shutdown();
}

/// Waits for this shard's in-flight requests, then for every other shard to do the same,
/// so no shard closes its partitions while another still writes to them.
async fn drain(shard: &Rc<Shard>) {
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    while shard.requests_in_flight.get() > 0 && std::time::Instant::now() < deadline {
        let wait = Box::pin(shard.requests_drained.notified());
        let _ = futures::future::select(wait, Box::pin(glommio::timer::sleep(SHUTDOWN_POLL))).await;
    }
    crate::cluster::barrier::arrive_and_wait(shard, |s| &s.peers_drained, Some(deadline)).await;
}

/// Measures how late the executor wakes a task whose timer fired: the scheduling delay
/// every request on this shard also pays.
async fn measure_task_queue_delay(shard: Rc<Shard>) {
    const PERIOD: Duration = Duration::from_millis(20);
    while !shard.shutting_down.get() {
        let started = std::time::Instant::now();
        glommio::timer::sleep(PERIOD).await;
        let late = started.elapsed().saturating_sub(PERIOD);
        crate::metrics::record(crate::metrics::Stage::TaskQueueDelay, late);
    }
}

/// Enforces retention on this shard's partitions, in a low-priority task queue.
async fn retention_loop(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(RETENTION_CHECK_INTERVAL).await;
        if shard.shutting_down.get() {
            return;
        }
        let now = crate::util::clock::now_ms();
        for partition in shard.partitions.all() {
            partition.snapshot_producer_state().await;
            match partition.enforce_retention(now).await {
                Ok(0) => {}
                Ok(bytes) => {
                    tracing::info!(topic = %partition.topic, partition = partition.index, bytes, "retention deleted old segments")
                }
                Err(e) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "retention failed")
                }
            }
        }
    }
}
