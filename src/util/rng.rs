//! A small seeded generator: the simulations replay a failing seed exactly, and the Raft
//! groups draw their election timeouts from it so a simulated cluster is deterministic.

/// A small deterministic generator (xorshift64*): the only source of randomness here.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// Seeds for a simulation's random batch, each drawn from the last (the first from the
/// clock), until `SLUICE_FAULT_SECONDS` (default 2) have passed since the call: the fixed
/// seeds of a test stay the same, and CI spends a bounded time looking for new failures.
pub fn timed_seeds() -> impl Iterator<Item = u64> {
    let budget = std::env::var("SLUICE_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2u64);
    let started = std::time::Instant::now();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    std::iter::from_fn(move || {
        (started.elapsed().as_secs() < budget).then(|| {
            seed = Rng::new(seed).next_u64();
            seed
        })
    })
}
