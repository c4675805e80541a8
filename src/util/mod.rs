//! Small shared pieces every layer may use: nothing here depends on any other module of the
//! crate, so anything above (config, storage, tune, ...) can build on it without a cycle.

pub mod units;
