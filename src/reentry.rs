//! Re-entrant running: `run(aw, nest=True)` from inside a running loop, and code on a loop
//! thread calling `run()` (or a bridge) on its own loop, run the work on that same loop
//! while the caller waits.
//!
//! The loop stepping itself lives in Python (`blockon._reentry.drive_until`): it is a short
//! sequence of asyncio calls whose correctness depends on asyncio's own internals, and reads
//! best next to them. This side supplies what to start, how to tell it is done and how to
//! cancel it, and re-raises the outcome from native code so tracebacks show the awaitable's
//! frames and no blockon frame.

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyCFunction;

use crate::blocking::{deliver, timed_out};
use crate::completion::{Call, Outcome};
use crate::driver::{Driver, Target};
use crate::eager_task::spawn_task;
use crate::py::cached;

/// The number of handles in `event_loop`'s ready queue, or the RuntimeError that explains
/// why the loop cannot be re-entered: uvloop has no ready queue to drive, and an asyncio
/// without `_enter_task`/`_leave_task` (none from 3.11 to 3.15) could not switch tasks.
pub(crate) fn ready_len(event_loop: &Bound<'_, PyAny>) -> PyResult<usize> {
    let py = event_loop.py();
    let c = cached(py)?;
    let ready = event_loop.getattr_opt(intern!(py, "_ready"))?;
    let steppable = event_loop.getattr_opt(intern!(py, "_run_once"))?.is_some()
        && c.enter_task.is_some()
        && c.leave_task.is_some();
    match ready {
        Some(ready) if steppable => ready.len(),
        _ => {
            c.check_reentry.call1(py, (event_loop,))?;
            Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this event loop cannot be re-entered",
            ))
        }
    }
}

/// Drives `event_loop` (running in this thread) until `done()`, the work having been started
/// already; `queued` is [`ready_len`] from before it was. `cancel` runs on timeout, Ctrl-C, or
/// the caller's own task being cancelled. Returns whether the timeout fired.
pub(crate) fn drive<D, C>(
    event_loop: &Bound<'_, PyAny>,
    queued: usize,
    done: D,
    cancel: C,
    timeout: Option<f64>,
    grace: f64,
) -> PyResult<bool>
where
    D: Fn() -> bool + Send + Sync + 'static,
    C: Fn(Python<'_>) -> PyResult<()> + Send + Sync + 'static,
{
    if done() {
        return Ok(false);
    }
    let py = event_loop.py();
    let cancel = PyCFunction::new_closure(py, None, None, move |args, _| cancel(args.py()))?;
    let done = PyCFunction::new_closure(py, None, None, move |_, _| done())?;
    cached(py)?
        .drive_until
        .call1(py, (event_loop, queued, done, cancel, timeout, grace))?
        .is_truthy(py)
}

/// [`drive`] until `call` settles; returns its outcome.
pub(crate) fn drive_nested<C>(
    event_loop: &Bound<'_, PyAny>,
    call: &Arc<Call>,
    queued: usize,
    cancel: C,
    timeout: Option<f64>,
    grace: f64,
) -> PyResult<Py<PyAny>>
where
    C: Fn(Python<'_>) -> PyResult<()> + Send + Sync + 'static,
{
    let py = event_loop.py();
    let watched = Arc::clone(call);
    let fired = drive(
        event_loop,
        queued,
        move || watched.outcome.is_complete(),
        cancel,
        timeout,
        grace,
    )?;
    let outcome = call.outcome.take();
    if fired && matches!(outcome, Some(Outcome::Cancelled)) {
        return Err(timed_out(timeout));
    }
    deliver(py, outcome)
}

/// `run()` re-entrantly: a task for `coro` on `event_loop`, stepped eagerly, and the loop
/// driven until it is done if that first step did not finish it.
pub(crate) fn run_nested(
    event_loop: &Bound<'_, PyAny>,
    coro: Bound<'_, PyAny>,
    timeout: Option<f64>,
    grace: f64,
) -> PyResult<Py<PyAny>> {
    let py = event_loop.py();
    let queued = match ready_len(event_loop) {
        Ok(queued) => queued,
        Err(err) => {
            crate::awaitable::discard(&coro);
            return Err(err);
        }
    };
    let call = Arc::new(Call::default());
    let driver = Bound::new(py, Driver::new(coro, Target::Call(Arc::clone(&call))))?;
    let context = cached(py)?.copy_context.call0(py)?;
    if let Err(err) = spawn_task(event_loop, &driver, Some(context.bind(py)), None) {
        let _ = driver.get().abandon(py, Outcome::Cancelled);
        return Err(err);
    }
    let to_cancel = Arc::clone(&call);
    let cancel = move |py: Python<'_>| to_cancel.cancel_task(py);
    let result = drive_nested(event_loop, &call, queued, cancel, timeout, grace);
    if result.is_err() && !call.outcome.is_complete() {
        // Ctrl-C past the grace: close the awaitable.
        let _ = driver.get().abandon(py, Outcome::Cancelled);
    }
    result
}
