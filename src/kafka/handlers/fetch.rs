//! Fetch (key 1), v4-v16: read whole batches up to the high watermark (read_uncommitted) or
//! the last stable offset (read_committed, with the aborted transactions of the range so the
//! client drops their records); long-poll until `min_bytes` are available or `max_wait_ms`
//! passes, woken by commits (never by polling).
//!
//! Sessions (KIP-227) are not kept: every answer is a full, sessionless response
//! (session id 0), which every client accepts.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::{select, select_all, Either};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::cluster::scatter::scatter;
use crate::cluster::Shard;
use crate::metrics::{self, Stage};
use crate::partition::AbortedTxn;
use crate::storage::StorageError;
use crate::util::ids::Offset;

/// One partition to read, shipped to its owner shard.
#[derive(Clone)]
struct ReadSpec {
    topic: String,
    partition: i32,
    fetch_offset: i64,
    current_leader_epoch: i32,
    max_bytes: usize,
    /// isolation_level=1: stop at the last stable offset.
    read_committed: bool,
}

/// What the owner read.
struct ReadResult {
    /// The partition's error, if any.
    error: Option<ResponseError>,
    high_watermark: i64,
    last_stable_offset: i64,
    /// Aborted transactions overlapping the returned range (read_committed only).
    aborted: Vec<AbortedTxn>,
    log_start_offset: i64,
    records: Option<Bytes>,
    /// Time spent on the owner shard, to separate the hop from the read.
    owner_time: Duration,
}

impl ReadResult {
    fn error(error: ResponseError) -> ReadResult {
        ReadResult {
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            aborted: Vec::new(),
            log_start_offset: -1,
            records: None,
            owner_time: Duration::ZERO,
        }
    }

    fn len(&self) -> usize {
        self.records.as_ref().map_or(0, Bytes::len)
    }
}

/// Answers Fetch.
pub async fn handle(ctx: &Context, request: FetchRequest) -> FetchResponse {
    let image = ctx.shard.image();
    let read_committed = request.isolation_level == 1;
    let response_max_bytes = if request.max_bytes <= 0 {
        i32::MAX
    } else {
        request.max_bytes
    } as usize;
    // Resolve names (v13+ sends topic ids) and build the response skeleton.
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(request.topics.len());
    let mut specs: Vec<(usize, (usize, usize, ReadSpec))> = Vec::new();
    for (ti, topic) in request.topics.iter().enumerate() {
        let meta = if ctx.version >= 13 {
            image.topic_by_id(&topic.topic_id)
        } else {
            image.topic(topic.topic.as_str())
        };
        let mut response_topic = FetchableTopicResponse::default()
            .with_topic(topic.topic.clone())
            .with_topic_id(topic.topic_id);
        for (pi, p) in topic.partitions.iter().enumerate() {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(read_committed.then(Vec::new))
                // Clients expect an empty record set, never a null one.
                .with_records(Some(Bytes::new()));
            match meta {
                Some(meta) if meta.has_partition(p.partition) => {
                    let spec = ReadSpec {
                        topic: meta.name.clone(),
                        partition: p.partition,
                        fetch_offset: p.fetch_offset,
                        current_leader_epoch: p.current_leader_epoch,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                        read_committed,
                    };
                    specs.push((ctx.shard.owner_of(&meta.name, p.partition), (ti, pi, spec)));
                }
                _ => {
                    let error = if ctx.version >= 13 && meta.is_none() {
                        ResponseError::UnknownTopicId
                    } else {
                        ResponseError::UnknownTopicOrPartition
                    };
                    data.error_code = error.code();
                }
            }
            response_topic.partitions.push(data);
        }
        if ctx.version < 13 {
            response_topic.topic = TopicName(StrBytes::from_string(topic.topic.to_string()));
        }
        topics.push(response_topic);
    }

    let mut results = read_all(ctx, &specs).await;
    let available: usize = results.iter().flatten().map(ReadResult::len).sum();
    let has_error = results
        .iter()
        .any(|r| r.as_ref().is_none_or(|r| r.error.is_some()));
    let min_bytes = request.min_bytes.max(0) as usize;
    if request.max_wait_ms > 0 && available < min_bytes && !has_error && !specs.is_empty() {
        let waited = Duration::from_millis(request.max_wait_ms as u64);
        let started = Instant::now();
        wait_for_commits(&ctx.shard, &specs, waited).await;
        ctx.note(Stage::FetchWait, started.elapsed());
        results = read_all(ctx, &specs).await;
    }

    // Merge in request order, honouring the response-wide max_bytes (the first partition
    // with data is always returned whole, as KIP-74 asks).
    let mut budget = response_max_bytes;
    let mut first = true;
    for ((_, (ti, pi, spec)), result) in specs.iter().zip(results) {
        let data = &mut topics[*ti].partitions[*pi];
        let Some(mut result) = result else {
            data.error_code = ResponseError::NotLeaderOrFollower.code();
            continue;
        };
        let len = result.len();
        if len > 0 {
            if !first && len > budget {
                result.records = None;
            } else {
                budget = budget.saturating_sub(len);
                first = false;
            }
        }
        data.error_code = result.error.map_or(0, |e| e.code());
        if let Some(records) = &result.records {
            metrics::registry::count_fetched(
                &spec.topic,
                records.len() as u64,
                count_records(records),
            );
        }
        data.high_watermark = result.high_watermark;
        data.last_stable_offset = result.last_stable_offset;
        if read_committed {
            data.aborted_transactions = Some(
                result
                    .aborted
                    .iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect(),
            );
        }
        if ctx.version >= 5 {
            data.log_start_offset = result.log_start_offset;
        }
        data.records = Some(result.records.unwrap_or_default());
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics)
}

async fn read_all(
    ctx: &Context,
    specs: &[(usize, (usize, usize, ReadSpec))],
) -> Vec<Option<ReadResult>> {
    let started = Instant::now();
    let results = read_all_inner(&ctx.shard, specs).await;
    let owner_max = results
        .iter()
        .flatten()
        .map(|r| r.owner_time)
        .max()
        .unwrap_or_default();
    ctx.note(Stage::FetchHop, started.elapsed().saturating_sub(owner_max));
    results
}

async fn read_all_inner(
    shard: &Rc<Shard>,
    specs: &[(usize, (usize, usize, ReadSpec))],
) -> Vec<Option<ReadResult>> {
    let items: Vec<(usize, ReadSpec)> = specs
        .iter()
        .map(|(owner, (_, _, s))| (*owner, s.clone()))
        .collect();
    scatter(shard, items, |owner, spec| async move {
        read_partition(&owner, spec).await
    })
    .await
}

/// Runs on the owner shard.
async fn read_partition(shard: &Rc<Shard>, spec: ReadSpec) -> ReadResult {
    let started = Instant::now();
    let mut result = read_partition_inner(shard, spec).await;
    result.owner_time = started.elapsed();
    result
}

async fn read_partition_inner(shard: &Rc<Shard>, spec: ReadSpec) -> ReadResult {
    let Some(partition) = shard.partitions.get(&spec.topic, spec.partition) else {
        return ReadResult::error(ResponseError::NotLeaderOrFollower);
    };
    if let Err(error) = partition.check_leader_epoch(spec.current_leader_epoch) {
        return ReadResult::error(error);
    }
    if partition.offline_reason().is_some() {
        return ReadResult::error(ResponseError::KafkaStorageError);
    }
    let high_watermark = partition.high_watermark().get();
    let last_stable_offset = partition.last_stable_offset().get();
    let log_start_offset = partition.log_start_offset().get();
    let upper = if spec.read_committed {
        last_stable_offset
    } else {
        high_watermark
    };
    let mut result = ReadResult {
        error: None,
        high_watermark,
        last_stable_offset,
        aborted: Vec::new(),
        log_start_offset,
        records: None,
        owner_time: Duration::ZERO,
    };
    if spec.fetch_offset < log_start_offset || spec.fetch_offset > partition.log_end_offset().get()
    {
        result.error = Some(ResponseError::OffsetOutOfRange);
        return result;
    }
    if spec.fetch_offset >= upper {
        return result;
    }
    let started = Instant::now();
    match partition
        .read(Offset(spec.fetch_offset), Offset(upper), spec.max_bytes)
        .await
    {
        Ok(fetched) => {
            let stage = if fetched.from_cache {
                Stage::FetchReadCache
            } else {
                Stage::FetchReadDisk
            };
            metrics::record(stage, started.elapsed());
            if spec.read_committed {
                let end = fetched
                    .batches
                    .last()
                    .and_then(|b| crate::storage::BatchHeader::parse(b).ok())
                    .map_or(upper, |h| h.last_offset() + 1);
                result.aborted = partition.aborted_in(Offset(spec.fetch_offset), Offset(end));
            }
            result.records = Some(concat(fetched.batches, fetched.total_bytes));
        }
        Err(StorageError::OffsetOutOfRange { .. }) => {
            result.error = Some(ResponseError::OffsetOutOfRange)
        }
        Err(e) => {
            tracing::error!(topic = %spec.topic, partition = spec.partition, error = %e, "fetch read failed");
            result.error = Some(ResponseError::KafkaStorageError);
        }
    }
    result
}

/// Records in a record set, summed from batch headers (nothing is decoded).
fn count_records(records: &[u8]) -> u64 {
    let be_i32 = |at: usize| {
        i32::from_be_bytes([
            records[at],
            records[at + 1],
            records[at + 2],
            records[at + 3],
        ])
    };
    let mut pos = 0usize;
    let mut total = 0u64;
    while pos + 61 <= records.len() {
        total += be_i32(pos + 57).max(0) as u64;
        let length = be_i32(pos + 8);
        if length <= 0 {
            break;
        }
        pos += 12 + length as usize;
    }
    total
}

/// Joins batches into one record set. A single batch (the common tail case) is not copied.
fn concat(batches: Vec<Bytes>, total_bytes: usize) -> Bytes {
    if batches.len() == 1 {
        return batches.into_iter().next().unwrap_or_default();
    }
    let mut buf = BytesMut::with_capacity(total_bytes);
    for batch in batches {
        buf.extend_from_slice(&batch);
    }
    buf.freeze()
}

/// Waits until any fetched partition's high watermark moves past its fetch offset, or
/// `max_wait` passes. Each owner shard waits on its own partitions' commit notifications.
async fn wait_for_commits(
    shard: &Rc<Shard>,
    specs: &[(usize, (usize, usize, ReadSpec))],
    max_wait: Duration,
) {
    let mut per_shard: Vec<Vec<(String, i32, i64, bool)>> =
        (0..shard.count).map(|_| Vec::new()).collect();
    for (owner, (_, _, s)) in specs {
        if let Some(group) = per_shard.get_mut(*owner) {
            group.push((
                s.topic.clone(),
                s.partition,
                s.fetch_offset,
                s.read_committed,
            ));
        }
    }
    let waits: Vec<_> = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, group)| !group.is_empty())
        .map(|(target, group)| {
            Box::pin(shard.invoke_on(target, move |owner| async move {
                wait_on_owner(&owner, group, max_wait).await
            }))
        })
        .collect();
    if waits.is_empty() {
        return;
    }
    let deadline = Box::pin(glommio::timer::sleep(max_wait));
    let _ = select(select_all(waits), deadline).await;
}

/// Runs on the owner shard: resolves when one partition has data past its fetch offset
/// (below the last stable offset for read_committed).
async fn wait_on_owner(
    shard: &Rc<Shard>,
    group: Vec<(String, i32, i64, bool)>,
    max_wait: Duration,
) {
    let partitions: Vec<_> = group
        .into_iter()
        .filter_map(|(topic, index, offset, committed)| {
            shard
                .partitions
                .get(&topic, index)
                .map(|p| (p, offset, committed))
        })
        .collect();
    let deadline = glommio::timer::sleep(max_wait);
    futures::pin_mut!(deadline);
    loop {
        if partitions.iter().any(|(p, offset, committed)| {
            let upper = if *committed {
                p.last_stable_offset()
            } else {
                p.high_watermark()
            };
            upper.get() > *offset
        }) {
            return;
        }
        if partitions.is_empty() || shard.shutting_down.get() {
            return;
        }
        let notified: Vec<_> = partitions
            .iter()
            .map(|(p, _, _)| Box::pin(p.committed().notified()))
            .collect();
        match select(select_all(notified), deadline.as_mut()).await {
            Either::Left(_) => continue,
            Either::Right(_) => return,
        }
    }
}
