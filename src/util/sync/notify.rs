//! A shard-local broadcast wake-up: waiters park until the next `notify_all`.
//!
//! Used where a task must sleep until some shard-local state changes (a partition's high
//! watermark for long-poll fetches, shutdown), so nothing polls on a timer.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it; a waiter that arrives after a notification waits for the
/// next one.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// Standing subscriptions: (the set, the key this source has in it).
    watchers: RefCell<Vec<(Weak<WakeSet>, usize)>>,
}

impl Notify {
    /// Wakes all current waiters and marks this source ready in every live `WakeSet`
    /// watching it.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
        self.watchers
            .borrow_mut()
            .retain(|(set, key)| match set.upgrade() {
                Some(set) => {
                    set.fire(*key);
                    true
                }
                None => false,
            });
    }

    /// Subscribes `set` to every later notification, as `key`, until the set is dropped. A
    /// waiter watching many sources registers once instead of once per wake-up.
    pub fn watch(&self, set: &Rc<WakeSet>, key: usize) {
        let mut watchers = self.watchers.borrow_mut();
        // Sets dropped since (finished fetches) go here, so a source that never fires
        // keeps no more entries than it has live watchers.
        watchers.retain(|(set, _)| set.strong_count() > 0);
        watchers.push((Rc::downgrade(set), key));
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

/// The sources (by key) that fired since the owner last looked, and one waker: a task
/// watching N sources is woken in O(1) per notification and learns which ones moved.
pub struct WakeSet {
    ready: RefCell<Vec<usize>>,
    queued: RefCell<Vec<bool>>,
    waker: RefCell<Option<Waker>>,
}

impl WakeSet {
    /// A set for keys `0..keys`.
    pub fn new(keys: usize) -> Rc<WakeSet> {
        Rc::new(WakeSet {
            ready: RefCell::new(Vec::new()),
            queued: RefCell::new(vec![false; keys]),
            waker: RefCell::new(None),
        })
    }

    fn fire(&self, key: usize) {
        let mut queued = self.queued.borrow_mut();
        if let Some(flag) = queued.get_mut(key) {
            if !*flag {
                *flag = true;
                self.ready.borrow_mut().push(key);
            }
        }
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Moves the keys that fired since the last call into `into`, oldest first.
    pub fn take_ready(&self, into: &mut Vec<usize>) {
        let mut queued = self.queued.borrow_mut();
        for key in self.ready.borrow_mut().drain(..) {
            if let Some(flag) = queued.get_mut(key) {
                *flag = false;
            }
            into.push(key);
        }
    }

    /// Completes once some key has fired and not been taken yet.
    pub fn wait(&self) -> WakeSetWait<'_> {
        WakeSetWait { set: self }
    }
}

/// The future of `WakeSet::wait`.
pub struct WakeSetWait<'a> {
    set: &'a WakeSet,
}

impl Future for WakeSetWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.set.ready.borrow().is_empty() {
            return Poll::Ready(());
        }
        *self.set.waker.borrow_mut() = Some(cx.waker().clone());
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

    #[test]
    fn wake_set_reports_each_fired_source_once_and_forgets_dropped_sets() {
        let (a, b) = (Notify::default(), Notify::default());
        let set = WakeSet::new(2);
        a.watch(&set, 0);
        b.watch(&set, 1);
        assert!(Box::pin(set.wait()).as_mut().now_or_never().is_none());
        b.notify_all();
        b.notify_all();
        a.notify_all();
        assert!(Box::pin(set.wait()).as_mut().now_or_never().is_some());
        let mut ready = Vec::new();
        set.take_ready(&mut ready);
        assert_eq!(ready, vec![1, 0]);
        assert!(Box::pin(set.wait()).as_mut().now_or_never().is_none());
        // A dropped set is pruned, not fired.
        drop(set);
        a.notify_all();
        assert!(a.watchers.borrow().is_empty());
        let again = WakeSet::new(1);
        b.watch(&again, 0);
        assert_eq!(b.watchers.borrow().len(), 1);
    }
}
