//! One module per Kafka API. Each states its API and handles one decoded request.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod admin_configs;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod telemetry;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};

use crate::cluster::controller::{Controller, NewTopic};
use crate::cluster::MetadataImage;
use crate::cluster::Shard;
use crate::metrics::Stage;

/// What every handler gets besides its request.
pub struct Context {
    /// The shard the connection lives on.
    pub shard: Rc<Shard>,
    /// The request's API version.
    pub version: i16,
    /// The client id from the request header.
    pub client_id: String,
    /// Stage timings of this request, for the slow-request log.
    pub trace: std::cell::RefCell<Vec<(Stage, std::time::Duration)>>,
}

impl Context {
    /// Records a stage of this request in the shard's histograms and the request's trace.
    pub fn note(&self, stage: Stage, elapsed: std::time::Duration) {
        crate::metrics::record(stage, elapsed);
        self.trace.borrow_mut().push((stage, elapsed));
    }
}

/// Routes a decoded request to its handler. `None` means "send no response" (acks=0).
pub async fn dispatch(ctx: &Context, body: RequestKind) -> Option<ResponseKind> {
    Some(match body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(ctx, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r).await),
        RequestKind::Produce(r) => ResponseKind::Produce(produce::handle(ctx, r).await?),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(ctx, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin_configs::describe(ctx, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(admin_configs::alter(ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(admin_configs::incremental_alter(ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(ctx, r).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, r).await),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(consumer_group_heartbeat::handle(ctx, r).await)
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_group_describe::handle(ctx, r).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(ctx, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(end_txn::handle(ctx, r).await),
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(ctx, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(ctx, r).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(describe_transactions::handle(ctx, r).await)
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(list_transactions::handle(ctx, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(ctx, r).await)
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(ctx, r).await)
        }
        RequestKind::GetTelemetrySubscriptions(r) => {
            ResponseKind::GetTelemetrySubscriptions(telemetry::get_subscriptions(r))
        }
        RequestKind::PushTelemetry(r) => ResponseKind::PushTelemetry(telemetry::push(r)),
        RequestKind::ListConfigResources(r) => {
            ResponseKind::ListConfigResources(list_config_resources::handle(ctx, r))
        }
        other => {
            // decode() only lets through APIs in the versions table, so this is a bug.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for an advertised API");
            return None;
        }
    })
}

/// Creates the named topics that do not exist yet (auto-creation on Metadata and Produce),
/// with the broker's default partition count, and returns the image afterwards.
pub async fn auto_create(ctx: &Context, names: Vec<String>) -> Arc<MetadataImage> {
    let image = ctx.shard.image();
    let missing: Vec<NewTopic> = names
        .into_iter()
        .filter(|n| image.topic(n).is_none())
        .filter(|n| crate::cluster::controller::validate_topic_name(n).is_ok())
        .map(|name| NewTopic {
            name,
            partitions: -1,
            replication_factor: -1,
            configs: BTreeMap::new(),
            internal: false,
        })
        .collect();
    if missing.is_empty() || !ctx.shard.config.auto_create_topics {
        return image;
    }
    match Controller::create_topics(&ctx.shard, missing, false).await {
        Ok(results) => {
            for t in results.into_iter().flatten() {
                tracing::info!(topic = %t.name, partitions = t.partitions, "auto-created topic");
            }
        }
        Err(e) => tracing::warn!(error = %e.message, "auto-creating topics failed"),
    }
    ctx.shard.image()
}
