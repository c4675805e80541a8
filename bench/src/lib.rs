//! `sluice-bench`: an open-loop latency and throughput harness for any Kafka-protocol broker.
//!
//! It exists to answer one question honestly: what latency does a client see, and how far is
//! that from what the machine physically allows? So it
//! - sends on a fixed schedule and measures from the *intended* send time (no coordinated
//!   omission), pipelining requests over its own client (`sluice-client`) so it measures
//!   the broker rather than a client library;
//! - measures the floor in the same run (fdatasync of the data disk, loopback round trip)
//!   and reports every percentile as a multiple of it;
//! - writes a summary table, a JSON report (docs/benchmarks.md), the full HDR percentile
//!   distribution and an SVG percentile plot; `--compare` runs the same workload against a
//!   second broker in alternation and prints the ratios.

pub mod cli;
pub mod driver;
pub mod error;
pub mod floor;
pub mod plot;
#[cfg(feature = "rdkafka")]
pub mod rdkafka_driver;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;

pub use error::BenchError;
pub use report::Report;
pub use workload::{AckLevel, ClientKind, KeyDistribution, Mode, Workload};

use driver::RunOutcome;
use floor::{Floor, Machine};
use report::{Comparison, FloorRatios, TargetResult, SCHEMA};
use stats::{distribution, LatencySummary};

/// Everything a run needs besides the workload: where, how often, and where results go.
#[derive(Debug, Clone)]
pub struct Options {
    /// The broker measured.
    pub bootstrap: String,
    /// A second broker run in alternation with the first (`--compare`).
    pub compare: Option<String>,
    /// Rounds per broker; with `--compare` the runs alternate A, B, A, B, ...
    pub rounds: u32,
    /// The workload.
    pub workload: Workload,
    /// The broker's data directory, when local: the disk floor is measured there.
    pub data_dir: Option<PathBuf>,
    /// Time spent measuring each floor.
    pub floor_budget: Duration,
    /// JSON report path.
    pub json: Option<PathBuf>,
    /// SVG plot path.
    pub plot: Option<PathBuf>,
    /// Full percentile distribution (text) path; with `--compare` one file per target
    /// (`FILE` and `FILE.compare`).
    pub histogram_out: Option<PathBuf>,
    /// Progress line on stderr once per second.
    pub progress: bool,
    /// The command line, recorded in the report.
    pub command: Vec<String>,
}

impl Options {
    /// Defaults against `bootstrap`.
    pub fn new(bootstrap: impl Into<String>, workload: Workload) -> Options {
        Options {
            bootstrap: bootstrap.into(),
            compare: None,
            rounds: 1,
            workload,
            data_dir: None,
            floor_budget: Duration::from_secs(1),
            json: None,
            plot: None,
            histogram_out: None,
            progress: false,
            command: Vec::new(),
        }
    }
}

/// Merged outcome of the rounds against one target.
struct Merged {
    outcome: Option<RunOutcome>,
    rounds: u32,
}

impl Merged {
    fn add(&mut self, o: RunOutcome) {
        self.rounds += 1;
        match &mut self.outcome {
            None => self.outcome = Some(o),
            Some(m) => {
                m.sent += o.sent;
                m.acked += o.acked;
                m.errors += o.errors;
                m.timed_out += o.timed_out;
                m.acked_bytes += o.acked_bytes;
                m.consumed += o.consumed;
                let _ = m.produce.add(&o.produce);
                if let (Some(a), Some(b)) = (&mut m.e2e, &o.e2e) {
                    let _ = a.add(b);
                }
                m.first_errors.extend(o.first_errors);
                m.first_errors.truncate(5);
            }
        }
    }
}

/// Run the benchmark: machine and floor first, then the rounds, then the report files.
pub fn run(opts: &Options) -> Result<Report, BenchError> {
    let w = &opts.workload;
    w.validate()?;
    if opts.rounds == 0 {
        return Err(BenchError::Invalid {
            field: "rounds",
            reason: "need at least 1".into(),
        });
    }
    let started_at_unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let machine = Machine::detect(opts.data_dir.as_deref());
    let floor = Floor::measure(opts.data_dir.as_deref(), opts.floor_budget)?;
    if opts.progress {
        eprintln!(
            "floor: loopback rtt p99 {:.1}us{}",
            floor.loopback_rtt.p99_us,
            floor
                .fdatasync
                .as_ref()
                .map(|f| format!(", fdatasync p99 {:.1}us ({})", f.p99_us, f.source))
                .unwrap_or_default()
        );
    }
    let mut targets = vec![opts.bootstrap.clone()];
    targets.extend(opts.compare.clone());
    let mut merged: Vec<Merged> = targets
        .iter()
        .map(|_| Merged {
            outcome: None,
            rounds: 0,
        })
        .collect();
    let run_base = (started_at_unix_secs as u32).wrapping_mul(2_654_435_761);
    let mut run_no = 0u32;
    for round in 0..opts.rounds {
        for (i, t) in targets.iter().enumerate() {
            if opts.progress {
                eprintln!("run {}/{}: {} against {t}", round + 1, opts.rounds, w.mode);
            }
            run_no += 1;
            let outcome = run_one(t, w, run_base.wrapping_add(run_no), opts.progress)?;
            merged[i].add(outcome);
        }
    }
    let mut results = Vec::new();
    let mut hists = Vec::new();
    for m in merged {
        let rounds = m.rounds;
        if let Some(o) = m.outcome {
            let (r, h) = target_result(o, rounds, w, &floor);
            results.push(r);
            hists.push(h);
        }
    }
    let comparison = (results.len() == 2).then(|| Comparison::of(&results[0], &results[1]));
    let report = Report {
        schema: SCHEMA.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at_unix_secs,
        command: opts.command.clone(),
        workload: w.clone(),
        machine,
        floor,
        results,
        comparison,
    };
    write_outputs(opts, &report, &hists)?;
    Ok(report)
}

fn run_one(
    bootstrap: &str,
    w: &Workload,
    run_id: u32,
    progress: bool,
) -> Result<RunOutcome, BenchError> {
    match w.client {
        ClientKind::Native => driver::run_native(bootstrap, w, run_id, progress),
        #[cfg(feature = "rdkafka")]
        ClientKind::Rdkafka => rdkafka_driver::run_rdkafka(bootstrap, w, progress),
        #[cfg(not(feature = "rdkafka"))]
        ClientKind::Rdkafka => Err(BenchError::Invalid {
            field: "client",
            reason: "this build lacks the `rdkafka` feature".into(),
        }),
    }
}

fn target_result(
    o: RunOutcome,
    rounds: u32,
    w: &Workload,
    floor: &Floor,
) -> (TargetResult, Histogram<u64>) {
    let secs = (o.measured_secs * f64::from(rounds)).max(1e-9);
    let produce = LatencySummary::of(&o.produce);
    let e2e = o.e2e.as_ref().map(LatencySummary::of);
    let (headline, hist) = match (&o.e2e, w.mode) {
        (Some(h), Mode::E2e) => ("e2e", h.clone()),
        _ => ("produce", o.produce.clone()),
    };
    let head = LatencySummary::of(&hist);
    // e2e is measured against the round trip only: a consumer never waits for fdatasync
    // on acks=1, and on acks=all the produce row carries the disk ratio.
    let acks_for_floor = if headline == "e2e" && w.acks != AckLevel::All {
        AckLevel::Leader
    } else {
        w.acks
    };
    let r = TargetResult {
        bootstrap: o.bootstrap,
        rounds,
        measured_secs: o.measured_secs,
        sent: o.sent,
        acked: o.acked,
        errors: o.errors,
        timed_out: o.timed_out,
        records_per_sec: o.acked as f64 / secs,
        mb_per_sec: o.acked_bytes as f64 / secs / 1e6,
        headline: headline.into(),
        produce_latency_us: produce,
        e2e_latency_us: e2e,
        consumed: o.e2e.as_ref().map(|_| o.consumed),
        vs_floor: FloorRatios::of(&head, floor, acks_for_floor),
        distribution: distribution(&hist),
        first_errors: o.first_errors,
    };
    (r, hist)
}

fn write_file(path: &Path, bytes: &[u8], what: &'static str) -> Result<(), BenchError> {
    std::fs::write(path, bytes).map_err(|source| BenchError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn write_outputs(
    opts: &Options,
    report: &Report,
    hists: &[Histogram<u64>],
) -> Result<(), BenchError> {
    if let Some(p) = &opts.json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|e| BenchError::Run(format!("cannot serialise the report: {e}")))?;
        write_file(p, text.as_bytes(), "cannot write JSON report")?;
    }
    if let Some(p) = &opts.histogram_out {
        for (i, h) in hists.iter().enumerate() {
            let mut out = Vec::new();
            let r = &report.results[i];
            out.extend_from_slice(
                format!(
                    "# sluice-bench {} latency, {} against {}\n",
                    r.headline, report.workload.mode, r.bootstrap
                )
                .as_bytes(),
            );
            let _ = stats::write_distribution(h, &mut out);
            let path = if i == 0 {
                p.clone()
            } else {
                let mut s = p.clone().into_os_string();
                s.push(".compare");
                PathBuf::from(s)
            };
            write_file(&path, &out, "cannot write histogram")?;
        }
    }
    if let Some(p) = &opts.plot {
        let w = &report.workload;
        let title = format!(
            "sluice-bench {} acks={} {}B x {} partitions{}",
            w.mode,
            w.acks,
            w.record_size,
            w.partitions,
            if w.mode == Mode::Throughput {
                " (max rate)".to_string()
            } else {
                format!(" at {}/s", w.rate)
            }
        );
        let series: Vec<_> = report
            .results
            .iter()
            .map(|r| {
                (
                    format!("{} ({})", r.bootstrap, r.headline),
                    r.distribution.clone(),
                )
            })
            .collect();
        let floor = report.results.first().map(|r| r.vs_floor.floor_us);
        write_file(
            p,
            plot::svg(&title, &series, floor).as_bytes(),
            "cannot write plot",
        )?;
    }
    Ok(())
}
