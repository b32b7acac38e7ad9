//! Waiting without the GIL: spin briefly, then park, and wake every 100 ms to let Python
//! run its signal handlers so Ctrl-C is noticed while a caller waits.
//!
//! This is the one blocking wait of the engine. What a thread waits for (a call's completion
//! slot, a loop thread's change of state, a prefetch buffer's next item) implements
//! [`Waitable`]; [`wait`] does the rest. Each of them once had its own copy of this loop, and
//! the copies drifted (one spun on every slice, one never checked its spin budget).
//!
//! Why spin at all: a coroutine that returns at once finishes on the loop thread a few
//! microseconds after it is submitted, which is less than it costs to put a thread to sleep
//! on a futex and wake it again. So the first waiter spins for a short while before it parks.
//! Only a bounded number of threads spin at once (one fewer than the machine has cores), so a
//! crowd of waiting threads never starves the loop thread they are waiting for.
//!
//! Rejected: parking only (measurably slower per call), and spinning with the GIL held (the
//! loop thread needs the GIL to finish the very work being waited for). Also rejected: a
//! caller on another CPU that went on spinning (up to 1 ms) for as long as its loop thread
//! was awake, to spare both wake-ups of a longer call (a request to a server on the same
//! machine). On a 2-core virtual machine, the loop thread then took twice the CPU time per
//! call, and an aiohttp GET took twice as long: a long spin slows the thread it waits for,
//! even from another CPU. It did help 16 threads making short calls (15-25% more calls/s),
//! but spinning on only while the loop thread kept taking new jobs, to spare the long calls,
//! lost that gain too (within the noise either way, in interleaved rounds).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::gil_hint;

/// How long a waiter spins before it parks.
const SPIN: Duration = Duration::from_micros(60);

/// How often a parked waiter comes back to check for signals (Ctrl-C).
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Threads spinning right now.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

/// Something a thread can wait for with the GIL released.
pub(crate) trait Waitable: Sync {
    /// Whether the wait is over. Cheap (an atomic load, or a short lock): it is spun on.
    fn is_ready(&self) -> bool;

    /// Parks the calling thread until the wait is over or `until` passes; returns whether
    /// it is over.
    fn park_until(&self, until: Instant) -> bool;
}

/// How many threads may spin at once: the cores left once the loop thread has one.
fn max_spinners() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .saturating_sub(1)
    })
}

/// Spins until `ready()` holds or `end` passes; returns whether it holds.
///
/// Each round yields the CPU (`sched_yield`): when the thread being waited for shares this
/// CPU (a loaded machine, or pinned threads), it runs at once instead of waiting for this
/// spinner's time slice to end; on an idle machine the yield returns at once.
pub(crate) fn spin_until(end: Instant, ready: impl Fn() -> bool) -> bool {
    loop {
        for _ in 0..8 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= end {
            return ready();
        }
        std::thread::yield_now();
    }
}

/// Whether a waiter spins before it first parks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Spin {
    /// Park at once.
    #[default]
    No,
    /// Spin if a spinner place is free.
    Budgeted,
    /// Spin whatever the budget: the thread it waits for runs on another CPU, so the spin
    /// takes no CPU from it.
    Free,
}

/// Spins until `target` is ready or the spin budget (capped at `until`) runs out; returns
/// whether it is ready. A [`Spin::Budgeted`] spin spins only if a spinner place is free.
fn spin(target: &dyn Waitable, until: Instant, how: Spin) -> bool {
    if target.is_ready() {
        return true;
    }
    let taken = SPINNERS.fetch_add(1, Ordering::AcqRel);
    let result = (how == Spin::Free || taken < max_spinners())
        && spin_until(until.min(Instant::now() + SPIN), || target.is_ready());
    SPINNERS.fetch_sub(1, Ordering::AcqRel);
    result
}

/// How long a waiter lets the loop thread release the GIL before taking it anyway.
const HOLD_OFF: Duration = Duration::from_micros(30);

fn hold_off(gil_busy: Option<&(dyn Fn() -> bool + Sync)>) {
    let Some(gil_busy) = gil_busy else {
        return;
    };
    spin_until(Instant::now() + HOLD_OFF, || !gil_busy());
}

/// How a wait begins.
#[derive(Clone, Copy, Default)]
pub(crate) struct Start<'a> {
    /// Runs once, right after the GIL is released: this is where the loop thread is woken,
    /// so it never has to wait for a GIL this thread still holds.
    pub(crate) kick: Option<&'a (dyn Fn() + Sync)>,
    /// Whether to spin before the first park, and within the spinner budget or not.
    pub(crate) spin: Spin,
    /// Whether the thread that makes the target ready still holds the GIL. Once the target
    /// is ready after a spin, the waiter spins briefly while it does, so that taking the GIL
    /// back finds it free instead of sleeping on the GIL's own condition variable.
    pub(crate) gil_busy: Option<&'a (dyn Fn() -> bool + Sync)>,
}

/// What ended a wait.
pub(crate) enum Wake {
    /// The target is ready.
    Done,
    /// `until` passed first.
    Expired,
}

/// Waits for `target` with the GIL released until it is ready or `until` passes, coming back
/// every [`SIGNAL_CHECK`] to run Python's signal handlers.
///
/// An error is what a signal handler raised (`KeyboardInterrupt` for Ctrl-C).
pub(crate) fn wait(
    py: Python<'_>,
    target: &dyn Waitable,
    until: Option<Instant>,
    start: Start<'_>,
) -> PyResult<Wake> {
    let mut start = Some(start);
    loop {
        let slice_end = slice_end(until);
        let first = start.take();
        gil_hint::releasing();
        let done = py.detach(|| {
            if let Some(first) = first {
                if let Some(kick) = first.kick {
                    kick();
                }
                if first.spin != Spin::No && spin(target, slice_end, first.spin) {
                    hold_off(first.gil_busy);
                    return true;
                }
            }
            target.park_until(slice_end)
        });
        gil_hint::taken();
        if done {
            return Ok(Wake::Done);
        }
        py.check_signals()?;
        if until.is_some_and(|until| Instant::now() >= until) {
            return Ok(Wake::Expired);
        }
    }
}

/// The end of the next wait slice: `until`, or sooner so signals get checked.
pub(crate) fn slice_end(until: Option<Instant>) -> Instant {
    let next_check = Instant::now() + SIGNAL_CHECK;
    until.map_or(next_check, |until| until.min(next_check))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::thread;

    /// A flag another thread sets; parking polls it.
    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Waitable for Flag {
        fn is_ready(&self) -> bool {
            self.0.load(Ordering::Acquire)
        }

        fn park_until(&self, until: Instant) -> bool {
            spin_until(until, || self.is_ready())
        }
    }

    #[test]
    fn spin_sees_an_early_completion() {
        let flag = Flag::default();
        flag.0.store(true, Ordering::Release);
        assert!(spin(&flag, Instant::now(), Spin::Budgeted));
    }

    #[test]
    fn spin_gives_up_after_its_budget() {
        let flag = Flag::default();
        let start = Instant::now();
        assert!(!spin(
            &flag,
            start + Duration::from_secs(10),
            Spin::Budgeted
        ));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(
            SPINNERS.load(Ordering::Acquire),
            0,
            "the spinner place is given back"
        );
    }

    #[test]
    fn spin_catches_a_completion_from_another_thread() {
        let flag = Arc::new(Flag::default());
        let writer = {
            let flag = Arc::clone(&flag);
            thread::spawn(move || flag.0.store(true, Ordering::Release))
        };
        let until = Instant::now() + Duration::from_secs(10);
        let seen = spin(&*flag, until, Spin::Budgeted) || flag.park_until(until);
        writer.join().unwrap();
        assert!(seen);
    }
}
