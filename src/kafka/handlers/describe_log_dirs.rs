//! DescribeLogDirs (key 35), v1-v4: the data directory, its partitions and their sizes.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::cluster::scatter::scatter;

/// Answers DescribeLogDirs. A null topic list means every partition.
pub async fn handle(ctx: &Context, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let image = ctx.shard.image();
    let mut wanted: Vec<(String, i32)> = Vec::new();
    match request.topics {
        None => {
            for t in image.topics.values() {
                wanted.extend((0..t.partitions).map(|p| (t.name.clone(), p)));
            }
        }
        Some(topics) => {
            for t in topics {
                if let Some(meta) = image.topic(t.topic.as_str()) {
                    wanted.extend(
                        t.partitions
                            .into_iter()
                            .filter(|p| meta.has_partition(*p))
                            .map(|p| (meta.name.clone(), p)),
                    );
                }
            }
        }
    }
    let items = wanted
        .iter()
        .map(|(t, p)| (ctx.shard.owner_of(t, *p), (t.clone(), *p)))
        .collect();
    let sizes = scatter(
        &ctx.shard,
        items,
        |owner, (topic, index): (String, i32)| async move {
            owner.partitions.get(&topic, index).map(|p| {
                (
                    p.size_bytes() as i64,
                    p.log_end_offset().get() - p.high_watermark().get(),
                )
            })
        },
    )
    .await;
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((topic, index), size) in wanted.into_iter().zip(sizes) {
        if let Some(Some((bytes, lag))) = size {
            by_topic.entry(topic).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(index)
                    .with_partition_size(bytes)
                    .with_offset_lag(lag.max(0)),
            );
        }
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = ctx.shard.config.data_dir.clone();
    let (total, usable) = disk_space(&dir).unwrap_or((-1, -1));
    let dir_name = std::fs::canonicalize(&dir)
        .unwrap_or(dir)
        .display()
        .to_string();
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir_name))
        .with_topics(topics);
    if ctx.version >= 4 {
        result.total_bytes = total;
        result.usable_bytes = usable;
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// Total and available bytes of the filesystem holding `dir` (statvfs).
fn disk_space(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a properly sized out-param.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        return None;
    }
    let block = stat.f_frsize as i64;
    Some((stat.f_blocks as i64 * block, stat.f_bavail as i64 * block))
}
