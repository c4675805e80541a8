//! raft-rs logs through slog; this drain hands its records to `tracing`, so elections and
//! leadership changes land in the broker's log with everything else.

use slog::{Drain, Level, OwnedKVList, Record};

/// A `slog` drain that forwards to `tracing` (Raft's info becomes debug: a cluster of
/// thousands of groups elects often, and those lines would drown the rest).
struct ToTracing;

impl Drain for ToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, _values: &OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            Level::Critical | Level::Error => tracing::error!("raft: {}", record.msg()),
            Level::Warning => tracing::warn!("raft: {}", record.msg()),
            Level::Info | Level::Debug => tracing::debug!("raft: {}", record.msg()),
            Level::Trace => tracing::trace!("raft: {}", record.msg()),
        }
        Ok(())
    }
}

/// The logger every group is created with.
pub fn logger() -> slog::Logger {
    slog::Logger::root(ToTracing, slog::o!())
}
