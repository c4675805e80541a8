//! Transactions: the transaction coordinator (a sans-IO core in [`coordinator`], its
//! per-shard [`driver`]), its records on `__transaction_state`, and the writing of commit and
//! abort markers to the partitions of a transaction. Producer ids come from
//! `cluster::producer_ids`; the partition side (producer state, transaction index) is
//! `partition`.

pub mod coordinator;
pub mod driver;
pub mod markers;
pub mod records;
