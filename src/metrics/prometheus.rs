//! Prometheus text exposition (format 0.0.4) of a merged [`Snapshot`].

use std::fmt::Write;

use kafka_protocol::messages::ApiKey;

use super::histogram::LatencyHistogram;
use super::registry::{Snapshot, STAGES};

/// Bucket upper bounds in microseconds (exposed in seconds).
pub const BUCKETS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The quantiles exposed as gauges next to every histogram, labelled the way Prometheus
/// labels a summary's quantiles (`quantile="0.99"`), so standard dashboards read them
/// without relabelling; the maximum is `quantile="1"`.
const QUANTILES: &[(&str, f64)] = &[("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99), ("0.999", 0.999)];

fn api_name(key: i16) -> String {
    ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| key.to_string())
}

fn seconds(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &LatencyHistogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for le in BUCKETS_US {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{}\"}} {}",
            seconds(*le),
            h.count_at_or_below_us(*le)
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        h.count()
    );
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(h.sum_us()));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

fn quantiles(out: &mut String, name: &str, labels: &str, h: &LatencyHistogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (q_name, q) in QUANTILES {
        let _ = writeln!(
            out,
            "{name}_seconds{{{labels}{sep}quantile=\"{q_name}\"}} {}",
            seconds(h.quantile_us(*q))
        );
    }
    let _ = writeln!(
        out,
        "{name}_seconds{{{labels}{sep}quantile=\"1\"}} {}",
        seconds(h.max_us())
    );
}

/// Renders the whole exposition.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("# HELP sluice_request_latency_seconds Kafka request latency by API, decode to response ready.\n");
    out.push_str("# TYPE sluice_request_latency_seconds histogram\n");
    let mut api = s.api.clone();
    api.sort_by_key(|(k, _, _)| *k);
    for (key, _, h) in &api {
        histogram(
            &mut out,
            "sluice_request_latency_seconds",
            &format!("api=\"{}\"", api_name(*key)),
            h,
        );
    }
    out.push_str(
        "# HELP sluice_request_latency_quantile_seconds Percentiles of request latency by API.\n",
    );
    out.push_str("# TYPE sluice_request_latency_quantile_seconds gauge\n");
    for (key, _, h) in &api {
        quantiles(
            &mut out,
            "sluice_request_latency_quantile",
            &format!("api=\"{}\"", api_name(*key)),
            h,
        );
    }
    out.push_str("# HELP sluice_requests_total Requests answered by API.\n# TYPE sluice_requests_total counter\n");
    for (key, count, _) in &api {
        let _ = writeln!(
            out,
            "sluice_requests_total{{api=\"{}\"}} {count}",
            api_name(*key)
        );
    }
    out.push_str("# HELP sluice_stage_latency_seconds Latency of each stage of the request path and storage.\n");
    out.push_str("# TYPE sluice_stage_latency_seconds histogram\n");
    for (stage, h) in STAGES.iter().zip(&s.stages) {
        histogram(
            &mut out,
            "sluice_stage_latency_seconds",
            &format!("stage=\"{}\"", stage.name()),
            h,
        );
    }
    out.push_str("# HELP sluice_stage_latency_quantile_seconds Percentiles of each stage.\n");
    out.push_str("# TYPE sluice_stage_latency_quantile_seconds gauge\n");
    for (stage, h) in STAGES.iter().zip(&s.stages) {
        quantiles(
            &mut out,
            "sluice_stage_latency_quantile",
            &format!("stage=\"{}\"", stage.name()),
            h,
        );
    }
    out.push_str("# HELP sluice_errors_total Kafka error codes returned, by API and code.\n# TYPE sluice_errors_total counter\n");
    let mut errors = s.errors.clone();
    errors.sort();
    for ((key, code), count) in errors {
        let _ = writeln!(
            out,
            "sluice_errors_total{{api=\"{}\",code=\"{code}\"}} {count}",
            api_name(key)
        );
    }
    let mut topics = s.topics.clone();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    for (metric, help, pick) in [
        (
            "sluice_topic_bytes_in_total",
            "Bytes produced per topic.",
            0,
        ),
        (
            "sluice_topic_records_in_total",
            "Records produced per topic.",
            1,
        ),
        (
            "sluice_topic_bytes_out_total",
            "Bytes fetched per topic.",
            2,
        ),
        (
            "sluice_topic_records_out_total",
            "Records fetched per topic.",
            3,
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (topic, c) in &topics {
            let v = [c.bytes_in, c.records_in, c.bytes_out, c.records_out][pick];
            let _ = writeln!(out, "{metric}{{topic=\"{}\"}} {v}", label(topic));
        }
    }
    let gauges = [
        (
            "sluice_connections",
            "Open client connections.",
            s.connections_open,
        ),
        (
            "sluice_requests_in_flight",
            "Requests accepted and not yet answered (request queue depth).",
            s.requests_in_flight,
        ),
        (
            "sluice_under_replicated_partitions",
            "Partitions with fewer in-sync replicas than replicas (always 0 on a single node).",
            0,
        ),
    ];
    for (metric, help, v) in gauges {
        let _ = writeln!(
            out,
            "# HELP {metric} {help}\n# TYPE {metric} gauge\n{metric} {v}"
        );
    }
    for (metric, help, v) in [
        (
            "sluice_connections_accepted_total",
            "Connections accepted.",
            s.connections_accepted,
        ),
        (
            "sluice_connections_refused_total",
            "Connections refused by --max-connections.",
            s.connections_refused,
        ),
        (
            "sluice_commit_turns_total",
            "Commit turns run (one concurrent fdatasync of every segment waiting for a flush).",
            s.commit_turns,
        ),
        (
            "sluice_commit_turn_files_total",
            "Segment files flushed by commit turns (divide by turns for files per turn).",
            s.commit_turn_files,
        ),
        (
            "sluice_fetch_incremental_total",
            "Fetches served incrementally from a fetch session (KIP-227).",
            s.fetch_incremental,
        ),
        (
            "sluice_cleaner_segments_total",
            "Segments the log cleaner replaced by compacted ones.",
            s.cleaner.segments_cleaned,
        ),
        (
            "sluice_cleaner_read_bytes_total",
            "Bytes the log cleaner read (throttled by --cleaner-io-bytes-per-sec).",
            s.cleaner.bytes_read,
        ),
        (
            "sluice_cleaner_written_bytes_total",
            "Bytes the log cleaner wrote (throttled by --cleaner-io-bytes-per-sec).",
            s.cleaner.bytes_written,
        ),
        (
            "sluice_cleaner_removed_records_total",
            "Records and transaction markers compaction removed.",
            s.cleaner.records_removed,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {v}"
        );
    }
    out.push_str("# HELP sluice_shard_partitions Partitions owned by each shard.\n# TYPE sluice_shard_partitions gauge\n");
    for (shard, count) in s.partitions_per_shard.iter().enumerate() {
        let _ = writeln!(out, "sluice_shard_partitions{{shard=\"{shard}\"}} {count}");
    }
    let mut partitions = s.partitions.clone();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    for (metric, help) in [
        (
            "sluice_partition_size_bytes",
            "Bytes of log on disk per partition.",
        ),
        (
            "sluice_partition_high_watermark",
            "High watermark per partition.",
        ),
        (
            "sluice_partition_log_start_offset",
            "Log start offset per partition.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for p in &partitions {
            let v = match metric {
                "sluice_partition_size_bytes" => p.size_bytes as i64,
                "sluice_partition_high_watermark" => p.high_watermark,
                _ => p.log_start_offset,
            };
            let _ = writeln!(
                out,
                "{metric}{{topic=\"{}\",partition=\"{}\"}} {v}",
                label(&p.topic),
                p.partition
            );
        }
    }
    out.push_str("# HELP sluice_partition_offline 1 when the partition stopped after an I/O error on its log (restart after fixing the device).\n# TYPE sluice_partition_offline gauge\n");
    for p in &partitions {
        let _ = writeln!(
            out,
            "sluice_partition_offline{{topic=\"{}\",partition=\"{}\"}} {}",
            label(&p.topic),
            p.partition,
            u8::from(p.offline.is_some())
        );
    }
    out.push_str("# HELP sluice_consumer_lag Consumer group lag (high watermark minus committed offset).\n# TYPE sluice_consumer_lag gauge\n");
    for l in &s.lag {
        let _ = writeln!(
            out,
            "sluice_consumer_lag{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
            label(&l.group),
            label(&l.topic),
            l.partition,
            l.lag
        );
    }
    out
}
