//! One partition's Raft group on this node: raft-rs's `RawNode` and what Sluice adds to it.
//!
//! Sans-IO: inputs are ticks, messages, proposals and "that write is durable"; outputs are
//! a [`GroupReady`] of messages, writes and commits. The shard driver ([`super::driver`])
//! feeds many groups and does their IO together; the simulator feeds the same code.
//!
//! What Sluice adds to raft-rs: the leader stamps every proposed batch with its Kafka base
//! offset and term before proposing, so every replica stores the same bytes; persistence is
//! asynchronous (`advance_append_async` / `on_persist_ready`), so a turn's writes and the
//! next turn's overlap with one flush; and election timeouts come from a seeded generator,
//! so a simulated cluster replays exactly.

use bytes::BytesMut;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType,
    HardState, Message, MessageType,
};
use raft::{RawNode, SnapshotStatus, StateRole};

use super::entry::{self, EntryError};
use super::store::{ColdRead, GroupStore, LogStart, Recovered, StoreError};
use crate::util::rng::Rng;

/// A Raft group's id on the wire and in the driver (a partition, or 0 for the controller).
pub type GroupId = u64;

/// The knobs of every group on a shard.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// Ticks without a leader's message before a follower campaigns (randomized up to 2×).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Bytes of entries in one append message.
    pub max_bytes_per_message: u64,
    /// Append messages in flight to one follower.
    pub max_inflight_messages: usize,
    /// Applied entries kept in memory for followers slightly behind.
    pub cache_entries: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_bytes_per_message: 1024 * 1024,
            max_inflight_messages: 256,
            cache_entries: 1024,
        }
    }
}

/// Why a group could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The log handed over does not fit (see [`StoreError`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// raft-rs refused the state or configuration.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A committed membership change did not decode.
    #[error("membership change at {index} does not decode: {reason}")]
    ConfChange {
        /// Its Raft index.
        index: u64,
        /// The decoder's message.
        reason: String,
    },
}

/// Why a proposal was not appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica does not lead; `leader` is the one it knows of (0: none).
    #[error("not the leader (leader {leader})")]
    NotLeader {
        /// The node this replica follows, 0 when it knows none.
        leader: u64,
    },
    /// The bytes are not record batches.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// A membership change that would remove or demote the leader itself.
    #[error("a membership change may not remove the leader; transfer leadership first")]
    RemovesLeader,
    /// raft-rs dropped it (a leadership transfer in progress, or too much uncommitted).
    #[error("proposal dropped")]
    Dropped,
}

/// Where an accepted proposal sits: committed once the group's commit reaches `index` in
/// `term`, lost if a later leader replaces that index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposed {
    /// Its Raft index.
    pub index: u64,
    /// The term it was proposed in (its batches' leader epoch).
    pub term: u64,
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset after its last record.
    pub end_offset: i64,
}

/// What one group's `Ready` asks the shard to write durably.
#[derive(Debug, Default)]
pub struct GroupWrite {
    /// Replace the whole log with this start (a snapshot from the leader).
    pub snapshot: Option<(LogStart, ConfState)>,
    /// Entries to write, replacing any from the first one's index on.
    pub entries: Vec<Entry>,
    /// A new term, vote or commit.
    pub hard_state: Option<HardState>,
    /// The membership history ([`Recovered::confs`]), when a change or a snapshot moved it.
    /// The state record keeps the last one written, with every later hard state.
    pub confs: Option<Vec<(u64, ConfState)>>,
    /// The applied index the history holds as of, written with `hard_state` as one state
    /// record whenever either changes.
    pub applied: u64,
}

impl GroupWrite {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.confs.is_none()
    }
}

/// Entries that became committed (and applied: the log is the state machine).
#[derive(Debug, Default)]
pub struct Committed {
    /// The entries, in order (control entries included).
    pub entries: Vec<Entry>,
    /// Offset of the first entry's first record.
    pub base_offset: i64,
    /// Offsets below this are committed: the high watermark.
    pub high_watermark: i64,
}

/// The outcome of handling one group's `Ready`.
#[derive(Debug, Default)]
pub struct GroupReady {
    /// `Ready` number, to acknowledge once `write` is durable.
    pub number: u64,
    /// Messages to send at once (a leader's appends go out while it persists its own).
    pub send_now: Vec<Message>,
    /// Messages to send only after `write` is durable (votes, append responses).
    pub send_after_sync: Vec<Message>,
    /// What to persist.
    pub write: GroupWrite,
    /// Whether the write needs an fdatasync (a new term or vote, entries, a snapshot).
    pub must_sync: bool,
    /// Newly committed entries.
    pub committed: Option<Committed>,
}

/// One group on this node (see the module documentation).
pub struct Group {
    id: GroupId,
    raw: RawNode<GroupStore>,
    rng: Rng,
    config: GroupConfig,
    /// Role, term and leader when the election timeout was last drawn.
    seen: (StateRole, u64, u64, usize),
    high_watermark: i64,
    /// A snapshot handed over but not yet durable: raft-rs may count it applied only then.
    snapshot_to_apply: Option<u64>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.id)
            .field("node", &self.raw.raft.id)
            .field("role", &self.raw.raft.state)
            .field("term", &self.raw.raft.term)
            .field("high_watermark", &self.high_watermark)
            .finish()
    }
}

impl Group {
    /// Starts node `node`'s replica of group `id` from what recovery found. `seed` feeds the
    /// election timeouts (a simulation passes its own; the broker passes any value).
    pub fn new(
        id: GroupId,
        node: u64,
        recovered: Recovered,
        config: GroupConfig,
        seed: u64,
        logger: &slog::Logger,
    ) -> Result<Group, GroupError> {
        let store = GroupStore::recover(recovered, config.cache_entries)?;
        let applied = store.applied();
        let high_watermark = store.end_offset_at(applied).unwrap_or(store.start().offset);
        let raft_config = raft::Config {
            id: node,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: config.max_bytes_per_message,
            max_inflight_msgs: config.max_inflight_messages,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let raw = RawNode::new(&raft_config, store, &logger.new(slog::o!("group" => id)))?;
        let mut group = Group {
            id,
            raw,
            rng: Rng::new(seed ^ id.rotate_left(17) ^ node),
            config,
            seen: (StateRole::Follower, 0, 0, 0),
            high_watermark,
            snapshot_to_apply: None,
        };
        group.draw_election_timeout();
        Ok(group)
    }

    /// This group's id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// Advances the group's clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.after_input();
    }

    /// Hands over a message from another replica. Messages for an older term, duplicates
    /// and reordered ones are raft-rs's to ignore; a message from an unknown peer is dropped.
    pub fn step(&mut self, message: Message) {
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(group = self.id, error = %e, "raft message dropped");
        }
        self.after_input();
    }

    /// Proposes record batches as one entry: stamps their base offsets (after the last
    /// entry, including entries not yet persisted) and this term, then appends.
    pub fn propose(&mut self, mut batches: BytesMut) -> Result<Proposed, ProposeError> {
        let term = self.leader_term()?;
        let base_offset = self.next_offset()?;
        let count = entry::stamp(
            &mut batches,
            base_offset,
            i32::try_from(term).unwrap_or(i32::MAX),
        )?;
        let mut proposal = Entry::default();
        proposal.set_data(batches.freeze());
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.raw.raft.id;
        message.set_entries(vec![proposal].into());
        self.submit(term, base_offset, count, |raw| raw.step(message))
    }

    /// Proposes a membership change: learners added, voters promoted or removed. Two or more
    /// changes go through joint consensus, which the group leaves by itself (see
    /// [`Group::ready`]). A change may not remove or demote the leader: transfer leadership
    /// first (raft-rs cannot run a leader outside its own configuration).
    pub fn propose_conf_change(
        &mut self,
        mut change: ConfChangeV2,
    ) -> Result<Proposed, ProposeError> {
        self.leader_term()?;
        let me = self.raw.raft.id;
        if change
            .get_changes()
            .iter()
            .any(|c| c.node_id == me && c.get_change_type() != ConfChangeType::AddNode)
        {
            return Err(ProposeError::RemovesLeader);
        }
        if change.get_changes().len() > 1 {
            change.set_transition(ConfChangeTransition::Explicit);
        }
        self.propose_change(change)
    }

    fn propose_change(&mut self, change: ConfChangeV2) -> Result<Proposed, ProposeError> {
        let term = self.raw.raft.term;
        let base_offset = self.next_offset()?;
        self.submit(term, base_offset, 1, |raw| {
            raw.propose_conf_change(Vec::new(), change)
        })
    }

    /// The term this replica leads, or who leads instead.
    fn leader_term(&self) -> Result<u64, ProposeError> {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return Err(ProposeError::NotLeader {
                leader: raft.leader_id,
            });
        }
        Ok(raft.term)
    }

    /// Hands a proposal to raft-rs and reports where it landed: one new entry in `term`
    /// taking `count` offsets from `base_offset`, or dropped.
    fn submit(
        &mut self,
        term: u64,
        base_offset: i64,
        count: i64,
        propose: impl FnOnce(&mut RawNode<GroupStore>) -> raft::Result<()>,
    ) -> Result<Proposed, ProposeError> {
        let before = self.raw.raft.raft_log.last_index();
        let result = propose(&mut self.raw);
        self.after_input();
        let index = self.raw.raft.raft_log.last_index();
        if result.is_err() || index != before + 1 || self.raw.raft.term != term {
            return Err(ProposeError::Dropped);
        }
        Ok(Proposed {
            index,
            term,
            base_offset,
            end_offset: base_offset + count,
        })
    }

    /// A leader that has just applied its own removal (a change committed under an earlier
    /// leader took it out: it won an election as an outgoing voter of a joint
    /// configuration) steps down; the remaining voters elect a leader. raft-rs 0.7 would
    /// otherwise keep it leading and fail on the next message it handles.
    fn step_down_if_removed(&mut self) {
        let raft = &self.raw.raft;
        if raft.state == StateRole::Leader && raft.prs().get(raft.id).is_none() {
            tracing::info!(
                group = self.id,
                "leader removed from the group; stepping down"
            );
            let term = raft.term;
            self.raw.raft.become_follower(term, raft::INVALID_ID);
            self.after_input();
        }
    }

    /// A leader in a joint configuration leaves it once the change is applied, if it is a
    /// voter of the new configuration; otherwise it hands leadership to one that is (the
    /// new leader then leaves), so no leader is ever left outside its configuration.
    fn leave_joint(&mut self) {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader || self.has_pending_conf_change() {
            return;
        }
        let conf = self.raw.store().conf_state();
        if conf.voters_outgoing.is_empty() {
            return;
        }
        if conf.voters.contains(&raft.id) {
            let _ = self.propose_change(ConfChangeV2::default());
        } else if raft.lead_transferee.is_none() {
            if let Some(&to) = conf.voters.first() {
                self.raw.transfer_leader(to);
                self.after_input();
            }
        }
    }

    /// Whether a membership change is proposed but not yet applied (raft-rs allows one at
    /// a time).
    pub fn has_pending_conf_change(&self) -> bool {
        self.raw.raft.pending_conf_index > self.raw.raft.raft_log.applied
    }

    /// Asks raft-rs to hand leadership to `node` (graceful shutdown, rebalancing).
    pub fn transfer_leader(&mut self, node: u64) {
        self.raw.transfer_leader(node);
        self.after_input();
    }

    /// Starts an election now (tests, and a new single-voter group that should not wait).
    pub fn campaign(&mut self) -> Result<(), GroupError> {
        self.raw.campaign()?;
        self.after_input();
        Ok(())
    }

    /// Whether [`Group::ready`] has work.
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// Takes the group's pending work: what to send, write and report as committed. The
    /// caller performs the write, then calls [`Group::on_persisted`] with its number.
    pub fn ready(&mut self) -> Result<GroupReady, GroupError> {
        let mut rd = self.raw.ready();
        let mut out = GroupReady {
            number: rd.number(),
            send_now: rd.take_messages(),
            must_sync: rd.must_sync(),
            ..GroupReady::default()
        };
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            self.raw.mut_store().apply_snapshot(&snapshot);
            let store = self.raw.store();
            out.write.snapshot = Some((store.start(), store.start_conf().clone()));
            self.snapshot_to_apply = Some(store.start().index);
            self.set_high_watermark(store.start().offset);
        }
        let committed = rd.take_committed_entries();
        let applied = committed.last().map(|e| e.index);
        let mut membership_changed = out.write.snapshot.is_some();
        if !committed.is_empty() {
            let (committed, changed) = self.apply(committed)?;
            out.committed = Some(committed);
            membership_changed |= changed;
        }
        if !rd.entries().is_empty() {
            self.raw.mut_store().append(rd.entries())?;
            out.write.entries = rd.take_entries();
        }
        if let Some(hard_state) = rd.hs() {
            self.raw.mut_store().set_hard_state(hard_state.clone());
            out.write.hard_state = Some(hard_state.clone());
        }
        if out.write.hard_state.is_some() || membership_changed {
            // One state record: the hard state, and the membership history with the applied
            // index it holds as of (a restart re-applies from there; see `Recovered`).
            let store = self.raw.store();
            out.write.hard_state = Some(store.hard_state().clone());
            if membership_changed {
                out.write.confs = Some(store.confs());
            }
            out.write.applied = store.applied();
        }
        out.send_after_sync = rd.take_persisted_messages();
        // A new configuration is durable before anything acts on it; a record that only
        // moves the commit needs no flush (raft-rs's `must_sync`), losing it re-applies more.
        out.must_sync |= membership_changed;
        self.raw.advance_append_async(rd);
        if let Some(index) = applied {
            self.raw.advance_apply_to(index);
        }
        // A snapshot here is only a log start: it travels as one small message, so it is
        // done once sent. Reporting it sends the follower back to probing, which sends it
        // again if the message was lost (else the leader would wait for it forever).
        for to in out
            .send_now
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect::<Vec<_>>()
        {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        self.step_down_if_removed();
        self.leave_joint();
        self.after_input();
        Ok(out)
    }

    /// Tells raft-rs that the writes of every `Ready` up to `number` are durable: a
    /// follower may acknowledge them, a leader count itself in the commit quorum.
    pub fn on_persisted(&mut self, number: u64) {
        self.raw.on_persist_ready(number);
        if let Some(index) = self.snapshot_to_apply {
            if self.raw.raft.raft_log.persisted >= index {
                self.raw.advance_apply_to(index);
                self.snapshot_to_apply = None;
            }
        }
        self.after_input();
    }

    /// Takes the disk reads raft-rs asked for (entries below the cache, for a follower).
    pub fn take_reads(&mut self) -> Vec<ColdRead> {
        self.raw.mut_store().take_reads()
    }

    /// Hands back the entries of a cold read; raft-rs then sends them.
    pub fn on_read(&mut self, read: ColdRead, entries: Vec<Entry>) {
        self.raw.mut_store().fill(entries);
        self.raw.on_entries_fetched(read.context);
        self.after_input();
    }

    /// Moves the log start (retention removed entries up to `start.index`).
    pub fn compact_to(&mut self, start: LogStart) -> Result<(), StoreError> {
        self.raw.mut_store().compact_to(start)
    }

    /// Offsets below this are committed.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The group's current term (the partition's leader epoch).
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Whether this replica leads the group.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this replica knows of (0: none).
    pub fn leader(&self) -> u64 {
        self.raw.raft.leader_id
    }

    /// The group's log as this replica stores it.
    pub fn store(&self) -> &GroupStore {
        self.raw.store()
    }

    /// The last index raft-rs knows is durable here.
    pub fn persisted_index(&self) -> u64 {
        self.raw.raft.raft_log.persisted
    }

    /// The last entry applied (moved into the high watermark).
    pub fn applied_index(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    /// The commit index raft-rs knows.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The knobs this group runs with.
    pub fn config(&self) -> GroupConfig {
        self.config
    }

    /// Applies committed entries (membership changes to raft-rs and the store); says
    /// whether the configuration changed.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(Committed, bool), GroupError> {
        let mut last = 0;
        let mut changed = false;
        let first = entries.first().map_or(0, |e| e.index);
        let base_offset = self
            .raw
            .store()
            .end_offset_at(first.saturating_sub(1))
            .unwrap_or(self.high_watermark);
        for entry in &entries {
            last = entry.index;
            let change = match entry.get_entry_type() {
                EntryType::EntryNormal => continue,
                EntryType::EntryConfChange => ConfChange::parse_from_bytes(entry.get_data())
                    .map(|cc| self.raw.apply_conf_change(&cc)),
                EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(entry.get_data())
                    .map(|cc| self.raw.apply_conf_change(&cc)),
            };
            let conf = change.map_err(|e| GroupError::ConfChange {
                index: entry.index,
                reason: e.to_string(),
            })??;
            self.raw.mut_store().set_conf_state(entry.index, conf);
            changed = true;
        }
        let store = self.raw.mut_store();
        store.applied_to(last);
        let high_watermark = store.end_offset_at(last).unwrap_or(store.end_offset());
        self.set_high_watermark(high_watermark);
        let committed = Committed {
            entries,
            base_offset,
            high_watermark: self.high_watermark,
        };
        Ok((committed, changed))
    }

    fn set_high_watermark(&mut self, offset: i64) {
        self.high_watermark = self.high_watermark.max(offset);
    }

    /// The offset the next proposal starts at: after the last entry raft-rs holds, which
    /// may still be unstable (proposed or a new leader's no-op, not yet handed over).
    fn next_offset(&self) -> Result<i64, ProposeError> {
        let unstable = self.raw.raft.raft_log.unstable_entries();
        let store = self.raw.store();
        let Some(first) = unstable.first() else {
            return Ok(store.end_offset());
        };
        let mut end = store
            .end_offset_at(first.index - 1)
            .unwrap_or(store.end_offset());
        for e in unstable {
            end += entry::offsets_in(e)?;
        }
        Ok(end)
    }

    /// raft-rs draws a new election timeout from the thread's generator whenever the role,
    /// term or leader changes; replace it with one from the group's seeded generator.
    fn after_input(&mut self) {
        let raft = &self.raw.raft;
        let now = (
            raft.state,
            raft.term,
            raft.leader_id,
            raft.randomized_election_timeout(),
        );
        if now != self.seen {
            self.draw_election_timeout();
        }
    }

    fn draw_election_timeout(&mut self) {
        let min = self.config.election_ticks;
        let timeout = min + self.rng.below(min as u64) as usize;
        self.raw.raft.set_randomized_election_timeout(timeout);
        let raft = &self.raw.raft;
        self.seen = (raft.state, raft.term, raft.leader_id, timeout);
    }
}
