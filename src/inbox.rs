//! The submission queue of a loop thread, with coalesced wake-ups.
//!
//! Callers push jobs from any thread; the loop thread takes them all at once in a reader
//! callback on its event loop. The loop is woken (`wakeup`: a byte on a socket pair on Unix,
//! `call_soon_threadsafe` elsewhere) only when no wake-up is already on its way (`armed`), so
//! a burst of submissions costs one wake-up, not one per call.
//!
//! No wake-up is lost: the consumer clears `armed` before it takes the queue, so a job pushed
//! after the take finds `armed` clear and writes a fresh byte.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::completion::lock;
use crate::waiter::Spin;
use crate::wakeup::Waker;

struct Queue<J> {
    jobs: Vec<J>,
    closed: bool,
}

/// A multi-producer queue drained in batches by one consumer, which it wakes through `waker`.
///
/// In *watched* mode (see `selector.rs`) the consumer tells the inbox when it is about to block
/// (`idle`); producers then write the wake-up byte only while it is idle, and a consumer that
/// is awake (spinning, or busy) finds new jobs through `queued` without any system call.
pub(crate) struct Inbox<J> {
    queue: Mutex<Queue<J>>,
    queued: AtomicUsize,
    armed: AtomicBool,
    watched: AtomicBool,
    idle: AtomicBool,
    /// The consumer has released the GIL (watched mode only).
    detached: AtomicBool,
    /// When jobs were last taken, in nanoseconds since [`epoch`].
    last_take: AtomicU64,
    /// The CPU the consumer last took jobs on ([`current_cpu`]); -1 where unknown.
    cpu: AtomicI32,
    /// Callers waiting for a call they queued here.
    waiting: AtomicUsize,
    waker: Waker,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) fn now_nanos() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The CPU the calling thread runs on, where the system tells (Linux); -1 elsewhere.
#[cfg(target_os = "linux")]
pub(crate) fn current_cpu() -> i32 {
    // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours; it returns -1
    // on failure, which is read as "unknown".
    unsafe { libc::sched_getcpu() }
}

/// The CPU the calling thread runs on, where the system tells (Linux); -1 elsewhere.
#[cfg(not(target_os = "linux"))]
pub(crate) fn current_cpu() -> i32 {
    -1
}

impl<J> Inbox<J> {
    pub(crate) fn new(waker: Waker) -> Self {
        Self {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                closed: false,
            }),
            queued: AtomicUsize::new(0),
            armed: AtomicBool::new(false),
            watched: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            last_take: AtomicU64::new(0),
            cpu: AtomicI32::new(-1),
            waiting: AtomicUsize::new(0),
            waker,
        }
    }

    /// The descriptor the consumer's event loop watches for readability, if it has one.
    pub(crate) fn read_fd(&self) -> Option<i32> {
        self.waker.read_fd()
    }

    /// Queues a job. `Ok(true)` means the caller must call [`Inbox::wake`] (it may first
    /// release the GIL); `Err` hands the job back because the inbox is closed.
    pub(crate) fn push(&self, job: J) -> Result<bool, J> {
        {
            let mut queue = lock(&self.queue);
            if queue.closed {
                return Err(job);
            }
            queue.jobs.push(job);
            self.queued.fetch_add(1, Ordering::SeqCst);
        }
        // SeqCst pairs with `set_idle`: either the consumer sees `queued` before it blocks, or
        // this producer sees it idle and wakes it.
        if self.watched.load(Ordering::Relaxed) && !self.idle.load(Ordering::SeqCst) {
            return Ok(false);
        }
        Ok(!self.armed.swap(true, Ordering::AcqRel))
    }

    /// Switches to watched mode: the consumer reports idleness through [`Inbox::set_idle`].
    pub(crate) fn watch(&self) {
        self.watched.store(true, Ordering::SeqCst);
    }

    /// Consumer: about to block (`true`) or awake again (`false`). After `set_idle(true)` it
    /// must check [`Inbox::has_jobs`] before blocking.
    pub(crate) fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::SeqCst);
    }

    /// Consumer (watched mode): it has released the GIL (`true`) or taken it back.
    pub(crate) fn set_detached(&self, detached: bool) {
        self.detached.store(detached, Ordering::Release);
    }

    /// Whether a waiter that is about to take the GIL should first let the consumer release
    /// it: true while a watched consumer holds it.
    ///
    /// An idle consumer does not: it blocks, or is about to, in its loop's own poller, which
    /// releases the GIL. A pulsed loop (`pulse`) never says it is detached there (it blocks
    /// where blockon cannot see), and reading it as holding the GIL made every caller of a
    /// call that outlasted the pulses hold off for the whole 30 µs while the loop slept.
    pub(crate) fn consumer_holds_gil(&self) -> bool {
        self.watched.load(Ordering::Relaxed)
            && !self.detached.load(Ordering::Acquire)
            && !self.idle.load(Ordering::SeqCst)
    }

    /// A caller starts waiting for a call it queued; the guard marks the end of its wait.
    pub(crate) fn waiting(&self) -> CallerWait<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        CallerWait(&self.waiting)
    }

    /// How a caller that starts waiting for a call it queued here spins before it parks.
    ///
    /// On another CPU than the one the consumer last took jobs on (Linux), outside the spinner
    /// budget: its spin takes no CPU from the consumer, and it spares a wake-up sent across
    /// CPUs, the dearest part of a call on many machines. On the consumer's CPU, not at all
    /// while other callers wait too: its spin can then only take that CPU from the consumer,
    /// and its `sched_yield` hands the CPU to the other callers as much as to the consumer. A
    /// lone caller does spin there: its yields hand the CPU straight to the consumer, and it
    /// sees its result without a futex wake-up. Where the consumer's CPU is not known, within
    /// the budget.
    pub(crate) fn spin_for_call(&self) -> Spin {
        let cpu = self.cpu.load(Ordering::Relaxed);
        if cpu < 0 {
            Spin::Budgeted
        } else if cpu != current_cpu() {
            Spin::Free
        } else if self.waiting.load(Ordering::Relaxed) < 2 {
            Spin::Budgeted
        } else {
            Spin::No
        }
    }

    /// Whether the consumer said it is idle.
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::SeqCst)
    }

    /// Whether jobs are waiting to be taken.
    pub(crate) fn has_jobs(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > 0
    }

    /// Whether jobs were taken within the last `nanos` nanoseconds.
    pub(crate) fn busy_within(&self, nanos: u64) -> bool {
        now_nanos().saturating_sub(self.last_take.load(Ordering::Relaxed)) < nanos
    }

    /// Wakes the consumer. Safe from any thread, with or without the GIL, but not under a lock
    /// that a thread holding the GIL may wait for: the portable wake-up calls Python.
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// Takes every queued job, in submission order. Consumer only.
    pub(crate) fn take(&self) -> Vec<J> {
        self.armed.store(false, Ordering::SeqCst);
        self.waker.clear();
        self.last_take.store(now_nanos(), Ordering::Relaxed);
        self.cpu.store(current_cpu(), Ordering::Relaxed);
        let mut queue = lock(&self.queue);
        self.queued.store(0, Ordering::SeqCst);
        std::mem::take(&mut queue.jobs)
    }

    /// Whether the inbox refuses jobs (its loop thread is shutting down).
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.queue).closed
    }

    /// Refuses further jobs and returns those still queued.
    pub(crate) fn close(&self) -> Vec<J> {
        let jobs = {
            let mut queue = lock(&self.queue);
            queue.closed = true;
            self.queued.store(0, Ordering::SeqCst);
            std::mem::take(&mut queue.jobs)
        };
        self.waker.shut();
        jobs
    }
}

/// A caller's wait for a call it queued ([`Inbox::waiting`]); ends when dropped.
pub(crate) struct CallerWait<'a>(&'a AtomicUsize);

impl Drop for CallerWait<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// On the socket wake-up, which needs no Python; the other one is tested by the Python suite
/// under `BLOCKON_GENERIC_PATH=1`.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    fn new_inbox() -> Inbox<u32> {
        Inbox::new(Waker::new(None).unwrap())
    }

    /// Reads (and so consumes) the wake-up bytes waiting on the consumer's socket.
    fn pending_bytes(inbox: &Inbox<u32>) -> usize {
        let Waker::Socket(socket) = &inbox.waker else {
            unreachable!("made with a socket")
        };
        socket.pending()
    }

    #[test]
    fn one_wake_per_batch() {
        let inbox = new_inbox();
        assert_eq!(inbox.push(1), Ok(true));
        inbox.wake();
        assert_eq!(inbox.push(2), Ok(false), "a wake-up is already on its way");
        assert_eq!(inbox.push(3), Ok(false));
        assert_eq!(pending_bytes(&inbox), 1, "three jobs, one wake-up byte");
        assert_eq!(inbox.take(), vec![1, 2, 3]);
        assert_eq!(
            inbox.push(4),
            Ok(true),
            "the next batch needs a new wake-up"
        );
        inbox.wake();
        assert_eq!(inbox.take(), vec![4]);
        assert_eq!(pending_bytes(&inbox), 0, "taking clears the wake-up byte");
    }

    #[test]
    fn watched_inbox_wakes_only_an_idle_consumer() {
        let inbox = new_inbox();
        inbox.watch();
        assert_eq!(
            inbox.push(1),
            Ok(false),
            "an awake consumer needs no wake-up"
        );
        assert!(inbox.has_jobs());
        assert_eq!(inbox.take(), vec![1]);
        assert!(!inbox.has_jobs());
        assert!(inbox.busy_within(1_000_000_000));
        inbox.set_idle(true);
        assert_eq!(inbox.push(2), Ok(true), "an idle consumer is woken");
        assert_eq!(inbox.push(3), Ok(false), "once");
    }

    #[test]
    fn callers_spin_unless_crowding_the_consumers_cpu() {
        let inbox = new_inbox();
        let first = inbox.waiting();
        assert_ne!(
            inbox.spin_for_call(),
            Spin::No,
            "the consumer's CPU is not known yet"
        );
        inbox.cpu.store(current_cpu(), Ordering::Relaxed);
        assert_ne!(inbox.spin_for_call(), Spin::No, "a lone caller spins");
        let second = inbox.waiting();
        inbox.cpu.store(i32::MAX, Ordering::Relaxed);
        assert_eq!(
            inbox.spin_for_call(),
            Spin::Free,
            "the consumer is on another CPU"
        );
        let cpu = current_cpu();
        inbox.cpu.store(cpu, Ordering::Relaxed);
        let spin = inbox.spin_for_call();
        if cfg!(target_os = "linux") && cpu >= 0 && current_cpu() == cpu {
            assert_eq!(
                spin,
                Spin::No,
                "a second caller on the consumer's CPU parks at once"
            );
        }
        drop((first, second));
        assert_ne!(inbox.spin_for_call(), Spin::No, "the waits have ended");
    }

    #[test]
    fn closed_inbox_hands_jobs_back() {
        let inbox = new_inbox();
        assert_eq!(inbox.push(1), Ok(true));
        assert_eq!(inbox.close(), vec![1]);
        assert_eq!(inbox.push(2), Err(2));
        assert!(inbox.take().is_empty());
    }

    #[test]
    fn no_job_is_lost_under_contention() {
        let inbox = Arc::new(new_inbox());
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let inbox = Arc::clone(&inbox);
                thread::spawn(move || {
                    for i in 0..2_500 {
                        if inbox.push(p * 10_000 + i).unwrap() {
                            inbox.wake();
                        }
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 10_000 {
            seen.extend(inbox.take());
            thread::yield_now();
        }
        for p in producers {
            p.join().unwrap();
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10_000);
    }
}
