//! One module per Kafka API. Each states its API and handles one decoded request.

pub mod admin_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_log_dirs;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};

use crate::cluster::controller::{Controller, NewTopic};
use crate::cluster::MetadataImage;
use crate::metrics::Stage;
use crate::runtime::Shard;

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
            for r in results {
                if let Ok(t) = r {
                    tracing::info!(topic = %t.name, partitions = t.partitions, "auto-created topic");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e.message, "auto-creating topics failed"),
    }
    ctx.shard.image()
}

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
