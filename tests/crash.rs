//! Crash test: `kill -9` the broker while an acks=all producer is writing, restart it on the
//! same data dir, and check that every acknowledged record is there exactly once, at the
//! offset the broker acknowledged, in a log that reads back without errors.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};

const PARTITIONS: i32 = 3;
const CYCLES: usize = 3;
const PRODUCE_FOR: Duration = Duration::from_secs(2);

/// Delivery reports of acknowledged records: (partition, offset, sequence number).
#[derive(Clone, Default)]
struct Recorder {
    acked: Arc<Mutex<Vec<(i32, i64, u64)>>>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                let seq: u64 = std::str::from_utf8(m.payload().expect("payload"))
                    .unwrap()
                    .parse()
                    .unwrap();
                self.acked
                    .lock()
                    .unwrap()
                    .push((m.partition(), m.offset(), seq));
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn crash_producer(bootstrap: &str, rec: Recorder) -> ThreadedProducer<Recorder> {
    let mut c: ClientConfig = client_config(bootstrap);
    c.set("acks", "all")
        .set("enable.idempotence", "false")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "20000")
        .set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.max.ms", "200")
        .set("log_level", "0");
    c.create_with_context(rec).expect("create producer")
}

/// Produce keyed sequence numbers from `next_seq` on until `stop` is set.
fn produce_until(
    p: &ThreadedProducer<Recorder>,
    topic: &str,
    next_seq: &AtomicU64,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let seq = next_seq.fetch_add(1, Ordering::Relaxed);
        let s = seq.to_string();
        loop {
            match p.send(BaseRecord::<str, str>::to(topic).key(&s).payload(&s)) {
                Ok(()) => break,
                Err((_e, _rec)) => {
                    // Queue full (or broker gone): back off and retry unless told to stop.
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        if seq.is_multiple_of(4) {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Read every partition from 0 to its high watermark and check the log against what was
/// acknowledged so far.
fn verify(broker: &Broker, topic: &str, acked: &[(i32, i64, u64)], cycle: usize) {
    let c = consumer(&broker.bootstrap(), &[]);
    let mut at: HashMap<(i32, i64), u64> = HashMap::new();
    let mut occurrences: HashMap<u64, u32> = HashMap::new();
    for part in 0..PARTITIONS {
        let (lo, hi) = watermarks(&c, topic, part);
        assert_eq!(
            lo, 0,
            "cycle {cycle}: partition {part} log start moved to {lo} after a crash"
        );
        let max_acked = acked.iter().filter(|a| a.0 == part).map(|a| a.1).max();
        if let Some(m) = max_acked {
            assert!(
                hi > m,
                "cycle {cycle}: partition {part} high watermark {hi} after restart is below acknowledged offset {m}: \
                 acknowledged records were lost"
            );
        }
        let msgs = consume_range(&c, topic, part, 0, hi, Duration::from_secs(60));
        // Offsets are contiguous from 0 (single node, no control batches expected today).
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(
                m.offset(),
                i as i64,
                "cycle {cycle}: partition {part} offsets not contiguous: record #{i} has offset {}",
                m.offset()
            );
            let seq: u64 = m
                .payload_view::<str>()
                .and_then(|r| r.ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("cycle {cycle}: {topic}/{part} offset {} holds a record that is not one we wrote: {:?}", m.offset(), m.payload()));
            assert_eq!(
                m.key(),
                m.payload(),
                "cycle {cycle}: {topic}/{part} offset {}: key and value differ",
                m.offset()
            );
            at.insert((part, m.offset()), seq);
            *occurrences.entry(seq).or_default() += 1;
        }
    }
    let mut missing = Vec::new();
    let mut moved = Vec::new();
    for &(part, off, seq) in acked {
        match at.get(&(part, off)) {
            None => missing.push((part, off, seq)),
            Some(&s) if s != seq => moved.push((part, off, seq, s)),
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "cycle {cycle}: {} acknowledged records are gone after kill -9 + restart, e.g. (partition, offset, seq) {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        moved.is_empty(),
        "cycle {cycle}: {} acknowledged offsets now hold another record, e.g. (partition, offset, acked seq, found seq) {:?}",
        moved.len(),
        &moved[..moved.len().min(10)]
    );
    let dup_acked: Vec<_> = acked
        .iter()
        .filter(|a| occurrences.get(&a.2).copied().unwrap_or(0) > 1)
        .take(10)
        .collect();
    assert!(
        dup_acked.is_empty(),
        "cycle {cycle}: acknowledged records appear more than once: {dup_acked:?}"
    );
    let unacked_dups = occurrences.values().filter(|&&n| n > 1).count();
    eprintln!(
        "cycle {cycle}: {} acknowledged, {} records in the log, {} unacknowledged duplicates (client retries)",
        acked.len(),
        at.len(),
        unacked_dups
    );
}

#[test]
fn kill9_under_acks_all_load_keeps_every_acknowledged_record() {
    let mut broker = Broker::start();
    let topic = "crash";
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_topic(
        &admin(&broker.bootstrap()),
        topic,
        PARTITIONS,
        &[],
    ));

    let next_seq = Arc::new(AtomicU64::new(0));
    let mut all_acked: Vec<(i32, i64, u64)> = Vec::new();
    for cycle in 1..=CYCLES {
        let rec = Recorder::default();
        let p = Arc::new(crash_producer(&broker.bootstrap(), rec.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (p, stop, next_seq) = (p.clone(), stop.clone(), next_seq.clone());
            std::thread::spawn(move || produce_until(&p, topic, &next_seq, &stop))
        };

        let t0 = Instant::now();
        std::thread::sleep(PRODUCE_FOR);
        let acked_before_kill = rec.acked.lock().unwrap().len();
        broker.kill9();
        let killed_at = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        // Whatever was not acknowledged by now is unknown: drop it so it is not retried into
        // the restarted broker (those would be legitimate duplicates, not what we test).
        p.purge(PurgeConfig::default().queue().inflight());
        let _ = p.flush(Duration::from_secs(5));
        drop(p);

        let acked = std::mem::take(&mut *rec.acked.lock().unwrap());
        assert!(
            acked_before_kill > 0,
            "cycle {cycle}: no acks=all produce was acknowledged in {PRODUCE_FOR:?} of producing; log:\n{}",
            broker.log_tail()
        );
        eprintln!(
            "cycle {cycle}: killed after {killed_at:?}; {} acknowledged this cycle, {} failed/purged",
            acked.len(),
            rec.failed.load(Ordering::Relaxed)
        );
        // An offset must never be acknowledged twice (within or across cycles).
        let mut seen: BTreeMap<(i32, i64), u64> =
            all_acked.iter().map(|a| ((a.0, a.1), a.2)).collect();
        for a in &acked {
            if let Some(prev) = seen.insert((a.0, a.1), a.2) {
                panic!(
                    "cycle {cycle}: offset {}/{} acknowledged for seq {} and earlier for seq {prev}",
                    a.0, a.1, a.2
                );
            }
        }
        all_acked.extend(acked);

        broker.restart();
        verify(&broker, topic, &all_acked, cycle);
    }

    // A clean stop after the crashes still exits 0.
    let status = broker.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
