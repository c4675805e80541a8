//! ListTransactions (key 66), v0-v2: every transactional id known to this node's
//! coordinators, filtered by state, producer id, (v1) minimum running time and (v2, KIP-1152)
//! a regular expression the whole transactional id must match (`util::re2`).

use kafka_protocol::error::ResponseError;
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

/// The v2 pattern as a whole-id matcher; `None` when absent or empty (no filter).
fn id_pattern(pattern: Option<&str>) -> Result<Option<regex::Regex>, regex::Error> {
    match pattern {
        None | Some("") => Ok(None),
        Some(p) => crate::util::re2::whole_match(p).map(Some),
    }
}

/// Answers ListTransactions.
pub async fn handle(ctx: &Context, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let pattern = if ctx.version >= 2 {
        request.transactional_id_pattern.as_deref()
    } else {
        None
    };
    let pattern = match id_pattern(pattern) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "ListTransactions: invalid transactional id pattern");
            return ListTransactionsResponse::default()
                .with_error_code(ResponseError::InvalidRegularExpression.code());
        }
    };
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
        let (states, pids, pattern) = (states.clone(), pids.clone(), pattern.clone());
        let found = ctx
            .shard
            .invoke_on(target, move |shard| async move {
                driver::query_local(&shard, |c| {
                    c.all()
                        .filter(|m| states.is_empty() || states.iter().any(|s| s == m.state.name()))
                        .filter(|m| pids.is_empty() || pids.contains(&m.producer_id))
                        .filter(|m| {
                            pattern
                                .as_ref()
                                .is_none_or(|p| p.is_match(&m.transactional_id))
                        })
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

#[cfg(test)]
mod tests {
    use super::id_pattern;

    #[test]
    fn the_pattern_must_match_the_whole_transactional_id() {
        let p = id_pattern(Some("orders-.*")).unwrap().unwrap();
        assert!(p.is_match("orders-1"));
        assert!(!p.is_match("old-orders-1"));
        let p = id_pattern(Some("a|b")).unwrap().unwrap();
        assert!(p.is_match("b") && !p.is_match("ab"));
        assert!(id_pattern(Some("")).unwrap().is_none());
        assert!(id_pattern(None).unwrap().is_none());
        assert!(id_pattern(Some("(unclosed")).is_err());
    }
}
