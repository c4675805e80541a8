//! The sans-IO group coordinator of one `__consumer_offsets` partition.
//!
//! Every input carries `now_ms`; nothing here reads a clock, sleeps or does IO. JoinGroup and
//! SyncGroup may not be answerable at once (the join barrier, the leader's assignment): they
//! take a [`Token`] from the driver and their answer comes out later, in the [`Effects`] of
//! whichever input completes the barrier. Records to append come out in [`Effects`] too; the
//! driver appends them before it delivers the completions of the same call.
//!
//! The transitions follow Kafka's `GroupCoordinator` (classic protocol): Empty ->
//! PreparingRebalance -> CompletingRebalance -> Stable, with Dead for deleted groups.
//!
//! Split by concept into private modules: `join` (JoinGroup: new, known and static
//! members), `rebalance` (the join barrier and its timer), `sync` (SyncGroup and the
//! leader's assignment), `membership` (Heartbeat, LeaveGroup, ticks: session, pending-member
//! and pending-sync expiry), `consumer` (KIP-848 groups: heartbeats, expiry, describe,
//! conversion with classic groups), `describe` (DescribeGroups, ListGroups, DeleteGroups), `replay`
//! (rebuilding state from `__consumer_offsets`) and `group` (one group's members and the
//! helpers the transitions share). Committed offsets live in the sibling `offsets` module.

mod consumer;
mod describe;
mod group;
mod join;
mod membership;
mod rebalance;
mod replay;
mod sync;

pub use consumer::{ConsumerGroupView, ConsumerLookup, ConsumerMemberView};
pub use describe::{DescribedMember, GroupDescription, ListedGroup};
pub(crate) use group::Group;
pub use join::{JoinReply, JoinRequest, JoinedMember};
pub use membership::{HeartbeatRequest, LeaveReply, LeavingMember};
pub use sync::{SyncReply, SyncRequest};

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::offsets::{CommitId, StagedCommit};
use super::records::GroupRecord;

/// Identifies a deferred JoinGroup or SyncGroup request; chosen by the driver, unique per shard.
pub type Token = u64;

pub(crate) const NONE: i16 = 0;
pub(crate) const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
pub(crate) const ILLEGAL_GENERATION: i16 = ResponseError::IllegalGeneration.code();
pub(crate) const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
pub(crate) const FENCED_INSTANCE_ID: i16 = ResponseError::FencedInstanceId.code();
pub(crate) const INCONSISTENT_GROUP_PROTOCOL: i16 = ResponseError::InconsistentGroupProtocol.code();
pub(crate) const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();
pub(crate) const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();
pub(crate) const INVALID_SESSION_TIMEOUT: i16 = ResponseError::InvalidSessionTimeout.code();
pub(crate) const INVALID_GROUP_ID: i16 = ResponseError::InvalidGroupId.code();
pub(crate) const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
pub(crate) const NON_EMPTY_GROUP: i16 = ResponseError::NonEmptyGroup.code();

/// Coordinator settings (Kafka's `group.*` and `offsets.*` broker configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members (extended per new member, up to the rebalance timeout).
    pub initial_rebalance_delay_ms: i64,
    /// `offsets.retention.minutes` in ms: offsets of an empty group expire this long after
    /// the group became empty (or after the commit, if later).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub session_timeout_min_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_max_ms: i32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// KIP-848 consumer groups (`group.consumer.*`).
    pub consumer: crate::groups::consumer::ConsumerConfig,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay_ms: 3000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            session_timeout_min_ms: 6000,
            session_timeout_max_ms: 1_800_000,
            offset_metadata_max_bytes: 4096,
            consumer: Default::default(),
        }
    }
}

/// The states of a classic group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (possibly committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Everyone has an assignment.
    Stable,
    /// Deleted or expired.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state, as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A deferred answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Answers a JoinGroup.
    Join(JoinReply),
    /// Answers a SyncGroup.
    Sync(SyncReply),
}

impl Completion {
    /// Turns the answer into a retriable error because its records could not be written.
    pub fn fail_storage(&mut self) {
        if let Completion::Sync(s) = self {
            if s.error == NONE {
                *s = SyncReply::error(COORDINATOR_NOT_AVAILABLE);
            }
        }
    }
}

/// What an input asks the driver to do.
#[derive(Debug, Default)]
pub struct Effects {
    /// Deferred answers now ready, keyed by the token their request was given.
    pub completions: Vec<(Token, Completion)>,
    /// Records to append (acks=all) before the completions are delivered.
    pub records: Vec<GroupRecord>,
    /// Offsets an OffsetCommit staged: visible once the records are committed
    /// ([`Coordinator::persisted`]).
    pub staged: Option<StagedCommit>,
}

impl Effects {
    fn complete(&mut self, token: Token, completion: Completion) {
        self.completions.push((token, completion));
    }
}

/// The coordinator of every group on one `__consumer_offsets` partition.
#[derive(Debug)]
pub struct Coordinator {
    pub(crate) config: CoordinatorConfig,
    pub(crate) groups: BTreeMap<String, Group>,
    next_member_seq: u64,
    member_id_salt: u64,
    pub(crate) next_offset_expiry_ms: i64,
    /// The id of the last OffsetCommit staged (ids start at 1).
    pub(crate) last_commit_id: CommitId,
    /// Offsets written by open transactions, by producer id: (group, topic, partition).
    /// OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them until
    /// the transaction's marker lands.
    pub(crate) pending_txn_offsets: BTreeMap<i64, Vec<(String, String, i32)>>,
}

impl Coordinator {
    /// An empty coordinator. `member_id_salt` makes member ids unique across restarts (the
    /// driver passes the node's epoch and the partition).
    pub fn new(config: CoordinatorConfig, member_id_salt: u64) -> Coordinator {
        Coordinator {
            config,
            groups: BTreeMap::new(),
            next_member_seq: 0,
            member_id_salt,
            next_offset_expiry_ms: 0,
            last_commit_id: 0,
            pending_txn_offsets: BTreeMap::new(),
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member_seq += 1;
        format!(
            "{client_id}-{:016x}-{:08x}",
            self.member_id_salt, self.next_member_seq
        )
    }

    /// Number of groups known (including offsets-only groups).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The state of a group, if it exists.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// The generation of a group, if it exists.
    pub fn generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation)
    }
}

#[cfg(test)]
mod tests;
