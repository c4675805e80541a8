//! [`Host`]: one shard's coordinators of one internal topic, and the IO around them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ahash::AHashMap;

use super::{Coordinated, CoordinatorError, CoordinatorLog, LogTable, ShardLogs};
use crate::cluster::Shard;
use crate::partition::Partition;
use crate::storage::records::KeyedRecord;
use crate::util::clock::Clock;

/// A partition's state machine, or the marker that it is being read back from the log.
enum Slot<S> {
    Loading,
    Ready {
        /// Which load this state came from: a failed append drops only the state it ran on,
        /// never a newer one loaded meanwhile.
        incarnation: u64,
        state: Box<S>,
    },
}

/// What [`Host::execute`] did with one input.
#[must_use = "the effects may hold answers someone waits for"]
pub struct Executed<T, E> {
    /// The input's direct answer.
    pub answer: T,
    /// The input's effects, whether or not their records were stored, so the caller can
    /// deliver (or fail) what waits on them.
    pub effects: E,
    /// Whether the effects' records are committed. On an error the host has dropped the
    /// state machine (it reloads from the log on next use): the effects never happened.
    pub persisted: Result<(), CoordinatorError>,
}

/// The coordinators of one internal topic on one shard, keyed by partition: it loads them
/// from their logs, runs inputs in short borrows and appends their records before their
/// answers count. Only this shard's tasks use it.
pub struct Host<S: Coordinated, L: CoordinatorLog> {
    config: S::Config,
    clock: Clock,
    logs: Box<dyn LogTable<Log = L>>,
    slots: RefCell<AHashMap<i32, Slot<S>>>,
    incarnations: Cell<u64>,
}

impl<S: Coordinated> Host<S, Partition> {
    /// The host of `shard`'s partitions of `S::TOPIC`. It holds the shard weakly, so the
    /// shard may keep the host among its services without a cycle.
    pub fn on_shard(shard: &Rc<Shard>, config: S::Config, clock: Clock) -> Self {
        Host::new(config, clock, ShardLogs::new(shard, S::TOPIC.name))
    }
}

impl<S: Coordinated, L: CoordinatorLog> Host<S, L> {
    /// A host with no state machine loaded yet; `clock` is the only time it hands out.
    pub fn new(config: S::Config, clock: Clock, logs: impl LogTable<Log = L> + 'static) -> Self {
        Host {
            config,
            clock,
            logs: Box::new(logs),
            slots: RefCell::new(AHashMap::new()),
            incarnations: Cell::new(0),
        }
    }

    /// The clock the state machines see.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The partitions whose state machine is loaded (what a tick loop visits).
    pub fn ready_partitions(&self) -> Vec<i32> {
        let mut ready: Vec<i32> = self
            .slots
            .borrow()
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Ready { .. }))
            .map(|(partition, _)| *partition)
            .collect();
        ready.sort_unstable();
        ready
    }

    /// Every partition of the topic this shard serves, loaded or not.
    pub fn served_partitions(&self) -> Vec<i32> {
        self.logs.served()
    }

    /// Loads the state machine of `partition` from its log if it is not loaded. While one
    /// caller loads, the others get [`CoordinatorError::Loading`].
    pub async fn load(&self, partition: i32) -> Result<(), CoordinatorError> {
        match self.slots.borrow().get(&partition) {
            Some(Slot::Ready { .. }) => return Ok(()),
            Some(Slot::Loading) => return Err(self.loading(partition)),
            None => {}
        }
        let Some(log) = self.logs.log(partition) else {
            return Err(self.not_served(partition));
        };
        self.slots.borrow_mut().insert(partition, Slot::Loading);
        match self.rebuild(partition, &log).await {
            Ok(state) => {
                tracing::info!(
                    topic = S::TOPIC.name,
                    partition,
                    entries = state.entry_count(),
                    "coordinator loaded"
                );
                let incarnation = self.incarnations.get() + 1;
                self.incarnations.set(incarnation);
                let state = Box::new(state);
                let ready = Slot::Ready { incarnation, state };
                self.slots.borrow_mut().insert(partition, ready);
                Ok(())
            }
            Err(e) => {
                self.slots.borrow_mut().remove(&partition);
                tracing::error!(error = %e, "coordinator load failed");
                Err(e)
            }
        }
    }

    /// Runs one input on the state machine of `partition` (loading it first), appends the
    /// records of its effects, and once they are committed hands the effects to
    /// [`Coordinated::persisted`] so what the input held back becomes visible. `f` gets the state and the clock's `now_ms`; it runs in a
    /// borrow of the host, so it must not call back into it. An `Err` means the input did
    /// not run; whether its records were stored is [`Executed::persisted`].
    pub async fn execute<T>(
        &self,
        partition: i32,
        f: impl FnOnce(&mut S, i64) -> (T, S::Effects),
    ) -> Result<Executed<T, S::Effects>, CoordinatorError> {
        self.load(partition).await?;
        let now_ms = self.clock.now_ms();
        let (incarnation, (answer, effects)) = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(&partition) {
                Some(Slot::Ready { incarnation, state }) => (*incarnation, f(state, now_ms)),
                Some(Slot::Loading) => return Err(self.loading(partition)),
                None => return Err(self.not_served(partition)),
            }
        };
        // No await between the input and the start of its append: records reach the log in
        // the order inputs ran.
        let records = S::records(&effects);
        let persisted = self.append(partition, incarnation, records, now_ms).await;
        if persisted.is_ok() {
            self.settle(partition, incarnation, &effects);
        }
        Ok(Executed {
            answer,
            effects,
            persisted,
        })
    }

    /// Read-only access to the state machine of `partition` (loading it first).
    pub async fn query<T>(
        &self,
        partition: i32,
        f: impl FnOnce(&S) -> T,
    ) -> Result<T, CoordinatorError> {
        self.load(partition).await?;
        let slots = self.slots.borrow();
        match slots.get(&partition) {
            Some(Slot::Ready { state, .. }) => Ok(f(state)),
            Some(Slot::Loading) => Err(self.loading(partition)),
            None => Err(self.not_served(partition)),
        }
    }

    /// Runs `f` on the state machine of every partition this shard serves (loading them
    /// first); partitions that cannot be loaded are logged and left out.
    pub async fn query_served<T>(&self, mut f: impl FnMut(&S) -> Vec<T>) -> Vec<T> {
        let mut out = Vec::new();
        for partition in self.logs.served() {
            match self.query(partition, &mut f).await {
                Ok(mut found) => out.append(&mut found),
                Err(e) => tracing::warn!(error = %e, "coordinator not ready"),
            }
        }
        out
    }

    /// Rebuilds a state machine from its partition's log, log start to high watermark.
    async fn rebuild(&self, partition: i32, log: &L) -> Result<S, CoordinatorError> {
        let topic = S::TOPIC.name;
        let now_ms = self.clock.now_ms();
        let mut state = S::fresh(&self.config, partition, log.leader_epoch());
        log.load(|offset, record| {
            if let Err(e) = state.replay(&record.key, record.value.as_deref(), now_ms) {
                tracing::warn!(topic, partition, %offset, error = %e, "skipping a coordinator record");
            }
        })
        .await
        .map_err(|e| CoordinatorError::LoadFailed {
            topic,
            partition,
            reason: e.to_string(),
        })?;
        Ok(state)
    }

    /// Appends records (acks=all). On failure the state they came from is dropped, to be
    /// rebuilt from the log, so memory never stays ahead of what is stored.
    async fn append(
        &self,
        partition: i32,
        incarnation: u64,
        records: &[KeyedRecord],
        now_ms: i64,
    ) -> Result<(), CoordinatorError> {
        if records.is_empty() {
            return Ok(());
        }
        let result = match self.logs.log(partition) {
            None => Err(self.not_served(partition)),
            Some(log) => log
                .append(records, now_ms)
                .await
                .map_err(|e| CoordinatorError::Append {
                    topic: S::TOPIC.name,
                    partition,
                    reason: e.to_string(),
                }),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "coordinator records not written; reloading from the log");
            self.discard(partition, incarnation);
        }
        result
    }

    /// Hands committed effects back to the state they ran on, so what they held back
    /// becomes visible. A state loaded since read the log itself and is left alone.
    fn settle(&self, partition: i32, incarnation: u64, effects: &S::Effects) {
        let mut slots = self.slots.borrow_mut();
        match slots.get_mut(&partition) {
            Some(Slot::Ready {
                incarnation: i,
                state,
            }) if *i == incarnation => S::persisted(state, effects),
            _ => tracing::debug!(
                topic = S::TOPIC.name,
                partition,
                "committed records of a coordinator state no longer loaded"
            ),
        }
    }

    /// Drops the state of `partition` if it is still the one loaded as `incarnation`.
    fn discard(&self, partition: i32, incarnation: u64) {
        let mut slots = self.slots.borrow_mut();
        if let Some(Slot::Ready { incarnation: i, .. }) = slots.get(&partition) {
            if *i == incarnation {
                slots.remove(&partition);
            }
        }
    }

    fn loading(&self, partition: i32) -> CoordinatorError {
        CoordinatorError::Loading {
            topic: S::TOPIC.name,
            partition,
        }
    }

    fn not_served(&self, partition: i32) -> CoordinatorError {
        CoordinatorError::NotCoordinator {
            topic: S::TOPIC.name,
            partition,
        }
    }
}
