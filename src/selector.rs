//! The selector wrapper (the "hot selector"): lets blockon's own loop thread find new work
//! without being woken.
//!
//! Waking a thread that sleeps in `epoll_wait` costs tens of microseconds on a virtual
//! machine, more than everything else in a `run()` call together. So on a loop thread that
//! has been busy in the last few milliseconds, the loop's selector first spins for a short
//! while with the GIL released, watching the inbox; work that arrives meanwhile is picked up
//! at once, and its callers never write the wake-up byte (the inbox knows the loop is awake).
//! Only then does the selector block in the real `select()`, marked idle, so callers know to
//! wake it. A loop that has been quiet does not spin at all, so an idle program costs nothing.
//!
//! This wraps the `_selector` of the stdlib selector event loops blockon runs on Unix (other
//! loops, such as uvloop or Windows' proactor loop, are woken as `wakeup` says and pulse).
//! Everything but `select` is passed through to the real selector.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::inbox::Inbox;
use crate::lifecycle::Core;
use crate::waiter;

/// How long the loop spins for new work before it blocks.
const SPIN: Duration = Duration::from_micros(50);

/// How recently the loop must have taken work for it to spin at all.
const HOT_FOR_NANOS: u64 = 2_000_000;

/// For loops whose selector is not wrapped (uvloop, the proactor loop): one pulse, run as a
/// loop callback after the inbox was drained. While the loop has been busy, it spins (GIL
/// released) for new work and drains it; it returns whether to run again soon
/// (`loop.call_soon`). When no work came, it marks the loop idle, so callers wake it again. Between
/// pulses the loop runs its other callbacks and I/O as usual; a pulse holds it for at most
/// one spin.
pub(crate) fn pulse(py: Python<'_>, core: &Core, drain: &Bound<'_, PyAny>) -> PyResult<bool> {
    let inbox = &core.inbox;
    if inbox.busy_within(HOT_FOR_NANOS) && spin_for_jobs(py, inbox, Instant::now() + SPIN) {
        drain.call0()?;
        return Ok(true);
    }
    if idle_unless_jobs(inbox) {
        return Ok(false);
    }
    drain.call0()?;
    Ok(true)
}

/// Spins with the GIL released until a job is queued or `end` passes; returns whether one
/// is. Meanwhile the inbox says the loop thread does not hold the GIL, so a caller whose
/// result is in takes it back at once instead of holding off for it.
fn spin_for_jobs<J: Send>(py: Python<'_>, inbox: &Inbox<J>, end: Instant) -> bool {
    let found = py.detach(|| {
        inbox.set_detached(true);
        let found = waiter::spin_until(end, || inbox.has_jobs());
        inbox.set_detached(found);
        found
    });
    inbox.set_detached(false);
    found
}

/// Marks the loop idle (callers wake it from now on) unless jobs arrived first; returns
/// whether it is idle. The check comes after the mark, so a job pushed meanwhile is either
/// seen here or wakes the loop.
fn idle_unless_jobs<J>(inbox: &Inbox<J>) -> bool {
    inbox.set_idle(true);
    if inbox.has_jobs() {
        inbox.set_idle(false);
        return false;
    }
    true
}

#[pyclass(frozen, module = "blockon._blockon")]
pub(crate) struct HotSelector {
    real: Py<PyAny>,
    core: Arc<Core>,
    /// The loop thread's `_drain`, called from `select` itself.
    drain: Py<PyAny>,
}

impl HotSelector {
    pub(crate) fn new(real: Py<PyAny>, core: Arc<Core>, drain: Py<PyAny>) -> Self {
        core.inbox.watch();
        Self { real, core, drain }
    }

    /// Runs the inbox's jobs here, outside any handle. Why not through the reader callback
    /// `add_reader` registered: that is one `Handle` with one context, reused for every
    /// wake-up, and the eager first step of a task started by the drain may run the loop
    /// re-entrantly (sync code calling `run()`), which would need that same handle again
    /// while its context is still entered. The reader stays registered so an idle loop is
    /// still woken by the wake-up byte; its events are filtered out of what `select` returns.
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        match self.drain.call0(py) {
            // A forked child ending (see `LoopThreadBase::drain`): out of the loop it goes.
            Err(err)
                if err.is_instance_of::<PySystemExit>(py)
                    || err.is_instance_of::<PyKeyboardInterrupt>(py) =>
            {
                Err(err)
            }
            Err(err) => {
                err.write_unraisable(py, Some(self.drain.bind(py)));
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }

    /// `events` without the inbox's own wake-up event; whether it was there.
    fn without_inbox<'py>(
        &self,
        events: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, bool)> {
        let py = events.py();
        let fd = self.core.inbox.read_fd();
        let kept = PyList::empty(py);
        let mut found = false;
        for event in events.try_iter()? {
            let event = event?;
            let key_fd: i32 = event.get_item(0)?.getattr(intern!(py, "fd"))?.extract()?;
            if Some(key_fd) == fd {
                found = true;
            } else {
                kept.append(event)?;
            }
        }
        Ok((kept, found))
    }

    fn select_real<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inbox = &self.core.inbox;
        // The real select releases the GIL as it blocks; say so a moment early.
        inbox.set_detached(true);
        let events = self
            .real
            .bind(py)
            .call_method1(intern!(py, "select"), (timeout,));
        inbox.set_detached(false);
        let (events, woken) = self.without_inbox(&events?)?;
        if woken || inbox.has_jobs() {
            self.drain(py)?;
        }
        Ok(events.into_any())
    }
}

#[pymethods]
impl HotSelector {
    #[pyo3(signature = (timeout=None))]
    fn select<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let inbox = &self.core.inbox;
        let blocking = !timeout.is_some_and(|t| t <= 0.0);
        if blocking && inbox.busy_within(HOT_FOR_NANOS) {
            let end =
                Instant::now() + timeout.map_or(SPIN, |t| SPIN.min(Duration::from_secs_f64(t)));
            if spin_for_jobs(py, inbox, end) {
                self.drain(py)?;
                return Ok(PyList::empty(py).into_any());
            }
        }
        if !blocking {
            return self.select_real(py, timeout);
        }
        if !idle_unless_jobs(inbox) {
            self.drain(py)?;
            return Ok(PyList::empty(py).into_any());
        }
        let events = self.select_real(py, timeout);
        inbox.set_idle(false);
        events
    }

    fn __getattr__<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.real
            .bind(py)
            .getattr(name.cast::<pyo3::types::PyString>()?)
    }
}
