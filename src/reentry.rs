//! Re-entrant running: `run(aw, nest=True)` from inside a running loop, and code on a loop
//! thread calling `run()` (or a bridge) on its own loop, run the work on that same loop
//! while the caller waits.
//!
//! The loop stepping itself lives in Python (`blockon._hooks.drive_until`): it is a short
//! sequence of asyncio calls whose correctness depends on asyncio's own internals, and reads
//! best next to them. This side supplies what to start, how to tell it is done and how to
//! cancel it, and re-raises the outcome from native code so tracebacks show the awaitable's
//! frames and no blockon frame.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyCFunction;

use crate::calls::{deliver, spawn_task, timed_out};
use crate::completion::{Call, Outcome};
use crate::driver::{Driver, Target};
use crate::py::cached;

/// Drives `event_loop` (running in this thread) until `call` settles: `start` once, `cancel`
/// on timeout, Ctrl-C, or the caller's own task being cancelled. Returns the outcome.
pub fn drive_nested<S, C>(
    event_loop: &Bound<'_, PyAny>,
    call: &Arc<Call>,
    start: S,
    cancel: C,
    timeout: Option<f64>,
    grace: f64,
) -> PyResult<Py<PyAny>>
where
    S: Fn(Python<'_>) -> PyResult<()> + Send + Sync + 'static,
    C: Fn(Python<'_>) -> PyResult<()> + Send + Sync + 'static,
{
    let py = event_loop.py();
    let start = PyCFunction::new_closure(py, None, None, move |args, _| start(args.py()))?;
    let cancel = PyCFunction::new_closure(py, None, None, move |args, _| cancel(args.py()))?;
    let watched = Arc::clone(call);
    let done = PyCFunction::new_closure(py, None, None, move |_, _| watched.outcome.is_complete())?;
    let fired = cached(py)?
        .drive_until
        .call1(py, (event_loop, start, done, cancel, timeout, grace))?
        .is_truthy(py)?;
    let outcome = call.outcome.take();
    if fired && matches!(outcome, Some(Outcome::Cancelled)) {
        return Err(timed_out(timeout));
    }
    deliver(py, outcome)
}

/// `run()` re-entrantly: a task for `coro` on `event_loop`, driven until it is done.
pub fn run_nested(
    event_loop: &Bound<'_, PyAny>,
    coro: Bound<'_, PyAny>,
    timeout: Option<f64>,
    grace: f64,
) -> PyResult<Py<PyAny>> {
    let py = event_loop.py();
    let call = Arc::new(Call::default());
    let driver = Py::new(py, Driver::new(coro, Target::Call(Arc::clone(&call))))?;
    let context = cached(py)?.copy_context.call0(py)?;
    let loop_ref = event_loop.clone().unbind();
    let to_start = driver.clone_ref(py);
    let start = move |py: Python<'_>| {
        spawn_task(
            loop_ref.bind(py),
            to_start.bind(py),
            Some(context.bind(py)),
            None,
        )
    };
    let to_cancel = Arc::clone(&call);
    let cancel = move |py: Python<'_>| to_cancel.cancel_task(py);
    let result = drive_nested(event_loop, &call, start, cancel, timeout, grace);
    if result.is_err() && !call.outcome.is_complete() {
        // Unsupported loop (nothing ran yet), or Ctrl-C past the grace: close the awaitable.
        let _ = driver.get().abandon(py, Outcome::Cancelled);
    }
    result
}
