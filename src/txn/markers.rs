//! The partition side of transactions, run on each partition's owner shard: writing commit
//! and abort markers (for the coordinator and for WriteTxnMarkers) and appending the
//! offsets of TxnOffsetCommit as a transactional batch of `__consumer_offsets`.
//!
//! A marker is proposed and noted in the partition's [`TxnIndex`](super::TxnIndex) and
//! producer table in one synchronous step (so the last stable offset never runs ahead of
//! what is written), then waited for with acks=all. A commit marker on a
//! `__consumer_offsets` partition hands that transaction's offsets to the group coordinator:
//! until then they were in the log but invisible.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use crate::cluster::Shard;
use crate::groups::records::GroupRecord;
use crate::groups::OFFSETS_TOPIC;
use crate::partition::Appended;
use crate::partition::Partition;
use crate::raft::Acks;
use crate::storage::records::marker_batch;
use crate::storage::BatchHeader;
use crate::util::clock::now_ms;
use crate::util::ids::Offset;

/// Bytes read per step when collecting a committed transaction's offsets.
const OFFSETS_READ_BYTES: usize = 1 << 20;

/// One marker to write: the result of `producer_id`'s transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerWrite {
    /// The producer.
    pub producer_id: i64,
    /// The epoch written in the marker.
    pub producer_epoch: i16,
    /// Commit or abort.
    pub commit: bool,
    /// The coordinator's epoch (written in the marker value).
    pub coordinator_epoch: i32,
}

/// Writes `marker` to every partition, each on its owner shard, concurrently; returns an
/// error code per partition in input order (0 = written).
pub async fn write_markers(
    shard: &Rc<Shard>,
    marker: MarkerWrite,
    partitions: Vec<(String, i32)>,
) -> Vec<i16> {
    let items = partitions
        .into_iter()
        .map(|(topic, partition)| (shard.owner_of(&topic, partition), (topic, partition)))
        .collect();
    let results = crate::cluster::scatter::scatter(
        shard,
        items,
        move |owner, (topic, partition): (String, i32)| {
            let marker = marker.clone();
            async move { write_marker_local(&owner, &topic, partition, &marker).await }
        },
    )
    .await;
    results
        .into_iter()
        .map(|r| r.unwrap_or(ResponseError::CoordinatorNotAvailable.code()))
        .collect()
}

/// Writes one marker on this (the owner) shard.
pub async fn write_marker_local(
    shard: &Rc<Shard>,
    topic: &str,
    index: i32,
    marker: &MarkerWrite,
) -> i16 {
    let Some(partition) = shard.partitions.get(topic, index) else {
        return ResponseError::UnknownTopicOrPartition.code();
    };
    let now = now_ms();
    let batch = match marker_batch(
        marker.producer_id,
        marker.producer_epoch,
        marker.commit,
        marker.coordinator_epoch,
        now,
    ) {
        Ok(batch) => batch,
        Err(e) => {
            tracing::error!(error = %e, "encoding a transaction marker");
            return ResponseError::UnknownServerError.code();
        }
    };
    // The transaction's first offset here, before the marker closes it.
    let first = partition.open_transaction_since(marker.producer_id);
    let info = match partition.append(batch, false, now) {
        Ok(Appended::New(info)) => info,
        Ok(Appended::Duplicate(_)) => return ResponseError::Unknown(0).code(),
        Err(e) => {
            tracing::error!(topic, partition = index, error = %e, "marker append failed");
            return e.kafka_error().code();
        }
    };
    if let Err(e) = partition.wait(&info, Acks::All).await {
        tracing::error!(topic, partition = index, error = %e, "marker commit failed");
        return ResponseError::KafkaStorageError.code();
    }
    if let (true, Some(first), true) = (marker.commit, first, topic == OFFSETS_TOPIC) {
        if let Err(e) = hand_offsets_to_group_coordinator(
            shard,
            &partition,
            marker.producer_id,
            first.get(),
            info.base_offset,
        )
        .await
        {
            tracing::error!(partition = index, error = %e, "committing transactional offsets");
            return ResponseError::UnknownServerError.code();
        }
    }
    if topic == OFFSETS_TOPIC {
        // Committed or aborted, the transaction's offsets are no longer pending.
        let producer_id = marker.producer_id;
        let ended = crate::groups::driver::with_coordinator(shard, index, move |c, _| {
            c.end_txn_offsets(producer_id);
            ((), crate::groups::Effects::default())
        })
        .await;
        if let Err(e) = ended {
            // Not loaded here: a loading coordinator starts with nothing pending.
            tracing::debug!(partition = index, error = %e, "ending pending transactional offsets");
        }
    }
    ResponseError::Unknown(0).code()
}

/// Replays the offset records `producer_id` wrote in `[first, marker)` into the group
/// coordinator of this `__consumer_offsets` partition: the transaction committed.
async fn hand_offsets_to_group_coordinator(
    shard: &Rc<Shard>,
    partition: &Partition,
    producer_id: i64,
    first: i64,
    marker: i64,
) -> Result<(), String> {
    let mut records: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    let mut offset = first;
    while offset < marker {
        let data = partition
            .read(Offset(offset), Offset(marker), OFFSETS_READ_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        if data.batches.is_empty() {
            break;
        }
        for batch in data.batches {
            let header = BatchHeader::parse(&batch).map_err(|e| e.to_string())?;
            offset = offset.max(header.last_offset() + 1);
            if header.producer_id != producer_id
                || !header.is_transactional()
                || header.is_control()
                || header.base_offset < first
            {
                continue;
            }
            let mut bytes = batch.clone();
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
                .map_err(|e| e.to_string())?;
            for r in set.records {
                if let Some(key) = r.key {
                    records.push((key, r.value));
                }
            }
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    let count = records.len();
    crate::groups::driver::with_coordinator(shard, partition.index, move |c, now| {
        for (key, value) in &records {
            if let Err(e) = c.replay(key, value.as_deref(), now) {
                tracing::warn!(error = %e, "skipping a transactional offset record");
            }
        }
        ((), crate::groups::Effects::default())
    })
    .await
    .map_err(|e| e.to_string())?;
    tracing::debug!(
        partition = partition.index,
        producer_id,
        count,
        "transactional offsets committed"
    );
    Ok(())
}

/// Appends TxnOffsetCommit's offset records to this shard's `__consumer_offsets` partition
/// as one transactional batch of `producer_id`: stored now, visible at the commit marker.
pub async fn append_txn_offsets(
    shard: &Rc<Shard>,
    index: i32,
    producer_id: i64,
    producer_epoch: i16,
    records: &[GroupRecord],
) -> Result<(), String> {
    let partition = shard
        .partitions
        .get(OFFSETS_TOPIC, index)
        .ok_or_else(|| format!("{OFFSETS_TOPIC}/{index} is not served here"))?;
    let now = now_ms();
    let batch =
        crate::storage::records::build_batch(records, Some((producer_id, producer_epoch)), now)
            .map_err(|e| e.to_string())?;
    partition
        .append_committed(batch, now)
        .await
        .map_err(|e| e.to_string())
}
