//! Latency histograms in microseconds, and the percentiles Sluice reports.

use hdrhistogram::Histogram;

/// Highest latency a histogram tracks: 60 s. Slower samples are clamped to it.
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// Significant digits: 2 keeps each histogram ~30 KiB with 1% precision.
const SIGNIFICANT_DIGITS: u8 = 2;

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            inner: Histogram::new_with_bounds(1, LATENCY_MAX_US, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Records one sample; out-of-range values are clamped, never dropped.
    pub fn record_us(&mut self, micros: u64) {
        let _ = self.inner.record(micros.clamp(1, LATENCY_MAX_US));
    }

    /// Records a duration.
    pub fn record(&mut self, elapsed: std::time::Duration) {
        self.record_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds another histogram's samples (merging shards).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let _ = self.inner.add(&other.inner);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// The value at quantile `q` (0.0..=1.0), in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.inner.is_empty() {
            return 0;
        }
        self.inner.value_at_quantile(q)
    }

    /// Largest sample, in microseconds.
    pub fn max_us(&self) -> u64 {
        self.inner.max()
    }

    /// Sum of samples in microseconds (approximate: bucket midpoints).
    pub fn sum_us(&self) -> u64 {
        self.inner
            .iter_recorded()
            .map(|v| v.value_iterated_to() * v.count_at_value())
            .sum()
    }

    /// Samples at or below `micros` (a cumulative Prometheus bucket).
    pub fn count_at_or_below_us(&self, micros: u64) -> u64 {
        self.inner.count_between(0, micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_samples_and_percentiles_follow() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        for _ in 0..99 {
            a.record_us(100);
        }
        b.record_us(10_000);
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert!(a.quantile_us(0.5) >= 99 && a.quantile_us(0.5) <= 101);
        assert!(a.quantile_us(1.0) >= 9_900);
        assert_eq!(a.count_at_or_below_us(1_000), 99);
        assert!(a.max_us() >= 9_900);
    }

    #[test]
    fn out_of_range_samples_are_clamped_not_lost() {
        let mut h = LatencyHistogram::new();
        h.record_us(0);
        h.record_us(u64::MAX);
        assert_eq!(h.count(), 2);
    }
}
