//! The consumer-group coordinator (Kafka's classic group protocol).
//!
//! Split as `STYLE.md` asks ("pure cores, thin drivers"):
//! - [`coordinator`] is a sans-IO state machine: requests, `now_ms` and ticks go in;
//!   responses (some deferred, keyed by a [`Token`]), records to append and deadlines come out.
//! - [`records`] encodes and decodes Kafka's own `__consumer_offsets` key/value schemas, so
//!   Kafka tools can read what Sluice writes and state can be rebuilt from the log.
//! - [`driver`] is the per-shard glue: it owns the coordinators of the `__consumer_offsets`
//!   partitions this shard serves, loads them from the log, appends their records through the
//!   partition's replicated log and completes deferred responses.
//!
//! A group lives on partition `abs(java_hash(group_id)) % partitions` of `__consumer_offsets`,
//! exactly as Kafka places it, and its coordinator runs on that partition's owner shard.

pub mod coordinator;
pub mod driver;
pub mod offsets;
pub mod records;

pub use coordinator::{Coordinator, CoordinatorConfig, Effects, GroupState, Token};

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Partitions of `__consumer_offsets` (Kafka's `offsets.topic.num.partitions` default).
pub const OFFSETS_TOPIC_PARTITIONS: i32 = 50;
/// Segment size of `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes` default).
pub const OFFSETS_TOPIC_SEGMENT_BYTES: i64 = 100 * 1024 * 1024;

const _: () = assert!(OFFSETS_TOPIC_PARTITIONS > 0);

/// Java's `String.hashCode` over UTF-16 code units, so groups land on the same
/// `__consumer_offsets` partition as in Kafka (tools and migrations rely on it).
pub fn java_string_hashcode(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: `Integer.MIN_VALUE` maps to 0 instead of overflowing.
fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

/// The `__consumer_offsets` partition that stores (and whose leader coordinates) `group_id`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "partition count must be positive");
    kafka_abs(java_string_hashcode(group_id)) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashcode_matches_java() {
        // Values computed with java.lang.String#hashCode.
        assert_eq!(java_string_hashcode(""), 0);
        assert_eq!(java_string_hashcode("a"), 97);
        assert_eq!(java_string_hashcode("hello"), 99_162_322);
        assert_eq!(java_string_hashcode("my-group"), -1_906_497_762);
        assert_eq!(java_string_hashcode("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn partition_placement_is_kafkas() {
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        for g in ["a", "b", "group-1", "ünïcode"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
    }
}
