//! Re-entrant running: `run(aw, nest=True)` from inside a running loop, and code on a loop
//! thread calling `run()` (or a bridge) on its own loop, run the work on that same loop
//! while the caller waits.
//!
//! The loop stepping itself lives in Python (`blockon._reentry.drive_until`): it is a short
//! sequence of asyncio calls whose correctness depends on asyncio's own internals, and reads
//! best next to them. This side supplies what to start, how to tell it is done and how to
//! cancel it, and re-raises the outcome from native code so tracebacks show the awaitable's
//! frames and no blockon frame.

use std::cell::Cell;
use std::sync::Arc;

use pyo3::exceptions::PyRecursionError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyCFunction;

use crate::awaitable::is_coroutine;
use crate::blocking::{deliver, timed_out};
use crate::completion::{Call, Outcome};
use crate::driver::{Driver, Target};
use crate::eager_task::{own_step, spawn_task, with_current_task_left};
use crate::py::cached;

/// The number of handles in `event_loop`'s ready queue, or the RuntimeError that explains
/// why the loop cannot be re-entered: uvloop has no ready queue to drive, and an asyncio
/// without `_enter_task`/`_leave_task` (none from 3.11 to 3.15) could not switch tasks.
fn ready_len(event_loop: &Bound<'_, PyAny>) -> PyResult<usize> {
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

thread_local! {
    /// How many re-entrant runs are in progress in this thread, one inside the other.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Python frames one level of re-entrant running takes at most (the loop step, the task
/// step, the user's coroutine and its sync code), so that the nesting limit keeps Python's
/// own recursion limit out of reach: hit inside a loop step, that limit loses the step's
/// handle (its task never runs again), or leaves a task half made.
const FRAMES_PER_LEVEL: usize = 12;

/// One re-entrant run in progress in this thread: made by [`enter`], it counts towards the
/// nesting limit until dropped.
pub(crate) struct Nested {
    /// The number of handles in the loop's ready queue when the run began.
    pub(crate) queued: usize,
}

impl Drop for Nested {
    fn drop(&mut self) {
        DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

/// Begins a re-entrant run on `event_loop` (running in this thread): the RuntimeError that
/// explains why the loop cannot be re-entered, or a RecursionError when runs are nested too
/// deeply (the usual cause: a coroutine that calls `run()` on its own loop recursively).
pub(crate) fn enter(event_loop: &Bound<'_, PyAny>) -> PyResult<Nested> {
    let py = event_loop.py();
    let queued = ready_len(event_loop)?;
    let depth = DEPTH.with(Cell::get);
    let limit: usize = cached(py)?.recursion_limit.call0(py)?.extract(py)?;
    if depth >= (limit / FRAMES_PER_LEVEL).max(8) {
        return Err(PyRecursionError::new_err(format!(
            "blockon: {depth} re-entrant run() calls are nested on one loop; a coroutine \
             that calls run() on its own loop, recursively, is the usual cause"
        )));
    }
    DEPTH.with(|cell| cell.set(depth + 1));
    Ok(Nested { queued })
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
    drive_with(
        event_loop,
        queued,
        done.as_any(),
        cancel.as_any(),
        timeout,
        grace,
    )
}

/// [`drive`] with `done` and `cancel` as Python callables taking no arguments.
fn drive_with(
    event_loop: &Bound<'_, PyAny>,
    queued: usize,
    done: &Bound<'_, PyAny>,
    cancel: &Bound<'_, PyAny>,
    timeout: Option<f64>,
    grace: f64,
) -> PyResult<bool> {
    let py = event_loop.py();
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
    let nested = match enter(event_loop) {
        Ok(nested) => nested,
        Err(err) => {
            crate::awaitable::discard(&coro);
            return Err(err);
        }
    };
    if is_coroutine(&coro) {
        return run_coroutine_nested(event_loop, coro, nested.queued, timeout, grace);
    }
    let call = Arc::new(Call::default());
    let driver = Bound::new(py, Driver::new(coro, Target::Call(Arc::clone(&call))))?;
    let context = cached(py)?.copy_context.call0(py)?;
    if let Err(err) = spawn_task(event_loop, &driver, Some(context.bind(py)), None) {
        let _ = driver.get().abandon(py, Outcome::Cancelled);
        return Err(err);
    }
    let to_cancel = Arc::clone(&call);
    let cancel = move |py: Python<'_>| to_cancel.cancel_task(py);
    let result = drive_nested(event_loop, &call, nested.queued, cancel, timeout, grace);
    if result.is_err() && !call.outcome.is_complete() {
        // Ctrl-C past the grace: close the awaitable.
        let _ = driver.get().abandon(py, Outcome::Cancelled);
    }
    result
}

/// [`run_nested`] for a coroutine: asyncio's own task runs it, with no driver in between.
/// The task's first step (the handle `create_task` queued) is taken out of the ready queue
/// and run at once, as Python 3.12's eager tasks do, so a coroutine that never suspends
/// costs one task and one step: about half of what the driver's task costs, which matters
/// to code that calls `loop.run_until_complete()` re-entrantly in a loop.
///
/// Every way out leaves the task done or cancelled: an error while the loop is driven (a
/// Ctrl-C that lands before the driving begins included) cancels it, and its cleanup then
/// runs on the loop's next turn.
fn run_coroutine_nested(
    event_loop: &Bound<'_, PyAny>,
    coro: Bound<'_, PyAny>,
    queued: usize,
    timeout: Option<f64>,
    grace: f64,
) -> PyResult<Py<PyAny>> {
    let py = event_loop.py();
    let ready = event_loop.getattr(intern!(py, "_ready"))?;
    let before = ready.len()?;
    let task = match event_loop.call_method1(intern!(py, "create_task"), (&coro,)) {
        Ok(task) => task,
        Err(err) => {
            crate::awaitable::discard(&coro);
            return Err(err);
        }
    };
    // Not found (a task factory queued it elsewhere): the task's step runs as the loop is
    // driven.
    if let Some(step) = own_step(&ready, &task, before)? {
        if let Err(err) = step_now(event_loop, &ready, &step) {
            // Ctrl-C or an exit inside the step: asyncio recorded it in the task and raised
            // it on; the task's copy is retrieved, so it is not logged as never retrieved.
            if task.call_method0(intern!(py, "done"))?.is_truthy()?
                && !task.call_method0(intern!(py, "cancelled"))?.is_truthy()?
            {
                task.call_method0(intern!(py, "exception"))?;
            }
            return Err(err);
        }
    }
    let done = task.getattr(intern!(py, "done"))?;
    let mut fired = false;
    if !done.call0()?.is_truthy()? {
        let cancel = task.getattr(intern!(py, "cancel"))?;
        match drive_with(event_loop, queued, &done, &cancel, timeout, grace) {
            Ok(timeout_fired) => fired = timeout_fired,
            Err(err) => {
                if !done.call0()?.is_truthy()? {
                    cancel.call0()?;
                }
                return Err(err);
            }
        }
    }
    if task.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
        return if fired {
            Err(timed_out(timeout))
        } else {
            deliver(py, Some(Outcome::Cancelled))
        };
    }
    Ok(task.call_method0(intern!(py, "result"))?.unbind())
}

/// Runs a task's step `handle`, taken out of `ready`, now, from sync code inside the loop's
/// current task (if any), which is left meanwhile. Where asyncio cannot switch tasks, the
/// handle goes back to `ready` instead.
fn step_now(
    event_loop: &Bound<'_, PyAny>,
    ready: &Bound<'_, PyAny>,
    handle: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = event_loop.py();
    let stepped = with_current_task_left(event_loop, |_, _| {
        handle.call_method0(intern!(py, "_run")).map(drop)
    })?;
    if !stepped {
        ready.call_method1(intern!(py, "append"), (handle,))?;
    }
    Ok(())
}
