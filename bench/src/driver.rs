//! The native load driver: producers and consumers on `sluice-client` connections.
//!
//! Each producer owns its own client (its own TCP connection per broker, like separate
//! producer processes) and sends on an open-loop schedule: it never waits for a response
//! before sending the next request, so many requests are in flight on one connection, and a
//! reader thread per connection hands completions to a collector thread that records latency
//! from each record's *intended* send time. The `throughput` mode instead keeps a fixed
//! window of requests in flight (closed loop) to find the maximum rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_client::{
    build_produce_request, decode_fetched, encode_batch, Client, ClientConfig, Completion,
    Connection, NewTopic, OffsetSpec, ProduceOptions, ProduceRecord,
};

use crate::error::BenchError;
use crate::floor::tighten_timer_slack;
use crate::schedule::{latency, OpenLoopSchedule};
use crate::stats::{new_histogram, record};
use crate::workload::{AckLevel, KeyDistribution, Mode, Workload, RECORD_HEADER_BYTES};

/// First bytes of every record value written by sluice-bench ("SLBN").
pub const RECORD_MAGIC: u32 = 0x534c_424e;
/// How long, after the schedule ends, outstanding requests may still complete.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Long-poll wait of the e2e consumer's fetches.
pub const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Error messages kept for the report (the rest are only counted).
const FIRST_ERRORS: usize = 5;

/// What one run against one bootstrap address measured.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The address measured.
    pub bootstrap: String,
    /// Length of the measured window (warm-up excluded).
    pub measured_secs: f64,
    /// Records intended in the measured window that were written.
    pub sent: u64,
    /// ... acknowledged without error.
    pub acked: u64,
    /// ... answered with an error (or whose send failed).
    pub errors: u64,
    /// ... never answered within [`DRAIN_TIMEOUT`] after the run.
    pub timed_out: u64,
    /// Value bytes of the acknowledged records.
    pub acked_bytes: u64,
    /// Producer latency (µs): intended send → acknowledgement (acks=0: → written).
    pub produce: Histogram<u64>,
    /// End-to-end latency (µs): intended send → consumer received (e2e only).
    pub e2e: Option<Histogram<u64>>,
    /// Records of the measured window the consumers received (e2e only).
    pub consumed: u64,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// The topic's partition count as found on the broker.
    pub partitions: i32,
}

/// Counters shared by all threads of a run, read by the progress line.
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    consumed: AtomicU64,
    in_flight: AtomicU64,
    second_max_us: AtomicU64,
    stop_consumers: AtomicBool,
    first_errors: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, records: u64, msg: impl FnOnce() -> String) {
        self.errors.fetch_add(records, Ordering::Relaxed);
        let mut e = lock(&self.first_errors);
        if e.len() < FIRST_ERRORS {
            e.push(msg());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Limits the requests a producer has in flight. Waiting here is part of the measured latency
/// (records keep their intended times), so the limit bounds memory without hiding anything.
struct Gate {
    count: Mutex<usize>,
    cv: Condvar,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            count: Mutex::new(0),
            cv: Condvar::new(),
        }
    }

    /// Take a slot when fewer than `limit` are taken; false if `deadline` passes first.
    fn acquire(&self, limit: usize, deadline: Instant) -> bool {
        let mut c = lock(&self.count);
        while *c >= limit {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            c = self
                .cv
                .wait_timeout(c, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        *c += 1;
        true
    }

    fn release(&self) {
        let mut c = lock(&self.count);
        *c = c.saturating_sub(1);
        self.cv.notify_all();
    }

    /// Wait until nothing is in flight or `deadline`; returns what is still in flight.
    fn drain(&self, deadline: Instant) -> usize {
        let mut c = lock(&self.count);
        while *c > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            c = self
                .cv
                .wait_timeout(c, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        *c
    }
}

/// Times of one run: records intended before `measure_start` are warm-up.
#[derive(Debug, Clone, Copy)]
struct Window {
    base: Instant,
    measure_start: Instant,
    end: Instant,
}

impl Window {
    fn measured(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.end
    }
}

/// Requests sent and not yet answered, by correlation id.
struct BatchInfo {
    intended: Vec<Instant>,
    record_bytes: u64,
}

/// A tiny PRNG (xorshift64*) for keys and payload bytes: reproducible and dependency-free.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The value of a bench record: magic, run id, intended send time (ns after the run's base
/// instant), sequence, then filler up to `size` bytes.
pub fn record_value(size: usize, run_id: u32, intended_ns: u64, seq: u64, filler: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(RECORD_HEADER_BYTES));
    b.put_u32(RECORD_MAGIC);
    b.put_u32(run_id);
    b.put_u64(intended_ns);
    b.put_u64(seq);
    let rest = size.saturating_sub(RECORD_HEADER_BYTES);
    b.extend_from_slice(&filler[..rest.min(filler.len())]);
    b.resize(size.max(RECORD_HEADER_BYTES), 0);
    b.freeze()
}

/// `(run_id, intended_ns)` of a bench record's value; `None` for anything else.
pub fn parse_record_value(v: &[u8]) -> Option<(u32, u64)> {
    if v.len() < RECORD_HEADER_BYTES {
        return None;
    }
    let mut b = v;
    if b.get_u32() != RECORD_MAGIC {
        return None;
    }
    let run = b.get_u32();
    let ns = b.get_u64();
    Some((run, ns))
}

/// Run `w` against `bootstrap` once. `progress` draws a line per second on stderr.
pub fn run_native(
    bootstrap: &str,
    w: &Workload,
    run_id: u32,
    progress: bool,
) -> Result<RunOutcome, BenchError> {
    let cfg = client_config(bootstrap, "sluice-bench-admin");
    let admin = Client::connect(cfg)
        .map_err(|e| BenchError::client(format!("connect to {bootstrap}"), e))?;
    let partitions = ensure_topic(&admin, w)?;
    let shared = Arc::new(Shared::default());

    // E2e consumers start at the current end of every partition, before anything is sent.
    let mut start_offsets = HashMap::new();
    if w.mode == Mode::E2e {
        let all: Vec<i32> = (0..partitions).collect();
        for po in admin
            .list_offsets(&w.topic, &all, OffsetSpec::Latest)
            .map_err(|e| BenchError::client(format!("list offsets of {}", w.topic), e))?
        {
            start_offsets.insert(po.partition, po.offset);
        }
    }

    // Connect every producer and consumer before the clock starts.
    let mut producers = Vec::new();
    for i in 0..w.producers {
        producers.push(Producer::connect(bootstrap, w, i, partitions)?);
    }
    let mut fetchers = Vec::new();
    if w.mode == Mode::E2e {
        for c in 0..w.consumers.min(partitions as u32) {
            let mine: Vec<i32> = (0..partitions)
                .filter(|p| *p as u32 % w.consumers == c)
                .collect();
            fetchers.extend(Fetcher::connect(bootstrap, w, c, &mine, &start_offsets)?);
        }
    }

    let base = Instant::now() + Duration::from_millis(50);
    let measure_start = base + Duration::from_secs_f64(w.warmup_secs);
    let window = Window {
        base,
        measure_start,
        end: measure_start + Duration::from_secs_f64(w.duration_secs),
    };

    let progress_stop = Arc::new(AtomicBool::new(false));
    let progress_thread = progress.then(|| {
        let shared = shared.clone();
        let stop = progress_stop.clone();
        let mode = w.mode;
        std::thread::spawn(move || progress_loop(&shared, &stop, window, mode))
    });

    let consumer_threads: Vec<_> = fetchers
        .into_iter()
        .map(|f| {
            let shared = shared.clone();
            std::thread::spawn(move || f.run(&shared, window, run_id))
        })
        .collect();
    let producer_threads: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let shared = shared.clone();
            let w = w.clone();
            std::thread::spawn(move || p.run(&w, i as u32, &shared, window, run_id))
        })
        .collect();

    let mut produce = new_histogram();
    let mut out = RunOutcome {
        bootstrap: bootstrap.to_string(),
        measured_secs: w.duration_secs,
        sent: 0,
        acked: 0,
        errors: 0,
        timed_out: 0,
        acked_bytes: 0,
        produce: new_histogram(),
        e2e: None,
        consumed: 0,
        first_errors: Vec::new(),
        partitions,
    };
    let mut failure = None;
    for t in producer_threads {
        match t.join() {
            Ok(Ok(p)) => {
                let _ = produce.add(&p.hist);
                out.sent += p.sent;
                out.acked += p.acked;
                out.errors += p.errors;
                out.timed_out += p.timed_out;
                out.acked_bytes += p.acked_bytes;
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(BenchError::Run("a producer thread panicked".into())),
        }
    }
    // Consumers: wait until they received what was acknowledged, then stop them.
    if !consumer_threads.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && shared.consumed.load(Ordering::Relaxed) < out.acked {
            std::thread::sleep(Duration::from_millis(20));
        }
        shared.stop_consumers.store(true, Ordering::Relaxed);
        let mut e2e = new_histogram();
        for t in consumer_threads {
            match t.join() {
                Ok(Ok((h, n))) => {
                    let _ = e2e.add(&h);
                    out.consumed += n;
                }
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(BenchError::Run("a consumer thread panicked".into())),
            }
        }
        out.e2e = Some(e2e);
    }
    progress_stop.store(true, Ordering::Relaxed);
    if let Some(t) = progress_thread {
        let _ = t.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    out.produce = produce;
    out.first_errors = lock(&shared.first_errors).clone();
    if out.mode_is_throughput(w) {
        // closed loop: the measured window is the time the load ran
        out.measured_secs = w.duration_secs;
    }
    Ok(out)
}

impl RunOutcome {
    fn mode_is_throughput(&self, w: &Workload) -> bool {
        w.mode == Mode::Throughput
    }
}

/// Connect an admin client to `bootstrap` and make sure the workload's topic exists (used by
/// drivers that bring their own producer, such as librdkafka's).
pub fn ensure_topic_at(bootstrap: &str, w: &Workload) -> Result<i32, BenchError> {
    let admin = Client::connect(client_config(bootstrap, "sluice-bench-admin"))
        .map_err(|e| BenchError::client(format!("connect to {bootstrap}"), e))?;
    ensure_topic(&admin, w)
}

fn client_config(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(&[bootstrap]);
    cfg.connection.client_id = client_id.to_string();
    cfg
}

/// Create the topic if it is missing and wait until every partition has a leader; returns the
/// partition count (an existing topic keeps its own, with a warning if it differs).
fn ensure_topic(admin: &Client, w: &Workload) -> Result<i32, BenchError> {
    let ctx = |what: &str| format!("{what} topic {}", w.topic);
    match admin.topic(&w.topic) {
        Ok(_) => {}
        Err(_) => {
            let t = NewTopic {
                name: w.topic.clone(),
                partitions: w.partitions,
                replication_factor: w.replication_factor,
                configs: Vec::new(),
            };
            if let Err(e) = admin.create_topic(&t, Duration::from_secs(30)) {
                // Someone else (a concurrent bench) may have created it: fine if it exists.
                if e.kafka_error() != Some(kafka_protocol::error::ResponseError::TopicAlreadyExists)
                {
                    return Err(BenchError::client(ctx("create"), e));
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match admin.topic(&w.topic) {
            Ok(t) if !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0) => {
                let n = t.partitions.len() as i32;
                if n != w.partitions {
                    eprintln!(
                        "warning: topic {} has {n} partitions, not {}; using {n}",
                        w.topic, w.partitions
                    );
                }
                return Ok(n);
            }
            Ok(_) => "partitions without a leader".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(BenchError::Run(format!(
                "topic {} not ready after 30 s: {last}",
                w.topic
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a producer thread measured.
struct ProducerResult {
    hist: Histogram<u64>,
    sent: u64,
    acked: u64,
    errors: u64,
    timed_out: u64,
    acked_bytes: u64,
}

/// One producer: its client, the leader connection of each partition.
struct Producer {
    _client: Client,
    conns: Vec<Arc<Connection>>,
    /// partition → index into `conns`
    part_conn: Vec<usize>,
    topic_id: kafka_protocol::messages::TopicName,
    topic_uuid: uuid::Uuid,
}

struct Collector {
    hist: Histogram<u64>,
    acked: u64,
    errors: u64,
    acked_bytes: u64,
}

impl Producer {
    fn connect(
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

    fn run(
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
                    let k = rng.next_u64();
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
fn collect(
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

/// A leader's connection, the topic id, and the (partition, next offset) pairs read from it.
type LeaderPartitions = (Arc<Connection>, uuid::Uuid, Vec<(i32, i64)>);

/// One e2e consumer's fetch loop against one leader.
struct Fetcher {
    _client: Client,
    conn: Arc<Connection>,
    topic: String,
    topic_uuid: uuid::Uuid,
    offsets: Vec<(i32, i64)>,
}

impl Fetcher {
    fn connect(
        bootstrap: &str,
        w: &Workload,
        idx: u32,
        partitions: &[i32],
        start: &HashMap<i32, i64>,
    ) -> Result<Vec<Fetcher>, BenchError> {
        let client = Client::connect(client_config(bootstrap, &format!("sluice-bench-c{idx}")))
            .map_err(|e| BenchError::client(format!("connect to {bootstrap}"), e))?;
        let mut by_leader: Vec<LeaderPartitions> = Vec::new();
        for &p in partitions {
            let (conn, t) = client
                .leader_for(&w.topic, p)
                .map_err(|e| BenchError::client(format!("leader of {}/{p}", w.topic), e))?;
            let off = start.get(&p).copied().unwrap_or(0);
            match by_leader.iter_mut().find(|(c, _, _)| Arc::ptr_eq(c, &conn)) {
                Some((_, _, v)) => v.push((p, off)),
                None => by_leader.push((conn, t.topic_id, vec![(p, off)])),
            }
        }
        let mut out = Vec::new();
        let mut client = Some(client);
        for (conn, id, offsets) in by_leader {
            // Each fetcher keeps a client alive only to keep the connection's owner around;
            // the first one carries it.
            let c = match client.take() {
                Some(c) => c,
                None => Client::connect(client_config(bootstrap, &format!("sluice-bench-c{idx}")))
                    .map_err(|e| BenchError::client(format!("connect to {bootstrap}"), e))?,
            };
            out.push(Fetcher {
                _client: c,
                conn,
                topic: w.topic.clone(),
                topic_uuid: id,
                offsets,
            });
        }
        Ok(out)
    }

    fn run(
        mut self,
        shared: &Shared,
        win: Window,
        run_id: u32,
    ) -> Result<(Histogram<u64>, u64), BenchError> {
        let mut h = new_histogram();
        let mut received = 0u64;
        let version = self
            .conn
            .version_for::<FetchRequest>()
            .map_err(|e| BenchError::client("fetch version", e))?;
        let mut consecutive_errors = 0;
        while !shared.stop_consumers.load(Ordering::Relaxed) {
            let mut ft = FetchTopic::default().with_partitions(
                self.offsets
                    .iter()
                    .map(|(p, o)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*o)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            );
            if version >= 13 {
                ft.topic_id = self.topic_uuid;
            } else {
                ft.topic = TopicName(StrBytes::from_string(self.topic.clone()));
            }
            let req = FetchRequest::default()
                .with_max_wait_ms(FETCH_MAX_WAIT.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(8 << 20)
                .with_topics(vec![ft]);
            let resp = self
                .conn
                .send_version(&req, version)
                .and_then(|f| f.wait_timeout(Duration::from_secs(30) + FETCH_MAX_WAIT));
            let now = Instant::now();
            let resp = match resp {
                Ok(r) => {
                    consecutive_errors = 0;
                    r
                }
                Err(e) => {
                    consecutive_errors += 1;
                    shared.error(0, || format!("fetch: {e}"));
                    if consecutive_errors > 20 || self.conn.is_closed() {
                        return Err(BenchError::client("e2e consumer fetch", e));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let mut max = 0;
            for t in resp.responses {
                for pd in t.partitions {
                    if pd.error_code != 0 {
                        shared.error(0, || {
                            format!(
                                "fetch {}/{}: error code {}",
                                self.topic, pd.partition_index, pd.error_code
                            )
                        });
                        continue;
                    }
                    let slot = match self
                        .offsets
                        .iter_mut()
                        .find(|(p, _)| *p == pd.partition_index)
                    {
                        Some(s) => s,
                        None => continue,
                    };
                    let data = match pd.records {
                        Some(d) if !d.is_empty() => d,
                        _ => continue,
                    };
                    let (recs, next) = decode_fetched(pd.partition_index, data, slot.1)
                        .map_err(|e| BenchError::Run(format!("undecodable fetch data: {e}")))?;
                    for r in &recs {
                        let Some((run, ns)) = r.value.as_deref().and_then(parse_record_value)
                        else {
                            continue;
                        };
                        if run != run_id {
                            continue;
                        }
                        let intended = win.base + Duration::from_nanos(ns);
                        let l = latency(intended, now);
                        max = max.max(l.as_micros() as u64);
                        if win.measured(intended) {
                            record(&mut h, l);
                            received += 1;
                        }
                        shared.consumed.fetch_add(1, Ordering::Relaxed);
                    }
                    let after_last = recs.last().map(|r| r.offset + 1).unwrap_or(slot.1);
                    slot.1 = after_last.max(next.unwrap_or(slot.1));
                }
            }
            shared.second_max_us.fetch_max(max, Ordering::Relaxed);
        }
        Ok((h, received))
    }
}

/// Draw one progress line per second on stderr.
fn progress_loop(shared: &Shared, stop: &AtomicBool, win: Window, mode: Mode) {
    let mut last_acked = 0;
    let mut last = Instant::now();
    let total = win.end.saturating_duration_since(win.base).as_secs_f64();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        let acked = shared.acked.load(Ordering::Relaxed);
        let rate = (acked - last_acked.min(acked)) as f64 / dt;
        last_acked = acked;
        let phase = if now < win.measure_start {
            "warm-up"
        } else if now < win.end {
            "measure"
        } else {
            "drain"
        };
        let elapsed = now.saturating_duration_since(win.base).as_secs_f64();
        let mut line = format!(
            "[{elapsed:5.1}/{total:.0}s {phase}] sent {} acked {} ({rate:.0}/s) errors {} in-flight {} max {:.2}ms",
            shared.sent.load(Ordering::Relaxed),
            acked,
            shared.errors.load(Ordering::Relaxed),
            shared.in_flight.load(Ordering::Relaxed),
            shared.second_max_us.swap(0, Ordering::Relaxed) as f64 / 1000.0,
        );
        if mode == Mode::E2e {
            line.push_str(&format!(
                " consumed {}",
                shared.consumed.load(Ordering::Relaxed)
            ));
        }
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_header_round_trips() {
        let v = record_value(100, 7, 123_456_789, 42, &[9u8; 200]);
        assert_eq!(v.len(), 100);
        assert_eq!(parse_record_value(&v), Some((7, 123_456_789)));
        assert_eq!(parse_record_value(&v[..10]), None);
        assert_eq!(parse_record_value(&[0u8; 64]), None);
        // a record as small as the header still carries it
        let v = record_value(RECORD_HEADER_BYTES, 1, 2, 3, &[]);
        assert_eq!(parse_record_value(&v), Some((1, 2)));
    }

    #[test]
    fn gate_limits_and_drains() {
        let g = Gate::new();
        let far = Instant::now() + Duration::from_secs(5);
        assert!(g.acquire(2, far));
        assert!(g.acquire(2, far));
        assert!(!g.acquire(2, Instant::now() + Duration::from_millis(10)));
        g.release();
        assert!(g.acquire(2, far));
        assert_eq!(g.drain(Instant::now() + Duration::from_millis(10)), 2);
        g.release();
        g.release();
        assert_eq!(g.drain(far), 0);
    }
}
