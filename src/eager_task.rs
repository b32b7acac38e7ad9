//! Starting a driver's task with its first step run at once, inside the task, as Python
//! 3.12's eager tasks do: work that never suspends finishes without waiting for another turn
//! of the loop. Every task the engine starts for a driver starts here, on whichever loop runs
//! it (blockon's loop thread, a `loop=` target, a `to_thread` worker's home loop, or the
//! caller's own loop when running re-entrantly).
//!
//! The engine's own emulation on every version, rather than asyncio's eager tasks (3.12's
//! `eager_task_factory`, 3.14's `eager_start=`): those would need a task factory installed on
//! the user's loop, or a branch per version, for the same effect.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::completion::Outcome;
use crate::driver::Driver;
use crate::py::cached;

/// Starts a task for `driver` on `event_loop` (which must be running in this thread) in
/// `context` (default: a copy of the current one), and remembers it for cancellation.
pub(crate) fn spawn_task(
    event_loop: &Bound<'_, PyAny>,
    driver: &Bound<'_, Driver>,
    context: Option<&Bound<'_, PyAny>>,
    link: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = event_loop.py();
    let kwargs = PyDict::new(py);
    if let Some(context) = context {
        kwargs.set_item(intern!(py, "context"), context)?;
    }
    let ready = event_loop.getattr_opt(intern!(py, "_ready"))?;
    let before = ready.as_ref().map_or(Ok(0), PyAnyMethods::len)?;
    let task = event_loop.call_method(intern!(py, "create_task"), (driver,), Some(&kwargs))?;
    if let Some(link) = link {
        cached(py)?
            .attach_task
            .call1(py, (link, event_loop, &task))?;
    }
    // Known before the eager step runs: a cancel that arrives during it (sync code in the
    // step waiting re-entrantly, its caller timing out) must find the task.
    if let Some(call) = driver.get().call() {
        call.set_task(&task)?;
    }
    match ready {
        Some(ready) => {
            // Not found (a task factory queued it elsewhere): no eager step, the task's own
            // step runs on the loop's next turn.
            if let Some(handle) = own_step(&ready, &task, before)? {
                start_eagerly(event_loop, &task, driver, context, &ready, handle)?;
            }
        }
        // No visible ready queue (uvloop): nothing to hold back, and nothing can re-enter.
        None => start_eagerly_unheld(event_loop, &task, driver, context)?,
    }
    Ok(())
}

/// Takes the task's own first step (the handle `create_task` queued) out of `ready`, found by
/// identity among the handles queued since `before`: a task factory, or another thread's
/// `call_soon_threadsafe`, may have queued more than that one meanwhile.
pub(crate) fn own_step<'py>(
    ready: &Bound<'py, PyAny>,
    task: &Bound<'py, PyAny>,
    before: usize,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = ready.py();
    let len = ready.len()?;
    for index in (before.min(len)..len).rev() {
        let handle = ready.get_item(index)?;
        let Some(callback) = handle.getattr_opt(intern!(py, "_callback"))? else {
            continue;
        };
        let owner = callback.getattr_opt(intern!(py, "__self__"))?;
        if owner.is_some_and(|owner| owner.is(task)) {
            ready.del_item(index)?;
            return Ok(Some(handle));
        }
    }
    Ok(None)
}

/// Runs the task's first step now, inside the task (it is the current task meanwhile, and
/// its context is entered), as Python 3.12's eager tasks do: work that never suspends
/// finishes without waiting for another turn of the loop. The task's own first step then
/// takes over where this one stopped.
///
/// That own first step (`held`) is kept out of `ready` meanwhile and queued again after,
/// whatever happens: sync code in the eager step may run the loop re-entrantly, which must
/// not step this same task a second time, and a step that is never queued again leaves the
/// task pending forever.
fn start_eagerly(
    event_loop: &Bound<'_, PyAny>,
    task: &Bound<'_, PyAny>,
    driver: &Bound<'_, Driver>,
    context: Option<&Bound<'_, PyAny>>,
    ready: &Bound<'_, PyAny>,
    held: Bound<'_, PyAny>,
) -> PyResult<()> {
    driver.get().mark_first_step_last();
    let stepped = start_eagerly_unheld(event_loop, task, driver, context);
    let requeued = ready.call_method1(intern!(event_loop.py(), "append"), (held,));
    stepped.and(requeued.map(drop))
}

/// The eager first step itself. Skipped where asyncio lacks the task-switching functions
/// (the task then simply runs on the loop's next turn).
fn start_eagerly_unheld(
    event_loop: &Bound<'_, PyAny>,
    task: &Bound<'_, PyAny>,
    driver: &Bound<'_, Driver>,
    context: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = event_loop.py();
    with_current_task_left(event_loop, |enter, leave| {
        enter.call1((event_loop, task))?;
        let eager = driver.getattr(intern!(py, "_eager"))?;
        let stepped = match context {
            Some(context) => context.call_method1(intern!(py, "run"), (eager,)).map(drop),
            None => eager.call0().map(drop),
        };
        stepped.and(leave.call1((event_loop, task)).map(drop))
    })
    .map(drop)
}

/// Runs `step` with the current task of `event_loop` (running in this thread), if any, left
/// so that another task can be entered meanwhile, and entered again after, on every path, an
/// error in `step` included. `step` gets asyncio's `_enter_task` and `_leave_task`. Returns
/// whether it ran: not where asyncio lacks those functions.
pub(crate) fn with_current_task_left<'py>(
    event_loop: &Bound<'py, PyAny>,
    step: impl FnOnce(&Bound<'py, PyAny>, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<bool> {
    let py = event_loop.py();
    let c = cached(py)?;
    let (Some(enter), Some(leave)) = (&c.enter_task, &c.leave_task) else {
        return Ok(false);
    };
    let (enter, leave) = (enter.bind(py), leave.bind(py));
    let outer = c.current_task.bind(py).call1((event_loop,))?;
    let nested = !outer.is_none();
    if nested {
        leave.call1((event_loop, &outer))?;
    }
    let stepped = step(enter, leave);
    let restored = if nested {
        enter.call1((event_loop, &outer)).map(drop)
    } else {
        Ok(())
    };
    stepped.and(restored).map(|()| true)
}

/// Called on a foreign loop through `call_soon_threadsafe`: starts the driver's task there.
#[pyfunction]
pub(crate) fn _spawn_here(
    event_loop: &Bound<'_, PyAny>,
    driver: &Bound<'_, Driver>,
    context: &Bound<'_, PyAny>,
) {
    if let Err(err) = spawn_task(event_loop, driver, Some(context), None) {
        let py = event_loop.py();
        let outcome = Outcome::Raised(err.into_value(py).into_any());
        if let Err(err) = driver.get().abandon(py, outcome) {
            err.write_unraisable(py, Some(&PyString::new(py, "blockon: starting a task")));
        }
    }
}
