//! Blocking calls: hand one awaitable to a loop running in another thread, wait for its
//! outcome with the GIL released, and cancel it (then wait for its cleanup) on timeout or
//! Ctrl-C.
//!
//! Two kinds of loop take work: a blockon loop thread, through its inbox (one wake-up per
//! batch, woken after the GIL is released), and any other running loop, through
//! `call_soon_threadsafe` (the `loop=` argument and `to_thread` workers). Both settle the
//! same [`Call`], so waiting, timeouts and cancellation are written once, here.

use std::ffi::CString;
use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::{PyRuntimeError, PyRuntimeWarning, PyTimeoutError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::completion::{Call, Outcome};
use crate::driver::{Driver, Target};
use crate::lifecycle::{closed_error, Core, Job};
use crate::py::cached;
use crate::waiter::{self, Wake, SIGNAL_CHECK};

/// How a blocking call waits.
pub struct Waiting<'py> {
    /// `timeout=` in seconds.
    pub timeout: Option<f64>,
    /// How long Ctrl-C waits for the cancelled awaitable's cleanup.
    pub grace: f64,
    /// Warn once after this many seconds that this running loop is blocked.
    pub blocked: Option<(f64, Bound<'py, PyAny>)>,
    /// The caller's own task (on the loop it blocks) and its cancellation count when the call
    /// began: if it is cancelled meanwhile (asyncio's Ctrl-C handler cancels the main task),
    /// the call ends with `CancelledError`, as an `await` would.
    pub caller_task: Option<(Bound<'py, PyAny>, usize)>,
}

impl Waiting<'_> {
    fn caller_cancelled(&self) -> PyResult<bool> {
        let Some((task, before)) = &self.caller_task else {
            return Ok(false);
        };
        let now: usize = task
            .call_method0(intern!(task.py(), "cancelling"))?
            .extract()?;
        Ok(now > *before)
    }
}

/// Starts a task for `driver` on `event_loop` (which must be running in this thread) in
/// `context` (default: a copy of the current one), and remembers it for cancellation.
pub fn spawn_task(
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
    // `create_task` queued the task's own first step last in the ready queue, if the queue
    // grew by exactly one: that step is held back while the eager step runs.
    let held = match ready {
        Some(ready) if ready.len()? == before + 1 => Some(ready),
        _ => None,
    };
    start_eagerly(event_loop, &task, driver, context, held)?;
    if let Some(call) = driver.get().call() {
        if !driver.get().is_finished() {
            call.set_task(&task)?;
        }
    }
    Ok(())
}

/// Runs the task's first step now, inside the task (it is the current task meanwhile, and
/// its context is entered), as Python 3.12's eager tasks do: work that never suspends
/// finishes without waiting for another turn of the loop. The task's own first step then
/// takes over where this one stopped.
///
/// That own first step is held back (taken out of `ready` and put back after): sync code in
/// the eager step may run the loop re-entrantly, which must not step this same task a second
/// time. Loops without a visible ready queue (uvloop) cannot be re-entered at all.
///
/// Skipped where asyncio lacks the task-switching functions (the task then simply runs on
/// the loop's next turn).
fn start_eagerly(
    event_loop: &Bound<'_, PyAny>,
    task: &Bound<'_, PyAny>,
    driver: &Bound<'_, Driver>,
    context: Option<&Bound<'_, PyAny>>,
    ready: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = event_loop.py();
    let c = cached(py)?;
    let (Some(enter), Some(leave)) = (&c.enter_task, &c.leave_task) else {
        return Ok(());
    };
    let (enter, leave) = (enter.bind(py), leave.bind(py));
    let held = ready
        .map(|ready| {
            ready
                .call_method0(intern!(py, "pop"))
                .map(|handle| (ready, handle))
        })
        .transpose()?;
    let outer = c.current_task.bind(py).call1((event_loop,))?;
    let nested = !outer.is_none();
    if nested {
        leave.call1((event_loop, &outer))?;
    }
    enter.call1((event_loop, task))?;
    let eager = driver.getattr(intern!(py, "_eager"))?;
    let stepped = match context {
        Some(context) => context.call_method1(intern!(py, "run"), (eager,)).map(drop),
        None => eager.call0().map(drop),
    };
    leave.call1((event_loop, task))?;
    if nested {
        enter.call1((event_loop, &outer))?;
    }
    if let Some((ready, handle)) = held {
        ready.call_method1(intern!(py, "append"), (handle,))?;
    }
    stepped
}

/// Runs `coro` on a blockon loop thread and waits for it.
pub fn on_core(
    py: Python<'_>,
    core: &Core,
    coro: Bound<'_, PyAny>,
    how: &Waiting<'_>,
) -> PyResult<Py<PyAny>> {
    let c = cached(py)?;
    let call = Arc::new(Call::default());
    let context = c.copy_context.call0(py)?;
    let driver = Py::new(py, Driver::new(coro, Target::Call(Arc::clone(&call))))?;
    let job = Job::Run {
        driver: driver.clone_ref(py),
        context,
        link: None,
    };
    let cancel = |py: Python<'_>| Job::Cancel(driver.clone_ref(py));
    through_inbox(py, core, job, &call, &cancel, how)
}

/// Queues `job` on a loop thread and waits for `call`, which the job settles; on timeout or
/// Ctrl-C, queues `cancel(py)` and waits for the cleanup.
pub fn through_inbox(
    py: Python<'_>,
    core: &Core,
    job: Job,
    call: &Call,
    cancel: &dyn Fn(Python<'_>) -> Job,
    how: &Waiting<'_>,
) -> PyResult<Py<PyAny>> {
    let must_wake = match core.inbox.push(job) {
        Ok(must_wake) => must_wake,
        Err(job) => {
            job.refuse(py);
            return Err(closed_error());
        }
    };
    let inbox = &core.inbox;
    let kick = move || {
        if must_wake {
            inbox.wake();
        }
    };
    let cancel = |py: Python<'_>| {
        if let Ok(true) = inbox.push(cancel(py)) {
            inbox.wake();
        }
        Ok(())
    };
    let gil_busy = || inbox.consumer_holds_gil();
    wait(py, call, how, &kick, &cancel, None, Some(&gil_busy))
}

/// Queues `job` on a loop thread without waiting; `false` if the loop thread is closed.
pub fn post(py: Python<'_>, core: &Core, job: Job) -> bool {
    match core.inbox.push(job) {
        Ok(must_wake) => {
            if must_wake {
                py.detach(|| core.inbox.wake());
            }
            true
        }
        Err(job) => {
            job.refuse(py);
            false
        }
    }
}

/// Runs `coro` on `event_loop`, a loop running in another thread, and waits for it.
pub fn on_loop(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    coro: Bound<'_, PyAny>,
    how: &Waiting<'_>,
) -> PyResult<Py<PyAny>> {
    if let Err(err) = check_alive(event_loop) {
        crate::awaitable::discard(&coro);
        return Err(err);
    }
    let c = cached(py)?;
    let call = Arc::new(Call::default());
    let driver = Bound::new(py, Driver::new(coro, Target::Call(Arc::clone(&call))))?;
    // The context goes to the task itself (not to the callback that starts it), so the
    // eager first step and the later steps share it.
    let context = c.copy_context.call0(py)?;
    let scheduled = event_loop.call_method1(
        intern!(py, "call_soon_threadsafe"),
        (c.spawn_here.bind(py), event_loop, &driver, context),
    );
    let cancel = |_py: Python<'_>| {
        let cancel_it = driver.getattr(intern!(py, "_cancel"))?;
        // A loop that closed meanwhile cannot take the request; `alive` reports that.
        let _ = event_loop.call_method1(intern!(py, "call_soon_threadsafe"), (cancel_it,));
        Ok(())
    };
    let alive = |_py: Python<'_>| check_alive(event_loop);
    if let Err(err) = scheduled {
        if check_alive(event_loop).is_err() {
            // Refused by a closed loop: the awaitable never ran, so close it here.
            driver.get().abandon(py, Outcome::Cancelled)?;
        } else {
            // Interrupted (Ctrl-C) inside the call, perhaps after it queued the start: the
            // awaitable may be running on the loop already. Cancel it there, as Ctrl-C does.
            cancel(py)?;
            let _ = cleanup(
                py,
                &call,
                waiter::deadline_after(Some(how.grace)),
                Some(&alive),
            );
        }
        return Err(err);
    }
    wait(py, &call, how, &|| {}, &cancel, Some(&alive), None)
}

/// `RuntimeError` unless `event_loop` is running and not closed.
fn check_alive(event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = event_loop.py();
    let closed = event_loop
        .call_method0(intern!(py, "is_closed"))?
        .is_truthy()?;
    let running = event_loop
        .call_method0(intern!(py, "is_running"))?
        .is_truthy()?;
    if closed || !running {
        let state = if closed { "closed" } else { "not running" };
        return Err(PyRuntimeError::new_err(format!(
            "the event loop {} is {state}, so it cannot run the awaitable. With loop=, pass a \
             loop that is running in another thread; in a to_thread worker, the loop that \
             started the worker has stopped",
            event_loop.repr()?
        )));
    }
    Ok(())
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

type Check<'a> = &'a dyn Fn(Python<'_>) -> PyResult<()>;

/// Waits for `call`; on timeout or a signal, cancels it and waits for its cleanup.
fn wait(
    py: Python<'_>,
    call: &Call,
    how: &Waiting<'_>,
    kick: &(dyn Fn() + Sync),
    cancel: Check<'_>,
    alive: Option<Check<'_>>,
    gil_busy: Option<&(dyn Fn() -> bool + Sync)>,
) -> PyResult<Py<PyAny>> {
    let deadline = waiter::deadline_after(how.timeout);
    let mut warn_at = how
        .blocked
        .as_ref()
        .and_then(|(seconds, _)| waiter::deadline_after(Some(*seconds)));
    let mut first = true;
    loop {
        let mut until = earliest(deadline, warn_at);
        if alive.is_some() || how.caller_task.is_some() {
            until = earliest(until, Some(Instant::now() + SIGNAL_CHECK));
        }
        let kick = if first { Some(kick) } else { None };
        let woke = waiter::wait(py, &call.outcome, until, kick, first, gil_busy);
        first = false;
        let interrupt = match woke {
            Ok(Wake::Done) => return deliver(py, call.outcome.take()),
            Err(interrupt) => interrupt,
            Ok(Wake::Expired) => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    cancel(py)?;
                    return match cleanup(py, call, None, alive) {
                        Ok(Some(Outcome::Cancelled) | None) => Err(timed_out(how.timeout)),
                        Ok(outcome) => deliver(py, outcome),
                        Err(interrupt) => {
                            let _ =
                                cleanup(py, call, waiter::deadline_after(Some(how.grace)), alive);
                            Err(interrupt)
                        }
                    };
                }
                if how.caller_cancelled()? {
                    cancel(py)?;
                    let _ = cleanup(py, call, waiter::deadline_after(Some(how.grace)), alive);
                    let cancelled = cached(py)?.asyncio_cancelled.bind(py).clone();
                    return Err(PyErr::from_type(cancelled, ()));
                }
                match warn_at {
                    Some(at) if now >= at => {
                        warn_at = None;
                        match warn_blocked(py, how) {
                            Ok(()) => continue,
                            Err(raised) => raised,
                        }
                    }
                    _ if crate::to_thread_home::worker_must_stop(py) => PyRuntimeError::new_err(
                        "the interpreter is exiting: this to_thread worker stopped waiting, \
                         and the awaitable was cancelled",
                    ),
                    _ => match alive.map_or(Ok(()), |alive| alive(py)) {
                        Ok(()) => continue,
                        Err(gone) => return Err(gone),
                    },
                }
            }
        };
        // Ctrl-C (or a warning turned error): cancel, give the cleanup its grace, re-raise.
        cancel(py)?;
        let _ = cleanup(py, call, waiter::deadline_after(Some(how.grace)), alive);
        return Err(interrupt);
    }
}

/// After a cancel request: waits for the outcome until `until` (None: as long as it takes,
/// or until the loop goes away). `Ok(None)` if `until` passed first.
fn cleanup(
    py: Python<'_>,
    call: &Call,
    until: Option<Instant>,
    alive: Option<Check<'_>>,
) -> PyResult<Option<Outcome>> {
    loop {
        let slice = if alive.is_some() {
            earliest(until, Some(Instant::now() + SIGNAL_CHECK))
        } else {
            until
        };
        match waiter::wait(py, &call.outcome, slice, None, false, None)? {
            Wake::Done => return Ok(call.outcome.take()),
            Wake::Expired => {
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Ok(None);
                }
                if let Some(alive) = alive {
                    if alive(py).is_err() {
                        return Ok(Some(Outcome::Lost));
                    }
                }
            }
        }
    }
}

/// Turns an outcome into the caller's return value or exception.
pub fn deliver(py: Python<'_>, outcome: Option<Outcome>) -> PyResult<Py<PyAny>> {
    match outcome {
        Some(Outcome::Value(value)) => Ok(value),
        Some(Outcome::Raised(exc)) => Err(PyErr::from_value(exc.into_bound(py))),
        Some(Outcome::Cancelled) => Err(PyErr::from_type(
            cached(py)?.futures_cancelled.bind(py).clone(),
            "the awaitable was cancelled by something other than this caller (its own code, \
             or its event loop closing)",
        )),
        Some(Outcome::Lost) | None => Err(PyRuntimeError::new_err(
            "the event loop running the awaitable stopped or closed before it finished",
        )),
    }
}

pub fn timed_out(timeout: Option<f64>) -> PyErr {
    PyTimeoutError::new_err(format!(
        "the awaitable did not finish within timeout={}; it was cancelled and its cleanup ran",
        timeout.unwrap_or_default()
    ))
}

fn warn_blocked(py: Python<'_>, how: &Waiting<'_>) -> PyResult<()> {
    let Some((seconds, blocked)) = &how.blocked else {
        return Ok(());
    };
    let message = format!(
        "blockon.run() has blocked the running event loop {} for {seconds} s while it waits \
         for blockon's loop thread; no other task on that loop can run meanwhile. Pass \
         nest=True to run the awaitable on the running loop itself, or await it directly.",
        blocked
            .repr()
            .map_or_else(|_| "?".to_owned(), |r| r.to_string())
    );
    let message = CString::new(message).unwrap_or_default();
    let category = py.get_type::<PyRuntimeWarning>();
    PyErr::warn(py, &category, &message, 1)
}

/// Called on a foreign loop through `call_soon_threadsafe`: starts the driver's task there.
#[pyfunction]
pub fn _spawn_here(
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
