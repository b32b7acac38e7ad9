//! The native driver: a coroutine-shaped object that steps the user's awaitable inside an
//! asyncio task and settles the caller's completion slot the moment the awaitable finishes.
//!
//! asyncio's own bridge (`run_coroutine_threadsafe`) learns that a task finished through a
//! done-callback, which the loop runs one iteration later, and then hops through a
//! `concurrent.futures.Future` and its condition variable. The driver instead sees the
//! awaitable's `StopIteration` or exception in the same step and writes the outcome straight
//! into the Rust slot the caller is waiting on.
//!
//! The driver never lets the awaitable's exception escape into the task: the task always ends
//! normally. That keeps the loop quiet ("Task exception was never retrieved" cannot happen),
//! and it stops `KeyboardInterrupt` or `SystemExit` raised inside the awaitable from tearing
//! down the loop thread: they travel to the caller instead, who is the one they are meant for
//! (a `KeyboardInterrupt` raised in the awaitable interrupts the caller that ran it). Because
//! the driver is native code, it adds no frame to the exception's traceback either.
//!
//! asyncio accepts it as a coroutine because it has `__await__`, `send`, `throw` and `close`
//! (`collections.abc.Coroutine`'s structural check); tasks step it through `PyIter_Send`,
//! which lands in `__next__`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyKeyboardInterrupt, PyStopIteration, PySystemExit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use crate::completion::{lock, Call, Outcome};
use crate::fork;
use crate::py::cached;
use crate::stepping::{self, Sent};

/// Where an outcome goes.
pub(crate) enum Target {
    /// A blocking caller waits on this call's slot.
    Call(Arc<Call>),
    /// A `concurrent.futures.Future` handed out by `submit`.
    Future(Py<PyAny>),
}

/// Steps one awaitable inside one asyncio task.
#[pyclass(frozen, module = "blockon._blockon")]
pub(crate) struct Driver {
    /// The coroutine, or the iterator returned by another awaitable's `__await__`.
    inner: Py<PyAny>,
    target: Target,
    /// What the eager first step yielded, handed to the task on its first step.
    pending: Mutex<Option<Py<PyAny>>>,
    /// The task's own first step was queued after everything the eager step queued (see
    /// `resume`).
    first_step_last: AtomicBool,
    /// The awaitable has finished (and its outcome is settled).
    finished: AtomicBool,
    /// The fork generation it was made in (see `callerless_exit`).
    generation: u64,
}

impl Driver {
    pub(crate) fn new(inner: Bound<'_, PyAny>, target: Target) -> Self {
        Self {
            inner: inner.unbind(),
            target,
            pending: Mutex::new(None),
            first_step_last: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            generation: fork::generation(),
        }
    }

    /// The call this driver settles, if a blocking caller waits on it.
    pub(crate) fn call(&self) -> Option<&Arc<Call>> {
        match &self.target {
            Target::Call(call) => Some(call),
            Target::Future(_) => None,
        }
    }

    /// Gives up on the awaitable: closes it (no "never awaited" warning for one that never
    /// ran) and settles `outcome` unless it had already finished.
    pub(crate) fn abandon(&self, py: Python<'_>, outcome: Outcome) -> PyResult<()> {
        self.finished.store(true, Ordering::Release);
        let closed = stepping::close(self.inner.bind(py));
        self.settle(py, outcome);
        closed
    }

    fn settle(&self, py: Python<'_>, outcome: Outcome) {
        match &self.target {
            Target::Call(call) => call.settle_from_loop(py, outcome),
            Target::Future(future) => {
                let (kind, value) = match outcome {
                    Outcome::Value(v) => ("result", v),
                    Outcome::Raised(e) => ("exception", e),
                    Outcome::Cancelled | Outcome::Lost => ("cancelled", py.None()),
                };
                let settled =
                    cached(py).and_then(|c| c.settle_future.call1(py, (future, kind, value)));
                if let Err(err) = settled {
                    err.write_unraisable(py, Some(future.bind(py)));
                }
            }
        }
    }

    /// Whether `err` is a `SystemExit` or `KeyboardInterrupt` raised in a forked child by an
    /// awaitable its parent started: the caller it would travel to exists only in the
    /// parent, so it must end the child instead.
    pub(crate) fn callerless_exit(&self, py: Python<'_>, err: &PyErr) -> bool {
        self.generation != fork::generation()
            && (err.is_instance_of::<PySystemExit>(py)
                || err.is_instance_of::<PyKeyboardInterrupt>(py))
    }

    /// The task's own first step is queued after whatever the eager step queues (the eager
    /// step held it back and queues it again after).
    pub(crate) fn mark_first_step_last(&self) {
        self.first_step_last.store(true, Ordering::Release);
    }

    /// Whether the awaitable has finished (so the task's next step only ends the task).
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// The task's step: hands over what the eager step yielded, or steps the awaitable.
    ///
    /// A bare yield (`None`, what `asyncio.sleep(0)` yields) asks only that everything ready
    /// on the loop run before the awaitable goes on. Where the task's own first step was
    /// queued after everything the eager step queued (`mark_first_step_last`), that has
    /// happened by the time this first step runs, so the awaitable goes on at once instead
    /// of waiting one more turn of the loop. Elsewhere (uvloop, whose ready queue cannot be
    /// reordered) the yield is handed over, and the task waits its turn.
    fn resume(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Some(yielded) = lock(&self.pending).take() {
            if !yielded.is_none(py) || !self.first_step_last.load(Ordering::Acquire) {
                return Ok(yielded);
            }
        }
        if self.is_finished() {
            return Err(PyStopIteration::new_err(()));
        }
        let step = stepping::send(self.inner.bind(py), value);
        self.finish(py, step)
    }

    /// Turns one step's result into what the task sees: the yielded value, or
    /// `StopIteration` once the awaitable has finished and its outcome is settled.
    fn finish(&self, py: Python<'_>, step: PyResult<Sent>) -> PyResult<Py<PyAny>> {
        let outcome = match step {
            Ok(Sent::Yielded(value)) => return Ok(value),
            Ok(Sent::Returned(value)) => Outcome::Value(value),
            Err(err) if self.callerless_exit(py, &err) => {
                // Raised into the task, asyncio lets it out of the loop: the loop thread
                // then ends the forked child (see `_running`).
                self.finished.store(true, Ordering::Release);
                return Err(err);
            }
            Err(err) => stepping::outcome_of(py, err),
        };
        self.finished.store(true, Ordering::Release);
        self.settle(py, outcome);
        Err(PyStopIteration::new_err(()))
    }
}

#[pymethods]
impl Driver {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Shows the garbage collector what the driver holds. A task left pending on a loop
    /// closed under it is a cycle through the driver (task, driver, awaitable, the future it
    /// waits on, the task's wake-up callback); without this edge the awaitable looks held
    /// from outside and the cycle lives until the interpreter exits. No `__clear__`: the
    /// task's own clearing drops the driver, which breaks the cycle.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.inner)?;
        // try_lock: a traversal must never block; a step in progress holds what it yielded
        // on its own stack anyway.
        if let Ok(pending) = self.pending.try_lock() {
            visit.call(pending.as_ref())?;
        }
        if let Target::Future(future) = &self.target {
            visit.call(future)?;
        }
        Ok(())
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.resume(py, &py.None().into_bound(py))
    }

    fn send(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.resume(py, value)
    }

    #[pyo3(signature = (*args))]
    fn throw(&self, py: Python<'_>, args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Py<PyAny>> {
        if let Some(yielded) = lock(&self.pending).take() {
            // The task never saw what the eager step waited on; it cannot cancel it, so do.
            if let Ok(Some(cancel)) = yielded.bind(py).getattr_opt(intern!(py, "cancel")) {
                let _ = cancel.call0();
            }
        }
        if self.is_finished() {
            return Err(PyStopIteration::new_err(()));
        }
        let step = stepping::throw(self.inner.bind(py), args);
        self.finish(py, step)
    }

    /// The first step, run at once by whoever created the task (inside the task, as its
    /// current task): what it yields waits for the task's own first step.
    fn _eager(&self, py: Python<'_>) -> PyResult<()> {
        let step = stepping::send(self.inner.bind(py), &py.None().into_bound(py));
        match self.finish(py, step) {
            Ok(yielded) => {
                *lock(&self.pending) = Some(yielded);
                Ok(())
            }
            Err(err) if err.is_instance_of::<PyStopIteration>(py) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Closes the awaitable (no "never awaited" warning for one that never ran) and settles
    /// the outcome as cancelled if it had not finished.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.abandon(py, Outcome::Cancelled)
    }

    /// Whether the blocking caller gave up on the cleanup after Ctrl-C: the loop thread's
    /// shutdown then does not wait for this task again.
    #[getter]
    fn _abandoned(&self) -> bool {
        self.call().is_some_and(|call| call.is_abandoned())
    }

    /// Cancels the task running this driver. Runs on that task's loop.
    fn _cancel(&self, py: Python<'_>) -> PyResult<()> {
        match self.call() {
            Some(call) => call.cancel_task(py),
            None => Ok(()),
        }
    }

    #[getter]
    fn __qualname__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let inner = self.inner.bind(py);
        Ok(match inner.getattr_opt(intern!(py, "__qualname__"))? {
            Some(name) => name.unbind(),
            None => inner.get_type().qualname()?.into_any().unbind(),
        })
    }

    #[getter]
    fn __name__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.__qualname__(py)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A task destroyed while pending (its loop closed under it) drops its driver without
        // a final step: tell the waiting caller instead of leaving it to wait forever.
        if let Target::Call(call) = &self.target {
            call.outcome.complete(Outcome::Lost);
        }
    }
}
