//! DescribeCluster (key 60), v0-v2: this node as the whole cluster and its controller (v2's
//! `is_fenced` is always false).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;

/// Answers DescribeCluster.
pub fn handle(ctx: &Context, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    let config = &ctx.shard.config;
    let image = ctx.shard.image();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(StrBytes::from_string(image.cluster_id.clone()))
        .with_controller_id(BrokerId(config.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(config.node_id))
            .with_host(StrBytes::from_string(config.advertised_host.clone()))
            .with_port(i32::from(config.advertised_port))])
        .with_cluster_authorized_operations(i32::MIN)
}
