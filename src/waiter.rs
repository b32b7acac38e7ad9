//! Waiting without the GIL: spin briefly, then park, and wake every 100 ms to let Python
//! run its signal handlers so Ctrl-C is noticed while a caller waits.
//!
//! Why spin at all: a coroutine that returns at once finishes on the loop thread a few
//! microseconds after it is submitted, which is less than it costs to put a thread to sleep
//! on a futex and wake it again. So the first waiter spins for a short while before it parks.
//! Only a bounded number of threads spin at once (one fewer than the machine has cores), so a
//! crowd of waiting threads never starves the loop thread they are waiting for.
//!
//! Rejected: parking only (measurably slower per call), and spinning with the GIL held (the
//! loop thread needs the GIL to finish the very work being waited for).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::completion::Slot;

/// How long a waiter spins before it parks.
const SPIN: Duration = Duration::from_micros(60);

/// How often a parked waiter comes back to check for signals (Ctrl-C).
pub const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Threads spinning right now.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

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
pub fn spin_until(end: Instant, ready: impl Fn() -> bool) -> bool {
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

/// Spins until `slot` is complete or the spin budget (capped at `until`) runs out; returns
/// whether it is complete. Spins only if a spinner place is free.
pub fn spin<T>(slot: &Slot<T>, until: Instant) -> bool {
    if slot.is_complete() {
        return true;
    }
    let taken = SPINNERS.fetch_add(1, Ordering::AcqRel);
    let result = taken < max_spinners()
        && spin_until(until.min(Instant::now() + SPIN), || slot.is_complete());
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

/// What ended a wait.
pub enum Wake {
    /// The slot is complete.
    Done,
    /// `until` passed first.
    Expired,
}

/// Waits for `slot` with the GIL released until it completes or `until` passes, coming back
/// every [`SIGNAL_CHECK`] to run Python's signal handlers. `first`, if given, runs once, right after the
/// GIL is released (this is where the loop thread is woken, so it never has to wait for a
/// GIL this thread still holds); `spin_first` lets the first slice spin before parking.
///
/// An error is what a signal handler raised (`KeyboardInterrupt` for Ctrl-C).
///
/// `gil_busy`, if given, says whether the thread that completes the slot still holds the
/// GIL; once the slot is complete, the waiter spins briefly while it does, so that taking the
/// GIL back finds it free instead of sleeping on the GIL's own condition variable.
pub fn wait<T: Send>(
    py: Python<'_>,
    slot: &Slot<T>,
    until: Option<Instant>,
    first: Option<&(dyn Fn() + Sync)>,
    spin_first: bool,
    gil_busy: Option<&(dyn Fn() -> bool + Sync)>,
) -> PyResult<Wake> {
    let mut first = first;
    loop {
        let slice_end = slice_end(until);
        let kick = first.take();
        let done = py.detach(|| {
            if let Some(kick) = kick {
                kick();
                if spin_first && spin(slot, slice_end) {
                    hold_off(gil_busy);
                    return true;
                }
            }
            slot.park_until(slice_end)
        });
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
pub fn slice_end(until: Option<Instant>) -> Instant {
    let next_check = Instant::now() + SIGNAL_CHECK;
    until.map_or(next_check, |until| until.min(next_check))
}

/// Converts a user-given number of seconds into a deadline; `None` for no deadline.
pub fn deadline_after(seconds: Option<f64>) -> Option<Instant> {
    let seconds = seconds?;
    let now = Instant::now();
    // Absurdly large timeouts (1e300 s) mean "no deadline" rather than an overflow panic.
    Duration::try_from_secs_f64(seconds.max(0.0))
        .ok()
        .and_then(|d| now.checked_add(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn spin_sees_an_early_completion() {
        let slot = Slot::default();
        slot.complete(());
        assert!(spin(&slot, Instant::now()));
    }

    #[test]
    fn spin_gives_up_after_its_budget() {
        let slot: Slot<()> = Slot::default();
        let start = Instant::now();
        assert!(!spin(&slot, start + Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(
            SPINNERS.load(Ordering::Acquire),
            0,
            "the spinner place is given back"
        );
    }

    #[test]
    fn spin_catches_a_completion_from_another_thread() {
        let slot = Arc::new(Slot::default());
        let writer = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.complete(1_u8))
        };
        let until = Instant::now() + Duration::from_secs(10);
        let seen = spin(&slot, until) || slot.park_until(until);
        writer.join().unwrap();
        assert!(seen);
    }

    #[test]
    fn deadlines() {
        assert!(deadline_after(None).is_none());
        assert!(deadline_after(Some(-1.0)).unwrap() <= Instant::now());
        assert!(deadline_after(Some(1e300)).is_none());
    }
}
