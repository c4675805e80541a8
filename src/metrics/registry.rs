//! The per-shard metrics registry (thread-local: one shard per thread) and its snapshots.

use std::cell::RefCell;
use std::time::Duration;

use ahash::AHashMap;

use super::histogram::LatencyHistogram;

/// Kafka API keys go up to ~90; one slot each.
pub const API_KEY_SLOTS: usize = 128;

macro_rules! stages {
    ($($variant:ident => $name:literal, $help:literal;)*) => {
        /// A measured step of a request or of the storage engine.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Stage { $(#[doc = $help] $variant,)* }

        /// Every stage, in exposition order.
        pub const STAGES: &[Stage] = &[$(Stage::$variant,)*];

        impl Stage {
            /// The metric label value.
            pub fn name(self) -> &'static str {
                match self { $(Stage::$variant => $name,)* }
            }

            /// What the stage measures.
            pub fn help(self) -> &'static str {
                match self { $(Stage::$variant => $help,)* }
            }
        }
    };
}

stages! {
    NetworkRead => "network_read", "From the first byte of a request frame until it is fully read and decoded.";
    QueueWait => "queue_wait", "From a decoded request until its handler starts running.";
    ProduceHop => "produce_hop", "Cross-shard round trip of a produce request to the partitions' owner shards.";
    ProduceAppend => "produce_append", "Appending a produce payload and writing it with O_DIRECT (the acks=1 point).";
    ProduceCommit => "produce_commit", "Waiting for the commit (fdatasync on a single voter) after the write.";
    ProduceTotal => "produce_total", "A whole Produce request, decode to response ready.";
    FetchHop => "fetch_hop", "Cross-shard round trip of a fetch to the partitions' owner shards.";
    FetchReadCache => "fetch_read_cache", "Reading a partition's batches served from the tail cache.";
    FetchReadDisk => "fetch_read_disk", "Reading a partition's batches with DMA reads from disk.";
    FetchWait => "fetch_long_poll_wait", "Time a fetch spent parked waiting for data (max_wait_ms).";
    FetchTotal => "fetch_total", "A whole Fetch request, decode to response ready.";
    StorageWrite => "storage_write", "One O_DIRECT write round of a segment (all dirty chunks, in parallel).";
    Fdatasync => "fdatasync", "One fdatasync of a segment file (shared by every waiter of that turn).";
    CommitTurnWait => "commit_turn_wait", "From a segment asking for a flush until the commit turn that flushes it starts.";
    CommitFlush => "commit_flush", "One commit turn: the fdatasyncs of every segment in it, issued together.";
    CommitNotify => "commit_notify", "From a turn making bytes durable until a waiting produce runs again.";
    ResponseWrite => "response_write", "Writing a response to the socket once it is next in order.";
    MeshRoundTrip => "mesh_round_trip", "Any cross-shard call, send to reply.";
    TaskQueueDelay => "task_queue_delay", "How late the shard's executor runs a task that became ready (scheduling delay).";
}

/// Bytes and records moved for one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicCounters {
    /// Bytes produced.
    pub bytes_in: u64,
    /// Records produced.
    pub records_in: u64,
    /// Bytes fetched.
    pub bytes_out: u64,
    /// Records fetched (counted from batch headers).
    pub records_out: u64,
}

/// One shard's live metrics.
pub struct ShardMetrics {
    api_latency: Vec<Option<LatencyHistogram>>,
    requests: Vec<u64>,
    stages: Vec<LatencyHistogram>,
    errors: AHashMap<(i16, i16), u64>,
    topics: AHashMap<String, TopicCounters>,
    connections_accepted: u64,
    connections_refused: u64,
    commit_turns: u64,
    commit_turn_files: u64,
    fetch_incremental: u64,
    cleaner: CleanerCounters,
}

/// What the log cleaners of a shard did since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerCounters {
    /// Segments replaced by compacted ones.
    pub segments_cleaned: u64,
    /// Bytes read by the cleaner.
    pub bytes_read: u64,
    /// Bytes written by the cleaner.
    pub bytes_written: u64,
    /// Records (and transaction markers) compaction removed.
    pub records_removed: u64,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            api_latency: (0..API_KEY_SLOTS).map(|_| None).collect(),
            requests: vec![0; API_KEY_SLOTS],
            stages: STAGES.iter().map(|_| LatencyHistogram::new()).collect(),
            errors: AHashMap::new(),
            topics: AHashMap::new(),
            connections_accepted: 0,
            commit_turns: 0,
            commit_turn_files: 0,
            connections_refused: 0,
            fetch_incremental: 0,
            cleaner: CleanerCounters::default(),
        }
    }
}

thread_local! {
    static METRICS: RefCell<ShardMetrics> = RefCell::new(ShardMetrics::default());
}

fn with<R>(f: impl FnOnce(&mut ShardMetrics) -> R) -> R {
    METRICS.with(|m| f(&mut m.borrow_mut()))
}

/// Records a stage duration on this shard.
pub fn record(stage: Stage, elapsed: Duration) {
    with(|m| m.stages[stage as usize].record(elapsed));
}

/// Records one answered request of `api_key` and its latency.
pub fn record_request(api_key: i16, elapsed: Duration) {
    let slot = api_key as usize;
    if slot >= API_KEY_SLOTS {
        return;
    }
    with(|m| {
        m.requests[slot] += 1;
        m.api_latency[slot]
            .get_or_insert_with(LatencyHistogram::new)
            .record(elapsed);
    });
}

/// Counts an error code returned by `api_key` (per partition or per request).
pub fn count_error(api_key: i16, error_code: i16) {
    if error_code != 0 {
        with(|m| *m.errors.entry((api_key, error_code)).or_default() += 1);
    }
}

/// Counts produced bytes and records for a topic.
pub fn count_produced(topic: &str, bytes: u64, records: u64) {
    with(|m| {
        let c = topic_entry(m, topic);
        c.bytes_in += bytes;
        c.records_in += records;
    });
}

/// Counts fetched bytes and records for a topic.
pub fn count_fetched(topic: &str, bytes: u64, records: u64) {
    with(|m| {
        let c = topic_entry(m, topic);
        c.bytes_out += bytes;
        c.records_out += records;
    });
}

fn topic_entry<'a>(m: &'a mut ShardMetrics, topic: &str) -> &'a mut TopicCounters {
    // Look up by &str first so the steady state allocates nothing.
    if !m.topics.contains_key(topic) {
        m.topics.insert(topic.to_string(), TopicCounters::default());
    }
    m.topics
        .get_mut(topic)
        .expect("the topic entry was inserted just above")
}

/// Counts one commit turn of the shard's commit pipeline and the segment files it flushed.
pub fn count_commit_turn(files: u64) {
    with(|m| {
        m.commit_turns += 1;
        m.commit_turn_files += files;
    });
}

/// Counts a Fetch served incrementally from a fetch session (KIP-227).
pub fn count_incremental_fetch() {
    with(|m| m.fetch_incremental += 1);
}

/// Adds one cleaning pass's work to the shard's cleaner counters.
pub fn count_cleaner(pass: CleanerCounters) {
    with(|m| {
        let c = &mut m.cleaner;
        c.segments_cleaned += pass.segments_cleaned;
        c.bytes_read += pass.bytes_read;
        c.bytes_written += pass.bytes_written;
        c.records_removed += pass.records_removed;
    });
}

/// Counts a connection accepted (`true`) or refused by the connection limit.
pub fn count_connection(accepted: bool) {
    with(|m| {
        if accepted {
            m.connections_accepted += 1;
        } else {
            m.connections_refused += 1;
        }
    });
}

/// A gauge for one partition, filled by the shard at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionGauge {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Owner shard.
    pub shard: usize,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// First offset.
    pub log_start_offset: i64,
    /// Committed end.
    pub high_watermark: i64,
    /// Next offset to assign.
    pub log_end_offset: i64,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Why the partition is offline (an I/O error on its log), if it is.
    pub offline: Option<String>,
}

/// A consumer group's lag on one partition (filled in by the group coordinator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagGauge {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// High watermark minus committed offset.
    pub lag: i64,
}

/// Everything one shard reports at a scrape; `Send` so it can cross the mesh.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per API key: (requests, latency).
    pub api: Vec<(i16, u64, LatencyHistogram)>,
    /// Per stage latency, in `STAGES` order.
    pub stages: Vec<LatencyHistogram>,
    /// (api key, error code) → count.
    pub errors: Vec<((i16, i16), u64)>,
    /// Per topic counters.
    pub topics: Vec<(String, TopicCounters)>,
    /// Open connections (gauge).
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused by the limit since start.
    pub connections_refused: u64,
    /// Commit turns run since start.
    pub commit_turns: u64,
    /// Segment files flushed by those turns (files per turn = this / turns).
    pub commit_turn_files: u64,
    /// Fetches served incrementally from a fetch session since start.
    pub fetch_incremental: u64,
    /// What the log cleaners did since start.
    pub cleaner: CleanerCounters,
    /// Requests accepted and not yet answered (gauge).
    pub requests_in_flight: u64,
    /// Partitions and their sizes/offsets.
    pub partitions: Vec<PartitionGauge>,
    /// Consumer lag per group and partition.
    pub lag: Vec<LagGauge>,
    /// Partitions per shard (index = shard).
    pub partitions_per_shard: Vec<u64>,
}

/// This shard's counters and histograms (gauges are added by the caller).
pub fn snapshot() -> Snapshot {
    with(|m| Snapshot {
        api: m
            .api_latency
            .iter()
            .enumerate()
            .filter_map(|(key, h)| h.as_ref().map(|h| (key as i16, m.requests[key], h.clone())))
            .collect(),
        stages: m.stages.clone(),
        errors: m.errors.iter().map(|(k, v)| (*k, *v)).collect(),
        topics: m.topics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        connections_accepted: m.connections_accepted,
        connections_refused: m.connections_refused,
        commit_turns: m.commit_turns,
        commit_turn_files: m.commit_turn_files,
        fetch_incremental: m.fetch_incremental,
        cleaner: m.cleaner,
        ..Snapshot::default()
    })
}

impl Snapshot {
    /// Adds another shard's snapshot into this one.
    pub fn merge(&mut self, other: Snapshot) {
        for (key, count, hist) in other.api {
            match self.api.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, c, h)) => {
                    *c += count;
                    h.merge(&hist);
                }
                None => self.api.push((key, count, hist)),
            }
        }
        if self.stages.is_empty() {
            self.stages = other.stages;
        } else {
            for (mine, theirs) in self.stages.iter_mut().zip(other.stages.iter()) {
                mine.merge(theirs);
            }
        }
        for (key, count) in other.errors {
            match self.errors.iter_mut().find(|(k, _)| *k == key) {
                Some((_, c)) => *c += count,
                None => self.errors.push((key, count)),
            }
        }
        for (topic, counters) in other.topics {
            match self.topics.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, c)) => {
                    c.bytes_in += counters.bytes_in;
                    c.records_in += counters.records_in;
                    c.bytes_out += counters.bytes_out;
                    c.records_out += counters.records_out;
                }
                None => self.topics.push((topic, counters)),
            }
        }
        self.connections_open += other.connections_open;
        self.connections_accepted += other.connections_accepted;
        self.connections_refused += other.connections_refused;
        self.commit_turns += other.commit_turns;
        self.commit_turn_files += other.commit_turn_files;
        self.fetch_incremental += other.fetch_incremental;
        let (c, o) = (&mut self.cleaner, other.cleaner);
        c.segments_cleaned += o.segments_cleaned;
        c.bytes_read += o.bytes_read;
        c.bytes_written += o.bytes_written;
        c.records_removed += o.records_removed;
        self.requests_in_flight += other.requests_in_flight;
        self.partitions.extend(other.partitions);
        self.lag.extend(other.lag);
        self.partitions_per_shard.extend(other.partitions_per_shard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_from_two_shards_merge_counts_and_histograms() {
        record_request(0, Duration::from_micros(200));
        record(Stage::ProduceAppend, Duration::from_micros(50));
        count_error(0, 2);
        count_produced("orders", 100, 3);
        let a = snapshot();
        let b = std::thread::spawn(|| {
            record_request(0, Duration::from_micros(400));
            count_error(0, 2);
            count_produced("orders", 50, 1);
            snapshot()
        })
        .join()
        .unwrap();
        let mut merged = a;
        merged.merge(b);
        let (_, count, hist) = merged.api.iter().find(|(k, _, _)| *k == 0).unwrap();
        assert_eq!(*count, 2);
        assert_eq!(hist.count(), 2);
        assert_eq!(merged.errors, vec![((0, 2), 2)]);
        let orders = merged.topics.iter().find(|(t, _)| t == "orders").unwrap().1;
        assert_eq!((orders.bytes_in, orders.records_in), (150, 4));
        assert_eq!(merged.stages[Stage::ProduceAppend as usize].count(), 1);
    }
}
