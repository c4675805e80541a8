//! Latency histograms and the percentile math the reports are made of.
//!
//! Samples are microseconds in an HDR histogram with 3 significant digits (0.1% precision)
//! from 1 µs to 60 s: fine enough for a loopback round trip, wide enough for a stall.

use std::io::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency tracked (60 s, in µs); slower samples are clamped, never dropped.
pub const MAX_US: u64 = 60_000_000;

/// A fresh latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Record one duration (µs, clamped to 1..=MAX_US).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(MAX_US);
    record_us(h, us);
}

/// Record one sample in µs (clamped to 1..=MAX_US).
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, MAX_US));
}

/// The percentiles every report shows, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Fastest.
    pub min_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// 99.99th percentile.
    pub p9999_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarise a histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            // `max()` is the highest equivalent value of the top bucket; clamp to what the
            // percentiles say so p99.99 <= max always holds.
            max_us: h.max().max(h.value_at_quantile(1.0)),
        }
    }

    /// The headline percentiles as (label, µs) pairs, in table order.
    pub fn rows(&self) -> [(&'static str, u64); 7] {
        [
            ("p50", self.p50_us),
            ("p90", self.p90_us),
            ("p99", self.p99_us),
            ("p99.9", self.p999_us),
            ("p99.99", self.p9999_us),
            ("max", self.max_us),
            ("min", self.min_us),
        ]
    }
}

/// One point of the full percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at it (µs).
    pub value_us: u64,
    /// Samples at or below it.
    pub total_count: u64,
}

/// The full distribution, HdrHistogram style: 5 points per halving of the distance to 100%.
pub fn distribution(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        out.push(PercentilePoint {
            percentile: v.quantile_iterated_to() * 100.0,
            value_us: v.value_iterated_to(),
            total_count: total,
        });
    }
    out
}

/// Write the distribution in HdrHistogram's percentile-distribution text format (the one its
/// plotter reads), values in microseconds.
pub fn write_distribution(h: &Histogram<u64>, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "# latency in microseconds (value scale 1.0 = 1 us)")?;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for p in distribution(h) {
        let q = p.percentile / 100.0;
        if q < 1.0 {
            writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10} {:>14.2}",
                p.value_us as f64,
                q,
                p.total_count,
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10}",
                p.value_us as f64, q, p.total_count
            )?;
        }
    }
    let (mean, sd, max, count) = if h.is_empty() {
        (0.0, 0.0, 0, 0)
    } else {
        (h.mean(), h.stdev(), h.max(), h.len())
    };
    writeln!(
        out,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {sd:>12.3}]\n#[Max     = {max:>12.3}, Total count    = {count:>12}]"
    )?;
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    )
}

/// `b / a`, or `None` when `a` is zero (a ratio to nothing says nothing).
pub fn ratio(b: f64, a: f64) -> Option<f64> {
    (a > 0.0 && a.is_finite() && b.is_finite()).then(|| b / a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(v: u64, expect: u64, rel: f64) -> bool {
        (v as f64 - expect as f64).abs() <= expect as f64 * rel
    }

    #[test]
    fn uniform_samples_give_textbook_percentiles() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record_us(&mut h, us);
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        assert!(within(s.p50_us, 5_000, 0.002), "{}", s.p50_us);
        assert!(within(s.p90_us, 9_000, 0.002), "{}", s.p90_us);
        assert!(within(s.p99_us, 9_900, 0.002), "{}", s.p99_us);
        assert!(within(s.p999_us, 9_990, 0.002), "{}", s.p999_us);
        assert!(within(s.max_us, 10_000, 0.002), "{}", s.max_us);
        assert!((s.mean_us - 5_000.5).abs() < 10.0);
        assert!(s.p50_us <= s.p90_us && s.p90_us <= s.p99_us && s.p99_us <= s.p999_us);
        assert!(s.p999_us <= s.p9999_us && s.p9999_us <= s.max_us);
    }

    #[test]
    fn one_slow_sample_in_a_thousand_is_the_p999_not_the_p99() {
        let mut h = new_histogram();
        for _ in 0..999 {
            record(&mut h, Duration::from_micros(100));
        }
        record(&mut h, Duration::from_millis(50));
        let s = LatencySummary::of(&h);
        assert!(within(s.p99_us, 100, 0.01));
        assert!(within(s.p999_us, 100, 0.01));
        assert!(within(s.p9999_us, 50_000, 0.001));
        assert!(within(s.max_us, 50_000, 0.001));
    }

    #[test]
    fn empty_and_clamped() {
        let h = new_histogram();
        assert_eq!(LatencySummary::of(&h), LatencySummary::default());
        assert!(distribution(&h).is_empty());
        let mut h = new_histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_US);
    }

    #[test]
    fn distribution_is_monotonic_and_ends_at_100() {
        let mut h = new_histogram();
        for i in 0..100_000u64 {
            record_us(&mut h, 50 + (i * 7919) % 5_000);
        }
        let d = distribution(&h);
        assert!(d.len() > 20);
        for w in d.windows(2) {
            assert!(w[0].percentile <= w[1].percentile);
            assert!(w[0].value_us <= w[1].value_us);
            assert!(w[0].total_count <= w[1].total_count);
        }
        let last = d.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        assert_eq!(last.total_count, 100_000);
        let mut text = Vec::new();
        write_distribution(&h, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("1/(1-Percentile)"));
        assert!(text.contains("Total count    =       100000"));
    }

    #[test]
    fn ratios_refuse_zero_baselines() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
    }
}
