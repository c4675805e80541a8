//! Crash tests: `kill -9` the broker while an acks=all producer is writing, restart it on the
//! same data dir, and check that every acknowledged record is there exactly once, at the
//! offset the broker acknowledged, in a log that reads back without errors. The second test
//! keeps one idempotent producer retrying across the crashes (short request timeouts, no
//! purge), so the broker's recovered producer state must turn every retry of a batch that
//! reached the log into a duplicate answer: then nothing may appear twice at all.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};

const PARTITIONS: i32 = 3;
const CYCLES: usize = 3;
const PRODUCE_FOR: Duration = Duration::from_secs(2);

/// How many client log lines a [`Recorder`] keeps for a failure message.
const CLIENT_LOG_LINES: usize = 300;

/// Delivery reports of acknowledged records: (partition, offset, sequence number); plus what
/// the client reported going wrong, for the failure messages.
#[derive(Clone, Default)]
struct Recorder {
    acked: Arc<Mutex<Vec<(i32, i64, u64)>>>,
    failed: Arc<AtomicU64>,
    /// The first delivery errors (error and sequence number).
    delivery_errors: Arc<Mutex<Vec<String>>>,
    /// The client's most recent log lines and error events.
    client_log: Arc<Mutex<VecDeque<String>>>,
}

impl Recorder {
    fn note(&self, line: String) {
        let mut log = self.client_log.lock().unwrap();
        if log.len() == CLIENT_LOG_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }

    /// The kept client log lines, one per line.
    fn client_log(&self) -> String {
        let log = self.client_log.lock().unwrap();
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl ClientContext for Recorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.note(format!("{level:?} {fac} {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note(format!("ERROR EVENT {error}: {reason}"));
    }
}

fn seq_of(payload: Option<&[u8]>) -> u64 {
    std::str::from_utf8(payload.expect("payload"))
        .unwrap()
        .parse()
        .unwrap()
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                let seq = seq_of(m.payload());
                self.acked
                    .lock()
                    .unwrap()
                    .push((m.partition(), m.offset(), seq));
            }
            Err((e, m)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.delivery_errors.lock().unwrap();
                if errors.len() < 20 {
                    errors.push(format!(
                        "seq {} partition {}: {e}",
                        seq_of(m.payload()),
                        m.partition()
                    ));
                }
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

/// What the log of the test topic holds: every record from offset 0 to the high watermark.
struct LogContents {
    /// The sequence number stored at each (partition, offset).
    at: BTreeMap<(i32, i64), u64>,
    /// Every (partition, offset) each sequence number is stored at.
    places: HashMap<u64, Vec<(i32, i64)>>,
}

impl LogContents {
    /// Sequence numbers stored more than once, with where (at most `max` of them).
    fn duplicates(&self, max: usize) -> Vec<(u64, Vec<(i32, i64)>)> {
        let mut dups: Vec<_> = self
            .places
            .iter()
            .filter(|(_, at)| at.len() > 1)
            .map(|(seq, at)| (*seq, at.clone()))
            .collect();
        dups.sort();
        dups.truncate(max);
        dups
    }
}

/// Read every partition from 0 to its high watermark and check the log against what was
/// acknowledged so far: offsets contiguous from 0, every acknowledged record at its
/// acknowledged offset and nowhere else. Returns what the log holds, for checks that depend
/// on the producer (unacknowledged duplicates are legitimate only without idempotence).
fn verify(broker: &Broker, topic: &str, acked: &[(i32, i64, u64)], cycle: usize) -> LogContents {
    let c = consumer(&broker.bootstrap(), &[]);
    let mut log = LogContents {
        at: BTreeMap::new(),
        places: HashMap::new(),
    };
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
            log.at.insert((part, m.offset()), seq);
            log.places.entry(seq).or_default().push((part, m.offset()));
        }
    }
    let mut missing = Vec::new();
    let mut moved = Vec::new();
    for &(part, off, seq) in acked {
        if off < 0 {
            // Acknowledged without an offset (see `add_acked`): it must be in its partition.
            if !log
                .places
                .get(&seq)
                .is_some_and(|at| at.iter().any(|p| p.0 == part))
            {
                missing.push((part, off, seq));
            }
            continue;
        }
        match log.at.get(&(part, off)) {
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
        .filter(|a| log.places.get(&a.2).map_or(0, Vec::len) > 1)
        .take(10)
        .map(|a| (a, &log.places[&a.2]))
        .collect();
    assert!(
        dup_acked.is_empty(),
        "cycle {cycle}: acknowledged records appear more than once: {dup_acked:?}"
    );
    log
}

/// Adds this cycle's acknowledgements to `all_acked`, failing if an offset was acknowledged
/// for two different records (within or across cycles).
fn add_acked(all_acked: &mut Vec<(i32, i64, u64)>, acked: Vec<(i32, i64, u64)>, cycle: usize) {
    let mut seen: BTreeMap<(i32, i64), u64> = all_acked.iter().map(|a| ((a.0, a.1), a.2)).collect();
    for a in &acked {
        if let Some(prev) = seen.insert((a.0, a.1), a.2) {
            panic!(
                "cycle {cycle}: offset {}/{} acknowledged for seq {} and earlier for seq {prev}",
                a.0, a.1, a.2
            );
        }
    }
    all_acked.extend(acked);
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
        add_acked(&mut all_acked, acked, cycle);

        broker.restart();
        let log = verify(&broker, topic, &all_acked, cycle);
        eprintln!(
            "cycle {cycle}: {} acknowledged, {} records in the log, {} unacknowledged duplicates (client retries)",
            all_acked.len(),
            log.at.len(),
            log.duplicates(usize::MAX).len()
        );
    }

    // A clean stop after the crashes still exits 0.
    let status = broker.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// Idempotent producer settings for the retry test: requests time out (client and broker
/// side) while writes and fdatasyncs are still in flight, retries never give up, and a
/// message outlives several restarts, so the same producer instance keeps retrying its
/// batches into the restarted broker.
fn idempotent_producer(bootstrap: &str, rec: Recorder) -> ThreadedProducer<Recorder> {
    let mut c: ClientConfig = client_config(bootstrap);
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("request.timeout.ms", "400")
        .set("message.timeout.ms", "300000")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("debug", "eos")
        .set("log_level", "7");
    c.create_with_context(rec).expect("create producer")
}

/// How long the producer runs before each kill: varied so the kills land at different
/// points of the write and flush rounds (fixed, so a failure replays the same schedule).
const IDEMPOTENT_RUNS: [Duration; 6] = [
    Duration::from_millis(1_700),
    Duration::from_millis(900),
    Duration::from_millis(2_300),
    Duration::from_millis(1_300),
    Duration::from_millis(600),
    Duration::from_millis(1_900),
];

/// How long every message gets to be delivered once producing stops.
const FINAL_FLUSH: Duration = Duration::from_secs(60);

#[test]
fn kill9_with_idempotent_retries_neither_loses_nor_duplicates() {
    let mut broker = Broker::start();
    let topic = "crash-idempotent";
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_topic(
        &admin(&broker.bootstrap()),
        topic,
        PARTITIONS,
        &[],
    ));

    // One producer for the whole test: what it had in flight at a kill is retried into the
    // restarted broker with the same producer id, epoch and sequence numbers.
    let rec = Recorder::default();
    let p = Arc::new(idempotent_producer(&broker.bootstrap(), rec.clone()));
    let next_seq = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (p, stop, next_seq) = (p.clone(), stop.clone(), next_seq.clone());
        std::thread::spawn(move || produce_until(&p, topic, &next_seq, &stop))
    };
    let client_state = |p: &ThreadedProducer<Recorder>| {
        format!(
            "fatal error: {:?}; delivery errors: {:?}; client log (last {CLIENT_LOG_LINES} lines):\n{}",
            p.client().fatal_error(),
            rec.delivery_errors.lock().unwrap(),
            rec.client_log()
        )
    };

    let mut all_acked: Vec<(i32, i64, u64)> = Vec::new();
    for (i, run) in IDEMPOTENT_RUNS.iter().enumerate() {
        let cycle = i + 1;
        let acked_before = all_acked.len() + rec.acked.lock().unwrap().len();
        std::thread::sleep(*run);
        let acked_at_kill = all_acked.len() + rec.acked.lock().unwrap().len();
        broker.kill9();
        assert!(
            acked_at_kill > acked_before,
            "cycle {cycle}: nothing was acknowledged in {run:?} of producing; {}\nbroker log:\n{}",
            client_state(&p),
            broker.log_tail()
        );
        broker.restart();
        let acked = std::mem::take(&mut *rec.acked.lock().unwrap());
        add_acked(&mut all_acked, acked, cycle);
        let log = verify(&broker, topic, &all_acked, cycle);
        let dups = log.duplicates(10);
        assert!(
            dups.is_empty(),
            "cycle {cycle}: with idempotence no record may be stored twice, but (seq, [(partition, offset)]) {dups:?}; {}",
            client_state(&p)
        );
        assert!(
            p.client().fatal_error().is_none(),
            "cycle {cycle}: the idempotent producer hit a fatal error; {}",
            client_state(&p)
        );
        eprintln!(
            "cycle {cycle}: killed after {run:?}; {} acknowledged so far, {} records in the log",
            all_acked.len(),
            log.at.len()
        );
    }

    // Every record produced must now be delivered: retried through all the crashes, none
    // given up (message.timeout.ms outlives the test), none refused.
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let unflushed = p.flush(FINAL_FLUSH);
    assert!(
        unflushed.is_ok() && rec.failed.load(Ordering::Relaxed) == 0,
        "not every record was delivered ({unflushed:?}, {} failed); {}",
        rec.failed.load(Ordering::Relaxed),
        client_state(&p)
    );
    assert!(
        p.client().fatal_error().is_none(),
        "the idempotent producer hit a fatal error; {}",
        client_state(&p)
    );
    let acked = std::mem::take(&mut *rec.acked.lock().unwrap());
    add_acked(&mut all_acked, acked, IDEMPOTENT_RUNS.len() + 1);
    let produced = next_seq.load(Ordering::Relaxed);
    let log = verify(&broker, topic, &all_acked, IDEMPOTENT_RUNS.len() + 1);

    // Exactly once: every record produced is in the log once, and nothing else is.
    let dups = log.duplicates(10);
    assert!(
        dups.is_empty(),
        "with idempotence no record may be stored twice, but (seq, [(partition, offset)]) {dups:?}"
    );
    let missing: Vec<u64> = (0..produced)
        .filter(|s| !log.places.contains_key(s))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && log.at.len() as u64 == produced,
        "{produced} records produced and acknowledged, {} in the log; missing e.g. {missing:?}",
        log.at.len()
    );
    assert_eq!(
        all_acked.len() as u64,
        produced,
        "every record produced is acknowledged exactly once"
    );
    // Idempotence keeps each partition in the order the records were produced.
    let mut last: HashMap<i32, u64> = HashMap::new();
    for (&(part, offset), &seq) in &log.at {
        if let Some(prev) = last.insert(part, seq) {
            assert!(
                prev < seq,
                "partition {part} offset {offset} holds seq {seq} after seq {prev}: reordered"
            );
        }
    }
    eprintln!(
        "{} cycles: {produced} records produced, all acknowledged ({} without an offset), each in the log once",
        IDEMPOTENT_RUNS.len(),
        all_acked.iter().filter(|a| a.1 < 0).count()
    );

    drop(p);
    let status = broker.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
