//! ListTransactions (key 66), v0-v1: every transactional id known to this node's
//! coordinators, filtered by state, producer id and (v1) minimum running time. v2's
//! transactional-id regular expression is not advertised.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::txn::coordinator::TxnState;
use crate::txn::driver;
use crate::util::clock::now_ms;

/// Every state name a filter may use.
const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

/// Answers ListTransactions.
pub async fn handle(ctx: &Context, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let states: Vec<String> = request
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unknown: Vec<StrBytes> = request
        .state_filters
        .iter()
        .filter(|s| !STATES.iter().any(|k| k.name() == s.as_str()))
        .cloned()
        .collect();
    let pids: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration_ms = if ctx.version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let now = now_ms();
    let mut listed: Vec<(String, i64, &'static str)> = Vec::new();
    for target in 0..ctx.shard.count {
        let (states, pids) = (states.clone(), pids.clone());
        let found = ctx
            .shard
            .invoke_on(target, move |shard| async move {
                driver::query_local(&shard, |c| {
                    c.all()
                        .filter(|m| states.is_empty() || states.iter().any(|s| s == m.state.name()))
                        .filter(|m| pids.is_empty() || pids.contains(&m.producer_id))
                        .filter(|m| {
                            min_duration_ms < 0
                                || (m.start_ms >= 0 && now - m.start_ms >= min_duration_ms)
                        })
                        .map(|m| (m.transactional_id.clone(), m.producer_id, m.state.name()))
                        .collect()
                })
                .await
            })
            .await;
        match found {
            Ok(mut v) => listed.append(&mut v),
            Err(e) => {
                tracing::warn!(shard = target, error = %e, "ListTransactions: shard unreachable")
            }
        }
    }
    listed.sort();
    let transaction_states = listed
        .into_iter()
        .map(|(id, pid, state)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(pid))
                .with_transaction_state(StrBytes::from_static_str(state))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(transaction_states)
}
