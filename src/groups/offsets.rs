//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, expiry and lag inputs.
//!
//! Part of the sans-IO [`Coordinator`]: commits produce offset records for the driver to
//! append; deletes and expiry produce tombstones.
//!
//! An offset is visible only once it is durable, as with Kafka's pending offset commits: a
//! commit stages its offsets ([`StagedCommit`], carried in its [`Effects`]) and the group
//! remembers that the partition has a commit in flight; [`Coordinator::persisted`], fed by
//! the host once the records are committed, moves them into the committed map that
//! OffsetFetch and lag read. If the append fails the host drops the coordinator instead, so
//! a reader never sees an offset that was not stored.

use std::collections::BTreeMap;

use bytes::Buf;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::coordinator::{
    Coordinator, Effects, Group, GroupState, COORDINATOR_NOT_AVAILABLE, FENCED_INSTANCE_ID,
    GROUP_ID_NOT_FOUND, ILLEGAL_GENERATION, INVALID_GROUP_ID, NONE, NON_EMPTY_GROUP,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
use super::records::{self, GroupRecord, OffsetValue};

const OFFSET_METADATA_TOO_LARGE: i16 = ResponseError::OffsetMetadataTooLarge.code();
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = ResponseError::GroupSubscribedToTopic.code();
const UNSTABLE_OFFSET_COMMIT: i16 = ResponseError::UnstableOffsetCommit.code();

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, Default)]
pub struct CommitPartition {
    /// The partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record (v6+), -1 if unknown.
    pub leader_epoch: i32,
    /// The client's metadata string (null is stored as "").
    pub metadata: Option<String>,
}

/// An OffsetCommit request, version-independent.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation; -1 for commits outside group management.
    pub generation_id: i32,
    /// The member id; empty outside group management.
    pub member_id: String,
    /// The static instance id (v7+).
    pub group_instance_id: Option<String>,
    /// (topic, partitions).
    pub topics: Vec<(String, Vec<CommitPartition>)>,
    /// OffsetCommit v2-v4 `retention_time_ms`: these offsets expire this long after the
    /// commit instead of after `offsets.retention.minutes`. None (or -1 on the wire) keeps
    /// the broker's retention.
    pub retention_ms: Option<i64>,
}

/// (topic, [(partition, error)]) per committed topic, in request order.
pub type CommitReply = Vec<(String, Vec<(i32, i16)>)>;

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// The partition.
    pub partition: i32,
    /// The committed offset, -1 if none.
    pub offset: i64,
    /// The committed leader epoch, -1 if none.
    pub leader_epoch: i32,
    /// The committed metadata.
    pub metadata: String,
    /// UNSTABLE_OFFSET_COMMIT when a `require_stable` fetch meets an open transaction's
    /// offset, else NONE.
    pub error: i16,
}

/// (topic, partitions) of an OffsetFetch answer.
pub type FetchReply = Vec<(String, Vec<FetchedOffset>)>;

/// An OffsetDelete answer: a group error and (topic, [(partition, error)]).
pub type DeleteOffsetsReply = (i16, Vec<(String, Vec<(i32, i16)>)>);

/// Orders the commits of one coordinator, as their records are ordered in the log: the
/// host starts an input's append before it runs the next input.
pub type CommitId = u64;

/// The offsets one OffsetCommit staged: they become visible when its records are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedCommit {
    /// Which commit, to order it against others of the same partition.
    pub id: CommitId,
    /// The group.
    pub group_id: String,
    /// What to store once durable.
    pub offsets: Vec<StagedOffset>,
}

/// One partition's offset in a [`StagedCommit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedOffset {
    /// (topic, partition).
    pub key: (String, i32),
    /// The offset, leader epoch and metadata.
    pub value: OffsetValue,
    /// An explicit expiry time (OffsetCommit v2-v4 `retention_time_ms`), else None.
    pub expire_at_ms: Option<i64>,
}

/// The commits of one partition's offset whose records are not committed yet (Kafka's
/// `pendingOffsetCommits`). Removing the offset (OffsetDelete, DeleteGroups) removes this
/// too: the tombstone follows those commits in the log, so they must not reappear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingOffset {
    /// The first commit staged since the offset was last removed; older ones are void.
    since: CommitId,
    /// The last commit staged: once it is applied nothing is pending any more.
    latest: CommitId,
    /// The newest commit made visible so far (0: none), so an older one persisted late
    /// never hides a newer one.
    applied: CommitId,
}

/// A committed offset of one group on one partition, for lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The group.
    pub group_id: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset.
    pub offset: i64,
}

impl Coordinator {
    /// Handles OffsetCommit: validates the member, then stages the offsets. The records and
    /// the staged offsets come out in the effects; the reply must wait for the records, and
    /// the offsets are visible only after [`Coordinator::persisted`].
    pub fn commit_offsets(&mut self, req: CommitRequest, now_ms: i64) -> (CommitReply, Effects) {
        let mut fx = Effects::default();
        self.last_commit_id += 1;
        let id = self.last_commit_id;
        let all = |error: i16| -> CommitReply {
            req.topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (p.partition, error)).collect()))
                .collect()
        };
        if req.group_id.is_empty() {
            return (all(INVALID_GROUP_ID), fx);
        }
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0 {
                return (all(ILLEGAL_GENERATION), fx);
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, now_ms));
        }
        let max_metadata = self.config.offset_metadata_max_bytes;
        let expire_at = req.retention_ms.map(|r| now_ms.saturating_add(r));
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return (all(COORDINATOR_NOT_AVAILABLE), fx);
        };
        let error = match group.consumer.as_ref() {
            // KIP-848: the member epoch stands in for the generation.
            Some(cg) if group.state != GroupState::Dead => {
                cg.commit_error(&req.member_id, req.generation_id)
            }
            _ => commit_error(group, &req),
        };
        if error != NONE {
            return (all(error), fx);
        }
        if let Some(m) = group.members.get_mut(&req.member_id) {
            m.touch(now_ms);
        }
        let mut staged = StagedCommit {
            id,
            group_id: req.group_id.clone(),
            offsets: Vec::new(),
        };
        let mut reply = Vec::with_capacity(req.topics.len());
        for (topic, partitions) in req.topics {
            let mut results = Vec::with_capacity(partitions.len());
            for p in partitions {
                let metadata = p.metadata.unwrap_or_default();
                if metadata.len() > max_metadata {
                    results.push((p.partition, OFFSET_METADATA_TOO_LARGE));
                    continue;
                }
                let value = OffsetValue {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms,
                };
                let encoded = match expire_at {
                    Some(at) => records::offset_value_with_expiry(&value, at),
                    None => records::offset_value(&value),
                };
                fx.records.push(GroupRecord {
                    key: records::offset_key(&req.group_id, &topic, p.partition),
                    value: Some(encoded),
                });
                let key = (topic.clone(), p.partition);
                group.stage_offset(id, key.clone());
                staged.offsets.push(StagedOffset {
                    key,
                    value,
                    expire_at_ms: expire_at,
                });
                results.push((p.partition, NONE));
            }
            reply.push((topic, results));
        }
        if !staged.offsets.is_empty() {
            fx.staged = Some(staged);
        }
        (reply, fx)
    }

    /// The records of `fx` are committed: the offsets it staged become visible (those not
    /// removed meanwhile, and not older than what a later commit already showed).
    pub fn persisted(&mut self, fx: &Effects) {
        let Some(staged) = &fx.staged else {
            return;
        };
        // A group deleted meanwhile wrote its tombstones after these records.
        let Some(group) = self.groups.get_mut(&staged.group_id) else {
            return;
        };
        for offset in &staged.offsets {
            group.apply_staged(staged.id, offset);
        }
    }

    /// Notes offsets an open transaction of `producer_id` wrote for `group_id`.
    pub fn stage_txn_offsets(
        &mut self,
        producer_id: i64,
        group_id: &str,
        partitions: impl IntoIterator<Item = (String, i32)>,
    ) {
        let pending = self.pending_txn_offsets.entry(producer_id).or_default();
        for (topic, partition) in partitions {
            let key = (group_id.to_string(), topic, partition);
            if !pending.contains(&key) {
                pending.push(key);
            }
        }
    }

    /// The transaction of `producer_id` ended (its marker is durable): its offsets are
    /// applied (commit) or dropped (abort) and no longer pending.
    pub fn end_txn_offsets(&mut self, producer_id: i64) {
        self.pending_txn_offsets.remove(&producer_id);
    }

    fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn_offsets
            .values()
            .flatten()
            .any(|(g, t, p)| g == group_id && t == topic && *p == partition)
    }

    /// Handles OffsetFetch for one group: `None` asks for every committed partition.
    /// With `require_stable`, a partition an open transaction wrote an offset for answers
    /// UNSTABLE_OFFSET_COMMIT and no offset, as Kafka does: the consumer retries until the
    /// transaction ends instead of starting from an offset about to change.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
        require_stable: bool,
    ) -> FetchReply {
        let group = self.groups.get(group_id);
        let lookup = |topic: &str, partition: i32| -> FetchedOffset {
            if require_stable && self.has_pending_txn_offset(group_id, topic, partition) {
                return FetchedOffset {
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error: UNSTABLE_OFFSET_COMMIT,
                };
            }
            let found = group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)));
            match found {
                Some(v) => FetchedOffset {
                    partition,
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                    error: NONE,
                },
                None => FetchedOffset {
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error: NONE,
                },
            }
        };
        match topics {
            Some(topics) => topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|p| lookup(t, *p)).collect()))
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
                if let Some(g) = group {
                    for (topic, partition) in g.offsets.keys() {
                        by_topic
                            .entry(topic.clone())
                            .or_default()
                            .push(lookup(topic, *partition));
                    }
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// Handles OffsetDelete: offsets of topics the group still subscribes to stay.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> (DeleteOffsetsReply, Effects) {
        let mut fx = Effects::default();
        let Some(group) = self.groups.get_mut(group_id) else {
            return ((GROUP_ID_NOT_FOUND, Vec::new()), fx);
        };
        let subscribed = match group.state {
            GroupState::Dead => return ((GROUP_ID_NOT_FOUND, Vec::new()), fx),
            GroupState::Empty => Some(Vec::new()),
            // KIP-848: the topics its members' subscriptions resolve to.
            _ if group.consumer.is_some() => group
                .consumer
                .as_ref()
                .map(|cg| cg.subscribed.keys().cloned().collect()),
            _ if group.protocol_type.as_deref() == Some("consumer") => subscribed_topics(group),
            _ => None,
        };
        let Some(subscribed) = subscribed else {
            return ((NON_EMPTY_GROUP, Vec::new()), fx);
        };
        let mut out = Vec::with_capacity(topics.len());
        for (topic, partitions) in topics {
            let busy = subscribed.iter().any(|s| s == topic);
            let mut results = Vec::with_capacity(partitions.len());
            for p in partitions {
                if busy {
                    results.push((*p, GROUP_SUBSCRIBED_TO_TOPIC));
                    continue;
                }
                if group.remove_offset(topic, *p) {
                    fx.records.push(GroupRecord {
                        key: records::offset_key(group_id, topic, *p),
                        value: None,
                    });
                }
                results.push((*p, NONE));
            }
            out.push((topic.clone(), results));
        }
        ((NONE, out), fx)
    }

    /// Every committed offset on this partition, for lag (high watermark - committed).
    pub fn committed_offsets(&self) -> Vec<CommittedOffset> {
        self.groups
            .values()
            .flat_map(|g| {
                g.offsets
                    .iter()
                    .map(|((topic, partition), v)| CommittedOffset {
                        group_id: g.group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: v.offset,
                    })
            })
            .collect()
    }

    /// Expires offsets of empty groups after the retention (KIP-211): from when the group
    /// became empty, or from the commit for groups that never had members. Offsets committed
    /// with an explicit `retention_time_ms` expire at their own time instead, as in Kafka.
    /// A group left with nothing is removed and tombstoned.
    pub(crate) fn expire_offsets(&mut self, now_ms: i64, fx: &mut Effects) {
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for g in self.groups.values_mut() {
            if g.state != GroupState::Empty {
                continue;
            }
            let group_base = g.protocol_type.is_some().then_some(g.state_timestamp_ms);
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                // A commit in flight renews the offset, as in Kafka.
                .filter(|(k, _)| !g.pending_offsets.contains_key(*k))
                .filter(|(k, v)| match g.offset_expiry.get(*k) {
                    Some(at) => now_ms >= *at,
                    None => now_ms - group_base.unwrap_or(v.commit_timestamp_ms) >= retention,
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (topic, partition) in expired {
                g.remove_offset(&topic, partition);
                fx.records.push(GroupRecord {
                    key: records::offset_key(&g.group_id, &topic, partition),
                    value: None,
                });
            }
            if g.offsets.is_empty() && g.pending_offsets.is_empty() && g.members.is_empty() {
                dead.push(g.group_id.clone());
            }
        }
        for id in dead {
            let had_metadata = self
                .groups
                .remove(&id)
                .is_some_and(|g| g.protocol_type.is_some() || g.generation > 0);
            if had_metadata {
                fx.records.push(GroupRecord {
                    key: records::group_key(&id),
                    value: None,
                });
            }
            tracing::info!(group = %id, "offsets expired; group removed");
        }
    }
}

impl Group {
    /// Notes that commit `id` of `key` is in flight.
    fn stage_offset(&mut self, id: CommitId, key: (String, i32)) {
        self.pending_offsets
            .entry(key)
            .and_modify(|p| p.latest = id)
            .or_insert(PendingOffset {
                since: id,
                latest: id,
                applied: 0,
            });
    }

    /// Makes one staged offset of commit `id` visible, now that it is durable.
    fn apply_staged(&mut self, id: CommitId, staged: &StagedOffset) {
        let Some(pending) = self.pending_offsets.get_mut(&staged.key) else {
            return; // removed since: its tombstone follows this commit in the log
        };
        if id < pending.since {
            return; // staged before the offset was removed
        }
        if id > pending.applied {
            pending.applied = id;
            let key = staged.key.clone();
            match staged.expire_at_ms {
                Some(at) => self.offset_expiry.insert(key.clone(), at),
                None => self.offset_expiry.remove(&key),
            };
            self.offsets.insert(key, staged.value.clone());
        }
        if id == pending.latest {
            self.pending_offsets.remove(&staged.key);
        }
    }
}

/// Kafka's checks before a commit is accepted.
fn commit_error(group: &Group, req: &CommitRequest) -> i16 {
    if group.state == GroupState::Dead {
        return COORDINATOR_NOT_AVAILABLE;
    }
    if group.is_static_fenced(req.group_instance_id.as_deref(), &req.member_id) {
        return FENCED_INSTANCE_ID;
    }
    if req.generation_id < 0 && group.state == GroupState::Empty {
        return NONE;
    }
    if !group.members.contains_key(&req.member_id) {
        return UNKNOWN_MEMBER_ID;
    }
    if req.generation_id != group.generation {
        return ILLEGAL_GENERATION;
    }
    match group.state {
        GroupState::CompletingRebalance => REBALANCE_IN_PROGRESS,
        _ => NONE,
    }
}

/// The topics the members of a consumer group subscribe to, or None if a subscription
/// does not parse (then the group is treated as using every topic).
fn subscribed_topics(group: &Group) -> Option<Vec<String>> {
    let protocol = group.protocol_name.as_deref()?;
    let mut topics = Vec::new();
    for m in group.members.values() {
        let (_, metadata) = m.protocols.iter().find(|(n, _)| n == protocol)?;
        let mut buf = metadata.clone();
        if buf.remaining() < 2 {
            return None;
        }
        let version = buf.get_i16();
        let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
        topics.extend(sub.topics.into_iter().map(|t| t.to_string()));
    }
    topics.sort();
    topics.dedup();
    Some(topics)
}

#[cfg(test)]
#[path = "offsets_tests.rs"]
mod tests;
