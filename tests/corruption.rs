//! Mid-log corruption, end to end: one byte flipped in a middle segment of a stopped
//! broker's partition. The broker must never serve the damaged bytes, never cut them by
//! itself and never touch the segments after them: the partition goes offline
//! (KAFKA_STORAGE_ERROR, `/v1/health` degraded) and stays offline across restarts until the
//! operator accepts the loss with `sluice repair`, which cuts at the chosen offset and keeps
//! what it cut.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::raw::{self, Conn};
use common::*;

/// Segment size of the topic: a few dozen records per segment.
const SEGMENT_BYTES: &str = "16384";
/// Records produced (one batch each); with ~1 KiB records that is about eight segments.
const RECORDS: usize = 120;
const KAFKA_STORAGE_ERROR: i16 = 56;

fn value(i: usize) -> String {
    let mut v = format!("record-{i:04}-");
    v.extend(std::iter::repeat_n('v', 1000));
    v
}

/// Segment files of a partition directory, in offset order, with their base offsets.
fn segments(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .expect("partition directory")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.to_string();
            let stem = name.strip_suffix(".log")?;
            let base = stem.split('-').next()?.parse().ok()?;
            Some((base, path))
        })
        .collect();
    out.sort();
    out
}

/// The data of every segment file of a directory (its pre-allocated zero tail trimmed: a
/// start trims the active segment's file to its data), hashed.
fn snapshot(dir: &Path) -> BTreeMap<String, (usize, u64)> {
    segments(dir)
        .into_iter()
        .map(|(_, path)| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut bytes = std::fs::read(&path).expect("read segment");
            let data = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            bytes.truncate(data);
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&bytes, &mut h);
            (name, (bytes.len(), std::hash::Hasher::finish(&h)))
        })
        .collect()
}

/// Reads the partition one batch at a time from 0; returns the values read and the error
/// code that stopped the reading (0 when it reached the high watermark).
fn read_all(conn: &mut Conn, topic: &str) -> (Vec<Bytes>, i16) {
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let f = raw::fetch(conn, topic, 0, offset, 1);
        if f.error_code != 0 {
            return (values, f.error_code);
        }
        let batches = raw::decode_batches(&f.records);
        if batches.is_empty() {
            assert_eq!(offset, f.high_watermark, "nothing returned below the HW");
            return (values, 0);
        }
        for (first, last, vals) in batches {
            assert_eq!(first, offset, "batches follow each other");
            values.extend(vals);
            offset = last + 1;
        }
    }
}

fn produce_one(conn: &mut Conn, topic: &str, i: usize) -> (i16, i64) {
    raw::produce(conn, 9, topic, raw::record_batch(&value(i)))
}

fn repair(broker: &Broker, topic: &str, cut: i64, execute: bool) -> std::process::Output {
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("repair")
        .arg("--data-dir")
        .arg(&broker.data_dir)
        .args(["--topic", topic, "--partition", "0", "--truncate-to"])
        .arg(cut.to_string());
    if execute {
        cmd.arg("--execute");
    }
    cmd.output().expect("run sluice repair")
}

fn assert_offline(broker: &Broker, topic: &str, when: &str) {
    let mut conn = Conn::open(broker.addr());
    let (code, _) = produce_one(&mut conn, topic, 9_999);
    assert_eq!(
        code, KAFKA_STORAGE_ERROR,
        "{when}: produce to the damaged partition"
    );
    let f = raw::fetch(&mut conn, topic, 0, 0, 1 << 20);
    assert_eq!(
        f.error_code, KAFKA_STORAGE_ERROR,
        "{when}: fetch from the damaged partition"
    );
    let (status, body) = http_get(broker.admin_port, "/v1/health");
    assert_eq!(
        status, 503,
        "{when}: health with an offline partition: {body}"
    );
    assert!(
        body.contains("degraded") && body.contains(topic),
        "{when}: health names the offline partition: {body}"
    );
}

#[test]
fn a_flipped_byte_mid_log_takes_the_partition_offline_until_repair_cuts_it() {
    let mut broker = Broker::start();
    let topic = topic_name("corrupt");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_topic(
        &admin(&broker.bootstrap()),
        &topic,
        1,
        &[("segment.bytes", SEGMENT_BYTES)],
    ));
    {
        let mut conn = Conn::open(broker.addr());
        for i in 0..RECORDS {
            assert_eq!(
                produce_one(&mut conn, &topic, i),
                (0, i as i64),
                "record {i}"
            );
        }
    }
    assert!(broker.terminate().success(), "clean stop");

    // Flip one byte inside the first batch of a middle segment (past its header, so the
    // batch still parses and only its CRC tells).
    let dir = broker.data_dir.join(&topic).join("0");
    let segs = segments(&dir);
    assert!(
        segs.len() >= 5,
        "the topic rolled into several segments: {segs:?}"
    );
    let (cut, damaged) = segs[segs.len() / 2].clone();
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[200] ^= 0x5a;
    std::fs::write(&damaged, &bytes).unwrap();
    let before = snapshot(&dir);

    // Restart: everything below the damage still reads; the read that meets it takes the
    // partition offline.
    broker.restart();
    let mut conn = Conn::open(broker.addr());
    let (read, stopped_by) = read_all(&mut conn, &topic);
    assert_eq!(
        stopped_by, KAFKA_STORAGE_ERROR,
        "the damaged batch is never served"
    );
    assert_eq!(
        read.len() as i64,
        cut,
        "every record below the damage is served"
    );
    for (i, v) in read.iter().enumerate() {
        assert_eq!(v[..], *value(i).as_bytes(), "offset {i}");
    }
    drop(conn);
    assert_offline(&broker, &topic, "after the read met the damage");
    assert!(
        broker.terminate().success(),
        "clean stop with an offline partition"
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "no segment of the damaged partition was changed"
    );

    // It stays offline across a restart (found by recovery this time), still changing nothing.
    broker.restart();
    assert_offline(&broker, &topic, "after a restart");
    assert!(broker.terminate().success());
    assert_eq!(snapshot(&dir), before, "recovery changed no segment");

    // A dry run plans the cut and changes nothing; a cut inside the damage is refused.
    let dry = repair(&broker, &topic, cut, false);
    assert!(dry.status.success(), "dry run: {dry:?}");
    assert_eq!(snapshot(&dir), before, "a dry run changes no segment");
    let too_far = repair(&broker, &topic, cut + 5, true);
    assert!(
        !too_far.status.success(),
        "a cut past the damage is refused"
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "a refused repair changes no segment"
    );
    let done = repair(&broker, &topic, cut, true);
    assert!(done.status.success(), "repair: {done:?}");
    let kept: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt"))
        .collect();
    assert!(!kept.is_empty(), "cut data is kept as .corrupt files");

    // Served again: the records below the cut, then new records from the cut on.
    broker.restart();
    let mut conn = Conn::open(broker.addr());
    let (read, stopped_by) = read_all(&mut conn, &topic);
    assert_eq!(stopped_by, 0, "the repaired partition reads to its end");
    assert_eq!(read.len() as i64, cut, "the log ends at the cut");
    assert_eq!(
        produce_one(&mut conn, &topic, 5_000),
        (0, cut),
        "new records start at the cut"
    );
    let (status, body) = http_get(broker.admin_port, "/v1/health");
    assert_eq!(status, 200, "healthy after repair: {body}");
}
