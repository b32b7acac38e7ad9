//! The selector wrapper (the "hot selector") of the stdlib selector event loops blockon runs:
//! lets blockon's own loop thread find new work without being woken.
//!
//! When the loop is about to block (its ready queue is empty: asyncio asks the selector to
//! wait only then) and has been busy in the last few milliseconds, `select` first spins for
//! a short while with the GIL released (`loop_spin`), watching the inbox and the real
//! selector's own descriptor. New jobs are drained at once, and their callers never write the
//! wake-up byte (the inbox knows the loop is awake); I/O that becomes ready ends the spin and
//! is returned at once, as the real `select` would have. Only then does it block in the real
//! `select()`, marked idle, so callers know to wake it.
//!
//! Selectors with no epoll descriptor (`select`- and `poll`-based ones, and any outside
//! Linux) are looked at with a zero-timeout `select` between short slices of the spin
//! instead. Other loops (uvloop,
//! loops blockon does not know) pulse instead (`pulse`). Everything but `select` is passed
//! through to the real selector.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::deferred_wake;
use crate::gil_hint;
use crate::lifecycle::Core;
use crate::loop_spin::{self, Found, HOT_FOR_NANOS};

/// For selectors without a descriptor: how long each slice of the spin is, between looks at
/// the real selector.
const SLICE: Duration = Duration::from_micros(5);

#[pyclass(frozen, module = "blockon._blockon")]
pub(crate) struct HotSelector {
    real: Py<PyAny>,
    /// The real selector's epoll descriptor, readable while it has events.
    io: Option<i32>,
    core: Arc<Core>,
    /// The loop thread's `_drain`, called from `select` itself.
    drain: Py<PyAny>,
}

impl HotSelector {
    /// On the loop thread.
    pub(crate) fn new(real: &Bound<'_, PyAny>, core: Arc<Core>, drain: Py<PyAny>) -> Self {
        core.inbox.watch();
        deferred_wake::set_deferring(true);
        gil_hint::configure(real.py());
        let io = loop_spin::poller_fd(real, "fileno");
        Self {
            real: real.clone().unbind(),
            io,
            core,
            drain,
        }
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

    /// Spins until `end` for new jobs (drained; no events) or I/O (its events); `None` if
    /// neither came.
    fn spin<'py>(&self, py: Python<'py>, end: Instant) -> PyResult<Option<Bound<'py, PyAny>>> {
        let inbox = &self.core.inbox;
        loop {
            let slice_end = match self.io {
                Some(_) => end,
                None => end.min(Instant::now() + SLICE),
            };
            match loop_spin::spin_for_work(py, inbox, self.io, slice_end) {
                Found::Jobs => {
                    self.drain(py)?;
                    return Ok(Some(PyList::empty(py).into_any()));
                }
                Found::Io => return self.select_real(py, Some(0.0)).map(Some),
                Found::Nothing if self.io.is_none() && Instant::now() < end => {
                    let events = self.select_real(py, Some(0.0))?;
                    if !events.is_empty()? {
                        return Ok(Some(events));
                    }
                }
                Found::Nothing => return Ok(None),
            }
        }
    }

    fn select_real<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inbox = &self.core.inbox;
        deferred_wake::flush_detached(py);
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
        if timeout.is_some_and(|t| t <= 0.0) {
            // The loop has callbacks ready and only looks for I/O in passing: one `poll` on
            // the real selector's descriptor says whether there is any, for a fraction of a
            // call into the real selector (a Python method), at every turn of a busy loop.
            if self.io.is_some_and(|fd| !loop_spin::io_ready(fd)) && !inbox.has_jobs() {
                deferred_wake::flush_detached(py);
                return Ok(PyList::empty(py).into_any());
            }
            return self.select_real(py, timeout);
        }
        let start = Instant::now();
        if inbox.busy_within(HOT_FOR_NANOS) {
            let spin = loop_spin::spin();
            let spin = timeout.map_or(spin, |t| spin.min(Duration::from_secs_f64(t)));
            if let Some(events) = self.spin(py, start + spin)? {
                return Ok(events);
            }
        }
        if !loop_spin::idle_unless_jobs(inbox) {
            self.drain(py)?;
            return Ok(PyList::empty(py).into_any());
        }
        // The spin used part of the timeout (the time to the loop's next timer).
        let left = timeout.map(|t| (t - start.elapsed().as_secs_f64()).max(0.0));
        let events = self.select_real(py, left);
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
