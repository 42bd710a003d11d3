//! The queues between the pipeline's stages: bounded crossbeam channels
//! whose receivers wait without spinning.
//!
//! A blocking `recv` on a crossbeam channel spins, then calls
//! `sched_yield` a few times, then parks (and does it again inside its
//! wait). At moderate load every stage waits once per batch of a few
//! intents, so that spin ran thousands of times a second on the cores
//! verification needs: at 5,000 intents/s it was half of the decode and
//! emit threads' CPU (`bench/README.md`, "Where a moderate load's CPU
//! goes"). Here a receiver that finds its queue empty parks at once on a
//! [`Bell`], and a sender rings it after each send: a load of a counter,
//! and the lock and a notification only when a receiver is parked or
//! about to park.
//!
//! Senders still block in crossbeam when a queue is full (backpressure),
//! and are woken by crossbeam when a receiver takes an item.

use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Sender, TryRecvError,
    TrySendError,
};

/// Where receivers of one or more queues park until a sender rings.
#[derive(Debug, Default)]
pub(crate) struct Bell {
    /// Receivers parked or about to park (raised under `lock`).
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    ready: Condvar,
}

impl Bell {
    pub(crate) fn new() -> Arc<Bell> {
        Arc::new(Bell::default())
    }

    /// Wakes parked receivers (one, or all when `all`), if there are any.
    ///
    /// Called after the queue changed. The fence pairs with the one in
    /// [`Bell::wait`]: either this load sees a receiver that is about to
    /// park (and then it is woken), or that receiver's second look at the
    /// queue sees the change (and it does not park).
    fn ring(&self, all: bool) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) == 0 {
            return;
        }
        // Taken so that the notification cannot fall between a receiver's
        // second look and its park (it holds the lock across both).
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if all {
            self.ready.notify_all();
        } else {
            self.ready.notify_one();
        }
    }

    /// Returns the first `Some` that `poll` gives, parking between looks
    /// until a sender rings; `None` once `deadline` has passed without
    /// one. `poll` is always called at least once, and once more after
    /// every wake-up, before the deadline is checked.
    pub(crate) fn wait<R>(
        &self,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        loop {
            if let Some(r) = poll() {
                return Some(r);
            }
            let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if let Some(r) = poll() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return Some(r);
            }
            let timed_out = match deadline {
                None => {
                    drop(
                        self.ready
                            .wait(guard)
                            .unwrap_or_else(PoisonError::into_inner),
                    );
                    false
                }
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        drop(guard);
                        true
                    } else {
                        drop(
                            self.ready
                                .wait_timeout(guard, left)
                                .unwrap_or_else(PoisonError::into_inner),
                        );
                        false
                    }
                }
            };
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            if timed_out {
                return poll();
            }
        }
    }
}

/// A bounded queue of `cap` items with its own bell.
pub(crate) fn bounded<T>(cap: usize) -> (Link<T>, Tap<T>) {
    bounded_with(cap, Bell::new())
}

/// A bounded queue of `cap` items whose receivers park on `bell` (shared
/// with other queues, for a stage that waits on several at once).
///
/// A send wakes one parked receiver of the bell: every receiver parked on
/// a shared bell must take from every queue on it (seal takes from its
/// queue and the shed queue), or a wake-up could go to one that cannot
/// take the item.
pub(crate) fn bounded_with<T>(cap: usize, bell: Arc<Bell>) -> (Link<T>, Tap<T>) {
    let (tx, rx) = crossbeam_channel::bounded(cap);
    (
        Link {
            tx: Some(tx),
            bell: bell.clone(),
        },
        Tap { rx, bell },
    )
}

/// The sending end: every successful send rings the bell, and dropping
/// the last one wakes every receiver to see the queue closed.
#[derive(Debug)]
pub(crate) struct Link<T> {
    /// `None` only while dropping.
    tx: Option<Sender<T>>,
    bell: Arc<Bell>,
}

impl<T> Clone for Link<T> {
    fn clone(&self) -> Self {
        Link {
            tx: self.tx.clone(),
            bell: self.bell.clone(),
        }
    }
}

impl<T> Drop for Link<T> {
    fn drop(&mut self) {
        // The sender goes first: a receiver woken here must find the queue
        // closed (if this was the last one), not merely empty.
        drop(self.tx.take());
        self.bell.ring(true);
    }
}

impl<T> Link<T> {
    fn rang<E>(&self, sent: Result<(), E>) -> Result<(), E> {
        if sent.is_ok() {
            self.bell.ring(false);
        }
        sent
    }

    /// Sends, waiting for room as long as it takes.
    pub(crate) fn send(&self, item: T) -> Result<(), SendError<T>> {
        match &self.tx {
            Some(tx) => self.rang(tx.send(item)),
            None => Err(SendError(item)),
        }
    }

    /// Sends if there is room now.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        match &self.tx {
            Some(tx) => self.rang(tx.try_send(item)),
            None => Err(TrySendError::Disconnected(item)),
        }
    }

    /// Sends, waiting for room at most `timeout`.
    pub(crate) fn send_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<T>> {
        match &self.tx {
            Some(tx) => self.rang(tx.send_timeout(item, timeout)),
            None => Err(SendTimeoutError::Disconnected(item)),
        }
    }

    /// Items queued.
    pub(crate) fn len(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }
}

/// The receiving end: waits park on the bell.
#[derive(Debug)]
pub(crate) struct Tap<T> {
    rx: Receiver<T>,
    bell: Arc<Bell>,
}

impl<T> Clone for Tap<T> {
    fn clone(&self) -> Self {
        Tap {
            rx: self.rx.clone(),
            bell: self.bell.clone(),
        }
    }
}

impl<T> Tap<T> {
    /// An item if one is queued now.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }

    /// The next item, waiting as long as it takes; an error once the
    /// queue is empty and every sender is gone.
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        self.bell
            .wait(None, || match self.rx.try_recv() {
                Ok(item) => Some(Ok(item)),
                Err(TryRecvError::Disconnected) => Some(Err(RecvError)),
                Err(TryRecvError::Empty) => None,
            })
            .unwrap_or(Err(RecvError))
    }

    /// The next item, waiting at most `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        self.bell
            .wait(deadline, || match self.rx.try_recv() {
                Ok(item) => Some(Ok(item)),
                Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
                Err(TryRecvError::Empty) => None,
            })
            .unwrap_or(Err(RecvTimeoutError::Timeout))
    }

    /// Items as they come, until the queue is empty and closed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    /// Items queued.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether the queue is full.
    pub(crate) fn is_full(&self) -> bool {
        self.rx.is_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Longest a test waits for a result. A wake-up that never comes fails
    /// the test here instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(20);

    /// Sends `n` items (`base + i`) from a thread of its own, napping now
    /// and then so that receivers park; the sender is dropped at the end.
    fn produce(tx: Link<u64>, base: u64, n: u64) -> std::thread::JoinHandle<bool> {
        std::thread::spawn(move || {
            (0..n).all(|i| {
                if i % 500 == 0 {
                    std::thread::sleep(Duration::from_micros(300));
                }
                tx.send(base + i).is_ok()
            })
        })
    }

    /// Sums what `rx` yields until it closes, from a thread of its own,
    /// and reports the sum on `done`.
    fn consume(rx: Tap<u64>, done: &mpsc::Sender<u64>) {
        let done = done.clone();
        std::thread::spawn(move || {
            let _sent = done.send(rx.iter().sum());
        });
    }

    #[test]
    fn a_parked_receiver_gets_every_item_and_then_the_close() {
        let (tx, rx) = bounded::<u64>(4);
        let (done, sums) = mpsc::channel();
        consume(rx, &done);
        let producers: Vec<_> = (0..3)
            .map(|p| produce(tx.clone(), p * 100_000, 20_000))
            .collect();
        drop(tx);
        let want: u64 = (0..3u64)
            .map(|p| (0..20_000u64).map(|i| p * 100_000 + i).sum::<u64>())
            .sum();
        assert_eq!(sums.recv_timeout(PATIENCE), Ok(want));
        for p in producers {
            assert_eq!(p.join().ok(), Some(true));
        }
    }

    #[test]
    fn several_parked_receivers_share_the_items_and_all_see_the_close() {
        // Three receivers parked on one queue: each send wakes one of them.
        let (tx, rx) = bounded::<u64>(2);
        let (done, sums) = mpsc::channel();
        for _ in 0..3 {
            consume(rx.clone(), &done);
        }
        drop(rx);
        let producer = produce(tx, 0, 30_000);
        let got: Vec<u64> = (0..3)
            .filter_map(|_| sums.recv_timeout(PATIENCE).ok())
            .collect();
        assert_eq!(got.len(), 3, "every receiver saw the close");
        assert_eq!(got.iter().sum::<u64>(), (0..30_000u64).sum::<u64>());
        assert_eq!(producer.join().ok(), Some(true));
    }

    #[test]
    fn receivers_parked_on_a_shared_bell_wake_for_their_own_queue_and_on_close() {
        let bell = Bell::new();
        let (a_tx, a_rx) = bounded_with::<u32>(1, bell.clone());
        let (b_tx, b_rx) = bounded_with::<u32>(1, bell);
        let (got_tx, got) = mpsc::channel();
        std::thread::spawn(move || {
            let _sent = got_tx.send(b_rx.recv().ok());
            let _sent = got_tx.send(b_rx.recv().ok());
        });
        std::thread::sleep(Duration::from_millis(20));
        // A send on the other queue wakes it (same bell); it parks again.
        assert!(a_tx.send(1).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        // Its own queue's send wakes it, with the queue still open.
        assert!(b_tx.send(2).is_ok());
        assert_eq!(got.recv_timeout(PATIENCE), Ok(Some(2)));
        // Parked again by now: only the close can wake it.
        std::thread::sleep(Duration::from_millis(20));
        drop(b_tx);
        assert_eq!(got.recv_timeout(PATIENCE), Ok(None));
        assert_eq!(a_rx.try_recv().ok(), Some(1));
    }

    #[test]
    fn a_timed_wait_ends_at_its_deadline_and_is_woken_by_a_send() {
        let (tx, rx) = bounded::<u32>(2);
        let started = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
        // A long timed wait, woken by a send (the sender stays open): only
        // the send's ring can end it in time.
        let (got_tx, got) = mpsc::channel();
        std::thread::spawn(move || {
            let first = rx.recv_timeout(Duration::from_secs(3600));
            let second = rx.recv_timeout(Duration::from_secs(3600));
            let _sent = got_tx.send((first, second));
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(tx.send(7).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        assert!(tx.send(8).is_ok());
        assert_eq!(got.recv_timeout(PATIENCE), Ok((Ok(7), Ok(8))));
        drop(tx);
    }
}
