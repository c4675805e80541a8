//! A shard-local broadcast wake-up: waiters park until the next `notify_all`.
//!
//! Used where a task must sleep until some shard-local state changes (a partition's high
//! watermark for long-poll fetches, shutdown), so nothing polls on a timer.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it; a waiter that arrives after a notification waits for the
/// next one.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Wakes all current waiters.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    /// A future that completes at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
        }
    }
}

/// Completes once the `Notify` it came from has been notified.
pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn waiter_completes_only_after_notification() {
        let notify = Notify::default();
        let mut waiter = Box::pin(notify.notified());
        assert!(waiter.as_mut().now_or_never().is_none());
        notify.notify_all();
        assert!(waiter.as_mut().now_or_never().is_some());
        // A waiter created after the notification waits for the next one.
        let mut late = Box::pin(notify.notified());
        assert!(late.as_mut().now_or_never().is_none());
    }
}
