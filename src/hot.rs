//! The hot selector: lets blockon's own loop thread find new work without being woken.
//!
//! Waking a thread that sleeps in `epoll_wait` costs tens of microseconds on a virtual
//! machine, more than everything else in a `run()` call together. So on a loop thread that
//! has been busy in the last few milliseconds, the loop's selector first spins for a short
//! while with the GIL released, watching the inbox; work that arrives meanwhile is picked up
//! at once, and its callers never write the wake-up byte (the inbox knows the loop is awake).
//! Only then does the selector block in the real `select()`, marked idle, so callers know to
//! wake it. A loop that has been quiet does not spin at all, so an idle program costs nothing.
//!
//! This wraps the `_selector` of a stdlib selector event loop that blockon created itself
//! (other loops, such as uvloop, keep the plain wake-up byte). Everything but `select` is
//! passed through to the real selector.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::intern;
use pyo3::prelude::*;

use crate::lifecycle::Core;

/// How long the loop spins for new work before it blocks.
const SPIN: Duration = Duration::from_micros(50);

/// How recently the loop must have taken work for it to spin at all.
const HOT_FOR_NANOS: u64 = 2_000_000;

#[pyclass(frozen, module = "blockon._blockon")]
pub struct HotSelector {
    real: Py<PyAny>,
    core: Arc<Core>,
    /// `[(key, EVENT_READ)]` for the inbox's socket: what `select` returns when the spin
    /// found work, so the loop runs the inbox's reader without a system call.
    inbox_ready: Py<PyAny>,
}

impl HotSelector {
    pub fn new(py: Python<'_>, real: Py<PyAny>, core: Arc<Core>) -> PyResult<Self> {
        let key = real
            .bind(py)
            .call_method1(intern!(py, "get_key"), (core.inbox.read_fd(),))?;
        let event_read = py.import("selectors")?.getattr("EVENT_READ")?;
        let inbox_ready = pyo3::types::PyList::new(py, [(key, event_read)])?;
        core.inbox.watch();
        Ok(Self {
            real,
            core,
            inbox_ready: inbox_ready.into_any().unbind(),
        })
    }

    /// The inbox's event, as a fresh list (the loop may keep what `select` returns).
    fn inbox_event<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inbox_ready.bind(py).call_method0(intern!(py, "copy"))
    }
}

#[pymethods]
impl HotSelector {
    #[pyo3(signature = (timeout=None))]
    fn select<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let inbox = &self.core.inbox;
        if timeout.is_some_and(|t| t <= 0.0) {
            return self
                .real
                .bind(py)
                .call_method1(intern!(py, "select"), (timeout,));
        }
        if inbox.busy_within(HOT_FOR_NANOS) {
            let end =
                Instant::now() + timeout.map_or(SPIN, |t| SPIN.min(Duration::from_secs_f64(t)));
            let found = py.detach(|| {
                inbox.set_detached(true);
                let found = loop {
                    for _ in 0..32 {
                        if inbox.has_jobs() {
                            break;
                        }
                        std::hint::spin_loop();
                    }
                    if inbox.has_jobs() {
                        break true;
                    }
                    if Instant::now() >= end {
                        break false;
                    }
                };
                inbox.set_detached(found);
                found
            });
            if found {
                inbox.set_detached(false);
                return self.inbox_event(py);
            }
        }
        inbox.set_idle(true);
        if inbox.has_jobs() {
            inbox.set_idle(false);
            return self.inbox_event(py);
        }
        // The real select releases the GIL as it blocks; say so a moment early.
        inbox.set_detached(true);
        let events = self
            .real
            .bind(py)
            .call_method1(intern!(py, "select"), (timeout,));
        inbox.set_detached(false);
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
