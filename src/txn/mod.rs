//! Transactions: the transaction coordinator (a sans-IO core in [`coordinator`], run by the
//! generic coordinator host with what is specific in [`driver`]), its records on `__transaction_state`, and the writing of commit and
//! abort markers to the partitions of a transaction. Producer ids come from
//! `cluster::producer_ids`; the partition side (producer state, transaction index) is
//! `partition`.

pub mod coordinator;
pub mod driver;
pub mod implicit;
pub mod markers;
pub mod records;

use crate::coordinator::InternalTopic;

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Partitions of `__transaction_state` (Kafka's `transaction.state.log.num.partitions`).
pub const TRANSACTION_STATE_PARTITIONS: i32 = 50;
/// Segment size of `__transaction_state` (Kafka's `transaction.state.log.segment.bytes`).
const TRANSACTION_STATE_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;

const _: () = assert!(TRANSACTION_STATE_PARTITIONS > 0);

/// `__transaction_state` as the coordinator host creates and routes to it.
pub const TRANSACTION_STATE: InternalTopic = InternalTopic {
    name: TRANSACTION_STATE_TOPIC,
    partitions: TRANSACTION_STATE_PARTITIONS,
    segment_bytes: TRANSACTION_STATE_SEGMENT_BYTES,
};
