//! The loop thread's spin: while its loop has been busy, the loop thread watches for new work
//! for a short while with the GIL released before it goes to sleep, so that callers find it
//! awake and need not wake it.
//!
//! Waking a thread that sleeps in `epoll_wait` costs tens of microseconds on a virtual
//! machine, more than everything else in a `run()` call together; that is what the spin saves.
//! But the loop thread is the loop: while it spins, nothing else on that loop happens. So the
//! spin watches *all* the work the loop could have, not only new submissions: jobs in the
//! inbox, and the loop's own I/O, through the descriptor of the loop's poller (an epoll
//! descriptor is readable while any descriptor it watches has events). It never starts
//! while the loop has ready callbacks (the selector is asked to block only when it has none;
//! see `pulse` for loops whose ready queue cannot be seen).
//!
//! Rejected: a spin that watched the inbox only. It held the loop for the whole spin while its
//! own sockets had data (a reply to a task's request sat unread for 50 µs at every hop), and,
//! on loops driven by pulses, while its own tasks had steps ready: a coroutine that awaited
//! once cost ten times one that did not.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::deferred_wake;
use crate::gil_hint;
use crate::inbox::Inbox;
use crate::waiter;

/// How long the loop spins for new work before it blocks.
const SPIN: Duration = Duration::from_micros(50);

/// `SPIN` as set by `_set_spin`, in nanoseconds; 0 while it is not.
static SPIN_SET: AtomicU64 = AtomicU64::new(0);

/// How long the loop spins for new work before it blocks (pulses: how long it goes on
/// pulsing after it last took work).
pub(crate) fn spin() -> Duration {
    match SPIN_SET.load(Ordering::Relaxed) {
        0 => SPIN,
        nanos => Duration::from_nanos(nanos),
    }
}

/// Sets how long a busy loop thread spins before it sleeps (`None`: the default, 50 µs).
///
/// For tests: with a spin of many seconds, a spin that held the loop while the loop had work
/// of its own would hold it for those seconds, which a test sees without timing anything.
#[pyfunction]
#[pyo3(signature = (seconds))]
pub(crate) fn _set_spin(seconds: Option<f64>) {
    let nanos = seconds.map_or(0, |s| {
        Duration::from_secs_f64(s.max(1e-9)).as_nanos() as u64
    });
    SPIN_SET.store(nanos, Ordering::Relaxed);
}

/// How recently the loop must have taken work for it to spin at all: a loop that has been
/// quiet longer goes straight to sleep, so an idle program costs nothing.
pub(crate) const HOT_FOR_NANOS: u64 = 2_000_000;

/// How long the loop thread, having found jobs, lets a caller that holds the GIL let it go
/// before it takes it anyway.
const GIL_HOLD_OFF: Duration = Duration::from_micros(30);

/// The spin polls the loop's I/O once every this many looks at the inbox (one `poll` system
/// call against a few atomic loads).
const IO_EVERY: u32 = 8;

/// What ended a spin.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Found {
    /// Jobs are queued in the inbox.
    Jobs,
    /// The loop's own I/O has events.
    Io,
    /// Neither came before the spin's end.
    Nothing,
}

/// The descriptor of a loop's poller, from `obj.method()` (a selector's `fileno`, uvloop's
/// `_get_backend_id`), where that is an epoll descriptor (Linux): readable while any
/// descriptor it watches has events. `None` elsewhere (a kqueue descriptor is not
/// dependably pollable everywhere), or where the call fails.
pub(crate) fn poller_fd(obj: &Bound<'_, PyAny>, method: &str) -> Option<i32> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    obj.call_method0(method).and_then(|fd| fd.extract()).ok()
}

/// Whether the poller descriptor `fd` (from [`poller_fd`]) has events.
#[cfg(not(target_os = "linux"))]
pub(crate) fn io_ready(_fd: i32) -> bool {
    false
}

/// Whether the poller descriptor `fd` (from [`poller_fd`]) has events: one non-blocking
/// `poll`.
#[cfg(target_os = "linux")]
pub(crate) fn io_ready(fd: i32) -> bool {
    let mut probe = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `probe` is one valid, initialised `pollfd` that outlives the call, and the count
    // passed is 1; a timeout of 0 makes the call return at once. A closed or foreign
    // descriptor only sets POLLNVAL/POLLERR, read as "has events" so the loop looks at once.
    let n = unsafe { libc::poll(&raw mut probe, 1, 0) };
    n > 0 && probe.revents != 0
}

/// Spins with the GIL released until jobs are queued, `io` (the loop's poller descriptor, if
/// known) has events, or `end` passes. Meanwhile the inbox says the loop thread does not hold
/// the GIL, so a caller whose result is in takes it back at once instead of holding off.
pub(crate) fn spin_for_work<J: Send>(
    py: Python<'_>,
    inbox: &Inbox<J>,
    io: Option<i32>,
    end: Instant,
) -> Found {
    let found = py.detach(|| {
        inbox.set_detached(true);
        deferred_wake::flush();
        let looks = Cell::new(0_u32);
        // True only for jobs (which only this thread takes away) or I/O, so once no jobs are
        // queued at the end, `true` means I/O.
        let any = waiter::spin_until(end, || {
            if inbox.has_jobs() {
                return true;
            }
            looks.set(looks.get().wrapping_add(1));
            io.is_some_and(|fd| looks.get() % IO_EVERY == 0 && io_ready(fd))
        });
        let found = if inbox.has_jobs() {
            // The caller that queued them is about to let the GIL go (or another holds it):
            // taking it now would mean sleeping on it until then.
            waiter::spin_until(Instant::now() + GIL_HOLD_OFF, || !gil_hint::caller_holds());
            Found::Jobs
        } else if any {
            Found::Io
        } else {
            Found::Nothing
        };
        inbox.set_detached(found != Found::Nothing);
        found
    });
    inbox.set_detached(false);
    found
}

/// Marks the loop idle (callers wake it from now on) unless jobs arrived first; returns
/// whether it is idle. The check comes after the mark, so a job pushed meanwhile is either
/// seen here or wakes the loop.
pub(crate) fn idle_unless_jobs<J>(inbox: &Inbox<J>) -> bool {
    inbox.set_idle(true);
    if inbox.has_jobs() {
        inbox.set_idle(false);
        return false;
    }
    true
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn io_ready_sees_a_readable_descriptor() {
        let (mut a, b) = UnixStream::pair().unwrap();
        assert!(!io_ready(b.as_raw_fd()), "nothing written yet");
        a.write_all(b"x").unwrap();
        assert!(io_ready(b.as_raw_fd()));
    }
}
