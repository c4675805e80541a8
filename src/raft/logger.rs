//! raft-rs logs through slog; this drain hands its records to `tracing`, so elections and
//! leadership changes land in the broker's log with everything else.

use std::fmt::Write as _;

use slog::{Drain, Level, OwnedKVList, Record, KV};

/// A `slog` drain that forwards to `tracing` (Raft's info becomes debug: a cluster of
/// thousands of groups elects often, and those lines would drown the rest).
struct ToTracing;

/// Collects a record's key-value pairs (the group, the term, the peer...) as `key=value`.
struct Pairs(String);

impl slog::Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for ToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        // Formatting the pairs costs an allocation: only for a line that will be written.
        macro_rules! forward {
            ($emit:ident, $level:expr) => {
                if tracing::enabled!($level) {
                    let mut pairs = Pairs(String::new());
                    let _ = values.serialize(record, &mut pairs);
                    let _ = record.kv().serialize(record, &mut pairs);
                    tracing::$emit!("raft: {}{}", record.msg(), pairs.0);
                }
            };
        }
        match record.level() {
            Level::Critical | Level::Error => forward!(error, tracing::Level::ERROR),
            Level::Warning => forward!(warn, tracing::Level::WARN),
            Level::Info | Level::Debug => forward!(debug, tracing::Level::DEBUG),
            Level::Trace => forward!(trace, tracing::Level::TRACE),
        }
        Ok(())
    }
}

/// The logger every group is created with.
pub fn logger() -> slog::Logger {
    slog::Logger::root(ToTracing, slog::o!())
}
