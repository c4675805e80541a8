//! DeleteGroups (key 42), v0-v2: remove empty groups and their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::Context;
use crate::groups::{driver, OFFSETS};

/// Answers DeleteGroups.
pub async fn handle(ctx: &Context, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in &request.groups_names {
        let id = group_id.to_string();
        let ids = vec![id.clone()];
        let outcome = OFFSETS
            .route(&ctx.shard, &id, move |shard, partition| async move {
                driver::with_coordinator(&shard, partition, move |c, _| c.delete_groups(&ids)).await
            })
            .await;
        let error = match outcome {
            Ok(errors) => errors.first().copied().unwrap_or(0),
            Err(e) => e.code(),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id.clone())
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
