//! Incremental fetch sessions (KIP-227), one cache per shard.
//!
//! A consumer of many partitions opens a session with a full fetch (epoch 0) and then
//! sends only what changed: partitions whose fetch position moved, and ones to forget.
//! The broker answers only partitions with something new (records, a moved high
//! watermark, last stable offset or log start offset, or an error). Sessions live on the
//! shard of the connection that opened them (a session id names its shard); a request
//! for a session another shard holds, or one evicted, gets FETCH_SESSION_ID_NOT_FOUND and
//! the client starts over with a full fetch, as KIP-227 has clients do.
//!
//! The cache is bounded: at most [`SESSIONS_PER_SHARD`] sessions; when it is full, the
//! least recently used one is evicted if it was idle for [`EVICTABLE_AFTER`], otherwise
//! the new consumer gets a sessionless answer (session id 0) and fetches in full.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::{FetchRequest, TopicName};

/// Kafka's `max.incremental.fetch.session.cache.slots` default, here per shard.
pub const SESSIONS_PER_SHARD: usize = 1000;
/// Kafka's `min.incremental.fetch.session.eviction.ms` default: a session idle this long
/// may make room for a new one.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(120);

/// The epoch of a full fetch that opens (or re-opens) a session.
const INITIAL_EPOCH: i32 = 0;
/// The epoch of a sessionless fetch, which also closes the named session.
const FINAL_EPOCH: i32 = -1;

thread_local! {
    static SESSIONS: RefCell<Sessions> = RefCell::new(Sessions::default());
}

/// What the handler does with one request.
#[derive(Debug)]
pub enum Plan {
    /// Fetch the request's partitions and answer them all; `session_id` (0: none) is
    /// the session the answer names, holding those partitions.
    Full {
        /// The new session, or 0.
        session_id: i32,
    },
    /// Fetch every partition of the session (the request's `topics` were replaced by
    /// them) and answer only what changed.
    Incremental {
        /// The session.
        session_id: i32,
    },
    /// Refuse the request with this top-level error.
    Refuse(ResponseError),
}

/// One partition of a session and what the client last saw of it.
#[derive(Debug, Clone)]
struct Cached {
    topic: TopicName,
    topic_id: uuid::Uuid,
    fetch: FetchPartition,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    partitions: Vec<Cached>,
    /// The epoch the next request must carry.
    next_epoch: i32,
    last_used: Instant,
}

#[derive(Default)]
struct Sessions {
    by_id: AHashMap<i32, Session>,
    issued: u32,
}

/// Decides how to serve `request` on shard `shard` of `shards`, updating the cache: a
/// full fetch opens a session (closing the one it names), an incremental one applies its
/// changes and has `request.topics` replaced by every partition of the session.
pub fn plan(request: &mut FetchRequest, shard: usize, shards: usize, now: Instant) -> Plan {
    SESSIONS.with(|s| s.borrow_mut().plan(request, shard, shards, now))
}

/// After a fetch of session `session_id`: remembers what each answered partition showed
/// and, for an incremental fetch, drops partitions with nothing new from `topics`.
pub fn settle(session_id: i32, incremental: bool, topics: &mut Vec<FetchableTopicResponse>) {
    SESSIONS.with(|s| s.borrow_mut().settle(session_id, incremental, topics));
}

impl Sessions {
    fn plan(
        &mut self,
        request: &mut FetchRequest,
        shard: usize,
        shards: usize,
        now: Instant,
    ) -> Plan {
        let (id, epoch) = (request.session_id, request.session_epoch);
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            if id != 0 {
                self.by_id.remove(&id);
            }
            if epoch == FINAL_EPOCH {
                return Plan::Full { session_id: 0 };
            }
            let session_id = self.open(request, shard, shards, now);
            return Plan::Full { session_id };
        }
        let Some(session) = self.by_id.get_mut(&id) else {
            return Plan::Refuse(ResponseError::FetchSessionIdNotFound);
        };
        if epoch != session.next_epoch {
            return Plan::Refuse(ResponseError::InvalidFetchSessionEpoch);
        }
        session.next_epoch = next_epoch(epoch);
        session.last_used = now;
        for forgotten in &request.forgotten_topics_data {
            session.partitions.retain(|c| {
                !(same_topic(c, &forgotten.topic, &forgotten.topic_id)
                    && forgotten.partitions.contains(&c.fetch.partition))
            });
        }
        for topic in &request.topics {
            for p in &topic.partitions {
                let found = session.partitions.iter_mut().find(|c| {
                    same_topic(c, &topic.topic, &topic.topic_id) && c.fetch.partition == p.partition
                });
                match found {
                    Some(cached) => cached.fetch = p.clone(),
                    None => session.partitions.push(cached(topic, p)),
                }
            }
        }
        request.topics = as_topics(&session.partitions);
        Plan::Incremental { session_id: id }
    }

    /// A new session holding the request's partitions, or 0 when the cache is full of
    /// recently used sessions.
    fn open(&mut self, request: &FetchRequest, shard: usize, shards: usize, now: Instant) -> i32 {
        if self.by_id.len() >= SESSIONS_PER_SHARD {
            let idlest = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, s)| (*id, s.last_used));
            match idlest {
                Some((id, used)) if now.duration_since(used) >= EVICTABLE_AFTER => {
                    self.by_id.remove(&id);
                }
                _ => return 0,
            }
        }
        let id = loop {
            // Ids name their shard (id % shards) and are never 0 or negative.
            self.issued = self.issued.wrapping_add(1);
            let id = (u64::from(self.issued) * shards as u64 + shard as u64) % (i32::MAX as u64);
            if id != 0 && !self.by_id.contains_key(&(id as i32)) {
                break id as i32;
            }
        };
        let partitions = request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| cached(t, p)))
            .collect();
        self.by_id.insert(
            id,
            Session {
                partitions,
                next_epoch: 1,
                last_used: now,
            },
        );
        id
    }

    fn settle(
        &mut self,
        session_id: i32,
        incremental: bool,
        topics: &mut Vec<FetchableTopicResponse>,
    ) {
        let Some(session) = self.by_id.get_mut(&session_id) else {
            return;
        };
        for topic in topics.iter_mut() {
            topic.partitions.retain(|data| {
                let Some(cached) = session.partitions.iter_mut().find(|c| {
                    same_topic(c, &topic.topic, &topic.topic_id)
                        && c.fetch.partition == data.partition_index
                }) else {
                    return true;
                };
                let changed = data.error_code != 0
                    || data.records.as_ref().is_some_and(|r| !r.is_empty())
                    || data.high_watermark != cached.high_watermark
                    || data.last_stable_offset != cached.last_stable_offset
                    || data.log_start_offset != cached.log_start_offset;
                cached.high_watermark = data.high_watermark;
                cached.last_stable_offset = data.last_stable_offset;
                cached.log_start_offset = data.log_start_offset;
                !incremental || changed
            });
        }
        if incremental {
            topics.retain(|t| !t.partitions.is_empty());
        }
    }
}

/// Whether a cached partition belongs to the topic a request or response names: by id
/// when it carries one (v13+), else by name.
fn same_topic(cached: &Cached, name: &TopicName, id: &uuid::Uuid) -> bool {
    if id.is_nil() {
        cached.topic == *name
    } else {
        cached.topic_id == *id
    }
}

fn cached(topic: &FetchTopic, p: &FetchPartition) -> Cached {
    Cached {
        topic: topic.topic.clone(),
        topic_id: topic.topic_id,
        fetch: p.clone(),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
    }
}

/// The session's partitions as request topics, in session order (a topic's partitions
/// grouped where they are adjacent).
fn as_topics(partitions: &[Cached]) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for c in partitions {
        match topics.last_mut() {
            Some(t) if t.topic == c.topic && t.topic_id == c.topic_id => {
                t.partitions.push(c.fetch.clone())
            }
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(c.topic.clone())
                    .with_topic_id(c.topic_id)
                    .with_partitions(vec![c.fetch.clone()]),
            ),
        }
    }
    topics
}

/// The epoch after `epoch`, wrapping to 1 (0 and -1 have their own meanings).
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::fetch_response::PartitionData;
    use kafka_protocol::protocol::StrBytes;

    fn name(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_string()))
    }

    fn request(id: i32, epoch: i32, partitions: &[(i32, i64)]) -> FetchRequest {
        let partitions = partitions
            .iter()
            .map(|(p, offset)| {
                FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(*offset)
            })
            .collect();
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("t"))
                .with_partitions(partitions)])
    }

    fn answer(partitions: &[(i32, i64, usize)]) -> Vec<FetchableTopicResponse> {
        let partitions = partitions
            .iter()
            .map(|(p, hw, records)| {
                PartitionData::default()
                    .with_partition_index(*p)
                    .with_high_watermark(*hw)
                    .with_records(Some(vec![1u8; *records].into()))
            })
            .collect();
        vec![FetchableTopicResponse::default()
            .with_topic(name("t"))
            .with_partitions(partitions)]
    }

    fn answered(topics: &[FetchableTopicResponse]) -> Vec<i32> {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    #[test]
    fn a_session_answers_only_what_changed_and_tracks_positions() {
        let mut s = Sessions::default();
        let now = Instant::now();
        let mut full = request(0, 0, &[(0, 0), (1, 0), (2, 0)]);
        let Plan::Full { session_id: id } = s.plan(&mut full, 1, 2, now) else {
            panic!("a full fetch opens a session");
        };
        assert_eq!(id % 2, 1, "the id names shard 1");
        let mut topics = answer(&[(0, 5, 10), (1, 0, 0), (2, 0, 0)]);
        s.settle(id, false, &mut topics);
        assert_eq!(
            answered(&topics),
            vec![0, 1, 2],
            "a full answer holds every partition"
        );

        // Partition 0 moved on; 1 is forgotten; nothing else is sent.
        let mut incremental = request(id, 1, &[(0, 5)]);
        incremental.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![1])];
        assert!(matches!(
            s.plan(&mut incremental, 1, 2, now),
            Plan::Incremental { .. }
        ));
        let fetched: Vec<(i32, i64)> = incremental.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        assert_eq!(
            fetched,
            vec![(0, 5), (2, 0)],
            "the session's partitions, updated"
        );
        let mut topics = answer(&[(0, 5, 0), (2, 3, 0)]);
        s.settle(id, true, &mut topics);
        assert_eq!(answered(&topics), vec![2], "only the moved high watermark");

        // Nothing changed: an empty answer.
        let mut quiet = request(id, 2, &[]);
        s.plan(&mut quiet, 1, 2, now);
        let mut topics = answer(&[(0, 5, 0), (2, 3, 0)]);
        s.settle(id, true, &mut topics);
        assert!(topics.is_empty());

        // A replayed or skipped epoch, or an unknown id, is refused.
        let mut stale = request(id, 2, &[]);
        assert!(matches!(
            s.plan(&mut stale, 1, 2, now),
            Plan::Refuse(ResponseError::InvalidFetchSessionEpoch)
        ));
        let mut unknown = request(id + 2, 1, &[]);
        assert!(matches!(
            s.plan(&mut unknown, 1, 2, now),
            Plan::Refuse(ResponseError::FetchSessionIdNotFound)
        ));
        // The final epoch closes it.
        let mut close = request(id, -1, &[]);
        assert!(matches!(
            s.plan(&mut close, 1, 2, now),
            Plan::Full { session_id: 0 }
        ));
        assert!(s.by_id.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_only_idle_sessions() {
        let mut s = Sessions::default();
        let start = Instant::now();
        for _ in 0..SESSIONS_PER_SHARD {
            let Plan::Full { session_id } = s.plan(&mut request(0, 0, &[(0, 0)]), 0, 1, start)
            else {
                panic!("full");
            };
            assert_ne!(session_id, 0);
        }
        assert!(matches!(
            s.plan(&mut request(0, 0, &[(0, 0)]), 0, 1, start),
            Plan::Full { session_id: 0 }
        ));
        let later = start + EVICTABLE_AFTER;
        assert!(matches!(
            s.plan(&mut request(0, 0, &[(0, 0)]), 0, 1, later),
            Plan::Full { session_id } if session_id != 0
        ));
        assert_eq!(s.by_id.len(), SESSIONS_PER_SHARD);
    }
}
