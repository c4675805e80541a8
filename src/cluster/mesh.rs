//! Cross-shard calls over glommio's channel mesh.
//!
//! A call is a `Send` closure that the target shard runs as a local task; its result comes
//! back on a oneshot channel. This is Seastar's `invoke_on`: the data a closure captures
//! (`Bytes`, names, offsets) moves to the owner shard, and the owner's state never leaves it.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use super::shard::Shard;

/// A unit of work sent to another shard.
pub type ShardMsg = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Capacity of each shard-to-shard channel; a full channel makes the sender wait.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// Why a cross-shard call did not complete.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The target shard's channel is closed (it is shutting down) or the index is invalid.
    #[error("shard {0} is unavailable")]
    Unavailable(usize),
    /// The target dropped the call without answering (its task was cancelled).
    #[error("shard {0} dropped the call")]
    Dropped(usize),
}

impl Shard {
    /// Runs `f` on shard `target` and returns its result. Calls to the current shard run
    /// inline without touching the mesh.
    pub async fn invoke_on<T, F, Fut>(self: &Rc<Self>, target: usize, f: F) -> Result<T, MeshError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(f(self.clone()).await);
        }
        let (tx, rx) = futures::channel::oneshot::channel();
        let msg: ShardMsg = Box::new(move |shard| {
            Box::pin(async move {
                let value = f(shard).await;
                let _ = tx.send(value);
            })
        });
        let started = std::time::Instant::now();
        if self.mesh_senders().send_to(target, msg).await.is_err() {
            return Err(MeshError::Unavailable(target));
        }
        let value = rx.await.map_err(|_| MeshError::Dropped(target))?;
        self.record_hop(started.elapsed());
        Ok(value)
    }
}
