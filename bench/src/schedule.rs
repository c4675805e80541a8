//! The open-loop send schedule.
//!
//! Record `n` of a producer is *intended* to be sent at `start + offset + n / rate`, whatever
//! happened to record `n - 1`. Latency is measured from that intended time, so when the
//! broker (or the client, or the machine) stalls, every record that should have been sent
//! during the stall carries the stall in its latency. Measuring from the actual send time
//! instead would hide it ("coordinated omission": the load generator politely waits for the
//! system under test and the percentiles come out too good).

use std::time::{Duration, Instant};

/// A fixed-rate schedule of intended send times.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoopSchedule {
    start: Instant,
    interval_ns: f64,
    total: u64,
}

impl OpenLoopSchedule {
    /// `rate` sends per second from `start` for `span`. Producer `i` of `n` should pass
    /// `start + interval * i / n` so the producers interleave rather than send in bursts.
    pub fn new(start: Instant, rate: f64, span: Duration) -> OpenLoopSchedule {
        let rate = if rate > 0.0 && rate.is_finite() {
            rate
        } else {
            1.0
        };
        let interval_ns = 1e9 / rate;
        let total = (span.as_secs_f64() * rate).floor() as u64;
        OpenLoopSchedule {
            start,
            interval_ns,
            total,
        }
    }

    /// Gap between two intended sends.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns as u64)
    }

    /// How many sends the schedule has.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When send `n` is intended.
    pub fn intended(&self, n: u64) -> Instant {
        self.start + Duration::from_nanos((n as f64 * self.interval_ns) as u64)
    }

    /// How many sends are due at `now` (intended at or before it), capped at [`total`]. A
    /// producer that fell behind gets every missed send at once: none is skipped, and each
    /// keeps its own intended time.
    ///
    /// [`total`]: Self::total
    pub fn due_by(&self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        let elapsed = now.duration_since(self.start).as_nanos() as f64;
        let n = (elapsed / self.interval_ns).floor() as u64 + 1;
        n.min(self.total)
    }
}

/// Latency of one record: from its intended send time to `done` (zero if `done` is earlier,
/// which only an acks=0 write racing the clock can produce).
pub fn latency(intended: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, record, LatencySummary};

    #[test]
    fn intended_times_are_fixed_by_the_rate() {
        let t0 = Instant::now();
        let s = OpenLoopSchedule::new(t0, 1000.0, Duration::from_secs(2));
        assert_eq!(s.total(), 2000);
        assert_eq!(s.interval(), Duration::from_millis(1));
        assert_eq!(s.intended(0), t0);
        assert_eq!(s.intended(250), t0 + Duration::from_millis(250));
        assert_eq!(s.due_by(t0), 1);
        assert_eq!(s.due_by(t0 + Duration::from_micros(999)), 1);
        assert_eq!(s.due_by(t0 + Duration::from_millis(1)), 2);
        assert_eq!(s.due_by(t0 + Duration::from_secs(60)), 2000);
    }

    /// Replays a producer against a simulated broker that answers in 1 ms but stalls for
    /// 100 ms once. Every record intended during the stall must report the time it waited,
    /// so the stall is visible at the p90, not only in one max sample.
    #[test]
    fn a_stall_shows_up_as_latency_of_every_record_behind_it() {
        let t0 = Instant::now();
        let rate = 1000.0; // 1 ms apart
        let s = OpenLoopSchedule::new(t0, rate, Duration::from_secs(1));
        let service = Duration::from_millis(1);
        let stall_at = 100u64;
        let stall = Duration::from_millis(100);

        let mut open_loop = new_histogram();
        let mut coordinated = new_histogram(); // what measuring from the send would say
        let mut free_at = t0; // when the (single-threaded) sender can send again
        let mut sent = 0u64;
        let mut now = t0;
        while sent < s.total() {
            // The producer wakes at `now` and sends everything due, in order.
            let due = s.due_by(now);
            assert!(due >= sent, "the schedule never goes backwards");
            while sent < due {
                let actual_send = free_at.max(s.intended(sent));
                let extra = if sent == stall_at {
                    stall
                } else {
                    Duration::ZERO
                };
                free_at = actual_send + extra; // the stalled send blocks the sender
                let done = actual_send + extra + service;
                record(&mut open_loop, latency(s.intended(sent), done));
                record(&mut coordinated, latency(actual_send, done));
                sent += 1;
            }
            now = free_at.max(now + Duration::from_micros(100));
        }
        let open = LatencySummary::of(&open_loop);
        let co = LatencySummary::of(&coordinated);
        assert_eq!(open.count, 1000);
        // ~100 records were intended during the stall: 10% of the run waited 1..100 ms.
        assert!(open.p90_us >= 900, "open-loop p90 {}us", open.p90_us);
        assert!(open.p99_us >= 90_000, "open-loop p99 {}us", open.p99_us);
        assert!(open.max_us >= 100_000, "open-loop max {}us", open.max_us);
        // Measured from the actual send, the stall is one sample: p99 looks like 1 ms.
        assert!(co.p99_us <= 1_100, "coordinated p99 {}us", co.p99_us);
    }

    #[test]
    fn nothing_is_due_before_start_and_bad_rates_do_not_divide_by_zero() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let s = OpenLoopSchedule::new(t0, 10.0, Duration::from_secs(1));
        assert_eq!(s.due_by(Instant::now()), 0);
        let z = OpenLoopSchedule::new(t0, 0.0, Duration::from_secs(1));
        assert_eq!(z.total(), 1);
        assert_eq!(latency(t0, t0 - Duration::from_millis(1)), Duration::ZERO);
    }
}
