//! The transaction coordinator of one `__transaction_state` partition, sans-IO.
//!
//! Inputs (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, marker completion,
//! ticks) come in with `now_ms`; out come error codes, records to append to the partition
//! (acks=all, before answering) and marker jobs (commit/abort markers to write to every
//! partition of a transaction, after which the driver calls [`TxnCoordinator::complete`]).
//! The state moves before its record is durable; when an append fails the driver drops the
//! coordinator and rebuilds it from the log, so memory never stays ahead of the log.
//!
//! Transactions v2 (KIP-890 part 2): a client at EndTxn v5 gets its epoch bumped by every
//! EndTxn (the markers carry the bumped epoch, so a late batch of the finished transaction is
//! fenced on every partition) and the new epoch in the answer; when the epoch runs out the
//! producer moves to a new producer id as the transaction completes. Because each EndTxn
//! moves the epoch, a retried EndTxn is recognised by its epoch being one behind.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;

use super::records::{self, TxnRecord, TxnRecordError};

/// Largest `transaction.timeout.ms` accepted (Kafka's `transaction.max.timeout.ms` default).
pub const TRANSACTION_TIMEOUT_MAX_MS: i32 = 15 * 60 * 1000;

/// An epoch this close to `i16::MAX` is exhausted: the producer gets a new id instead.
const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

/// `ClientTransactionVersion` of a transaction driven by a transactions-v2 client.
pub const TRANSACTION_VERSION_2: i16 = 2;

const CONCURRENT_TRANSACTIONS: i16 = ResponseError::ConcurrentTransactions.code();
const INVALID_TXN_STATE: i16 = ResponseError::InvalidTxnState.code();
const INVALID_PRODUCER_ID_MAPPING: i16 = ResponseError::InvalidProducerIdMapping.code();
const PRODUCER_FENCED: i16 = ResponseError::ProducerFenced.code();
const INVALID_TRANSACTION_TIMEOUT: i16 = ResponseError::InvalidTransactionTimeout.code();

/// Kafka's transaction states, with their stored codes and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// No transaction open (after InitProducerId).
    Empty,
    /// Partitions have been added; the producer is writing.
    Ongoing,
    /// EndTxn(commit) accepted; markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a fence or a timeout; markers are being written.
    PrepareAbort,
    /// Commit markers written everywhere.
    CompleteCommit,
    /// Abort markers written everywhere.
    CompleteAbort,
    /// The id expired.
    Dead,
    /// Kafka's intermediate fencing state (only read, never written by Sluice).
    PrepareEpochFence,
}

impl TxnState {
    /// The code stored in `__transaction_state`.
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state of a stored code.
    pub fn from_code(code: i8) -> Option<TxnState> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    fn preparing(self) -> bool {
        matches!(
            self,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        )
    }
}

/// Everything the coordinator knows about one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its current epoch; lower epochs are fenced.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// Where the transaction is.
    pub state: TxnState,
    /// The partitions (topic, partition) of the open transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (first partition added), -1 if none.
    pub start_ms: i64,
    /// When the state last changed.
    pub last_update_ms: i64,
    /// The transaction version of the client's last request ([`TRANSACTION_VERSION_2`]:
    /// every EndTxn bumps the epoch, so retries are told apart by epoch).
    pub client_version: i16,
    /// The producer id before the last epoch overflow, -1 if none: a retried EndTxn of the
    /// transaction that overflowed still names it.
    pub previous_producer_id: i64,
    /// The producer id this producer moves to when the transaction being ended completes
    /// (its epoch ran out), -1 if none.
    pub next_producer_id: i64,
}

impl TxnMeta {
    fn is_v2(&self) -> bool {
        self.client_version >= TRANSACTION_VERSION_2
    }
}

/// Markers to write: the transaction's result to every partition it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    /// The transactional id to complete afterwards.
    pub transactional_id: String,
    /// The producer the markers close.
    pub producer_id: i64,
    /// The epoch written in the markers (fences older epochs on every partition).
    pub producer_epoch: i16,
    /// Commit or abort.
    pub commit: bool,
    /// The partitions.
    pub partitions: Vec<(String, i32)>,
}

/// What an input asks the driver to do, in order: append `records`, then write `markers`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Records to append to the coordinator's partition (acks=all) before answering.
    pub records: Vec<TxnRecord>,
    /// Markers to write once the records are durable.
    pub markers: Option<MarkerJob>,
}

/// An EndTxn as the coordinator sees it.
#[derive(Debug, Clone, Copy)]
pub struct EndRequest<'a> {
    /// The transactional id.
    pub transactional_id: &'a str,
    /// The producer id the client holds.
    pub producer_id: i64,
    /// The epoch the client holds.
    pub producer_epoch: i16,
    /// Commit (or abort).
    pub commit: bool,
    /// Transactions v2 (EndTxn v5): bump the epoch.
    pub v2: bool,
}

/// The next step of an EndTxn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Answer with this producer id and epoch (the bumped ones for transactions v2) once
    /// `effects` are applied.
    Done {
        /// The producer id the producer uses next.
        producer_id: i64,
        /// The epoch the producer uses next.
        producer_epoch: i16,
        /// The prepare record and the markers to write.
        effects: Effects,
    },
    /// The epoch is exhausted: allocate a producer id and call again with it.
    NeedProducerId,
    /// Refuse with this error code.
    Error(i16),
}

/// The next step of an InitProducerId with a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Answer with this id and epoch once `effects` are applied.
    Done {
        /// The producer id.
        producer_id: i64,
        /// The producer epoch.
        producer_epoch: i16,
        /// The record to append first.
        effects: Effects,
    },
    /// Allocate a producer id and call [`TxnCoordinator::init_with_new_id`].
    NeedProducerId,
    /// An open transaction was fenced: apply `effects` (abort markers), complete it, then
    /// run InitProducerId again.
    AbortFirst(Effects),
    /// Refuse with this error code.
    Error(i16),
}

/// The coordinator of one `__transaction_state` partition.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    txns: BTreeMap<String, TxnMeta>,
}

fn valid_timeout(timeout_ms: i32) -> bool {
    timeout_ms > 0 && timeout_ms <= TRANSACTION_TIMEOUT_MAX_MS
}

impl TxnCoordinator {
    /// The state of one transactional id.
    pub fn get(&self, transactional_id: &str) -> Option<&TxnMeta> {
        self.txns.get(transactional_id)
    }

    /// Number of transactional ids known.
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether no transactional id is known.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    fn store(&mut self, meta: TxnMeta) -> TxnRecord {
        let record = records::encode(&meta);
        self.txns.insert(meta.transactional_id.clone(), meta);
        record
    }

    /// InitProducerId with a transactional id. `expected` is the (id, epoch) the producer
    /// already holds (KIP-360 recovery), if any.
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> InitStep {
        if !valid_timeout(timeout_ms) {
            return InitStep::Error(INVALID_TRANSACTION_TIMEOUT);
        }
        let Some(meta) = self.txns.get(transactional_id) else {
            return match expected {
                Some(_) => InitStep::Error(INVALID_PRODUCER_ID_MAPPING),
                None => InitStep::NeedProducerId,
            };
        };
        if meta.state.preparing() {
            return InitStep::Error(CONCURRENT_TRANSACTIONS);
        }
        if let Some((pid, epoch)) = expected {
            if pid != meta.producer_id || epoch != meta.producer_epoch {
                return InitStep::Error(PRODUCER_FENCED);
            }
        }
        let mut meta = meta.clone();
        if meta.state == TxnState::Ongoing {
            // Fence the old producer: bump the epoch and abort its transaction with it.
            meta.producer_epoch = meta.producer_epoch.saturating_add(1);
            return InitStep::AbortFirst(self.prepare(meta, false, -1, now_ms));
        }
        if meta.producer_epoch >= EPOCH_EXHAUSTED {
            return InitStep::NeedProducerId;
        }
        meta.producer_epoch += 1;
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        meta.start_ms = -1;
        meta.last_update_ms = now_ms;
        let (producer_id, producer_epoch) = (meta.producer_id, meta.producer_epoch);
        InitStep::Done {
            producer_id,
            producer_epoch,
            effects: Effects {
                records: vec![self.store(meta)],
                markers: None,
            },
        }
    }

    /// InitProducerId after the driver allocated `producer_id` (new or exhausted id).
    pub fn init_with_new_id(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
    ) -> InitStep {
        if let Some(meta) = self.txns.get(transactional_id) {
            if meta.state.preparing() || meta.state == TxnState::Ongoing {
                return InitStep::Error(CONCURRENT_TRANSACTIONS);
            }
        }
        let meta = TxnMeta {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: 0,
            previous_producer_id: -1,
            next_producer_id: -1,
        };
        InitStep::Done {
            producer_id,
            producer_epoch: 0,
            effects: Effects {
                records: vec![self.store(meta)],
                markers: None,
            },
        }
    }

    /// Checks that (producer id, epoch) is the current producer of `transactional_id`.
    fn current(&self, transactional_id: &str, pid: i64, epoch: i16) -> Result<&TxnMeta, i16> {
        let meta = self
            .txns
            .get(transactional_id)
            .ok_or(INVALID_PRODUCER_ID_MAPPING)?;
        if meta.producer_id != pid {
            return Err(INVALID_PRODUCER_ID_MAPPING);
        }
        if meta.producer_epoch != epoch {
            return Err(PRODUCER_FENCED);
        }
        Ok(meta)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn, or the implicit add of a transactions-v2
    /// client's first write to a partition (`client_version` 2): adds partitions to the
    /// open transaction (opening one if none is). One error code for the whole request.
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        client_version: i16,
        now_ms: i64,
    ) -> Result<Effects, i16> {
        let meta = self.current(transactional_id, pid, epoch)?;
        match meta.state {
            TxnState::Empty
            | TxnState::Ongoing
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {}
            s if s.preparing() => return Err(CONCURRENT_TRANSACTIONS),
            _ => return Err(INVALID_TXN_STATE),
        }
        if meta.state == TxnState::Ongoing && partitions.iter().all(|p| meta.partitions.contains(p))
        {
            return Ok(Effects::default());
        }
        let mut meta = meta.clone();
        if meta.state != TxnState::Ongoing {
            meta.partitions.clear();
            meta.start_ms = now_ms;
        }
        meta.state = TxnState::Ongoing;
        meta.client_version = client_version;
        meta.partitions.extend(partitions.iter().cloned());
        meta.last_update_ms = now_ms;
        Ok(Effects {
            records: vec![self.store(meta)],
            markers: None,
        })
    }

    /// Whether `partition` was added to the open transaction (TxnOffsetCommit checks its
    /// group's offsets partition).
    pub fn contains(&self, transactional_id: &str, pid: i64, epoch: i16) -> Result<(), i16> {
        let meta = self.current(transactional_id, pid, epoch)?;
        if meta.state == TxnState::Ongoing {
            Ok(())
        } else {
            Err(INVALID_TXN_STATE)
        }
    }

    /// Moves to PrepareCommit/PrepareAbort; `next_producer_id` is the id the producer moves
    /// to on completion (-1: it keeps its own).
    fn prepare(
        &mut self,
        mut meta: TxnMeta,
        commit: bool,
        next_producer_id: i64,
        now_ms: i64,
    ) -> Effects {
        meta.next_producer_id = next_producer_id;
        meta.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        meta.last_update_ms = now_ms;
        let job = MarkerJob {
            transactional_id: meta.transactional_id.clone(),
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit,
            partitions: meta.partitions.iter().cloned().collect(),
        };
        Effects {
            records: vec![self.store(meta)],
            markers: Some(job),
        }
    }

    /// EndTxn: commit or abort the open transaction. A retry of a finished EndTxn succeeds.
    ///
    /// `v2` (EndTxn v5) bumps the epoch: the markers carry epoch + 1 and the answer names it
    /// (or, once the epoch is exhausted, `next_producer_id` at epoch 0, which the caller
    /// allocates when asked with [`EndStep::NeedProducerId`]). For a transaction whose last
    /// request was v2, a retry carries the epoch before the bump, so the epoch check is the
    /// one Kafka makes: the current epoch while open, one behind once ended.
    pub fn end_txn(
        &mut self,
        request: &EndRequest<'_>,
        next_producer_id: Option<i64>,
        now_ms: i64,
    ) -> EndStep {
        let &EndRequest {
            transactional_id,
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            v2,
        } = request;
        let Some(meta) = self.txns.get(transactional_id) else {
            return EndStep::Error(INVALID_PRODUCER_ID_MAPPING);
        };
        let retry_after_bump =
            meta.is_v2() && i32::from(meta.producer_epoch) == i32::from(epoch) + 1;
        let retry_after_overflow = meta.is_v2()
            && meta.previous_producer_id == pid
            && epoch == EPOCH_EXHAUSTED
            && meta.producer_epoch == 0;
        if meta.producer_id != pid && !retry_after_overflow {
            return EndStep::Error(INVALID_PRODUCER_ID_MAPPING);
        }
        let epoch_ok = if meta.is_v2() {
            match meta.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => retry_after_bump,
                TxnState::CompleteCommit | TxnState::CompleteAbort => {
                    retry_after_bump || retry_after_overflow
                }
                _ => epoch == meta.producer_epoch,
            }
        } else {
            epoch == meta.producer_epoch
        };
        if !epoch_ok {
            return EndStep::Error(PRODUCER_FENCED);
        }
        let (current_pid, current_epoch) = (meta.producer_id, meta.producer_epoch);
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut meta = meta.clone();
                let mut answer = (meta.producer_id, meta.producer_epoch);
                let mut next = None;
                if v2 {
                    if meta.producer_epoch >= EPOCH_EXHAUSTED {
                        let Some(fresh) = next_producer_id else {
                            return EndStep::NeedProducerId;
                        };
                        next = Some(fresh);
                        answer = (fresh, 0);
                    } else {
                        answer.1 += 1;
                    }
                    // Never past i16::MAX: an exhausted epoch is only bumped once more.
                    meta.producer_epoch = meta.producer_epoch.saturating_add(1);
                }
                // A retry of this EndTxn is judged by the version it was sent at.
                meta.client_version = if v2 { TRANSACTION_VERSION_2 } else { 0 };
                let effects = self.prepare(meta, commit, next.unwrap_or(-1), now_ms);
                EndStep::Done {
                    producer_id: answer.0,
                    producer_epoch: answer.1,
                    effects,
                }
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                EndStep::Error(CONCURRENT_TRANSACTIONS)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => EndStep::Done {
                producer_id: current_pid,
                producer_epoch: current_epoch,
                effects: Effects::default(),
            },
            _ => EndStep::Error(INVALID_TXN_STATE),
        }
    }

    /// Every marker of `job` is written: the transaction is complete.
    pub fn complete(&mut self, job: &MarkerJob, now_ms: i64) -> Effects {
        let Some(meta) = self.txns.get(&job.transactional_id) else {
            return Effects::default();
        };
        let expected = if job.commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        if meta.state != expected
            || meta.producer_id != job.producer_id
            || meta.producer_epoch != job.producer_epoch
        {
            return Effects::default();
        }
        let mut meta = meta.clone();
        meta.state = if job.commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        if meta.next_producer_id >= 0 {
            // The epoch ran out with this transaction: the producer continues on its new id.
            meta.previous_producer_id = meta.producer_id;
            meta.producer_id = meta.next_producer_id;
            meta.producer_epoch = 0;
            meta.next_producer_id = -1;
        }
        meta.partitions.clear();
        meta.last_update_ms = now_ms;
        Effects {
            records: vec![self.store(meta)],
            markers: None,
        }
    }

    /// Aborts transactions open longer than their timeout, bumping the epoch so the
    /// abandoned producer is fenced (as Kafka does).
    pub fn expire(&mut self, now_ms: i64) -> Vec<Effects> {
        let expired: Vec<TxnMeta> = self
            .txns
            .values()
            .filter(|m| {
                m.state == TxnState::Ongoing && now_ms - m.start_ms > i64::from(m.timeout_ms)
            })
            .cloned()
            .collect();
        expired
            .into_iter()
            .map(|mut meta| {
                tracing::info!(transactional_id = %meta.transactional_id, timeout_ms = meta.timeout_ms, "aborting a timed-out transaction");
                meta.producer_epoch = meta.producer_epoch.saturating_add(1);
                self.prepare(meta, false, -1, now_ms)
            })
            .collect()
    }

    /// Marker jobs of transactions stuck in a prepare state (after a restart or a failed
    /// marker write); the driver re-runs those not already in flight.
    pub fn unfinished(&self) -> Vec<MarkerJob> {
        self.txns
            .values()
            .filter(|m| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .map(|m| MarkerJob {
                transactional_id: m.transactional_id.clone(),
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                commit: m.state == TxnState::PrepareCommit,
                partitions: m.partitions.iter().cloned().collect(),
            })
            .collect()
    }

    /// Every transaction, for DescribeTransactions / ListTransactions.
    pub fn all(&self) -> impl Iterator<Item = &TxnMeta> {
        self.txns.values()
    }

    /// Applies one stored record while loading the partition.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), TxnRecordError> {
        let id = records::decode_key(key)?;
        match value {
            Some(v) => {
                let meta = records::decode_value(&id, v)?;
                self.txns.insert(id, meta);
            }
            None => {
                self.txns.remove(&id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(c: &mut TxnCoordinator, id: &str, now: i64) -> (i64, i16) {
        match c.init_producer_id(id, 60_000, None, now) {
            InitStep::NeedProducerId => match c.init_with_new_id(id, 1000, 60_000, now) {
                InitStep::Done {
                    producer_id,
                    producer_epoch,
                    ..
                } => (producer_id, producer_epoch),
                other => panic!("{other:?}"),
            },
            InitStep::Done {
                producer_id,
                producer_epoch,
                ..
            } => (producer_id, producer_epoch),
            other => panic!("{other:?}"),
        }
    }

    /// A transactions-v1 EndTxn (no epoch bump).
    fn end(
        c: &mut TxnCoordinator,
        pid: i64,
        epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<Effects, i16> {
        let request = EndRequest {
            transactional_id: "t",
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            v2: false,
        };
        match c.end_txn(&request, None, now) {
            EndStep::Done { effects, .. } => Ok(effects),
            EndStep::Error(code) => Err(code),
            EndStep::NeedProducerId => panic!("v1 never needs a producer id"),
        }
    }

    fn parts(names: &[(&str, i32)]) -> Vec<(String, i32)> {
        names.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn commit_goes_through_prepare_and_complete() {
        let mut c = TxnCoordinator::default();
        let (pid, epoch) = init(&mut c, "t", 0);
        assert_eq!((pid, epoch), (1000, 0));
        let fx = c
            .add_partitions("t", pid, epoch, &parts(&[("a", 0), ("b", 1)]), 0, 1)
            .unwrap();
        assert_eq!(fx.records.len(), 1);
        // Adding the same partition again writes nothing.
        assert!(c
            .add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 0, 2)
            .unwrap()
            .records
            .is_empty());
        let fx = end(&mut c, pid, epoch, true, 3).unwrap();
        let job = fx.markers.unwrap();
        assert!(job.commit);
        assert_eq!(job.partitions, parts(&[("a", 0), ("b", 1)]));
        assert_eq!(c.get("t").unwrap().state, TxnState::PrepareCommit);
        // While markers are written, the producer must wait.
        assert_eq!(
            c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 0, 4),
            Err(CONCURRENT_TRANSACTIONS)
        );
        assert_eq!(c.unfinished(), vec![job.clone()]);
        c.complete(&job, 5);
        assert_eq!(c.get("t").unwrap().state, TxnState::CompleteCommit);
        // A retried EndTxn(commit) succeeds, an abort now is in the wrong state.
        assert_eq!(end(&mut c, pid, epoch, true, 6), Ok(Effects::default()));
        assert_eq!(end(&mut c, pid, epoch, false, 6), Err(INVALID_TXN_STATE));
    }

    #[test]
    fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
        let mut c = TxnCoordinator::default();
        let (pid, epoch) = init(&mut c, "t", 0);
        c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 0, 1)
            .unwrap();
        let InitStep::AbortFirst(fx) = c.init_producer_id("t", 60_000, None, 2) else {
            panic!("an open transaction must be aborted first");
        };
        let job = fx.markers.unwrap();
        assert!(!job.commit);
        assert_eq!(job.producer_epoch, epoch + 1);
        c.complete(&job, 3);
        let (pid2, epoch2) = init(&mut c, "t", 4);
        assert_eq!(pid2, pid);
        assert_eq!(epoch2, epoch + 2);
        // The zombie is fenced everywhere.
        assert_eq!(
            c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 0, 5),
            Err(PRODUCER_FENCED)
        );
        assert_eq!(end(&mut c, pid, epoch, true, 5), Err(PRODUCER_FENCED));
        assert_eq!(
            end(&mut c, 77, epoch2, true, 5),
            Err(INVALID_PRODUCER_ID_MAPPING)
        );
    }

    #[test]
    fn kip_360_recovery_bumps_only_for_the_current_epoch() {
        let mut c = TxnCoordinator::default();
        let (pid, epoch) = init(&mut c, "t", 0);
        assert!(matches!(
            c.init_producer_id("t", 60_000, Some((pid, epoch)), 1),
            InitStep::Done {
                producer_epoch: 1,
                ..
            }
        ));
        assert_eq!(
            c.init_producer_id("t", 60_000, Some((pid, epoch)), 2),
            InitStep::Error(PRODUCER_FENCED)
        );
        assert_eq!(
            c.init_producer_id("t", 0, None, 2),
            InitStep::Error(INVALID_TRANSACTION_TIMEOUT)
        );
    }

    #[test]
    fn timed_out_transactions_are_aborted_with_a_bumped_epoch() {
        let mut c = TxnCoordinator::default();
        let (pid, epoch) = init(&mut c, "t", 0);
        c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 0, 1_000)
            .unwrap();
        assert!(c.expire(30_000).is_empty());
        let aborted = c.expire(61_001);
        assert_eq!(aborted.len(), 1);
        let job = aborted[0].markers.clone().unwrap();
        assert_eq!((job.commit, job.producer_epoch), (false, epoch + 1));
        assert_eq!(end(&mut c, pid, epoch, true, 61_002), Err(PRODUCER_FENCED));
    }

    /// A transactions-v2 producer's implicit add of partition a/0.
    fn add_v2(c: &mut TxnCoordinator, pid: i64, epoch: i16, now: i64) -> Result<Effects, i16> {
        c.add_partitions(
            "t",
            pid,
            epoch,
            &parts(&[("a", 0)]),
            TRANSACTION_VERSION_2,
            now,
        )
    }

    /// A transactions-v2 EndTxn (v5).
    fn end_v2(
        c: &mut TxnCoordinator,
        pid: i64,
        epoch: i16,
        commit: bool,
        next: Option<i64>,
    ) -> EndStep {
        let request = EndRequest {
            transactional_id: "t",
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            v2: true,
        };
        c.end_txn(&request, next, 10)
    }

    #[test]
    fn every_v2_transaction_bumps_the_epoch_and_retries_are_answered() {
        let mut c = TxnCoordinator::default();
        let (pid, epoch) = init(&mut c, "t", 0);
        add_v2(&mut c, pid, epoch, 1).unwrap();
        let EndStep::Done {
            producer_id,
            producer_epoch,
            effects,
        } = end_v2(&mut c, pid, epoch, true, None)
        else {
            panic!("commit refused");
        };
        assert_eq!((producer_id, producer_epoch), (pid, epoch + 1));
        // The markers carry the bumped epoch: a late batch of this transaction is fenced.
        let job = effects.markers.unwrap();
        assert_eq!(job.producer_epoch, epoch + 1);
        // A retry (the old epoch) while markers are written: wait; once complete: the answer.
        assert_eq!(
            end_v2(&mut c, pid, epoch, true, None),
            EndStep::Error(CONCURRENT_TRANSACTIONS)
        );
        c.complete(&job, 11);
        assert!(matches!(
            end_v2(&mut c, pid, epoch, true, None),
            EndStep::Done { producer_id: p, producer_epoch: e, .. } if (p, e) == (pid, epoch + 1)
        ));
        assert_eq!(
            end_v2(&mut c, pid, epoch, false, None),
            EndStep::Error(INVALID_TXN_STATE)
        );
        // Two behind, or the new epoch on an ended transaction, is a zombie or a bug.
        assert_eq!(
            end_v2(&mut c, pid, epoch - 1, true, None),
            EndStep::Error(PRODUCER_FENCED)
        );
        assert_eq!(
            end_v2(&mut c, pid, epoch + 1, true, None),
            EndStep::Error(PRODUCER_FENCED)
        );
        // The next transaction runs at the new epoch; the old one is fenced from adding.
        assert_eq!(add_v2(&mut c, pid, epoch, 12), Err(PRODUCER_FENCED));
        add_v2(&mut c, pid, epoch + 1, 12).unwrap();
        assert!(matches!(
            end_v2(&mut c, pid, epoch + 1, false, None),
            EndStep::Done { producer_epoch: e, .. } if e == epoch + 2
        ));
    }

    #[test]
    fn an_exhausted_epoch_moves_a_v2_producer_to_a_new_id_when_the_transaction_completes() {
        let mut c = TxnCoordinator::default();
        let (pid, _) = init(&mut c, "t", 0);
        let last = EPOCH_EXHAUSTED;
        if let Some(meta) = c.txns.get_mut("t") {
            meta.producer_epoch = last;
        }
        add_v2(&mut c, pid, last, 1).unwrap();
        assert_eq!(
            end_v2(&mut c, pid, last, true, None),
            EndStep::NeedProducerId
        );
        let EndStep::Done {
            producer_id,
            producer_epoch,
            effects,
        } = end_v2(&mut c, pid, last, true, Some(5000))
        else {
            panic!("commit refused");
        };
        assert_eq!((producer_id, producer_epoch), (5000, 0));
        let job = effects.markers.unwrap();
        assert_eq!((job.producer_id, job.producer_epoch), (pid, i16::MAX));
        // The prepare record holds the next id, so a restart mid-markers keeps it.
        let mut rebuilt = TxnCoordinator::default();
        for r in &effects.records {
            rebuilt.replay(&r.key, r.value.as_deref()).unwrap();
        }
        assert_eq!(rebuilt.get("t").unwrap().next_producer_id, 5000);
        let done = c.complete(&job, 11);
        let meta = c.get("t").unwrap();
        assert_eq!((meta.producer_id, meta.producer_epoch), (5000, 0));
        assert_eq!(meta.previous_producer_id, pid);
        let mut rebuilt = TxnCoordinator::default();
        for r in &done.records {
            rebuilt.replay(&r.key, r.value.as_deref()).unwrap();
        }
        assert_eq!(rebuilt.get("t"), c.get("t"));
        // A retry still names the old id and its last epoch, and gets the new id.
        assert!(matches!(
            end_v2(&mut c, pid, last, true, None),
            EndStep::Done {
                producer_id: 5000,
                producer_epoch: 0,
                ..
            }
        ));
    }

    #[test]
    fn state_is_rebuilt_from_its_records() {
        let mut c = TxnCoordinator::default();
        let (pid, epoch) = init(&mut c, "t", 0);
        let fx = c
            .add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 0, 1)
            .unwrap();
        let mut rebuilt = TxnCoordinator::default();
        for r in &fx.records {
            rebuilt.replay(&r.key, r.value.as_deref()).unwrap();
        }
        assert_eq!(rebuilt.get("t"), c.get("t"));
    }
}
