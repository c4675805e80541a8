//! Broker start-up and shutdown: checks, one pinned executor per core, recovery, serving,
//! and a graceful stop on SIGINT/SIGTERM.
//!
//! A shard that panics stops the broker (fail-stop): its partitions would otherwise be dead
//! while the other shards keep answering. A panic hook logs which shard panicked and why,
//! then asks every shard to stop as on SIGTERM; if that does not finish within
//! [`FAIL_STOP_BOUND`] the process exits anyway. Either way the exit status is non-zero,
//! so a supervisor restarts the broker and recovery replays the log.

use std::any::Any;
use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
/// How often each shard looks for partitions due for compaction (a look is cheap: no I/O
/// unless a pass is due).
const CLEANER_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// io_uring rings per shard that register the I/O buffer (main, poll, latency).
const RINGS_PER_SHARD: u64 = 3;
/// After a shard panicked, how long the other shards get to stop as on SIGTERM (drain,
/// flush, close) before the process exits without them: a dead shard may hold a barrier
/// or a thread join forever.
const FAIL_STOP_BOUND: Duration = Duration::from_secs(DRAIN_TIMEOUT.as_secs() + 10);
const _: () = assert!(FAIL_STOP_BOUND.as_secs() > DRAIN_TIMEOUT.as_secs());
/// The exit status when the orderly stop after a shard panic did not finish in time
/// (EX_SOFTWARE, an internal error); an orderly stop exits with 1 like any failed run.
const FAIL_STOP_EXIT_CODE: i32 = 70;
/// [`PANICKED_SHARD`] while no shard has panicked.
const NO_SHARD: usize = usize::MAX;
/// The first shard that panicked, or [`NO_SHARD`].
static PANICKED_SHARD: AtomicUsize = AtomicUsize::new(NO_SHARD);

thread_local! {
    /// The shard this thread runs, set as its executor starts; the panic hook reads it.
    static THREAD_SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

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
    /// A shard panicked and the broker stopped rather than serve without its partitions.
    #[error(
        "shard {shard} panicked; the broker stopped. Restart it: recovery will replay the log"
    )]
    Panicked {
        /// The shard that panicked first.
        shard: usize,
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
    install_panic_hook();
    if let Some(topic) = crate::cluster::partitions::test_panic_topic() {
        tracing::warn!(
            topic,
            "test hook armed: the shard that opens a partition of this topic panics"
        );
    }

    let shards = config.cores.len();
    let mesh: MeshBuilder<ShardMsg, _> = MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY);
    let mut handles = Vec::with_capacity(shards);
    for (shard_id, &cpu) in config.cores.iter().enumerate() {
        let (config, mesh, image) = (config.clone(), mesh.clone(), image.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{shard_id}"))
            .io_memory(config.io_memory_per_shard_bytes)
            .preempt_timer(crate::util::priority::PREEMPT_TIMER)
            .spawn(move || {
                THREAD_SHARD.with(|s| s.set(Some(shard_id)));
                async move {
                    let stopped = shard_main(shard_id, cpu, config, mesh, image).await;
                    if stopped.is_err() {
                        // At once, not when this shard's turn to be joined comes.
                        stop_all_shards();
                    }
                    stopped
                }
            })
            .map_err(|e| StartError::Executor {
                shard: shard_id,
                cpu,
                reason: e.to_string(),
            })?;
        handles.push(handle);
    }
    // Joined in order: a shard that fails (error or panic) stops the others at once
    // (`stop_all_shards`), so a live shard never holds the join while another is dead.
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
    let panicked = PANICKED_SHARD.load(Ordering::SeqCst);
    if panicked != NO_SHARD {
        return Err(StartError::Panicked { shard: panicked });
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

/// Installs, once per process, a panic hook that turns a panic on a shard thread into a
/// stop of the whole broker, then runs the default hook (which prints the backtrace).
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(shard) = THREAD_SHARD.with(Cell::get) {
                fail_stop(shard, info);
            }
            default(info);
        }));
    });
}

/// Logs the panic of `shard`, asks every shard to stop as on SIGTERM, and starts the
/// watchdog that exits the process if they do not within [`FAIL_STOP_BOUND`].
fn fail_stop(shard: usize, info: &std::panic::PanicHookInfo<'_>) {
    let message = panic_message(info.payload());
    let location = info.location().map(|l| l.to_string()).unwrap_or_default();
    tracing::error!(
        shard,
        %location,
        "shard {shard} panicked: {message}; the broker is stopping; restart it, recovery will replay the log"
    );
    let _ = PANICKED_SHARD.compare_exchange(NO_SHARD, shard, Ordering::SeqCst, Ordering::SeqCst);
    stop_all_shards();
}

/// Asks every shard to stop as on SIGTERM because one of them failed, and (once) starts the
/// watchdog that exits the process if they do not stop within [`FAIL_STOP_BOUND`].
fn stop_all_shards() {
    static WATCHDOG_STARTED: AtomicBool = AtomicBool::new(false);
    SHUTDOWN_REQUESTED.store(true, Ordering::SeqCst);
    if WATCHDOG_STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let watchdog = std::thread::Builder::new()
        .name("fail-stop".into())
        .spawn(|| {
            std::thread::sleep(FAIL_STOP_BOUND);
            tracing::error!(
                bound_secs = FAIL_STOP_BOUND.as_secs(),
                "the broker did not stop in time after a shard failed; exiting now"
            );
            std::process::exit(FAIL_STOP_EXIT_CODE);
        });
    if let Err(e) = watchdog {
        tracing::error!(error = %e, "cannot start the fail-stop watchdog; exiting now");
        std::process::exit(FAIL_STOP_EXIT_CODE);
    }
}

/// The message a panic was raised with (`panic!` carries a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The life of one shard.
async fn shard_main(
    shard_id: usize,
    cpu: usize,
    config: Arc<Config>,
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    image: Arc<MetadataImage>,
) -> Result<(), String> {
    // Before anything is spawned: every task below inherits the latency queue.
    crate::util::priority::install();
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
        // Its connections (metrics rendering among them) inherit the background queue.
        crate::util::priority::spawn_background(crate::net::admin::serve(shard.clone(), admin))
            .detach();
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
    crate::util::priority::spawn_background(retention_loop(shard.clone())).detach();
    crate::util::priority::spawn_background(cleaner_loop(shard.clone())).detach();
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

/// Compacts this shard's compacted partitions (`cleanup.policy=compact`) in the background
/// queue, one partition at a time, its I/O paced by `--cleaner-io-bytes-per-sec`.
async fn cleaner_loop(shard: Rc<Shard>) {
    let throttle = crate::storage::Throttle::new(shard.config.cleaner_io_bytes_per_sec);
    loop {
        glommio::timer::sleep(CLEANER_CHECK_INTERVAL).await;
        if shard.shutting_down.get() {
            return;
        }
        for partition in shard.partitions.all() {
            if shard.shutting_down.get() {
                return;
            }
            let now = crate::util::clock::now_ms();
            match partition.compact(now, &throttle).await {
                Ok(stats) => crate::metrics::registry::count_cleaner(
                    crate::metrics::registry::CleanerCounters {
                        segments_cleaned: stats.segments_cleaned,
                        bytes_read: stats.bytes_read,
                        bytes_written: stats.bytes_written,
                        records_removed: stats.records_removed,
                    },
                ),
                Err(e) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "compaction failed; the next pass tries again")
                }
            }
            glommio::yield_if_needed().await;
        }
    }
}

/// Enforces retention and snapshots producer state on this shard's partitions; runs in the
/// background queue and yields between partitions.
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
            glommio::yield_if_needed().await;
        }
    }
}
