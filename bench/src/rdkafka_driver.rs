//! The librdkafka driver (`--client rdkafka`, cargo feature `rdkafka`): the same open-loop
//! schedule, sent through librdkafka's producer, so the numbers include its batching
//! (`linger.ms`, `batch.size`), queueing and I/O thread — what librdkafka users see. Latency
//! is still measured from each record's intended send time, carried as the delivery opaque.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::driver::{ensure_topic_at, record_value, RunOutcome, XorShift, DRAIN_TIMEOUT};
use crate::error::BenchError;
use crate::floor::tighten_timer_slack;
use crate::schedule::{latency, OpenLoopSchedule};
use crate::stats::{new_histogram, record};
use crate::workload::{AckLevel, KeyDistribution, Mode, Workload};

struct Ctx {
    measure_start: Instant,
    end: Instant,
    record_size: u64,
    hist: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, intended: Box<Instant>) {
        let now = Instant::now();
        let measured = *intended >= self.measure_start && *intended < self.end;
        match result {
            Ok(_) => {
                if measured {
                    if let Ok(mut h) = self.hist.lock() {
                        record(&mut h, latency(*intended, now));
                    }
                    self.acked.fetch_add(1, Ordering::Relaxed);
                    self.acked_bytes
                        .fetch_add(self.record_size, Ordering::Relaxed);
                }
            }
            Err((e, _)) => {
                if measured {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut f) = self.first_errors.lock() {
                    if f.len() < 5 {
                        f.push(format!("librdkafka delivery: {e}"));
                    }
                }
            }
        }
    }
}

/// Run `w` through librdkafka against `bootstrap`.
pub fn run_rdkafka(
    bootstrap: &str,
    w: &Workload,
    progress: bool,
) -> Result<RunOutcome, BenchError> {
    let partitions = ensure_topic_at(bootstrap, w)?;
    let base = Instant::now() + Duration::from_millis(200);
    let measure_start = base + Duration::from_secs_f64(w.warmup_secs);
    let end = measure_start + Duration::from_secs_f64(w.duration_secs);
    let ctx = Ctx {
        measure_start,
        end,
        record_size: w.record_size as u64,
        hist: Mutex::new(new_histogram()),
        acked: AtomicU64::new(0),
        acked_bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_errors: Mutex::new(Vec::new()),
    };
    let acks = match w.acks {
        AckLevel::None => "0",
        AckLevel::Leader => "1",
        AckLevel::All => "all",
    };
    let producer: ThreadedProducer<Ctx> = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("compression.type", w.compression.name())
        .set("batch.size", w.batch_size.to_string())
        .set("linger.ms", format!("{}", w.linger_ms))
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .create_with_context(ctx)
        .map_err(|e| BenchError::Run(format!("cannot create librdkafka producer: {e}")))?;

    tighten_timer_slack();
    let mut rng = XorShift::new(0x51ce_b00c);
    let filler: Vec<u8> = (0..w.record_size).map(|_| rng.next_u64() as u8).collect();
    let schedule = match w.mode {
        Mode::Throughput => None,
        _ => Some(OpenLoopSchedule::new(
            base,
            w.rate,
            end.saturating_duration_since(base),
        )),
    };
    let mut sent = 0u64;
    let mut n = 0u64;
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        let intended = match &schedule {
            Some(s) => {
                if n >= s.total() {
                    break;
                }
                let t = s.intended(n);
                if t > now {
                    std::thread::sleep(t - now);
                }
                t
            }
            None => {
                if now >= end {
                    break;
                }
                now.max(base)
            }
        };
        let key = match w.key_distribution {
            KeyDistribution::None => None,
            KeyDistribution::Random => Some(
                match w.key_space {
                    0 => rng.next_u64(),
                    space => rng.next_u64() % space,
                }
                .to_be_bytes(),
            ),
            KeyDistribution::RoundRobin => Some(n.to_be_bytes()),
        };
        let p = (n % partitions as u64) as i32;
        let ns = intended.saturating_duration_since(base).as_nanos() as u64;
        let value = record_value(w.record_size, 0, ns, n, &filler);
        let mut rec = BaseRecord::with_opaque_to(&w.topic, Box::new(intended))
            .payload(value.as_ref())
            .partition(p);
        if let Some(k) = &key {
            rec = rec.key(k.as_slice());
        }
        let mut rec = Some(rec);
        while let Some(r) = rec.take() {
            match producer.send(r) {
                Ok(()) => {}
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Open loop: the wait counts, the record keeps its intended time.
                    std::thread::sleep(Duration::from_micros(200));
                    rec = Some(r);
                }
                Err((e, _)) => {
                    return Err(BenchError::Run(format!("librdkafka send: {e}")));
                }
            }
        }
        if intended >= measure_start && intended < end {
            sent += 1;
        }
        n += 1;
        if progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let c = producer.context();
            eprintln!(
                "[{:5.1}s] rdkafka sent {n} acked {} errors {} in-flight {}",
                Instant::now().saturating_duration_since(base).as_secs_f64(),
                c.acked.load(Ordering::Relaxed),
                c.errors.load(Ordering::Relaxed),
                producer.in_flight_count()
            );
        }
    }
    let flushed = producer.flush(DRAIN_TIMEOUT);
    let c = producer.context();
    let acked = c.acked.load(Ordering::Relaxed);
    let errors = c.errors.load(Ordering::Relaxed);
    let mut first_errors = c.first_errors.lock().map(|f| f.clone()).unwrap_or_default();
    if let Err(e) = flushed {
        first_errors.push(format!("librdkafka flush: {e}"));
    }
    let hist = c
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| new_histogram());
    Ok(RunOutcome {
        bootstrap: bootstrap.to_string(),
        measured_secs: w.duration_secs,
        sent,
        acked,
        errors,
        timed_out: sent.saturating_sub(acked + errors),
        acked_bytes: c.acked_bytes.load(Ordering::Relaxed),
        produce: hist,
        e2e: None,
        consumed: 0,
        first_errors,
        partitions,
    })
}
