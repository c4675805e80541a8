//! The results: the JSON report (schema in docs/benchmarks.md), the summary table, and the
//! comparison of two brokers.

use serde::{Deserialize, Serialize};

use crate::floor::{Floor, Machine};
use crate::stats::{ratio, LatencySummary, PercentilePoint};
use crate::workload::{AckLevel, Mode, Workload};

/// Version tag of the JSON layout; bumped on any incompatible change.
pub const SCHEMA: &str = "sluice-bench/1";

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// sluice-bench version.
    pub version: String,
    /// Wall-clock start (seconds since the Unix epoch).
    pub started_at_unix_secs: u64,
    /// The command line, for reproducing the run.
    pub command: Vec<String>,
    /// The workload as run.
    pub workload: Workload,
    /// The machine.
    pub machine: Machine,
    /// The physical floor measured at start.
    pub floor: Floor,
    /// One result per bootstrap address (the first is the primary, the second `--compare`).
    pub results: Vec<TargetResult>,
    /// `results[1]` relative to `results[0]` when `--compare` was given.
    pub comparison: Option<Comparison>,
}

/// What was measured against one broker (merged over the rounds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetResult {
    /// `host:port`.
    pub bootstrap: String,
    /// Runs merged into this result (`--rounds`).
    pub rounds: u32,
    /// Measured seconds per round (warm-up excluded).
    pub measured_secs: f64,
    /// Records of the measured window written to the broker.
    pub sent: u64,
    /// ... acknowledged without error.
    pub acked: u64,
    /// ... failed (error code or failed send).
    pub errors: u64,
    /// ... never answered.
    pub timed_out: u64,
    /// Acknowledged records per second.
    pub records_per_sec: f64,
    /// Acknowledged value bytes per second, in MB/s (10^6).
    pub mb_per_sec: f64,
    /// Which latency is the headline: `produce` or `e2e`.
    pub headline: String,
    /// Producer latency: intended send → ack (acks=0: → written).
    pub produce_latency_us: LatencySummary,
    /// End-to-end latency: intended send → consumer received (e2e only).
    pub e2e_latency_us: Option<LatencySummary>,
    /// Records the e2e consumers received (e2e only).
    pub consumed: Option<u64>,
    /// The headline percentiles divided by the floor.
    pub vs_floor: FloorRatios,
    /// Full percentile distribution of the headline latency.
    pub distribution: Vec<PercentilePoint>,
    /// The first few errors seen.
    pub first_errors: Vec<String>,
}

/// Headline latency as multiples of the floor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FloorRatios {
    /// The floor used (µs).
    pub floor_us: f64,
    /// What it is: `fdatasync_p99+loopback_rtt_p99` (acks=all with --data-dir) or
    /// `loopback_rtt_p99`.
    pub floor: String,
    /// p50 / floor.
    pub p50: Option<f64>,
    /// p99 / floor.
    pub p99: Option<f64>,
    /// p99.9 / floor.
    pub p999: Option<f64>,
    /// p99.99 / floor.
    pub p9999: Option<f64>,
    /// max / floor.
    pub max: Option<f64>,
}

impl FloorRatios {
    /// Ratios of `s` to the floor appropriate for `acks`.
    pub fn of(s: &LatencySummary, floor: &Floor, acks: AckLevel) -> FloorRatios {
        let (f, name) = floor.p99_floor_for(acks == AckLevel::All);
        FloorRatios {
            floor_us: f,
            floor: name.into(),
            p50: ratio(s.p50_us as f64, f),
            p99: ratio(s.p99_us as f64, f),
            p999: ratio(s.p999_us as f64, f),
            p9999: ratio(s.p9999_us as f64, f),
            max: ratio(s.max_us as f64, f),
        }
    }
}

/// `other / baseline` for throughput and each percentile (below 1 = other is faster).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// The primary `--bootstrap`.
    pub baseline: String,
    /// The `--compare` address.
    pub other: String,
    /// records/s ratio (above 1 = other moved more).
    pub throughput: Option<f64>,
    /// p50 ratio.
    pub p50: Option<f64>,
    /// p90 ratio.
    pub p90: Option<f64>,
    /// p99 ratio.
    pub p99: Option<f64>,
    /// p99.9 ratio.
    pub p999: Option<f64>,
    /// p99.99 ratio.
    pub p9999: Option<f64>,
    /// max ratio.
    pub max: Option<f64>,
}

impl TargetResult {
    /// The headline latency summary.
    pub fn headline_latency(&self) -> &LatencySummary {
        match (&self.e2e_latency_us, self.headline.as_str()) {
            (Some(e), "e2e") => e,
            _ => &self.produce_latency_us,
        }
    }
}

impl Comparison {
    /// Compare `other` with `base`.
    pub fn of(base: &TargetResult, other: &TargetResult) -> Comparison {
        let (a, b) = (base.headline_latency(), other.headline_latency());
        let r = |x: u64, y: u64| ratio(y as f64, x as f64);
        Comparison {
            baseline: base.bootstrap.clone(),
            other: other.bootstrap.clone(),
            throughput: ratio(other.records_per_sec, base.records_per_sec),
            p50: r(a.p50_us, b.p50_us),
            p90: r(a.p90_us, b.p90_us),
            p99: r(a.p99_us, b.p99_us),
            p999: r(a.p999_us, b.p999_us),
            p9999: r(a.p9999_us, b.p9999_us),
            max: r(a.max_us, b.max_us),
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn x(r: Option<f64>) -> String {
    r.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "-".into())
}

impl Report {
    /// The human summary: machine, floor, one table row per target, ratios.
    pub fn summary(&self) -> String {
        let w = &self.workload;
        let mut s = String::new();
        let m = &self.machine;
        s.push_str(&format!(
            "machine: {} ({} cores), kernel {}{}\n",
            m.cpu_model,
            m.cores,
            m.kernel,
            match (&m.data_dir, &m.filesystem) {
                (Some(d), Some(f)) => format!(", data dir {} on {f}", d.display()),
                (Some(d), None) => format!(", data dir {}", d.display()),
                _ => String::new(),
            }
        ));
        let f = &self.floor;
        s.push_str(&format!(
            "floor: loopback rtt p50 {:.1}us p99 {:.1}us",
            f.loopback_rtt.p50_us, f.loopback_rtt.p99_us
        ));
        if let Some(fs) = &f.fdatasync {
            s.push_str(&format!(
                "; fdatasync p50 {:.1}us p99 {:.1}us ({}); acks=all p99 floor {:.1}us",
                fs.p50_us,
                fs.p99_us,
                fs.source,
                f.acks_all_p99_floor_us.unwrap_or(0.0)
            ));
        }
        if let Some(bw) = f.seq_write_bytes_per_sec {
            s.push_str(&format!("; O_DIRECT seq write {:.1} MB/s", bw as f64 / 1e6));
        }
        s.push('\n');
        s.push_str(&format!(
            "workload: {} acks={} rate={} duration={}s warmup={}s record={}B partitions={} producers={} consumers={} keys={:?}/{} compression={:?} batch={}B linger={}ms client={:?}\n\n",
            w.mode,
            w.acks,
            if w.mode == Mode::Throughput { "max".to_string() } else { format!("{}/s", w.rate) },
            w.duration_secs,
            w.warmup_secs,
            w.record_size,
            w.partitions,
            w.producers,
            w.consumers,
            w.key_distribution,
            w.key_space,
            w.compression,
            w.batch_size,
            w.linger_ms,
            w.client,
        ));
        s.push_str(&format!(
            "{:<22} {:>9} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "target (latency ms)",
            "lat",
            "records/s",
            "MB/s",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "p99.99",
            "max",
            "p99/floor"
        ));
        for r in &self.results {
            let mut rows = vec![("produce", &r.produce_latency_us)];
            if let Some(e) = &r.e2e_latency_us {
                rows.push(("e2e", e));
            }
            for (name, l) in rows {
                let p99_floor = if name == r.headline {
                    x(r.vs_floor.p99)
                } else {
                    "-".into()
                };
                s.push_str(&format!(
                    "{:<22} {:>9} {:>10.0} {:>8.2} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                    r.bootstrap,
                    name,
                    r.records_per_sec,
                    r.mb_per_sec,
                    ms(l.p50_us),
                    ms(l.p90_us),
                    ms(l.p99_us),
                    ms(l.p999_us),
                    ms(l.p9999_us),
                    ms(l.max_us),
                    p99_floor
                ));
            }
            s.push_str(&format!(
                "{:<22} sent {} acked {} errors {} timed out {}{}\n",
                "",
                r.sent,
                r.acked,
                r.errors,
                r.timed_out,
                r.consumed
                    .map(|c| format!(" consumed {c}"))
                    .unwrap_or_default()
            ));
            for e in &r.first_errors {
                s.push_str(&format!("{:<22} error: {e}\n", ""));
            }
        }
        if let Some(r) = self.results.first() {
            let v = &r.vs_floor;
            s.push_str(&format!(
                "\nvs floor ({} = {:.1}us): p50 {} p99 {} p99.9 {} p99.99 {} max {}\n",
                v.floor,
                v.floor_us,
                x(v.p50),
                x(v.p99),
                x(v.p999),
                x(v.p9999),
                x(v.max)
            ));
        }
        if let Some(c) = &self.comparison {
            s.push_str(&format!(
                "{} / {}: throughput {} p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}\n",
                c.other,
                c.baseline,
                x(c.throughput),
                x(c.p50),
                x(c.p90),
                x(c.p99),
                x(c.p999),
                x(c.p9999),
                x(c.max)
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::FloorStat;
    use crate::stats::{distribution, new_histogram, record_us};

    fn sample() -> Report {
        let mut h = new_histogram();
        for i in 1..=1000 {
            record_us(&mut h, i);
        }
        let lat = LatencySummary::of(&h);
        let floor = Floor {
            fdatasync: Some(FloorStat {
                source: "measured".into(),
                samples: 100,
                p50_us: 400.0,
                p99_us: 900.0,
                p999_us: 1000.0,
                max_us: 1200.0,
            }),
            loopback_rtt: FloorStat {
                source: "measured".into(),
                samples: 1000,
                p50_us: 30.0,
                p99_us: 100.0,
                p999_us: 150.0,
                max_us: 300.0,
            },
            seq_write_bytes_per_sec: Some(500_000_000),
            acks_all_p99_floor_us: Some(1000.0),
        };
        let result = TargetResult {
            bootstrap: "127.0.0.1:9092".into(),
            rounds: 1,
            measured_secs: 3.0,
            sent: 1000,
            acked: 1000,
            errors: 0,
            timed_out: 0,
            records_per_sec: 333.3,
            mb_per_sec: 0.34,
            headline: "produce".into(),
            produce_latency_us: lat,
            e2e_latency_us: None,
            consumed: None,
            vs_floor: FloorRatios::of(&lat, &floor, AckLevel::All),
            distribution: distribution(&h),
            first_errors: vec![],
        };
        let mut other = result.clone();
        other.bootstrap = "127.0.0.1:9093".into();
        other.records_per_sec = 666.6;
        Report {
            schema: SCHEMA.into(),
            version: "0.1.0".into(),
            started_at_unix_secs: 1,
            command: vec!["sluice-bench".into()],
            workload: Workload::default(),
            machine: Machine::default(),
            comparison: Some(Comparison::of(&result, &other)),
            results: vec![result, other],
            floor,
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        for key in [
            "version",
            "started_at_unix_secs",
            "command",
            "workload",
            "machine",
            "floor",
            "results",
            "comparison",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["fdatasync", "loopback_rtt", "acks_all_p99_floor_us"] {
            assert!(v["floor"].get(key).is_some(), "missing floor.{key}");
        }
        assert_eq!(v["workload"]["acks"], "all");
        assert_eq!(v["workload"]["mode"], "produce");
        let r = &v["results"][0];
        for key in [
            "bootstrap",
            "sent",
            "acked",
            "errors",
            "timed_out",
            "records_per_sec",
            "mb_per_sec",
            "produce_latency_us",
            "vs_floor",
            "distribution",
        ] {
            assert!(r.get(key).is_some(), "missing results[0].{key}");
        }
        for key in [
            "count", "min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us",
            "max_us",
        ] {
            assert!(r["produce_latency_us"].get(key).is_some(), "missing {key}");
        }
        assert_eq!(r["vs_floor"]["floor"], "fdatasync_p99+loopback_rtt_p99");
        let p99 = r["produce_latency_us"]["p99_us"].as_f64().unwrap();
        assert!((r["vs_floor"]["p99"].as_f64().unwrap() - p99 / 1000.0).abs() < 1e-9);
        assert!(r["distribution"][0].get("percentile").is_some());
        assert!((v["comparison"]["throughput"].as_f64().unwrap() - 2.0).abs() < 0.01);
        assert_eq!(v["comparison"]["p99"].as_f64().unwrap(), 1.0);
        // and it reads back
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.results.len(), 2);
    }

    #[test]
    fn summary_mentions_floor_and_ratios() {
        let s = sample().summary();
        assert!(s.contains("p99.99"));
        assert!(s.contains("fdatasync p50 400.0us"));
        assert!(s.contains("vs floor"));
        assert!(s.contains("127.0.0.1:9093 / 127.0.0.1:9092: throughput 2.00x"));
    }
}
