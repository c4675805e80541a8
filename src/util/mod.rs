//! Small shared pieces every layer may use: nothing here depends on any other module of the
//! crate, so anything above (config, storage, tune, ...) can build on it without a cycle.
//! The one clock, the offset and epoch newtypes, units (sizes, durations, CPU sets) and
//! shard-local synchronisation primitives.

pub mod clock;
pub mod ids;
pub mod priority;
pub mod re2;
pub mod rng;
pub mod sync;
pub mod units;
