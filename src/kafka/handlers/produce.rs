//! Produce (key 0), v3-v13 (v13 names topics by id): validate record batches, append them
//! through the partition's replicated log, answer as `acks` asks.
//!
//! Partitions are grouped by owner shard; each group runs on its shard concurrently with
//! the others, and the answers are put back in the request's order. From v12 a
//! transactional producer (transactions v2) sends no AddPartitionsToTxn: the first batch
//! of its transaction on a partition adds the partition (`txn::implicit`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::cluster::Shard;
use crate::metrics::{self, Stage};
use crate::partition::{AppendError, Appended};
use crate::raft::Acks;
use crate::storage::batch::{validate_produce, TimestampPolicy};
use crate::util::clock::now_ms;

/// One partition's payload, shipped to its owner shard.
struct PartitionWrite {
    topic_index: usize,
    partition_index: usize,
    topic: String,
    partition: i32,
    records: Option<Bytes>,
}

/// The owner shard's answer for one partition.
struct PartitionResult {
    topic_index: usize,
    partition_index: usize,
    error: Option<(ResponseError, String)>,
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    /// KIP-467: (index of the record in the partition's record set, why it was refused).
    record_errors: Vec<(i32, String)>,
}

/// First version whose transactional batches add their partition to the transaction.
const IMPLICIT_ADD_VERSION: i16 = 12;

/// Answers Produce; `None` for acks=0 (the client expects no response).
pub async fn handle(ctx: &Context, request: ProduceRequest) -> Option<ProduceResponse> {
    let acks = Acks::from_wire(request.acks);
    let transactional_id: Option<Rc<str>> = request
        .transactional_id
        .as_ref()
        .filter(|id| ctx.version >= IMPLICIT_ADD_VERSION && !id.is_empty())
        .map(|id| Rc::from(id.as_str()));
    // v13 names topics by id (KIP-516): an unknown id is never auto-created.
    let by_id = ctx.version >= 13;
    let (names, image) = if by_id {
        let image = ctx.shard.image();
        let names = request
            .topic_data
            .iter()
            .map(|t| {
                image
                    .topic_by_id(&t.topic_id)
                    .map(|m| m.name.clone())
                    .unwrap_or_default()
            })
            .collect();
        (names, image)
    } else {
        let names: Vec<String> = request
            .topic_data
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        let image = super::auto_create(ctx, names.clone()).await;
        (names, image)
    };
    let shards = ctx.shard.count;
    let mut per_shard: Vec<Vec<PartitionWrite>> = (0..shards).map(|_| Vec::new()).collect();
    let mut results = Vec::new();
    let mut skeleton: Vec<TopicProduceResponse> = Vec::with_capacity(names.len());
    for (topic_index, topic) in request.topic_data.into_iter().enumerate() {
        let name = &names[topic_index];
        let known = image.topic(name).filter(|_| !name.is_empty());
        skeleton.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(
                    topic
                        .partition_data
                        .iter()
                        .map(|p| {
                            // Overwritten by the owner's answer; left only if the hop failed.
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(ResponseError::UnknownServerError.code())
                                .with_base_offset(-1)
                        })
                        .collect(),
                ),
        );
        for (partition_index, data) in topic.partition_data.into_iter().enumerate() {
            let refuse = |error: ResponseError, message: &str| PartitionResult {
                topic_index,
                partition_index,
                error: Some((error, message.to_string())),
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
                record_errors: Vec::new(),
            };
            if acks.is_none() {
                results.push(refuse(
                    ResponseError::InvalidRequiredAcks,
                    "acks must be 0, 1 or -1",
                ));
                continue;
            }
            match known {
                Some(meta) if meta.has_partition(data.index) => {
                    per_shard[ctx.shard.owner_of(name, data.index)].push(PartitionWrite {
                        topic_index,
                        partition_index,
                        topic: name.clone(),
                        partition: data.index,
                        records: data.records,
                    });
                }
                None if by_id => results.push(refuse(
                    ResponseError::UnknownTopicId,
                    "This server does not host this topic id.",
                )),
                _ => results.push(refuse(
                    ResponseError::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )),
            }
        }
    }
    if let Some(acks) = acks {
        // Kafka's request timeout bounds the wait for replication (acks=all).
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        let calls = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, writes)| !writes.is_empty())
            .map(|(target, writes)| {
                // Crosses to another shard: sent as an owned string.
                let txn = transactional_id.as_deref().map(str::to_string);
                async move {
                    let started = Instant::now();
                    let answer = ctx
                        .shard
                        .invoke_on(target, move |shard| {
                            write_on_owner(shard, writes, txn, acks, timeout)
                        })
                        .await;
                    (started.elapsed(), answer)
                }
            });
        for (elapsed, answer) in join_all(calls).await {
            match answer {
                Ok((mut r, owner_time)) => {
                    ctx.note(Stage::ProduceHop, elapsed.saturating_sub(owner_time));
                    results.append(&mut r);
                }
                Err(e) => tracing::error!(error = %e, "produce hop failed"),
            }
        }
        if acks == Acks::None {
            return None;
        }
    }
    Some(build_response(ctx.version, skeleton, results))
}

/// Runs on the owner shard: validate and append every partition's batches concurrently.
async fn write_on_owner(
    shard: Rc<Shard>,
    writes: Vec<PartitionWrite>,
    transactional_id: Option<String>,
    acks: Acks,
    timeout: Duration,
) -> (Vec<PartitionResult>, Duration) {
    let started = Instant::now();
    let txn = transactional_id.as_deref();
    let results = join_all(
        writes
            .into_iter()
            .map(|w| write_partition(&shard, w, txn, acks, timeout)),
    )
    .await;
    (results, started.elapsed())
}

async fn write_partition(
    shard: &Rc<Shard>,
    write: PartitionWrite,
    transactional_id: Option<&str>,
    acks: Acks,
    timeout: Duration,
) -> PartitionResult {
    let mut result = PartitionResult {
        topic_index: write.topic_index,
        partition_index: write.partition_index,
        error: None,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        record_errors: Vec::new(),
    };
    let Some(partition) = shard.partitions.get(&write.topic, write.partition) else {
        result.error = Some((
            ResponseError::NotLeaderOrFollower,
            "partition is not open on its owner shard".into(),
        ));
        return result;
    };
    let Some(records) = write.records.filter(|r| !r.is_empty()) else {
        result.error = Some((ResponseError::CorruptMessage, "empty record set".into()));
        return result;
    };
    let config = partition.config();
    let now = now_ms();
    let policy = TimestampPolicy {
        create_time_before_max_ms: config.timestamp_before_max_ms,
        create_time_after_max_ms: config.timestamp_after_max_ms,
    };
    let policy = if config.log_append_time {
        TimestampPolicy {
            create_time_before_max_ms: i64::MAX,
            create_time_after_max_ms: i64::MAX,
        }
    } else {
        policy
    };
    let validated = match validate_produce(&records, config.max_message_bytes, now, policy) {
        Ok(validated) => validated,
        Err(e) => {
            let code = e.kafka_error_code();
            result.error = Some((
                ResponseError::try_from_code(code).unwrap_or(ResponseError::CorruptMessage),
                e.to_string(),
            ));
            return result;
        }
    };
    if config.compact {
        // Kafka refuses the whole batch and names each record without a key (KIP-467):
        // compaction keeps the latest record per key, and a record without one has none.
        let keyless = crate::storage::records::keyless_records(&records);
        if !keyless.is_empty() {
            let message = format!(
                "Compacted topic cannot accept message without key in topic partition {}-{}.",
                write.topic, write.partition
            );
            result.record_errors = keyless.into_iter().map(|i| (i, message.clone())).collect();
            result.error = Some((ResponseError::InvalidRecord, message));
            return result;
        }
    }
    if let Some(id) = transactional_id {
        let added = crate::txn::implicit::add_on_first_batch(
            shard,
            &partition,
            id,
            &write.topic,
            write.partition,
            &records,
        )
        .await;
        if let Err(error) = added {
            result.error = Some(error);
            return result;
        }
    }
    metrics::registry::count_produced(
        &write.topic,
        validated.total_bytes as u64,
        validated.record_count.max(0) as u64,
    );
    let batches = match config.compression {
        // The one copy the design allows before the DMA head chunk: offsets are stamped in
        // place.
        None => BytesMut::from(&records[..]),
        // `compression.type` names a codec: batches are re-encoded in it, as Kafka does,
        // and the result is held to the same rules (a batch may grow past the limit).
        Some(codec) => {
            let recompressed = crate::storage::records::recompress(&records, codec)
                .map_err(|e| (ResponseError::CorruptMessage, e.to_string()))
                .and_then(|b| {
                    validate_produce(&b, config.max_message_bytes, now, policy)
                        .map(|_| b)
                        .map_err(|e| {
                            let code = e.kafka_error_code();
                            let error = ResponseError::try_from_code(code)
                                .unwrap_or(ResponseError::CorruptMessage);
                            (error, e.to_string())
                        })
                });
            match recompressed {
                Ok(b) => b,
                Err(error) => {
                    result.error = Some(error);
                    return result;
                }
            }
        }
    };
    let info = match partition.append(batches, config.log_append_time, now) {
        Ok(Appended::New(info)) => info,
        Ok(Appended::Duplicate(original)) => {
            // Idempotent retry: answered with the original offsets once the original is as
            // committed as this request asks (it may still be in flight, or fail).
            let waited = glommio::timer::timeout(timeout, async {
                Ok(partition.wait_original(&original, acks).await)
            })
            .await;
            match waited {
                Err(_) => {
                    result.error = Some((
                        ResponseError::RequestTimedOut,
                        format!("not committed within {} ms", timeout.as_millis()),
                    ));
                    return result;
                }
                Ok(Err(e)) => {
                    result.error = Some((ResponseError::KafkaStorageError, e.to_string()));
                    return result;
                }
                Ok(Ok(())) => {}
            }
            result.base_offset = original.base_offset;
            result.log_append_time_ms = if config.log_append_time {
                original.append_time_ms
            } else {
                -1
            };
            result.log_start_offset = partition.log_start_offset().get();
            return result;
        }
        Err(e) => {
            if e.is_no_space() {
                partition.drop_unwritten().await;
            } else if let AppendError::Replicate(cause) = &e {
                tracing::error!(topic = %write.topic, partition = write.partition, error = %cause, "append failed");
            }
            result.error = Some((e.kafka_error(), e.to_string()));
            return result;
        }
    };
    // The timeout ends only this request's wait: the write and the fdatasync it started
    // belong to the log and run to completion.
    let waited = if acks == Acks::None {
        Ok(partition.wait(&info, acks).await)
    } else {
        glommio::timer::timeout(timeout, async { Ok(partition.wait(&info, acks).await) }).await
    };
    match waited {
        Err(_) => {
            // Written (and still committing), but not within the client's timeout.
            result.error = Some((
                ResponseError::RequestTimedOut,
                format!("not committed within {} ms", timeout.as_millis()),
            ));
        }
        Ok(Err(e)) => {
            tracing::error!(topic = %write.topic, partition = write.partition, error = %e, "append failed");
            result.error = Some((ResponseError::KafkaStorageError, e.to_string()));
        }
        Ok(Ok(())) => {
            result.base_offset = info.base_offset;
            result.log_append_time_ms = if config.log_append_time {
                info.log_append_time_ms
            } else {
                -1
            };
            result.log_start_offset = partition.log_start_offset().get();
        }
    }
    result
}

fn build_response(
    version: i16,
    mut topics: Vec<TopicProduceResponse>,
    results: Vec<PartitionResult>,
) -> ProduceResponse {
    for r in results {
        let Some(partition) = topics
            .get_mut(r.topic_index)
            .and_then(|t| t.partition_responses.get_mut(r.partition_index))
        else {
            continue;
        };
        partition.base_offset = r.base_offset;
        partition.log_append_time_ms = r.log_append_time_ms;
        if version >= 5 {
            partition.log_start_offset = r.log_start_offset;
        }
        partition.error_code = 0;
        if let Some((error, message)) = r.error {
            partition.error_code = error.code();
            if version >= 8 {
                partition.error_message = Some(StrBytes::from_string(message));
                partition.record_errors = r
                    .record_errors
                    .into_iter()
                    .map(|(index, message)| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(index)
                            .with_batch_index_error_message(Some(StrBytes::from_string(message)))
                    })
                    .collect();
            }
        }
    }
    ProduceResponse::default().with_responses(topics)
}
