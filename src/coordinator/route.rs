//! Which partition of an internal topic coordinates a key, and reaching its owner shard:
//! [`partition_for`] and the routing methods of [`InternalTopic`].

use std::future::Future;
use std::rc::Rc;

use super::{CoordinatorError, InternalTopic};
use crate::cluster::Shard;

/// Java's `String.hashCode` over UTF-16 code units, so keys land on the same partition as
/// in Kafka (tools and migrations rely on it).
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

/// The partition that stores (and whose leader coordinates) `key`, as Kafka places group
/// ids and transactional ids: `abs(java_hash(key)) % partitions`.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "partition count must be positive");
    kafka_abs(java_string_hashcode(key)) % partitions
}

impl InternalTopic {
    /// Creates the topic if it does not exist (Kafka creates its internal topics on first
    /// use) and returns its partition count.
    pub async fn ensure(self, shard: &Rc<Shard>) -> Result<i32, CoordinatorError> {
        crate::cluster::controller::ensure_internal_topic(
            shard,
            self.name,
            self.partitions,
            self.segment_bytes,
        )
        .await
        .map_err(|e| CoordinatorError::NoTopic {
            topic: self.name,
            reason: e.message,
        })
    }

    /// The partition coordinating `key` and the shard that owns it.
    pub async fn locate(
        self,
        shard: &Rc<Shard>,
        key: &str,
    ) -> Result<(i32, usize), CoordinatorError> {
        let partitions = self.ensure(shard).await?;
        let partition = partition_for(key, partitions);
        Ok((partition, shard.owner_of(self.name, partition)))
    }

    /// Runs `f` on the shard coordinating `key` (creating the topic if needed), with the
    /// partition it coordinates from. One helper for every coordinator: groups and
    /// transactions differ only in the topic.
    pub async fn route<T, F, Fut>(
        self,
        shard: &Rc<Shard>,
        key: &str,
        f: F,
    ) -> Result<T, CoordinatorError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>, i32) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, CoordinatorError>> + 'static,
    {
        let (partition, owner) = self.locate(shard, key).await?;
        shard
            .invoke_on(owner, move |s| f(s, partition))
            .await
            .map_err(|e| CoordinatorError::Unavailable(e.to_string()))?
    }
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
