//! The per-shard Raft driver: every group of a shard, one clock, one write turn.
//!
//! A shard runs many groups; doing their IO one group at a time would cost a flush per
//! partition. The driver gathers the work of every group touched since the last turn into
//! one [`Turn`]: the messages to send now, one write per group and a single flush that covers
//! them all. The next turn may be taken while a flush is in flight (its writes go to the
//! device behind it); [`Driver::on_synced`] then acknowledges every turn up to the flushed
//! one, releasing the messages that had to wait for durability (votes, append responses).
//! Sans-IO: the shard's IO loop and the simulator drive it the same way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::BytesMut;
use raft::eraftpb::{Entry, Message};

use super::group::{Committed, Group, GroupError, GroupId, GroupWrite, ProposeError, Proposed};
use super::store::ColdRead;

/// A Raft message and the group it belongs to: the unit of the inter-broker transport.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The group.
    pub group: GroupId,
    /// raft-rs's message (`to` names the node).
    pub message: Message,
}

/// One turn of IO for the shard (see the module documentation).
#[derive(Debug, Default)]
pub struct Turn {
    /// Pass to [`Driver::on_synced`] once the turn's writes (and all before) are durable.
    pub number: u64,
    /// Messages to send now.
    pub send_now: Vec<Envelope>,
    /// One write per group, in group order.
    pub writes: Vec<(GroupId, GroupWrite)>,
    /// Whether the writes need a flush (entries, a snapshot, a new term or vote); without
    /// it the turn is acknowledged once earlier turns are.
    pub must_sync: bool,
    /// Entries newly committed, per group.
    pub committed: Vec<(GroupId, Committed)>,
    /// Entries to read from the disk for lagging followers.
    pub reads: Vec<(GroupId, ColdRead)>,
    /// Groups that stopped: their log disagrees with the leader's (see
    /// [`super::store::StoreError`]); they are removed from the driver.
    pub failed: Vec<(GroupId, GroupError)>,
}

/// A taken turn whose writes are not yet known durable.
#[derive(Debug)]
struct Unsynced {
    number: u64,
    readies: Vec<(GroupId, u64)>,
    send_after_sync: Vec<Envelope>,
}

/// The groups of one shard (see the module documentation).
#[derive(Debug, Default)]
pub struct Driver {
    groups: BTreeMap<GroupId, Group>,
    /// Groups that may have work since the last turn.
    touched: BTreeSet<GroupId>,
    unsynced: VecDeque<Unsynced>,
    next_turn: u64,
}

impl Driver {
    /// A driver with no groups.
    pub fn new() -> Driver {
        Driver::default()
    }

    /// Adds a group (replacing one with the same id).
    pub fn insert(&mut self, group: Group) {
        self.touched.insert(group.id());
        self.groups.insert(group.id(), group);
    }

    /// The group `id`, if this shard runs it.
    pub fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// The group `id` for changes outside a turn (retention moving its log start).
    pub fn group_mut(&mut self, id: GroupId) -> Option<&mut Group> {
        self.touched.insert(id);
        self.groups.get_mut(&id)
    }

    /// Every group, in id order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// One tick of the shard's clock for every group.
    pub fn tick(&mut self) {
        for (id, group) in &mut self.groups {
            group.tick();
            self.touched.insert(*id);
        }
    }

    /// Hands a message to its group; messages for groups this shard does not run are
    /// dropped (a replica that moved, or a stale sender).
    pub fn step(&mut self, envelope: Envelope) {
        if let Some(group) = self.groups.get_mut(&envelope.group) {
            group.step(envelope.message);
            self.touched.insert(envelope.group);
        }
    }

    /// Proposes record batches to group `id` (see [`Group::propose`]).
    pub fn propose(&mut self, id: GroupId, batches: BytesMut) -> Result<Proposed, ProposeError> {
        let group = self
            .groups
            .get_mut(&id)
            .ok_or(ProposeError::NotLeader { leader: 0 })?;
        self.touched.insert(id);
        group.propose(batches)
    }

    /// Takes the pending work of every touched group as one turn, or `None` when there is
    /// none.
    pub fn turn(&mut self) -> Option<Turn> {
        let mut turn = Turn {
            number: self.next_turn + 1,
            ..Turn::default()
        };
        let mut unsynced = Unsynced {
            number: turn.number,
            readies: Vec::new(),
            send_after_sync: Vec::new(),
        };
        let mut again = BTreeSet::new();
        for id in std::mem::take(&mut self.touched) {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            for read in group.take_reads() {
                turn.reads.push((id, read));
            }
            if !group.has_ready() {
                continue;
            }
            let ready = match group.ready() {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::error!(group = id, error = %e, "raft group stopped");
                    self.groups.remove(&id);
                    turn.failed.push((id, e));
                    continue;
                }
            };
            let envelope = |message| Envelope { group: id, message };
            turn.send_now
                .extend(ready.send_now.into_iter().map(envelope));
            unsynced
                .send_after_sync
                .extend(ready.send_after_sync.into_iter().map(envelope));
            unsynced.readies.push((id, ready.number));
            turn.must_sync |= ready.must_sync;
            if !ready.write.is_empty() {
                turn.writes.push((id, ready.write));
            }
            if let Some(committed) = ready.committed {
                turn.committed.push((id, committed));
            }
            // Reads asked while the ready was taken (a leader sending appends).
            for read in group.take_reads() {
                turn.reads.push((id, read));
            }
            if group.has_ready() {
                again.insert(id);
            }
        }
        self.touched.extend(again);
        if unsynced.readies.is_empty() && turn.reads.is_empty() && turn.failed.is_empty() {
            return None;
        }
        self.next_turn = turn.number;
        if !unsynced.readies.is_empty() {
            self.unsynced.push_back(unsynced);
        }
        Some(turn)
    }

    /// Every write of turns up to `number` is durable: acknowledges them to their groups
    /// and returns the messages that waited for it.
    pub fn on_synced(&mut self, number: u64) -> Vec<Envelope> {
        let mut send = Vec::new();
        while self.unsynced.front().is_some_and(|u| u.number <= number) {
            let Some(done) = self.unsynced.pop_front() else {
                break;
            };
            for (id, ready) in done.readies {
                if let Some(group) = self.groups.get_mut(&id) {
                    group.on_persisted(ready);
                    self.touched.insert(id);
                }
            }
            send.extend(done.send_after_sync);
        }
        send
    }

    /// Hands back a cold read's entries to its group.
    pub fn on_read(&mut self, id: GroupId, read: ColdRead, entries: Vec<Entry>) {
        if let Some(group) = self.groups.get_mut(&id) {
            group.on_read(read, entries);
            self.touched.insert(id);
        }
    }
}
