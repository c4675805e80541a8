//! The broker's [`CoordinatorLog`]: a [`Partition`] of an internal topic, found through
//! the shard's partition table.

use std::rc::{Rc, Weak};

use bytes::Bytes;

use super::{CoordinatorLog, LogTable};
use crate::cluster::Shard;
use crate::partition::{AppendError, Partition};
use crate::storage::batch::{BatchError, BatchHeader};
use crate::storage::records::{build_batch, EncodeError, KeyedRecord};
use crate::storage::StorageError;
use crate::util::ids::{LeaderEpoch, Offset};

/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Why a coordinator partition could not be read back or written.
#[derive(Debug, thiserror::Error)]
pub enum PartitionLogError {
    /// The log could not be read.
    #[error("reading {topic}/{partition} at offset {offset}: {source}")]
    Read {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Where the read started.
        offset: i64,
        /// What the storage said.
        source: StorageError,
    },
    /// A stored batch header does not parse (the log is damaged).
    #[error("batch header in {topic}/{partition} after offset {offset}: {source}")]
    Header {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Where the read that returned it started.
        offset: i64,
        /// What is wrong with it.
        source: BatchError,
    },
    /// The records could not be encoded as a batch.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The append was refused or not committed.
    #[error(transparent)]
    Append(#[from] AppendError),
}

impl CoordinatorLog for Partition {
    type Error = PartitionLogError;

    fn leader_epoch(&self) -> LeaderEpoch {
        Partition::leader_epoch(self)
    }

    async fn load(&self, mut visit: impl FnMut(Offset, KeyedRecord)) -> Result<(), Self::Error> {
        let high_watermark = self.high_watermark().get();
        let mut offset = self.log_start_offset().get();
        while offset < high_watermark {
            let data = self
                .read(Offset(offset), Offset(high_watermark), LOAD_READ_BYTES)
                .await
                .map_err(|source| PartitionLogError::Read {
                    topic: self.topic.to_string(),
                    partition: self.index,
                    offset,
                    source,
                })?;
            if data.batches.is_empty() {
                break;
            }
            let mut next = offset;
            for batch in data.batches {
                let header =
                    BatchHeader::parse(&batch).map_err(|source| PartitionLogError::Header {
                        topic: self.topic.to_string(),
                        partition: self.index,
                        offset,
                        source,
                    })?;
                next = next.max(header.last_offset() + 1);
                if header.is_control() || self.hidden_from_committed_readers(&header) {
                    continue;
                }
                visit_batch(self, &header, batch, offset, &mut visit);
            }
            offset = next;
        }
        Ok(())
    }

    async fn append(&self, records: &[KeyedRecord], now_ms: i64) -> Result<(), Self::Error> {
        let batch = build_batch(records, None, now_ms)?;
        Ok(self.append_committed(batch, now_ms).await?)
    }
}

/// Visits the keyed records of one data batch at or after `from` (a read may start inside
/// a batch). An undecodable batch is logged and skipped, as Kafka's loader does.
fn visit_batch(
    partition: &Partition,
    header: &BatchHeader,
    mut batch: Bytes,
    from: i64,
    visit: &mut impl FnMut(Offset, KeyedRecord),
) {
    let set = match kafka_protocol::records::RecordBatchDecoder::decode(&mut batch) {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!(
                topic = %partition.topic,
                partition = partition.index,
                base_offset = header.base_offset,
                error = %e,
                "skipping undecodable batch"
            );
            return;
        }
    };
    for record in set.records.into_iter().filter(|r| r.offset >= from) {
        if let Some(key) = record.key {
            visit(
                Offset(record.offset),
                KeyedRecord {
                    key,
                    value: record.value,
                },
            );
        }
    }
}

/// A shard's partitions of one internal topic. Holds the shard weakly: the host lives
/// among the shard's services, and a strong reference would keep the shard alive forever.
pub struct ShardLogs {
    shard: Weak<Shard>,
    topic: &'static str,
}

impl ShardLogs {
    /// The partitions of `topic` that `shard` serves.
    pub fn new(shard: &Rc<Shard>, topic: &'static str) -> ShardLogs {
        ShardLogs {
            shard: Rc::downgrade(shard),
            topic,
        }
    }
}

impl LogTable for ShardLogs {
    type Log = Partition;

    fn log(&self, partition: i32) -> Option<Rc<Partition>> {
        self.shard.upgrade()?.partitions.get(self.topic, partition)
    }

    fn served(&self) -> Vec<i32> {
        self.shard
            .upgrade()
            .map(|shard| shard.partitions.indexes_of(self.topic))
            .unwrap_or_default()
    }
}
