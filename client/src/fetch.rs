//! Fetch and ListOffsets: reading records of a partition from its leader, and finding the
//! offsets (earliest, latest, by time) to read from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{
    fetch_request::{FetchPartition, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    ApiKey, BrokerId, FetchRequest, ListOffsetsRequest,
};
use serde::Serialize;

use crate::client::{topic_name, Client};
use crate::connection::Connection;
use crate::error::{check, Error, Result};
use crate::records::{decode_fetched, ConsumedRecord};

/// Options of [`Client::fetch`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Long-poll wait when there is less than `min_bytes`.
    pub max_wait: Duration,
    /// Bytes to wait for.
    pub min_bytes: i32,
    /// Limit per partition.
    pub max_bytes: i32,
    /// 0 = read_uncommitted, 1 = read_committed.
    pub isolation_level: i8,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 4 * 1024 * 1024,
            isolation_level: 0,
        }
    }
}

/// What a fetch returned for one partition.
#[derive(Debug, Clone)]
pub struct FetchResult {
    /// Partition.
    pub partition: i32,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Data records at or after the requested offset (control records skipped).
    pub records: Vec<ConsumedRecord>,
    /// Where the next fetch should start.
    pub next_offset: i64,
}

/// Which offset ListOffsets should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// Log start offset.
    Earliest,
    /// High watermark (the offset of the next record).
    Latest,
    /// First offset whose timestamp is at or after this (ms since epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// One partition's answer to ListOffsets.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionOffset {
    /// Partition.
    pub partition: i32,
    /// Offset (-1 when no record matches a timestamp).
    pub offset: i64,
    /// Timestamp of that record (-1 when not applicable).
    pub timestamp: i64,
}

impl Client {
    /// Fetch records of `topic/partition` from `offset` on its leader.
    pub fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        opts: &FetchOptions,
    ) -> Result<FetchResult> {
        self.retrying(|| self.fetch_once(topic, partition, offset, opts))
    }

    fn fetch_once(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        opts: &FetchOptions,
    ) -> Result<FetchResult> {
        let (conn, t) = self.leader_for(topic, partition)?;
        let version = conn.version_for::<FetchRequest>()?;
        let mut ft = FetchTopic::default().with_partitions(vec![FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(opts.max_bytes)]);
        if version >= 13 {
            ft.topic_id = t.topic_id;
        } else {
            ft.topic = topic_name(topic);
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(opts.max_wait.as_millis().min(i32::MAX as u128) as i32)
            .with_min_bytes(opts.min_bytes)
            .with_max_bytes(opts.max_bytes)
            .with_isolation_level(opts.isolation_level)
            .with_topics(vec![ft]);
        // Leave room for the long poll on top of the request timeout.
        let resp = conn
            .send_version(&req, version)?
            .wait_timeout(self.config.connection.request_timeout + opts.max_wait)?;
        check(
            resp.error_code,
            conn.addr(),
            || format!("fetch {topic}/{partition}"),
            None,
        )?;
        let p = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::Decode {
                addr: conn.addr().to_string(),
                api: ApiKey::Fetch,
                version,
                reason: format!("no data for partition {partition}"),
            })?;
        check(
            p.error_code,
            conn.addr(),
            || format!("fetch {topic}/{partition} at offset {offset}"),
            None,
        )?;
        let (records, batch_next) = match p.records {
            Some(bytes) => {
                decode_fetched(partition, bytes, offset).map_err(|reason| Error::Decode {
                    addr: conn.addr().to_string(),
                    api: ApiKey::Fetch,
                    version,
                    reason,
                })?
            }
            None => (Vec::new(), None),
        };
        let next_offset = records
            .last()
            .map(|r| r.offset + 1)
            .into_iter()
            .chain(batch_next)
            .chain(std::iter::once(offset))
            .max()
            .unwrap_or(offset);
        Ok(FetchResult {
            partition,
            high_watermark: p.high_watermark,
            last_stable_offset: p.last_stable_offset,
            log_start_offset: p.log_start_offset,
            records,
            next_offset,
        })
    }

    /// ListOffsets for `partitions` of `topic` (each asked of its leader, concurrently).
    pub fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>> {
        self.retrying(|| self.list_offsets_once(topic, partitions, spec))
    }

    fn list_offsets_once(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>> {
        let mut by_leader: BTreeMap<String, (Arc<Connection>, Vec<i32>)> = BTreeMap::new();
        for &p in partitions {
            let (conn, _) = self.leader_for(topic, p)?;
            by_leader
                .entry(conn.addr().to_string())
                .or_insert_with(|| (conn.clone(), Vec::new()))
                .1
                .push(p);
        }
        let mut pending = Vec::new();
        for (conn, parts) in by_leader.into_values() {
            let version = conn.version_for::<ListOffsetsRequest>()?;
            let mut req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_timestamp(spec.wire())
                            })
                            .collect(),
                    )]);
            if version >= 10 {
                req.timeout_ms = self.config.connection.request_timeout.as_millis() as i32;
            }
            pending.push((conn.clone(), conn.send_version(&req, version)?));
        }
        let mut out = Vec::new();
        for (conn, f) in pending {
            let resp = f.wait()?;
            for t in resp.topics {
                for p in t.partitions {
                    check(
                        p.error_code,
                        conn.addr(),
                        || format!("list offsets of {topic}/{}", p.partition_index),
                        None,
                    )?;
                    out.push(PartitionOffset {
                        partition: p.partition_index,
                        offset: p.offset,
                        timestamp: p.timestamp,
                    });
                }
            }
        }
        out.sort_by_key(|p| p.partition);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_spec_wire_values() {
        assert_eq!(OffsetSpec::Earliest.wire(), -2);
        assert_eq!(OffsetSpec::Latest.wire(), -1);
        assert_eq!(OffsetSpec::Timestamp(5).wire(), 5);
    }
}
