//! `sluicectl consume`: print records of a topic, from a chosen start, until the end of
//! the partitions, a count, or (with `--follow`) Ctrl-C.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use sluice_client::{Client, ConsumedRecord, FetchOptions, OffsetSpec};

use crate::{time, topic_meta, unknown_topic, Cli, CmdResult, ConsumeArgs, Failure, Format};

fn lossy(b: &Option<Bytes>) -> String {
    b.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn render_record(fmt: &str, topic: &str, r: &ConsumedRecord) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(n)) => {
                chars.next();
                match n {
                    'k' => out.push_str(&lossy(&r.key)),
                    'v' => out.push_str(&lossy(&r.value)),
                    'o' => out.push_str(&r.offset.to_string()),
                    'p' => out.push_str(&r.partition.to_string()),
                    't' => out.push_str(&r.timestamp.to_string()),
                    'd' => out.push_str(&time::format_rfc3339(r.timestamp)),
                    'T' => out.push_str(topic),
                    'h' => out.push_str(
                        &r.headers
                            .iter()
                            .map(|(k, v)| format!("{k}={}", lossy(v)))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push('\n');
            }
            ('\\', Some('t')) => {
                chars.next();
                out.push('\t');
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// Run `consume`.
pub(crate) fn consume(cli: &Cli, client: &Client, a: &ConsumeArgs) -> CmdResult {
    let t = topic_meta(client, &a.topic)?;
    let parts: Vec<i32> = match a.partition {
        Some(p) => {
            if !t.partitions.iter().any(|x| x.partition == p) {
                return Err(Failure(format!(
                    "topic {} has no partition {p} (it has {})",
                    a.topic,
                    t.partitions.len()
                )));
            }
            vec![p]
        }
        None => t.partitions.iter().map(|p| p.partition).collect(),
    };
    let latest = client.list_offsets(&a.topic, &parts, OffsetSpec::Latest)?;
    let end: BTreeMap<i32, i64> = latest.iter().map(|o| (o.partition, o.offset)).collect();
    let mut pos: BTreeMap<i32, i64> = if a.from_beginning {
        client
            .list_offsets(&a.topic, &parts, OffsetSpec::Earliest)?
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect()
    } else if let Some(o) = a.offset {
        parts.iter().map(|p| (*p, o)).collect()
    } else if let Some(ts) = a.from_time {
        client
            .list_offsets(&a.topic, &parts, OffsetSpec::Timestamp(ts))?
            .into_iter()
            .map(|o| {
                let off = if o.offset < 0 {
                    end.get(&o.partition).copied().unwrap_or(0)
                } else {
                    o.offset
                };
                (o.partition, off)
            })
            .collect()
    } else {
        end.clone()
    };
    let bounded = a.count.is_none() && !a.follow;
    let idle = a.idle_timeout.map(Duration::from_secs);
    let mut last_record = Instant::now();
    let mut last_progress = Instant::now();
    let stall_limit = Duration::from_secs(cli.timeout);
    let mut printed = 0usize;
    let mut out = std::io::stdout().lock();
    let opts = FetchOptions {
        max_wait: Duration::from_millis(if bounded { 0 } else { 500 }),
        ..Default::default()
    };
    loop {
        let mut active = false;
        for &p in &parts {
            let from = pos.get(&p).copied().unwrap_or(0);
            let stop_at = end.get(&p).copied().unwrap_or(0);
            if bounded && from >= stop_at {
                continue;
            }
            active = true;
            let r = client
                .fetch(&a.topic, p, from, &opts)
                .map_err(|e| unknown_topic(&a.topic, e))?;
            for rec in &r.records {
                if bounded && rec.offset >= stop_at {
                    break;
                }
                if cli.format == Format::Json {
                    let v = json!({
                        "topic": a.topic,
                        "partition": rec.partition,
                        "offset": rec.offset,
                        "timestamp": rec.timestamp,
                        "key": rec.key.as_ref().map(|_| lossy(&rec.key)),
                        "value": rec.value.as_ref().map(|_| lossy(&rec.value)),
                        "headers": rec.headers.iter().map(|(k, v)| (k.clone(), Value::from(v.as_ref().map(|_| lossy(v))))).collect::<serde_json::Map<_, _>>(),
                    });
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(out, "{}", render_record(&a.format_string, &a.topic, rec))?;
                }
                printed += 1;
                last_record = Instant::now();
                if a.count.is_some_and(|c| printed >= c) {
                    out.flush()?;
                    return Ok(());
                }
            }
            let mut next = r.next_offset;
            if next != from {
                last_progress = Instant::now();
            } else if bounded && last_progress.elapsed() > stall_limit {
                return Err(Failure(format!(
                    "no progress reading {}/{p} at offset {from} (high watermark {}) for {}s",
                    a.topic,
                    r.high_watermark,
                    stall_limit.as_secs()
                )));
            }
            if r.records.is_empty() && next == from && from < r.log_start_offset {
                // Our position fell below the log start (retention): skip ahead.
                next = r.log_start_offset;
            }
            if bounded && r.records.is_empty() && next == from && r.high_watermark <= from {
                // The partition shrank below the recorded end (truncation): stop there.
                next = stop_at;
            }
            pos.insert(p, next);
        }
        out.flush()?;
        if bounded && !active {
            return Ok(());
        }
        if let Some(idle) = idle {
            if last_record.elapsed() >= idle {
                if let Some(c) = a.count {
                    return Err(Failure(format!(
                        "got {printed} of {c} records; none arrived for {}s",
                        idle.as_secs()
                    )));
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_string() {
        let r = ConsumedRecord {
            partition: 2,
            offset: 7,
            timestamp: 99,
            log_append_time: false,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("a".into(), Some(Bytes::from_static(b"b")))],
        };
        assert_eq!(
            render_record("%k %v %o %p %t %T %h 100%%\\t%x", "top", &r),
            "k v 7 2 99 top a=b 100%\t%x"
        );
    }
}
