//! Shard-local synchronisation: wake-ups and counting barriers for tasks of one executor.
//! Nothing here is `Send`; cross-shard coordination is built on top of these by sending
//! messages (`cluster::mesh`).

mod barrier;
mod notify;

pub use barrier::PeerBarrier;
pub use notify::{Notified, Notify, WakeSet};
