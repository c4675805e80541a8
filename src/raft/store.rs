//! raft-rs's `Storage` for one group, answered from memory.
//!
//! raft-rs asks its storage synchronously, and a shard must never block on the disk, so
//! everything it asks is kept in memory: the hard and configuration state, the term of
//! every index (one [`TermRun`] per term, which also answers OffsetForLeaderEpoch), and a
//! tail cache of entries that always covers the applied entry and everything above it. The
//! only reads that can reach further back are those for a lagging follower: they answer
//! `LogTemporarilyUnavailable`, are queued as a [`ColdRead`] for the shard to read from
//! the disk, and come back through [`GroupStore::fill`] and raft-rs's `on_entries_fetched`.
//!
//! The store also places every entry in the Kafka log (see [`super::entry`]): it keeps each
//! cached entry's base offset and checks it against the offset the leader stamped.

use std::cell::RefCell;
use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};

use super::entry::{self, EntryError};

/// Where a group's log starts: the entry just before its first stored one (raft-rs's
/// snapshot metadata) and the Kafka offset of the first entry after it. Retention moves it;
/// a follower too far behind receives it as the whole of its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStart {
    /// Raft index of the last removed entry (0 for a new group).
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// The log start offset: the first offset after it.
    pub offset: i64,
}

/// A maximal run of consecutive entries of one term, from its first index and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermRun {
    /// First Raft index of the run.
    pub first_index: u64,
    /// The term (Kafka's leader epoch).
    pub term: u64,
    /// Kafka offset of its first entry.
    pub base_offset: i64,
}

/// What recovery found on the disk for one group.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Term, vote and commit as last persisted (the commit may be ahead of the entries that
    /// survived; the store lowers it).
    pub hard_state: HardState,
    /// The state record's membership history: each configuration with the index of the
    /// change that made it, from the one in force at its log start up to `applied`. It may
    /// reach below the log start (retention moved on since) or stop short of it (a
    /// snapshot reached the disk, the state written with it did not).
    pub confs: Vec<(u64, ConfState)>,
    /// The last entry applied when `confs` was written. raft-rs re-applies what is
    /// committed above it, and refuses to campaign until it has: a replica that restarts
    /// with an older configuration must not win an election with it.
    pub applied: u64,
    /// Where the log starts.
    pub start: LogStart,
    /// The configuration in force at the log start, written with the start.
    pub start_conf: ConfState,
    /// Every entry above the start, in order.
    pub entries: Vec<Entry>,
}

impl Recovered {
    /// A new group's first state on each of its first `voters`: the log starts after index 1
    /// (term 1, offset 0) with that configuration. A replica added later starts empty, so it
    /// is always behind the start and begins from a snapshot, which carries the
    /// configuration; it never has to learn the first voters from entries that do not hold
    /// them.
    pub fn bootstrap(voters: Vec<u64>) -> Recovered {
        let conf = ConfState::from((voters, Vec::<u64>::new()));
        let hard_state = HardState {
            term: 1,
            commit: 1,
            ..HardState::default()
        };
        Recovered {
            hard_state,
            confs: vec![(1, conf.clone())],
            start: LogStart {
                index: 1,
                term: 1,
                offset: 0,
            },
            start_conf: conf,
            entries: Vec::new(),
            applied: 1,
        }
    }
}

/// An entry with its place in the Kafka log.
#[derive(Debug, Clone)]
struct Cached {
    entry: Entry,
    base: i64,
    count: i64,
}

/// A read of entries below the tail cache that raft-rs asked for (to catch a follower up).
#[derive(Debug)]
pub struct ColdRead {
    /// First index wanted.
    pub low: u64,
    /// One past the last index wanted (the cache has the rest).
    pub high: u64,
    /// raft-rs's size bound for the message (`None`: unbounded).
    pub max_bytes: Option<u64>,
    pub(super) context: GetEntriesContext,
}

/// Why the store refused a change raft-rs handed over (a replica that disagrees with the
/// leader about offsets, or a leader that sent something that is not a batch): the group
/// stops rather than write a log that other replicas would read differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// An entry's bytes are not record batches.
    #[error("entry {index}: {source}")]
    Entry {
        /// Raft index of the entry.
        index: u64,
        /// What is wrong with it.
        source: EntryError,
    },
    /// The leader stamped a base offset this replica does not derive.
    #[error("entry {index} is stamped at offset {stamped} but follows offset {derived}")]
    OffsetMismatch {
        /// Raft index of the entry.
        index: u64,
        /// The base offset in its first batch.
        stamped: i64,
        /// The end offset of the entry before it here.
        derived: i64,
    },
    /// Entries that do not follow the log (a gap, or below what the cache holds).
    #[error("entries from {first} cannot follow a log of {first_cached}..={last}")]
    Discontiguous {
        /// First index handed over.
        first: u64,
        /// First index the cache holds.
        first_cached: u64,
        /// Last index of the log.
        last: u64,
    },
    /// A log start that is not committed and applied here, or moves backwards.
    #[error("cannot start the log after entry {index}: applied {applied}, start {start}")]
    BadStart {
        /// The requested start.
        index: u64,
        /// What is applied.
        applied: u64,
        /// The current start.
        start: u64,
    },
}

/// One group's log as raft-rs sees it (see the module documentation).
#[derive(Debug)]
pub struct GroupStore {
    hard_state: HardState,
    start: LogStart,
    /// The configuration in force at the start (snapshots carry it).
    start_conf: ConfState,
    /// The index of the change that made it (at or below the start; the start itself when
    /// unknown). The state record names it, not the start: a state record may outlive the
    /// retention that moved the start, and must not claim a change where there was none.
    start_conf_index: u64,
    /// Membership changes applied above the start: (index, configuration after it). Kept
    /// whole, and in the state record, because the start moves: a replica must know the
    /// configuration at any later start without reading its log.
    conf_changes: Vec<(u64, ConfState)>,
    runs: Vec<TermRun>,
    last_index: u64,
    end_offset: i64,
    cache: VecDeque<Cached>,
    applied: u64,
    /// Entries kept below the applied one, for followers slightly behind.
    cache_entries: usize,
    /// Entries a cold read brought back, until raft-rs has sent them.
    fetched: VecDeque<Entry>,
    reads: RefCell<Vec<ColdRead>>,
}

impl GroupStore {
    /// A store holding what recovery found. The commit is lowered to the last entry that
    /// survived (the hard state may have reached the disk before its entries); entries are
    /// applied up to where the configuration was written, and raft-rs applies the rest.
    pub fn recover(recovered: Recovered, cache_entries: usize) -> Result<GroupStore, StoreError> {
        let Recovered {
            mut hard_state,
            confs,
            start,
            start_conf,
            entries,
            mut applied,
        } = recovered;
        // The start record's configuration holds at the start; the state record adds the
        // changes applied above it. A state record older than the start (a snapshot or
        // retention reached the disk, the state written with it did not) adds nothing.
        applied = applied.max(start.index);
        let conf_changes = confs
            .into_iter()
            .filter(|(index, _)| *index > start.index && *index <= applied)
            .collect();
        let mut store = GroupStore {
            hard_state: HardState::default(),
            start,
            start_conf,
            start_conf_index: start.index,
            conf_changes,
            runs: Vec::new(),
            last_index: start.index,
            end_offset: start.offset,
            cache: VecDeque::new(),
            applied: start.index,
            cache_entries,
            fetched: VecDeque::new(),
            reads: RefCell::new(Vec::new()),
        };
        store.append(&entries)?;
        let commit = hard_state.commit.clamp(start.index, store.last_index);
        hard_state.commit = commit;
        store.hard_state = hard_state;
        store.applied_to(applied.min(commit));
        Ok(store)
    }

    /// Adds entries handed over by a `Ready`, replacing any from the first one's index on
    /// (a follower's conflicting tail). Checks each data entry's stamped offset.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first().map(Entry::get_index) else {
            return Ok(());
        };
        let first_cached = self.first_cached();
        if first <= self.start.index || first > self.last_index + 1 || first < first_cached {
            return Err(StoreError::Discontiguous {
                first,
                first_cached,
                last: self.last_index,
            });
        }
        if first <= self.last_index {
            self.cache.truncate((first - first_cached) as usize);
            self.runs.retain(|run| run.first_index < first);
            self.last_index = first - 1;
            self.end_offset = self.end_offset_at(first - 1).unwrap_or(self.start.offset);
            if self.fetched.back().is_some_and(|e| e.index >= first) {
                self.fetched.clear();
            }
        }
        for entry in entries {
            let index = entry.get_index();
            let count =
                entry::offsets_in(entry).map_err(|source| StoreError::Entry { index, source })?;
            let base = self.end_offset;
            if let Some(stamped) = entry::stamped_base(entry) {
                if stamped != base {
                    return Err(StoreError::OffsetMismatch {
                        index,
                        stamped,
                        derived: base,
                    });
                }
            }
            if self.runs.last().map(|run| run.term) != Some(entry.get_term()) {
                self.runs.push(TermRun {
                    first_index: index,
                    term: entry.get_term(),
                    base_offset: base,
                });
            }
            self.cache.push_back(Cached {
                entry: entry.clone(),
                base,
                count,
            });
            self.last_index = index;
            self.end_offset = base + count;
        }
        Ok(())
    }

    /// Replaces the whole log with a snapshot's start (a follower too far behind).
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) {
        let meta = snapshot.get_metadata();
        let offset = snapshot_offset(snapshot);
        self.start = LogStart {
            index: meta.index,
            term: meta.term,
            offset,
        };
        self.start_conf = meta.get_conf_state().clone();
        self.start_conf_index = meta.index;
        self.conf_changes.clear();
        self.runs.clear();
        self.cache.clear();
        self.fetched.clear();
        self.last_index = meta.index;
        self.end_offset = offset;
        self.applied = meta.index;
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
    }

    /// Records the hard state a `Ready` carried.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Records the configuration after the membership change at `index` was applied.
    pub fn set_conf_state(&mut self, index: u64, conf_state: ConfState) {
        self.conf_changes.push((index, conf_state));
    }

    /// Notes that entries up to `index` are applied, so the cache may drop older ones.
    pub fn applied_to(&mut self, index: u64) {
        self.applied = self.applied.max(index);
        // The applied entry itself stays: a truncation just above it needs its end offset.
        let below = self.applied.saturating_sub(self.first_cached()) as usize;
        for _ in self.cache_entries..below {
            self.cache.pop_front();
        }
    }

    /// Moves the log start up to `start` (retention removed the entries below it). Only
    /// applied entries may go.
    pub fn compact_to(&mut self, start: LogStart) -> Result<(), StoreError> {
        if start.index > self.applied || start.index < self.start.index {
            return Err(StoreError::BadStart {
                index: start.index,
                applied: self.applied,
                start: self.start.index,
            });
        }
        self.start = start;
        while self
            .cache
            .front()
            .is_some_and(|c| c.entry.index <= start.index)
        {
            self.cache.pop_front();
        }
        while self.fetched.front().is_some_and(|e| e.index <= start.index) {
            self.fetched.pop_front();
        }
        let first = start.index + 1;
        let keep_from = self
            .runs
            .partition_point(|run| run.first_index <= first)
            .saturating_sub(1);
        self.runs.drain(..keep_from);
        if let Some(run) = self.runs.first_mut() {
            if run.first_index < first {
                run.first_index = first;
                run.base_offset = start.offset;
            }
        }
        let settled = self
            .conf_changes
            .partition_point(|(i, _)| *i <= start.index);
        if let Some((index, conf)) = self.conf_changes.drain(..settled).last() {
            self.start_conf = conf;
            self.start_conf_index = index;
        }
        Ok(())
    }

    /// Takes the reads raft-rs asked for since the last call.
    pub fn take_reads(&mut self) -> Vec<ColdRead> {
        std::mem::take(self.reads.get_mut())
    }

    /// Hands over entries a cold read brought back (consecutive, from the read's `low`).
    pub fn fill(&mut self, entries: Vec<Entry>) {
        let first = self.first_cached();
        self.fetched = entries
            .into_iter()
            .filter(|e| e.index > self.start.index && e.index < first)
            .collect();
    }

    /// The Kafka offset after the last entry.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// The Kafka offset after entry `index`, if the cache (or the start) places it.
    pub fn end_offset_at(&self, index: u64) -> Option<i64> {
        if index == self.start.index {
            return Some(self.start.offset);
        }
        let first = self.first_cached();
        if index < first || index > self.last_index {
            return None;
        }
        self.cache
            .get((index - first) as usize)
            .map(|c| c.base + c.count)
    }

    /// The last applied entry.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Where the log starts.
    pub fn start(&self) -> LogStart {
        self.start
    }

    /// The terms of the log with the offsets where each began (OffsetForLeaderEpoch).
    pub fn term_runs(&self) -> &[TermRun] {
        &self.runs
    }

    /// The last persisted (or handed over) hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The current configuration (as of the applied entry).
    pub fn conf_state(&self) -> &ConfState {
        self.conf_changes
            .last()
            .map_or(&self.start_conf, |(_, conf)| conf)
    }

    /// The configuration in force at the log start: written with the start when retention
    /// moves it, sent in snapshots.
    pub fn start_conf(&self) -> &ConfState {
        &self.start_conf
    }

    /// The membership history the state record keeps (see [`Recovered::confs`]): the
    /// start's configuration, then every change applied above it.
    pub fn confs(&self) -> Vec<(u64, ConfState)> {
        std::iter::once((self.start_conf_index, self.start_conf.clone()))
            .chain(self.conf_changes.iter().cloned())
            .collect()
    }

    fn first_cached(&self) -> u64 {
        self.cache
            .front()
            .map_or(self.last_index + 1, |c| c.entry.index)
    }

    fn collect(&self, low: u64, high: u64) -> Option<Vec<Entry>> {
        let first = self.first_cached();
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut next = low;
        if next < first {
            let fetched_first = self.fetched.front()?.index;
            if next < fetched_first {
                return None;
            }
            for e in self.fetched.iter().skip((next - fetched_first) as usize) {
                if next >= high.min(first) {
                    break;
                }
                out.push(e.clone());
                next += 1;
            }
            if next < high.min(first) {
                // The fetched run ends early: send what there is.
                return (!out.is_empty()).then_some(out);
            }
        }
        if next < high {
            let skip = (next - first) as usize;
            out.extend(
                self.cache
                    .iter()
                    .skip(skip)
                    .take((high - next) as usize)
                    .map(|c| c.entry.clone()),
            );
        }
        Some(out)
    }
}

/// The log start offset a snapshot carries (its whole payload).
pub fn snapshot_offset(snapshot: &Snapshot) -> i64 {
    let data = snapshot.get_data();
    <[u8; 8]>::try_from(data.get(..8).unwrap_or(&[0; 8]))
        .map(i64::from_be_bytes)
        .unwrap_or(0)
}

impl raft::Storage for GroupStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_bytes = max_size.into();
        if low <= self.start.index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > self.last_index + 1 || low > high {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        if let Some(mut entries) = self.collect(low, high) {
            raft::util::limit_size(&mut entries, max_bytes);
            return Ok(entries);
        }
        if !context.can_async() {
            // Only a follower's catch-up reads below the cache; raft-rs's own reads stay
            // above the applied entry, which the cache always holds.
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let mut reads = self.reads.borrow_mut();
        if !reads.iter().any(|r| r.low == low) {
            reads.push(ColdRead {
                low,
                high: high.min(self.first_cached()),
                max_bytes,
                context,
            });
        }
        Err(raft::Error::Store(
            RaftStorageError::LogTemporarilyUnavailable,
        ))
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.start.index {
            return Ok(self.start.term);
        }
        if index < self.start.index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if index > self.last_index {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let at = self.runs.partition_point(|run| run.first_index <= index);
        match at.checked_sub(1).and_then(|i| self.runs.get(i)) {
            Some(run) => Ok(run.term),
            None => Err(raft::Error::Store(RaftStorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.start.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// The log start, for a follower behind it. raft-rs refuses a snapshot whose
    /// configuration lacks the recipient, and a replica added after the start is not in the
    /// configuration as of the start: such a recipient is listed as a learner. It then
    /// replays the entries after the start, among them its own addition (a no-op for a
    /// learner already listed) and every later change, so it ends with the group's real
    /// configuration. (A state-machine snapshot would be taken at the applied index instead;
    /// here the log is the state machine, so the start is the only honest index.)
    fn snapshot(&self, _request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = self.start.index;
        meta.term = self.start.term;
        let mut conf = self.start_conf().clone();
        let listed = conf
            .voters
            .iter()
            .chain(&conf.learners)
            .chain(&conf.voters_outgoing)
            .any(|id| *id == to);
        if !listed {
            conf.learners.push(to);
        }
        meta.set_conf_state(conf);
        snapshot.set_data(self.start.offset.to_be_bytes().to_vec().into());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raft::Storage;

    use super::*;
    use crate::storage::records::{build_batch, KeyedRecord};

    /// A data entry of `records` records stamped at `base`.
    fn data(index: u64, term: u64, base: i64, records: usize) -> Entry {
        let records: Vec<KeyedRecord> = (0..records)
            .map(|_| KeyedRecord {
                key: Bytes::from_static(b"k"),
                value: None,
            })
            .collect();
        let mut bytes = build_batch(&records, None, 0).unwrap();
        entry::stamp(&mut bytes, base, term as i32).unwrap();
        let mut e = noop(index, term);
        e.set_data(bytes.freeze());
        e
    }

    fn noop(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn terms_and_offsets_outlive_the_cache() {
        let mut store = GroupStore::recover(Recovered::default(), 1).unwrap();
        // Offsets: noop 0, three records 1..=3, noop 4, two records 5..=6.
        let entries = [noop(1, 1), data(2, 1, 1, 3), noop(3, 2), data(4, 2, 5, 2)];
        store.append(&entries).unwrap();
        assert_eq!(store.end_offset(), 7);
        store.applied_to(4);
        // One entry below the applied one stays cached; older ones are only in term runs.
        assert_eq!(store.end_offset_at(1), None);
        assert_eq!(store.end_offset_at(3), Some(5));
        assert_eq!((store.term(1).unwrap(), store.term(3).unwrap()), (1, 2));
        let runs: Vec<(u64, u64, i64)> = store
            .term_runs()
            .iter()
            .map(|r| (r.first_index, r.term, r.base_offset))
            .collect();
        assert_eq!(runs, vec![(1, 1, 0), (3, 2, 4)]);
        // A follower behind the cache is served by a cold read, not by blocking.
        let err = store.entries(1, 5, None, GetEntriesContext::empty(true));
        assert!(matches!(
            err,
            Err(raft::Error::Store(
                RaftStorageError::LogTemporarilyUnavailable
            ))
        ));
        let reads = store.take_reads();
        assert_eq!((reads[0].low, reads[0].high), (1, 3));
        store.fill(entries[..2].to_vec());
        let got = store
            .entries(1, 5, None, GetEntriesContext::empty(true))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn an_entry_stamped_at_another_offset_is_refused() {
        let mut store = GroupStore::recover(Recovered::default(), 8).unwrap();
        store.append(&[noop(1, 1)]).unwrap();
        let err = store.append(&[data(2, 1, 5, 1)]).unwrap_err();
        assert_eq!(
            err,
            StoreError::OffsetMismatch {
                index: 2,
                stamped: 5,
                derived: 1
            }
        );
    }

    #[test]
    fn retention_moves_the_start_that_snapshots_carry() {
        let mut store = GroupStore::recover(Recovered::default(), 8).unwrap();
        store
            .append(&[noop(1, 1), data(2, 1, 1, 3), data(3, 1, 4, 1)])
            .unwrap();
        // Unapplied entries cannot go.
        assert!(store
            .compact_to(LogStart {
                index: 2,
                term: 1,
                offset: 4
            })
            .is_err());
        store.applied_to(3);
        store
            .compact_to(LogStart {
                index: 2,
                term: 1,
                offset: 4,
            })
            .unwrap();
        assert_eq!(store.first_index().unwrap(), 3);
        assert!(matches!(
            store.entries(2, 4, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(RaftStorageError::Compacted))
        ));
        let snapshot = store.snapshot(0, 2).unwrap();
        assert_eq!(snapshot.get_metadata().index, 2);
        assert_eq!(snapshot_offset(&snapshot), 4);
        // A follower installing it starts its log there.
        let mut follower = GroupStore::recover(Recovered::default(), 8).unwrap();
        follower.apply_snapshot(&snapshot);
        assert_eq!(
            (follower.last_index().unwrap(), follower.end_offset()),
            (2, 4)
        );
        follower.append(&[data(3, 1, 4, 1)]).unwrap();
        assert_eq!(follower.end_offset(), 5);
    }

    #[test]
    fn recovery_lowers_a_commit_ahead_of_the_surviving_entries() {
        let hard_state = HardState {
            commit: 9,
            term: 1,
            ..HardState::default()
        };
        let store = GroupStore::recover(
            Recovered {
                hard_state,
                entries: vec![noop(1, 1), data(2, 1, 1, 2)],
                ..Recovered::default()
            },
            8,
        )
        .unwrap();
        assert_eq!(store.hard_state().commit, 2);
        assert_eq!(store.end_offset(), 3);
    }

    #[test]
    fn a_restarted_replica_knows_the_configuration_at_a_later_start() {
        // Voters 1-3 from the start; node 4 joined as a learner at index 3. The replica
        // restarts with that applied, then retention moves its start past the change: a
        // snapshot from it must list node 4, as the entries it no longer has did.
        let voters = ConfState::from((vec![1, 2, 3], Vec::<u64>::new()));
        let with_learner = ConfState::from((vec![1, 2, 3], vec![4]));
        let hard_state = HardState {
            commit: 5,
            term: 1,
            ..HardState::default()
        };
        let mut store = GroupStore::recover(
            Recovered {
                hard_state,
                confs: vec![(0, voters.clone()), (3, with_learner.clone())],
                applied: 4,
                start_conf: voters.clone(),
                entries: (1..=5).map(|i| noop(i, 1)).collect(),
                ..Recovered::default()
            },
            8,
        )
        .unwrap();
        assert_eq!(store.conf_state(), &with_learner);
        store.applied_to(5);
        store
            .compact_to(LogStart {
                index: 4,
                term: 1,
                offset: 4,
            })
            .unwrap();
        assert_eq!(store.start_conf(), &with_learner);
        let snapshot = store.snapshot(0, 5).unwrap();
        let conf = snapshot.get_metadata().get_conf_state();
        assert_eq!(
            (conf.voters.as_slice(), conf.learners.as_slice()),
            (&[1, 2, 3][..], &[4, 5][..])
        );
        // The state record names the change where it happened, not the new start.
        assert_eq!(store.confs(), vec![(3, with_learner)]);
    }
}
