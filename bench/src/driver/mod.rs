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
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use sluice_client::{Client, ClientConfig, NewTopic, OffsetSpec};

use crate::error::BenchError;
use crate::stats::new_histogram;
use crate::workload::{Mode, Workload, RECORD_HEADER_BYTES};

mod fetcher;
mod producer;

use fetcher::Fetcher;
use producer::Producer;

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
