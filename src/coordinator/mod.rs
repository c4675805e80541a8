//! The generic host that runs a sans-IO coordinator on its partition's leader.
//!
//! Groups (`__consumer_offsets`) and transactions (`__transaction_state`) have one shape:
//! a pure state machine per internal-topic partition, rebuilt from that partition's log
//! when first needed, fed one input at a time, whose records are appended (acks=all)
//! before its answer goes out. This module is that shape, written once (`STYLE.md`: "one
//! host, many state machines"):
//! - [`Coordinated`] is what a hosted state machine offers: its internal topic, a fresh
//!   instance, `replay` for loading, and the records its effects carry;
//! - [`CoordinatorLog`] is the log it runs on: a [`crate::partition::Partition`] in the
//!   broker, an in-memory fake in the tests;
//! - [`Host`] keeps one shard's state machines: loading, running an input in a short borrow,
//!   appending its records, read-only queries;
//! - [`InternalTopic::route`] finds the partition of a key and runs a closure on its owner
//!   shard.
//!
//! One rule for a failed append: memory must never stay ahead of the log, so the host drops
//! the state machine and the next input rebuilds it from what was stored. The caller still
//! gets the effects back, to fail what waits on them.
//!
//! One rule for what readers see: an input may hold back part of its change (committed
//! offsets) until its records are committed; the host hands the effects back to
//! [`Coordinated::persisted`] after a successful append, so a concurrent reader never sees
//! state that a failed append could still take away.
//!
//! This sits above `cluster` and `partition` and below `groups` and `txn`.

mod host;
mod log;
mod route;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::rc::Rc;

use kafka_protocol::error::ResponseError;

use crate::storage::records::KeyedRecord;
use crate::util::ids::{LeaderEpoch, Offset};

pub use host::{Executed, Host};
pub use log::{PartitionLogError, ShardLogs};
pub use route::{java_string_hashcode, partition_for};

/// An internal topic a coordinator lives on, with what Kafka creates it with on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalTopic {
    /// The topic's name.
    pub name: &'static str,
    /// Its partition count (keys are spread over them by [`partition_for`]).
    pub partitions: i32,
    /// Its segment size.
    pub segment_bytes: u64,
}

/// A sans-IO state machine the [`Host`] runs: one per partition of [`Coordinated::TOPIC`].
pub trait Coordinated: Sized + 'static {
    /// Settings every instance on a shard shares (from the broker config).
    type Config;
    /// What one input asks the host to do; carries the records to append.
    type Effects;
    /// Why a stored record could not be replayed (it is logged and skipped).
    type ReplayError: std::fmt::Display;
    /// The internal topic whose partitions this state machine lives on.
    const TOPIC: InternalTopic;
    /// An empty state machine for `partition` under the given leader epoch, before replay.
    fn fresh(config: &Self::Config, partition: i32, leader_epoch: LeaderEpoch) -> Self;
    /// Applies one stored record while loading (`value` None is a tombstone).
    fn replay(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), Self::ReplayError>;
    /// The records `effects` asks to append before its answers are delivered.
    fn records(effects: &Self::Effects) -> &[KeyedRecord];
    /// Applies what the input behind `effects` held back until its records were committed,
    /// so readers see that part of the change only once it is durable (Kafka's pending
    /// offset commits). The host calls it once, after a successful append (at once when
    /// there was nothing to append), on the state the input ran on; never after a failed
    /// append, whose state it drops instead. Records reach the log in the order inputs ran,
    /// but calls may come in another order: the state machine orders them itself.
    fn persisted(&mut self, effects: &Self::Effects);
    /// How many keys (groups, transactional ids) it holds, for the load log line.
    fn entry_count(&self) -> usize;
}

/// The log a coordinator runs on. Everything here runs on one shard, so nothing is `Send`.
#[allow(async_fn_in_trait, reason = "shard-local futures are never sent")]
pub trait CoordinatorLog {
    /// Why reading or appending failed.
    type Error: std::fmt::Display;
    /// The epoch of the current leader (the Raft term), fixed while it leads.
    fn leader_epoch(&self) -> LeaderEpoch;
    /// Visits every committed keyed record from log start to the high watermark, in order,
    /// skipping control batches and batches hidden from read_committed readers.
    async fn load(&self, visit: impl FnMut(Offset, KeyedRecord)) -> Result<(), Self::Error>;
    /// Appends `records` as one batch and waits until it is committed.
    async fn append(&self, records: &[KeyedRecord], now_ms: i64) -> Result<(), Self::Error>;
}

/// Where a [`Host`] finds the logs of its internal topic that this shard serves.
pub trait LogTable {
    /// The log type.
    type Log: CoordinatorLog;
    /// The log of `partition`, if this shard serves it.
    fn log(&self, partition: i32) -> Option<Rc<Self::Log>>;
    /// Every partition of the topic this shard serves.
    fn served(&self) -> Vec<i32>;
}

/// Why an input could not reach a working coordinator; each maps to a retriable Kafka
/// error, so clients look the coordinator up again or retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordinatorError {
    /// This shard does not serve the partition (not its owner, or it moved away).
    #[error("{topic} partition {partition} is not served here")]
    NotCoordinator {
        /// The internal topic.
        topic: &'static str,
        /// The partition.
        partition: i32,
    },
    /// The partition's state is being read back from its log.
    #[error("{topic} partition {partition} is loading")]
    Loading {
        /// The internal topic.
        topic: &'static str,
        /// The partition.
        partition: i32,
    },
    /// The partition's log could not be read back.
    #[error("loading {topic} partition {partition}: {reason}")]
    LoadFailed {
        /// The internal topic.
        topic: &'static str,
        /// The partition.
        partition: i32,
        /// What failed.
        reason: String,
    },
    /// Records could not be appended; the in-memory state was dropped and will reload.
    #[error("appending to {topic} partition {partition}: {reason}")]
    Append {
        /// The internal topic.
        topic: &'static str,
        /// The partition.
        partition: i32,
        /// What failed.
        reason: String,
    },
    /// The internal topic does not exist and could not be created.
    #[error("cannot create {topic}: {reason}")]
    NoTopic {
        /// The internal topic.
        topic: &'static str,
        /// What the controller said.
        reason: String,
    },
    /// The owner shard could not be reached or dropped the call.
    #[error("coordinator shard unavailable: {0}")]
    Unavailable(String),
}

impl CoordinatorError {
    /// The Kafka error code a client should see.
    pub fn code(&self) -> i16 {
        match self {
            CoordinatorError::NotCoordinator { .. } => ResponseError::NotCoordinator.code(),
            CoordinatorError::Loading { .. } => ResponseError::CoordinatorLoadInProgress.code(),
            CoordinatorError::LoadFailed { .. }
            | CoordinatorError::Append { .. }
            | CoordinatorError::NoTopic { .. }
            | CoordinatorError::Unavailable(_) => ResponseError::CoordinatorNotAvailable.code(),
        }
    }
}
