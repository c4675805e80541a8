//! Producer ids: allocated in blocks by the controller (persisted in the metadata image, so
//! an id is never handed out twice, even across restarts) and handed out by each shard from
//! its current block.

use std::cell::Cell;
use std::rc::Rc;

use crate::cluster::controller::{Controller, OpError};
use crate::cluster::Shard;

/// Ids a shard takes from the controller at once.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The unused part of this shard's current block: `[next, end)`.
#[derive(Default)]
pub struct ProducerIdBlock {
    next: Cell<i64>,
    end: Cell<i64>,
}

impl ProducerIdBlock {
    /// Takes one id from the local block if any is left.
    fn take(&self) -> Option<i64> {
        let next = self.next.get();
        if next < self.end.get() {
            self.next.set(next + 1);
            Some(next)
        } else {
            None
        }
    }
}

/// A new producer id, from this shard's block or a fresh block from the controller.
pub async fn next_producer_id(shard: &Rc<Shard>) -> Result<i64, OpError> {
    if let Some(id) = shard.producer_ids.take() {
        return Ok(id);
    }
    let start = Controller::allocate_producer_ids(shard, PRODUCER_ID_BLOCK_SIZE).await?;
    // Another task may have refilled the block while we waited; keep the newer block.
    if shard.producer_ids.next.get() >= shard.producer_ids.end.get() {
        shard.producer_ids.next.set(start);
        shard.producer_ids.end.set(start + PRODUCER_ID_BLOCK_SIZE);
    }
    shard.producer_ids.take().ok_or_else(|| OpError {
        error: kafka_protocol::error::ResponseError::UnknownServerError,
        message: "producer id block exhausted".into(),
    })
}
