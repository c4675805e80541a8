//! Fetch (key 1), v4-v18: read whole batches up to the high watermark (read_uncommitted) or
//! the last stable offset (read_committed, with the aborted transactions of the range so the
//! client drops their records); long-poll until `min_bytes` are available or `max_wait_ms`
//! passes, woken by commits on the owner shards (never by polling, `gather.rs`). v17-v18
//! only add fields for KRaft followers, which are ignored.
//!
//! The response honours `max_bytes` as Kafka does: whole batches in request order, only the
//! first batch of the first partition with data may exceed it; each owner reads no more than
//! the limit (plus that one batch), so a consumer of many full partitions gets a response of
//! about `max_bytes`, not the sum of its `partition_max_bytes`.
//!
//! Incremental fetch sessions (KIP-227, v7+) are kept per shard (`session.rs`): a session's
//! fetch reads every partition it holds and answers only those with something new.

mod gather;
mod owner;
mod session;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::metrics;
use gather::{gather, Wait};
use owner::ReadSpec;

/// Answers Fetch.
pub async fn handle(ctx: &Context, mut request: FetchRequest) -> FetchResponse {
    let plan = if ctx.version >= 7 {
        let now = std::time::Instant::now();
        session::plan(&mut request, ctx.shard.id, ctx.shard.count, now)
    } else {
        session::Plan::Full { session_id: 0 }
    };
    let (session_id, incremental) = match plan {
        session::Plan::Full { session_id } => (session_id, false),
        session::Plan::Incremental { session_id } => {
            metrics::registry::count_incremental_fetch();
            (session_id, true)
        }
        session::Plan::Refuse(error) => {
            return FetchResponse::default()
                .with_error_code(error.code())
                .with_session_id(0)
        }
    };
    let image = ctx.shard.image();
    let read_committed = request.isolation_level == 1;
    let response_max_bytes = if request.max_bytes <= 0 {
        i32::MAX
    } else {
        request.max_bytes
    } as usize;
    // Resolve names (v13+ sends topic ids) and build the response skeleton.
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(request.topics.len());
    // (owner shard, spec) and, beside it, where its answer goes in the response.
    let mut specs: Vec<(usize, ReadSpec)> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new();
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
                    specs.push((ctx.shard.owner_of(&meta.name, p.partition), spec));
                    slots.push((ti, pi));
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

    let wait = Wait {
        min_bytes: request.min_bytes.max(0) as usize,
        max_wait: Duration::from_millis(request.max_wait_ms.max(0) as u64),
    };
    let results = gather(ctx, &specs, response_max_bytes, wait).await;

    // Merge in request order within the response-wide max_bytes: whole batches while they
    // fit, except that the first batch of the first partition with data is returned even
    // when it alone is larger (KIP-74), so a consumer always makes progress.
    let mut budget = response_max_bytes;
    let mut first = true;
    for ((&(ti, pi), (_, spec)), result) in slots.iter().zip(&specs).zip(results) {
        let data = &mut topics[ti].partitions[pi];
        let Some(mut result) = result else {
            data.error_code = ResponseError::NotLeaderOrFollower.code();
            continue;
        };
        let kept = keep_fitting(&result.batches, &mut budget, first);
        result.batches.truncate(kept);
        first &= kept == 0;
        data.error_code = result.error.map_or(0, |e| e.code());
        let records = concat(result.batches);
        if !records.is_empty() {
            metrics::registry::count_fetched(
                &spec.topic,
                records.len() as u64,
                count_records(&records),
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
        data.records = Some(records);
    }
    if session_id != 0 {
        session::settle(session_id, incremental, &mut topics);
    }
    FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics)
}

/// How many of `batches` fit in `budget` (taking them from it): whole batches while they
/// fit; when `first`, the first batch always.
fn keep_fitting(batches: &[Bytes], budget: &mut usize, first: bool) -> usize {
    let mut kept = 0;
    for batch in batches {
        if batch.len() > *budget && !(first && kept == 0) {
            break;
        }
        *budget = budget.saturating_sub(batch.len());
        kept += 1;
    }
    kept
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
fn concat(batches: Vec<Bytes>) -> Bytes {
    if batches.len() <= 1 {
        return batches.into_iter().next().unwrap_or_default();
    }
    let total = batches.iter().map(Bytes::len).sum();
    let mut buf = BytesMut::with_capacity(total);
    for batch in batches {
        buf.extend_from_slice(&batch);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(sizes: &[usize]) -> Vec<Bytes> {
        sizes.iter().map(|&n| Bytes::from(vec![0u8; n])).collect()
    }

    #[test]
    fn only_the_first_batch_of_the_first_partition_may_exceed_the_budget() {
        let mut budget = 100;
        // The first partition's first batch is larger than the whole response limit.
        assert_eq!(keep_fitting(&batches(&[150, 10]), &mut budget, true), 1);
        assert_eq!(budget, 0);
        // Later partitions get nothing once the budget is spent.
        assert_eq!(keep_fitting(&batches(&[1]), &mut budget, false), 0);
    }

    #[test]
    fn a_partition_is_cut_at_the_last_whole_batch_that_fits() {
        let mut budget = 100;
        assert_eq!(keep_fitting(&batches(&[40, 40, 40]), &mut budget, true), 2);
        assert_eq!(budget, 20);
        assert_eq!(keep_fitting(&batches(&[30, 10]), &mut budget, false), 0);
        assert_eq!(keep_fitting(&batches(&[20, 1]), &mut budget, false), 1);
        assert_eq!(budget, 0);
    }
}
