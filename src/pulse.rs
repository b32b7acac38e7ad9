//! Pulses: how a loop thread stays awake for new work on loops whose selector blockon cannot
//! wrap (uvloop, and loops blockon does not know).
//!
//! Such a loop is woken by the inbox's wake-up byte through a reader callback ([`Pulser::wake`]),
//! which drains the inbox and starts pulsing: one pulse is one ready callback
//! ([`Pulser::pulse`]) that drains what arrived, spins for one short slice with the GIL released
//! (`loop_spin`, watching the inbox and, where the loop shows it, its poller's descriptor),
//! and queues the next pulse with `call_soon`. Between two pulses the loop runs one whole
//! iteration: its other ready callbacks (the steps of its tasks among them), its I/O (polled
//! without blocking, because a pulse is always ready) and its timers. When no job has come
//! and no call has settled for as long as a selector would spin (`loop_spin::spin`), the
//! loop is marked idle and pulses stop: callers wake it with the byte again, and an idle
//! program costs nothing. A call that settles on an idle loop starts the pulses again
//! ([`settled`]): its caller is woken at the next pulse, with the GIL let go, and its next
//! call, which usually follows at once, finds the loop awake.
//!
//! Why slices: a ready callback cannot see the loop's ready queue, so whatever a pulse does, the
//! steps queued behind it wait for it. The first design spun for 50 µs in one pulse; a task
//! that awaited once (`asyncio.sleep(0)`) had its next step queued behind that pulse, so
//! every such call cost the whole spin and often a wake-up on top: ten times a call that did
//! not await. A slice bounds that wait to [`SLICE`], and the loop's I/O is polled between
//! slices anyway. And a pulse spins only after turns that ran nothing else ([`Pulser`]'s
//! `spin_now`), so that the steps a busy turn queued do not wait at all. uvloop shows its
//! poller (`_get_backend_id()`, the libuv epoll descriptor), so there the slice also ends as
//! soon as a socket has events.
//!
//! Rejected: a pulse that does not spin at all (the loop iterating back to back): the loop
//! thread then holds the GIL almost all the time, and callers wait on CPython's GIL hand-off
//! instead of finding it free. And a pulse that trusted one short turn (see `spin_now`). And
//! a pulse that spun at once after a call settled, to hand the CPU sooner to a caller waiting
//! on the loop's CPU: from one thread on one CPU, a no-op call took 20% less time, but one
//! that awaited `asyncio.sleep(0)` once took 18% more and three times 60% more (6.6 thread
//! switches per call against 1.5), in interleaved rounds in one process. And a pulse that
//! never spun for quiet turns while a call it took was still running (spinning only every
//! [`FORCE_SPIN_AFTER`] turns): three `sleep(0)` on one CPU took 8-20% less time, but 6-12%
//! more across two CPUs, and an aiohttp GET on one CPU 2% more.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::intern;
use pyo3::prelude::*;

use crate::deferred_wake;
use crate::gil_hint;
use crate::inbox::now_nanos;
use crate::lifecycle::Core;
use crate::loop_spin;

/// The longest one pulse spins: the longest a ready step of the loop's own waits behind it.
const SLICE: Duration = Duration::from_micros(5);

/// A pulse spins at least once every this many turns (see `spin_now`).
const FORCE_SPIN_AFTER: u32 = 8;

thread_local! {
    /// This loop thread's pulser, once a caller has woken it: what a settled call rekindles.
    static PULSER: RefCell<Option<Py<Pulser>>> = const { RefCell::new(None) };
}

/// The pulses of one loop thread's loop.
#[pyclass(frozen, module = "blockon._blockon")]
pub(crate) struct Pulser {
    core: Arc<Core>,
    /// The loop thread's `_drain`.
    drain: Py<PyAny>,
    /// The loop's poller descriptor, where the loop shows it (uvloop).
    io: Option<i32>,
    /// When the last pulse ended (`inbox::now_nanos`); 0 before the first.
    last_end: AtomicU64,
    /// The shortest recent turn of the loop between two pulses: a turn with nothing else in it.
    empty_turn: AtomicU64,
    /// Empty turns in a row, up to this pulse.
    quiet_turns: AtomicU32,
    /// Turns since a pulse last spun.
    turns_unspun: AtomicU32,
    /// When a call on this loop last settled (`inbox::now_nanos`).
    last_settle: AtomicU64,
}

impl Pulser {
    /// Pulses for `core`'s loop, which starts idle (callers wake it). On the loop thread.
    pub(crate) fn new(core: Arc<Core>, drain: Py<PyAny>, py: Python<'_>) -> Self {
        gil_hint::configure(py);
        let io = loop_spin::poller_fd(core.event_loop.bind(py), "_get_backend_id");
        core.inbox.watch();
        core.inbox.set_idle(true);
        Self {
            core,
            drain,
            io,
            last_end: AtomicU64::new(0),
            empty_turn: AtomicU64::new(u64::MAX / 2),
            quiet_turns: AtomicU32::new(0),
            turns_unspun: AtomicU32::new(0),
            last_settle: AtomicU64::new(0),
        }
    }

    /// Whether the loop took a job or settled a call within `nanos`.
    fn hot(&self, nanos: u64) -> bool {
        let settled = self.last_settle.load(Ordering::Relaxed);
        self.core.inbox.busy_within(nanos) || now_nanos().saturating_sub(settled) < nanos
    }

    /// Whether to spin now: after two turns in a row that ran nothing but a pulse, or after
    /// [`FORCE_SPIN_AFTER`] turns without a spin.
    ///
    /// A turn is empty when the time between two pulses is within 1.5 times the emptiest
    /// recent turn. A turn that ran anything else (a task's step, an I/O callback, a timer)
    /// takes longer, and what it ran may have queued more steps, which would wait behind a
    /// spin; but one step after `asyncio.sleep(0)` can take less than an empty turn of uvloop,
    /// so a single short turn is not trusted: two in a row are. The emptiest turn creeps up by
    /// 1/32 a pulse, so it follows the machine and one freak short turn does not make every
    /// later turn look busy. The forced spin is the floor: a loop that never spins holds the
    /// GIL from its callers, who then wait for CPython's 5 ms hand-off.
    fn spin_now(&self, now: u64) -> bool {
        let last = self.last_end.load(Ordering::Relaxed);
        let turn = now.saturating_sub(last);
        let before = self.empty_turn.load(Ordering::Relaxed);
        let empty = turn.min(before.saturating_add(before / 32));
        self.empty_turn.store(empty, Ordering::Relaxed);
        let empty_turn = last != 0 && turn <= empty.saturating_add(empty / 2);
        let quiet = if empty_turn {
            self.quiet_turns.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.quiet_turns.store(0, Ordering::Relaxed);
            0
        };
        let unspun = self.turns_unspun.fetch_add(1, Ordering::Relaxed) + 1;
        let spin = quiet >= 2 || unspun >= FORCE_SPIN_AFTER;
        if spin {
            self.turns_unspun.store(0, Ordering::Relaxed);
        }
        spin
    }

    /// Whether to pulse again: drains what came, spinning one slice for it first.
    fn beat(&self, py: Python<'_>) -> PyResult<bool> {
        let again = self.beat_once(py);
        deferred_wake::flush_detached(py);
        if matches!(again, Ok(false)) {
            // The last pulse: nothing would flush a wake-up kept from now on.
            deferred_wake::set_deferring(false);
        }
        self.last_end.store(now_nanos(), Ordering::Relaxed);
        again
    }

    fn beat_once(&self, py: Python<'_>) -> PyResult<bool> {
        let inbox = &self.core.inbox;
        let hot_for = loop_spin::spin().as_nanos() as u64;
        if !inbox.has_jobs() && self.hot(hot_for) && self.spin_now(now_nanos()) {
            loop_spin::spin_for_work(py, inbox, self.io, Instant::now() + SLICE);
        }
        if inbox.has_jobs() {
            self.drain.call0(py)?;
            return Ok(true);
        }
        if self.hot(hot_for) {
            return Ok(true);
        }
        if loop_spin::idle_unless_jobs(inbox) {
            return Ok(false);
        }
        self.drain.call0(py)?;
        Ok(true)
    }
}

/// Queues the next pulse on the loop.
fn schedule(slf: &Bound<'_, Pulser>) -> PyResult<()> {
    let py = slf.py();
    let pulse = slf.getattr(intern!(py, "pulse"))?;
    slf.get()
        .core
        .event_loop
        .bind(py)
        .call_method1(intern!(py, "call_soon"), (pulse,))
        .map(drop)
}

/// Starts pulsing unless pulses are still going.
fn kindle(slf: &Bound<'_, Pulser>) -> PyResult<()> {
    let inbox = &slf.get().core.inbox;
    if inbox.is_idle() {
        // Queued first: a loop that refuses it (closed) stays idle and keeps no wake-ups.
        schedule(slf)?;
        inbox.set_idle(false);
        deferred_wake::set_deferring(true);
    }
    Ok(())
}

/// A call settled on this thread, before its caller is woken (`completion`). On a pulsed loop
/// thread, pulses go on (or start again) for as long as after a job taken: the caller of a
/// call that outlasted them is woken at the next pulse, once the GIL is let go, and its next
/// call, which often follows at once, finds the loop awake instead of writing the byte.
pub(crate) fn settled(py: Python<'_>) {
    let Some(pulser) = PULSER.with(|p| p.borrow().as_ref().map(|p| p.clone_ref(py))) else {
        return;
    };
    let pulser = pulser.bind(py);
    pulser
        .get()
        .last_settle
        .store(now_nanos(), Ordering::Relaxed);
    // A loop that is closing refuses the pulse; its caller is then woken at once.
    let _ = kindle(pulser);
}

/// This loop thread's loop has stopped: lets go of its pulser, which holds the loop thread
/// object (through `_drain`). Here, with the GIL held, the reference goes at once; left to
/// the thread's exit, it would be released only when some later call took the GIL, and a
/// closed loop thread could outlive the last reference to it.
pub(crate) fn forget(_py: Python<'_>) {
    drop(PULSER.with(|p| p.borrow_mut().take()));
}

#[pymethods]
impl Pulser {
    /// The inbox's reader callback: the loop was idle and a caller woke it. Drains, and starts
    /// pulsing unless pulses are still going.
    fn wake(slf: &Bound<'_, Self>) -> PyResult<()> {
        PULSER.with(|p| {
            let mut p = p.borrow_mut();
            if p.is_none() {
                *p = Some(slf.clone().unbind());
            }
        });
        slf.get().drain.call0(slf.py())?;
        kindle(slf)
    }

    /// One pulse (a ready callback); queues the next unless the loop went idle. A pulse that
    /// failed (a forked child ending, which stops the loop) still queues the next, so that
    /// pulses never stop while callers count on them.
    fn pulse(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().beat(slf.py()) {
            Ok(false) => Ok(()),
            Ok(true) => schedule(slf),
            Err(err) => {
                schedule(slf)?;
                Err(err)
            }
        }
    }
}
