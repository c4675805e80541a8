//! Produce: acks and options, one batch to a partition's leader, and the request builder a
//! benchmark uses to pipeline its own produce requests.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    produce_request::{PartitionProduceData, TopicProduceData},
    ApiKey, ProduceRequest,
};
use kafka_protocol::records::Compression;
use serde::Serialize;
use uuid::Uuid;

use crate::client::{topic_name, Client};
use crate::connection::Connection;
use crate::error::{check, Error, Result};
use crate::records::{encode_batch, ProduceRecord};

/// Producer acknowledgement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No response: fire and forget.
    None,
    /// The leader appended it.
    Leader,
    /// The in-sync replicas have it (`-1`/`all`).
    All,
}

impl Acks {
    /// The wire value.
    pub fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Options of [`Client::produce`].
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Acknowledgement level.
    pub acks: Acks,
    /// Batch compression.
    pub compression: Compression,
    /// Broker-side timeout waiting for replication.
    pub timeout: Duration,
}

impl Default for ProduceOptions {
    fn default() -> Self {
        ProduceOptions {
            acks: Acks::All,
            compression: Compression::None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a produce returned.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceResult {
    /// Partition.
    pub partition: i32,
    /// Offset of the first record (-1 with acks=0).
    pub base_offset: i64,
    /// Log-append time if the topic uses it, else -1.
    pub log_append_time: i64,
}

impl Client {
    /// Produce `records` as one batch to `topic/partition` on its leader.
    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        opts: &ProduceOptions,
    ) -> Result<ProduceResult> {
        let batch = encode_batch(records, opts.compression).map_err(Error::Invalid)?;
        self.retrying(|| self.produce_batch(topic, partition, batch.clone(), opts))
    }

    /// Produce an already encoded v2 record batch (lets a benchmark encode once).
    pub fn produce_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        opts: &ProduceOptions,
    ) -> Result<ProduceResult> {
        let (conn, t) = self.leader_for(topic, partition)?;
        let (req, version) =
            build_produce_request(&conn, topic, t.topic_id, partition, batch, opts)?;
        if opts.acks == Acks::None {
            conn.send_oneway(&req, version)?;
            return Ok(ProduceResult {
                partition,
                base_offset: -1,
                log_append_time: -1,
            });
        }
        let resp = conn.send_version(&req, version)?.wait()?;
        let p = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::Decode {
                addr: conn.addr().to_string(),
                api: ApiKey::Produce,
                version,
                reason: format!("no result for partition {partition}"),
            })?;
        check(
            p.error_code,
            conn.addr(),
            || format!("produce to {topic}/{partition}"),
            p.error_message.as_ref(),
        )?;
        Ok(ProduceResult {
            partition,
            base_offset: p.base_offset,
            log_append_time: p.log_append_time_ms,
        })
    }
}

/// A Produce request of one encoded batch for `conn`'s negotiated version (topic name up to
/// v12, topic id from v13), returned with that version for [`Connection::send_version`],
/// [`Connection::send_to`] or, with acks=0, [`Connection::send_oneway`].
pub fn build_produce_request(
    conn: &Connection,
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    batch: Bytes,
    opts: &ProduceOptions,
) -> Result<(ProduceRequest, i16)> {
    let version = conn.version_for::<ProduceRequest>()?;
    let mut td =
        TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(batch))]);
    if version >= 13 {
        td.topic_id = topic_id;
    } else {
        td.name = topic_name(topic);
    }
    let req = ProduceRequest::default()
        .with_acks(opts.acks.code())
        .with_timeout_ms(opts.timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(vec![td]);
    Ok((req, version))
}
