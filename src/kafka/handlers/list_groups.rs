//! ListGroups (key 16), v0-v5: every group on this node (state filter v4+, type filter v5:
//! "classic" or "consumer", the KIP-848 groups, listed with their own states).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::{coordinator, driver, OFFSETS};

/// Answers ListGroups.
pub async fn handle(ctx: &Context, request: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = if ctx.version >= 4 {
        request
            .states_filter
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if ctx.version >= 5 {
        request
            .types_filter
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let mut response = ListGroupsResponse::default();
    if let Err(e) = OFFSETS.ensure(&ctx.shard).await {
        return response.with_error_code(e.code());
    }
    let mut listed: Vec<coordinator::ListedGroup> = Vec::new();
    for target in 0..ctx.shard.count {
        let states = states.clone();
        let found = ctx
            .shard
            .invoke_on(target, move |shard| async move {
                driver::query_local(&shard, |c| c.list(&states)).await
            })
            .await;
        match found {
            Ok(groups) => listed.extend(groups),
            Err(e) => {
                tracing::warn!(shard = target, error = %e, "ListGroups: shard unreachable");
                response.error_code = ResponseError::CoordinatorNotAvailable.code();
            }
        }
    }
    response.groups = listed
        .into_iter()
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .map(|g| {
            let mut out = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if ctx.version >= 4 {
                out.group_state = StrBytes::from_static_str(g.state);
            }
            if ctx.version >= 5 {
                out.group_type = StrBytes::from_static_str(g.group_type);
            }
            out
        })
        .collect();
    response
}
