//! Transactions v2 (KIP-890 part 2): a producer at Produce v12+ sends no AddPartitionsToTxn;
//! the partition adds itself to the producer's transaction when that transaction's first
//! batch reaches it, as Kafka's partition leader does with an AddPartitionsToTxn on the
//! producer's behalf. Later batches of the same transaction find it open on the partition
//! and go straight to the append, so only the first pays the coordinator round trip.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;

use super::coordinator::TRANSACTION_VERSION_2;
use super::driver;
use crate::cluster::Shard;
use crate::partition::Partition;
use crate::storage::batch::BatchHeader;

/// Adds `topic`/`index` to the transaction of `transactional_id` if `records` (validated)
/// open a transaction there; the error to answer the produce with if the coordinator
/// refuses (mapped as Kafka maps them for producers: a fenced epoch is
/// INVALID_PRODUCER_EPOCH, a coordinator that is busy or moving NOT_ENOUGH_REPLICAS so the
/// producer retries the batch).
pub async fn add_on_first_batch(
    shard: &Rc<Shard>,
    partition: &Partition,
    transactional_id: &str,
    topic: &str,
    index: i32,
    records: &[u8],
) -> Result<(), (ResponseError, String)> {
    let Ok(header) = BatchHeader::parse(records) else {
        return Ok(()); // validated by the caller; nothing transactional to add
    };
    if !header.is_transactional()
        || partition
            .open_transaction_since(header.producer_id)
            .is_some()
    {
        return Ok(());
    }
    let code = driver::add_to_transaction(
        shard,
        transactional_id.to_string(),
        header.producer_id,
        header.producer_epoch,
        vec![(topic.to_string(), index)],
        TRANSACTION_VERSION_2,
    )
    .await;
    if code == 0 {
        return Ok(());
    }
    let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError);
    Err(match error {
        ResponseError::ProducerFenced => (
            ResponseError::InvalidProducerEpoch,
            "Producer's epoch is older than the transaction's".to_string(),
        ),
        ResponseError::ConcurrentTransactions
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => (
            ResponseError::NotEnoughReplicas,
            format!(
                "Unable to verify the partition has been added to the transaction. \
                 Underlying error: {error:?}"
            ),
        ),
        other => (
            other,
            "Partition could not be added to the transaction".to_string(),
        ),
    })
}
