//! Newtypes for the numbers that cross layers and are easy to mix up: a Kafka offset and a
//! leader epoch (the Raft term of a partition). Inside a module plain integers are fine; at
//! a module's public seam these types say which number is meant. Conversions to the wire's
//! `i64`/`i32` happen at the Kafka handlers.

use std::fmt;

/// A Kafka offset: the position of a record in one partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    /// The wire value.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition's leader epoch: the Raft term in which its current leader was elected.
/// Stamped into every batch as `partitionLeaderEpoch`; clients use it to detect truncation
/// (KIP-101, KIP-320).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeaderEpoch(pub i32);

impl LeaderEpoch {
    /// The wire value.
    pub const fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
