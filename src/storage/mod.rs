//! The partition log: segments of Kafka v2 record batches written with
//! O_DIRECT through a DMA appender, sparse offset/time indexes, a tail cache,
//! crash recovery, retention and DeleteRecords. Everything here is `!Send`
//! and lives on the partition's owner shard.

pub mod batch;
pub mod error;
pub mod io_profile;
pub mod log;
pub mod records;

pub mod appender;
mod cache;
mod commit_pipeline;
mod dma_open;
mod index;
mod recovery;
mod segment;
mod segment_file;

#[cfg(test)]
mod tests;

pub use batch::{
    validate_produce, BatchError, BatchHeader, CompressionCodec, ProduceBatches, TimestampPolicy,
};
pub use error::StorageError;
pub use index::write_atomically;
pub use log::{
    AppendInfo, AppendPosition, CleanerInput, CleanerStats, CompactionConfig, FetchedData,
    LogConfig, PartitionLog, Throttle,
};
pub use recovery::{
    create_dir_durably, read_offset_file, sync_dir, write_offset_file, Damage,
    LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
};
pub use segment::{parse_segment_file_name, segment_file_name};
