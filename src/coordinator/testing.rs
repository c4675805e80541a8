//! An in-memory [`CoordinatorLog`] for the tests of the host and of the state machines it
//! runs (groups, transactions): no disk, no network, no executor. It can be told to fail
//! loads and appends, or to hold a load or an append until the test lets it go, which is
//! how a test puts a request "in flight".

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ahash::AHashMap;
use futures::channel::oneshot;

use super::{CoordinatorLog, LogTable};
use crate::storage::records::KeyedRecord;
use crate::util::ids::{LeaderEpoch, Offset};

/// A committed log in memory: `records` is what a reload sees.
#[derive(Default)]
pub(crate) struct MemLog {
    /// The committed records, in log order.
    pub(crate) records: RefCell<Vec<KeyedRecord>>,
    /// What `leader_epoch` answers.
    pub(crate) leader_epoch: i32,
    /// Appends fail (after their gate, if any) while set.
    pub(crate) fail_appends: Cell<bool>,
    /// Loads fail while set.
    pub(crate) fail_loads: Cell<bool>,
    /// The next load waits for this before reading.
    pub(crate) load_gate: RefCell<Option<oneshot::Receiver<()>>>,
    /// The next append waits for this before it commits (or fails).
    pub(crate) append_gate: RefCell<Option<oneshot::Receiver<()>>>,
}

impl MemLog {
    /// How many records are committed.
    pub(crate) fn stored(&self) -> usize {
        self.records.borrow().len()
    }

    /// Holds the next append until the returned sender is used (or dropped).
    pub(crate) fn hold_next_append(&self) -> oneshot::Sender<()> {
        let (open, gate) = oneshot::channel();
        *self.append_gate.borrow_mut() = Some(gate);
        open
    }
}

impl CoordinatorLog for MemLog {
    type Error = String;

    fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.leader_epoch)
    }

    async fn load(&self, mut visit: impl FnMut(Offset, KeyedRecord)) -> Result<(), String> {
        let gate = self.load_gate.borrow_mut().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        if self.fail_loads.get() {
            return Err("disk on fire".into());
        }
        let records = self.records.borrow().clone();
        for (offset, record) in records.into_iter().enumerate() {
            visit(Offset(offset as i64), record);
        }
        Ok(())
    }

    async fn append(&self, records: &[KeyedRecord], _now_ms: i64) -> Result<(), String> {
        let gate = self.append_gate.borrow_mut().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        if self.fail_appends.get() {
            return Err("not committed".into());
        }
        self.records.borrow_mut().extend_from_slice(records);
        Ok(())
    }
}

/// The partitions "this shard" serves; tests add and remove them.
#[derive(Clone, Default)]
pub(crate) struct MemLogs(pub(crate) Rc<RefCell<AHashMap<i32, Rc<MemLog>>>>);

impl MemLogs {
    /// Serves `log` as `partition` and returns it.
    pub(crate) fn serve(&self, partition: i32, log: MemLog) -> Rc<MemLog> {
        let log = Rc::new(log);
        self.0.borrow_mut().insert(partition, log.clone());
        log
    }
}

impl LogTable for MemLogs {
    type Log = MemLog;

    fn log(&self, partition: i32) -> Option<Rc<MemLog>> {
        self.0.borrow().get(&partition).cloned()
    }

    fn served(&self) -> Vec<i32> {
        let mut served: Vec<i32> = self.0.borrow().keys().copied().collect();
        served.sort_unstable();
        served
    }
}
