//! One open-loop (or closed-loop, in `throughput` mode) producer and the collector that
//! records each completion's latency from the record's intended send time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::messages::{ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_client::{
    build_produce_request, encode_batch, Client, Completion, Connection, ProduceOptions,
    ProduceRecord,
};

use crate::error::BenchError;
use crate::floor::tighten_timer_slack;
use crate::schedule::{latency, OpenLoopSchedule};
use crate::stats::{new_histogram, record};
use crate::workload::{AckLevel, KeyDistribution, Mode, Workload};

use super::*;

/// What a producer thread measured.
pub(super) struct ProducerResult {
    pub(super) hist: Histogram<u64>,
    pub(super) sent: u64,
    pub(super) acked: u64,
    pub(super) errors: u64,
    pub(super) timed_out: u64,
    pub(super) acked_bytes: u64,
}

/// One producer: its client, the leader connection of each partition.
pub(super) struct Producer {
    pub(super) _client: Client,
    pub(super) conns: Vec<Arc<Connection>>,
    /// partition → index into `conns`
    pub(super) part_conn: Vec<usize>,
    pub(super) topic_id: kafka_protocol::messages::TopicName,
    pub(super) topic_uuid: uuid::Uuid,
}

pub(super) struct Collector {
    pub(super) hist: Histogram<u64>,
    pub(super) acked: u64,
    pub(super) errors: u64,
    pub(super) acked_bytes: u64,
}

impl Producer {
    pub(super) fn connect(
        bootstrap: &str,
        w: &Workload,
        idx: u32,
        partitions: i32,
    ) -> Result<Producer, BenchError> {
        let client = Client::connect(client_config(bootstrap, &format!("sluice-bench-p{idx}")))
            .map_err(|e| BenchError::client(format!("connect to {bootstrap}"), e))?;
        let mut conns: Vec<Arc<Connection>> = Vec::new();
        let mut part_conn = Vec::new();
        let mut topic_uuid = None;
        for p in 0..partitions {
            let (conn, t) = client
                .leader_for(&w.topic, p)
                .map_err(|e| BenchError::client(format!("leader of {}/{p}", w.topic), e))?;
            topic_uuid = Some(t.topic_id);
            let i = match conns.iter().position(|c| Arc::ptr_eq(c, &conn)) {
                Some(i) => i,
                None => {
                    conns.push(conn);
                    conns.len() - 1
                }
            };
            part_conn.push(i);
        }
        Ok(Producer {
            _client: client,
            conns,
            part_conn,
            topic_id: TopicName(StrBytes::from_string(w.topic.clone())),
            topic_uuid: topic_uuid.unwrap_or_default(),
        })
    }

    pub(super) fn run(
        self,
        w: &Workload,
        idx: u32,
        shared: &Arc<Shared>,
        win: Window,
        run_id: u32,
    ) -> Result<ProducerResult, BenchError> {
        tighten_timer_slack();
        let opts = ProduceOptions {
            acks: w.acks.to_client(),
            compression: w.compression.to_client(),
            timeout: Duration::from_secs(30),
        };
        let limit = w.in_flight_limit();
        let gate = Arc::new(Gate::new());
        let stop = Arc::new(AtomicBool::new(false));
        let maps: Vec<Arc<Mutex<HashMap<i32, BatchInfo>>>> = self
            .conns
            .iter()
            .map(|_| Arc::new(Mutex::new(HashMap::new())))
            .collect();
        let mut txs = Vec::new();
        let mut collectors = Vec::new();
        for map in &maps {
            let (tx, rx) = mpsc::channel::<Completion>();
            txs.push(tx);
            let (map, gate, stop) = (map.clone(), gate.clone(), stop.clone());
            let shared = shared.clone();
            let topic = w.topic.clone();
            collectors.push(std::thread::spawn(move || {
                collect(rx, &map, &gate, &stop, &shared, win, &topic)
            }));
        }

        let mut rng =
            XorShift::new(0x9e37_79b9_7f4a_7c15 ^ (u64::from(run_id) << 20) ^ u64::from(idx));
        let filler: Vec<u8> = (0..w.record_size).map(|_| rng.next_u64() as u8).collect();
        let partitions = self.part_conn.len();
        let mut own = new_histogram(); // acks=0 latencies
        let mut counts = ProducerResult {
            hist: new_histogram(),
            sent: 0,
            acked: 0,
            errors: 0,
            timed_out: 0,
            acked_bytes: 0,
        };
        let per_batch = (w.batch_size / w.record_size).max(1);
        let linger = Duration::from_secs_f64(w.linger_ms / 1000.0);
        let producers = w.producers.max(1) as f64;
        let schedule = match w.mode {
            Mode::Throughput => None,
            _ => {
                let rate = w.rate / producers;
                let offset = Duration::from_secs_f64(f64::from(idx) / w.rate);
                Some(OpenLoopSchedule::new(
                    win.base + offset,
                    rate,
                    win.end.saturating_duration_since(win.base + offset),
                ))
            }
        };
        let give_up = win.end + DRAIN_TIMEOUT;
        let mut acc: Vec<Vec<(Instant, ProduceRecord)>> = vec![Vec::new(); partitions];
        let mut next = 0u64; // next record of the schedule
        let mut seq = 0u64;
        let mut rr = 0usize;

        // Send one partition's pending records as one request.
        let flush = |p: usize,
                     pending: Vec<(Instant, ProduceRecord)>,
                     counts: &mut ProducerResult,
                     own: &mut Histogram<u64>|
         -> Result<bool, BenchError> {
            if pending.is_empty() {
                return Ok(true);
            }
            let n = pending.len() as u64;
            let in_window = pending.iter().filter(|(t, _)| win.measured(*t)).count() as u64;
            if !gate.acquire(limit, give_up) {
                counts.timed_out += in_window;
                return Ok(false);
            }
            let (intended, records): (Vec<Instant>, Vec<ProduceRecord>) =
                pending.into_iter().unzip();
            let batch = encode_batch(&records, opts.compression)
                .map_err(|e| BenchError::Run(format!("cannot encode a record batch: {e}")))?;
            let ci = self.part_conn[p];
            let conn = &self.conns[ci];
            let (req, version) = build_produce_request(
                conn,
                &self.topic_id.0,
                self.topic_uuid,
                p as i32,
                batch,
                &opts,
            )
            .map_err(|e| BenchError::client(format!("build produce for {}/{p}", w.topic), e))?;
            counts.sent += in_window;
            shared.sent.fetch_add(n, Ordering::Relaxed);
            if w.acks == AckLevel::None {
                let r = conn.send_oneway(&req, version);
                gate.release();
                let done = Instant::now();
                match r {
                    Ok(_) => {
                        for t in &intended {
                            if win.measured(*t) {
                                record(own, latency(*t, done));
                                counts.acked += 1;
                                counts.acked_bytes += w.record_size as u64;
                            }
                        }
                        shared.acked.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counts.errors += in_window;
                        shared.error(n, || e.to_string());
                    }
                }
                return Ok(!conn.is_closed());
            }
            shared.in_flight.fetch_add(1, Ordering::Relaxed);
            let mut m = lock(&maps[ci]);
            match conn.send_to(&req, version, &txs[ci]) {
                Ok(id) => {
                    m.insert(
                        id,
                        BatchInfo {
                            intended,
                            record_bytes: w.record_size as u64,
                        },
                    );
                    Ok(true)
                }
                Err(e) => {
                    drop(m);
                    gate.release();
                    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                    counts.errors += in_window;
                    shared.error(n, || e.to_string());
                    Ok(!conn.is_closed())
                }
            }
        };

        let make_record = |intended: Instant, seq: u64, rng: &mut XorShift, rr: &mut usize| {
            let (key, p) = match w.key_distribution {
                KeyDistribution::None => {
                    *rr = (*rr + 1) % partitions;
                    (None, *rr)
                }
                KeyDistribution::Random => {
                    let k = match w.key_space {
                        0 => rng.next_u64(),
                        space => rng.next_u64() % space,
                    };
                    (
                        Some(Bytes::copy_from_slice(&k.to_be_bytes())),
                        (k % partitions as u64) as usize,
                    )
                }
                KeyDistribution::RoundRobin => (
                    Some(Bytes::copy_from_slice(&seq.to_be_bytes())),
                    (seq % partitions as u64) as usize,
                ),
            };
            let ns = intended.saturating_duration_since(win.base).as_nanos() as u64;
            let rec = ProduceRecord {
                key,
                value: Some(record_value(w.record_size, run_id, ns, seq, &filler)),
                headers: Vec::new(),
                timestamp: None,
            };
            (p, rec)
        };

        let mut alive = true;
        match schedule {
            None => {
                // Closed loop: full batches, round-robin over partitions, as fast as the
                // window of in-flight requests allows.
                while alive {
                    let now = Instant::now();
                    if now >= win.end {
                        break;
                    }
                    let p = rr % partitions;
                    rr += 1;
                    let mut batch = Vec::with_capacity(per_batch);
                    for _ in 0..per_batch {
                        let (_, rec) = make_record(now.max(win.base), seq, &mut rng, &mut 0);
                        batch.push((now.max(win.base), rec));
                        seq += 1;
                    }
                    alive = flush(p, batch, &mut counts, &mut own)?;
                }
            }
            Some(s) => {
                let mut oldest: Vec<Option<Instant>> = vec![None; partitions];
                loop {
                    let now = Instant::now();
                    let due = s.due_by(now);
                    while next < due {
                        let t = s.intended(next);
                        let (p, rec) = make_record(t, seq, &mut rng, &mut rr);
                        seq += 1;
                        next += 1;
                        oldest[p].get_or_insert(t);
                        acc[p].push((t, rec));
                        if acc[p].len() >= per_batch {
                            oldest[p] = None;
                            alive = flush(p, std::mem::take(&mut acc[p]), &mut counts, &mut own)?;
                        }
                    }
                    let finished = next >= s.total();
                    let now = Instant::now();
                    let mut wake = if finished {
                        None
                    } else {
                        Some(s.intended(next))
                    };
                    for p in 0..partitions {
                        if let Some(o) = oldest[p] {
                            if finished || o + linger <= now {
                                oldest[p] = None;
                                alive =
                                    flush(p, std::mem::take(&mut acc[p]), &mut counts, &mut own)?
                                        && alive;
                            } else {
                                let d = o + linger;
                                wake = Some(wake.map_or(d, |x| x.min(d)));
                            }
                        }
                    }
                    if !alive || (finished && oldest.iter().all(Option::is_none)) {
                        break;
                    }
                    if let Some(t) = wake {
                        let now = Instant::now();
                        if t > now {
                            std::thread::sleep(t - now);
                        }
                    }
                }
            }
        }
        if !alive {
            shared.error(0, || {
                format!(
                    "connection to {} closed; producer {idx} stopped",
                    self.conns
                        .first()
                        .map(|c| c.addr().to_string())
                        .unwrap_or_default()
                )
            });
        }
        // Drain: wait for the answers still due, then stop the collectors.
        gate.drain(give_up);
        stop.store(true, Ordering::Relaxed);
        drop(txs);
        for c in collectors {
            match c.join() {
                Ok(c) => {
                    let _ = counts.hist.add(&c.hist);
                    counts.acked += c.acked;
                    counts.errors += c.errors;
                    counts.acked_bytes += c.acked_bytes;
                }
                Err(_) => return Err(BenchError::Run("a collector thread panicked".into())),
            }
        }
        for m in &maps {
            for info in lock(m).values() {
                counts.timed_out +=
                    info.intended.iter().filter(|t| win.measured(**t)).count() as u64;
            }
        }
        let _ = counts.hist.add(&own);
        Ok(counts)
    }
}

/// A collector: takes completions of one connection, records latency from the intended send
/// times, checks the per-partition error codes.
pub(super) fn collect(
    rx: Receiver<Completion>,
    map: &Mutex<HashMap<i32, BatchInfo>>,
    gate: &Gate,
    stop: &AtomicBool,
    shared: &Shared,
    win: Window,
    topic: &str,
) -> Collector {
    let mut c = Collector {
        hist: new_histogram(),
        acked: 0,
        errors: 0,
        acked_bytes: 0,
    };
    loop {
        let done = match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(done) => done,
            Err(RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let info = match lock(map).remove(&done.correlation_id) {
            Some(i) => i,
            None => continue,
        };
        gate.release();
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        let received = done.received_at;
        let n = info.intended.len() as u64;
        let in_window = info.intended.iter().filter(|t| win.measured(**t)).count() as u64;
        let failure = match done.decode::<ProduceResponse>() {
            Ok(resp) => resp
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.error_code != 0)
                .map(|p| {
                    let err = kafka_protocol::error::ResponseError::try_from_code(p.error_code)
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| format!("error code {}", p.error_code));
                    format!("produce to {topic}/{}: {err}", p.index)
                }),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                let mut max = 0;
                for t in &info.intended {
                    let l = latency(*t, received);
                    max = max.max(l.as_micros() as u64);
                    if win.measured(*t) {
                        record(&mut c.hist, l);
                    }
                }
                shared.second_max_us.fetch_max(max, Ordering::Relaxed);
                shared.acked.fetch_add(n, Ordering::Relaxed);
                c.acked += in_window;
                c.acked_bytes += in_window * info.record_bytes;
            }
            Some(msg) => {
                c.errors += in_window;
                shared.error(n, || msg);
            }
        }
    }
    c
}
