//! `sluicectl produce`: stdin lines as records, partitioned as the Java client would.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use sluice_client::{Acks, Client, Compression, ProduceOptions, ProduceRecord};

use crate::table::Table;
use crate::{
    print_json, print_text, topic_meta, AcksArg, Cli, CmdResult, CompressionArg, Failure, Format,
    ProduceArgs,
};

/// Kafka's murmur2 (as `org.apache.kafka.common.utils.Utils.murmur2`), so keyed records land
/// on the same partition as with the Java client's default partitioner.
fn murmur2(data: &[u8]) -> i32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let len = data.len();
    let mut h: u32 = seed ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> 24;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h as i32
}

fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Run `produce`: read stdin to its end, sending records in batches per partition.
pub(crate) fn produce(cli: &Cli, client: &Client, a: &ProduceArgs) -> CmdResult {
    let t = topic_meta(client, &a.topic)?;
    let n = t.partitions.len() as i32;
    if n == 0 {
        return Err(Failure(format!("topic {} has no partitions", a.topic)));
    }
    if let Some(p) = a.partition {
        if p < 0 || p >= n {
            return Err(Failure(format!(
                "topic {} has no partition {p} (it has {n})",
                a.topic
            )));
        }
    }
    let opts = ProduceOptions {
        acks: match a.acks {
            AcksArg::Zero => Acks::None,
            AcksArg::One => Acks::Leader,
            AcksArg::All => Acks::All,
        },
        compression: match a.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        },
        timeout: Duration::from_secs(cli.timeout),
    };
    let headers: Vec<(String, Option<Bytes>)> = a
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone()))))
        .collect();
    let batch_size = a.batch_size.max(1);
    let mut pending: BTreeMap<i32, Vec<ProduceRecord>> = BTreeMap::new();
    // partition -> (first base offset, count)
    let mut done: BTreeMap<i32, (i64, usize)> = BTreeMap::new();
    let mut rr = 0i32;
    let mut total = 0usize;
    let flush = |p: i32,
                 recs: &mut Vec<ProduceRecord>,
                 done: &mut BTreeMap<i32, (i64, usize)>|
     -> CmdResult {
        if recs.is_empty() {
            return Ok(());
        }
        let r = client.produce(&a.topic, p, recs, &opts)?;
        let e = done.entry(p).or_insert((r.base_offset, 0));
        e.1 += recs.len();
        recs.clear();
        Ok(())
    };
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        let (key, value) = match &a.key_separator {
            Some(sep) if !sep.is_empty() => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => (None, line.to_string()),
            },
            _ => (None, line.to_string()),
        };
        let p = match (a.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => {
                rr = (rr + 1) % n;
                rr
            }
        };
        let recs = pending.entry(p).or_default();
        recs.push(ProduceRecord {
            key,
            value: Some(Bytes::from(value)),
            headers: headers.clone(),
            timestamp: None,
        });
        total += 1;
        if recs.len() >= batch_size {
            flush(p, recs, &mut done)?;
        }
    }
    for (p, recs) in pending.iter_mut() {
        flush(*p, recs, &mut done)?;
    }
    match cli.format {
        Format::Json => print_json(&json!({
            "topic": a.topic,
            "records": total,
            "acks": opts.acks.code(),
            "partitions": done.iter().map(|(p, (o, c))| json!({
                "partition": p, "base_offset": if *o >= 0 { Some(*o) } else { None }, "count": c,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let mut s = format!("Produced {total} records to {}.\n", a.topic);
            if !done.is_empty() {
                let mut tb = Table::new(&["PARTITION", "RECORDS", "FIRST-OFFSET"]);
                for (p, (o, c)) in &done {
                    tb.row(vec![
                        p.to_string(),
                        c.to_string(),
                        if *o >= 0 { o.to_string() } else { "-".into() },
                    ]);
                }
                s.push_str(&tb.render());
            }
            print_text(&s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
