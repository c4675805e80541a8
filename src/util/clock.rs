//! The broker's one source of wall-clock time (Kafka timestamps are milliseconds since the
//! Unix epoch).
//!
//! Code at the edges asks a [`Clock`]; sans-IO state machines get `now_ms` as an argument
//! from whoever drives them. A manual clock lets tests and simulations move time by hand
//! instead of sleeping.

use std::cell::Cell;
use std::rc::Rc;

/// A wall clock: the system's, or a manual one that only moves when told to.
#[derive(Clone, Default)]
pub struct Clock {
    manual_ms: Option<Rc<Cell<i64>>>,
}

impl Clock {
    /// The system wall clock.
    pub fn system() -> Clock {
        Clock { manual_ms: None }
    }

    /// A clock that stands at `start_ms` until [`Clock::advance_ms`] moves it.
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual_ms: Some(Rc::new(Cell::new(start_ms))),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual_ms {
            Some(ms) => ms.get(),
            None => now_ms(),
        }
    }

    /// Moves a manual clock forward (every clone sees it); a system clock ignores this.
    pub fn advance_ms(&self, ms: i64) {
        if let Some(now) = &self.manual_ms {
            now.set(now.get().saturating_add(ms));
        }
    }
}

/// The system wall clock in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = Clock::manual(1_000);
        let seen_by_other = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance_ms(250);
        assert_eq!(seen_by_other.now_ms(), 1_250);
    }

    #[test]
    fn the_system_clock_is_past_2020() {
        assert!(Clock::system().now_ms() > 1_577_836_800_000);
    }
}
