//! Running one session step from sync code, for both bridges: queue the step on the
//! session's loop thread and wait for its outcome, or, where the caller runs that very loop
//! (sync code on the loop thread), drive the loop re-entrantly until the step is done,
//! exactly as `run()` does.

use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::blocking::{self, Api, Limit};
use crate::completion::Call;
use crate::loop_thread::LoopThreadBase;
use crate::py::{cached, name_of};
use crate::reentry::{self, drive_nested};
use crate::session::{Session, SessionJob, Step};
use crate::session_op::Op;

/// What a step is for, for the messages of a caller that waits on it.
pub(crate) struct Purpose<'a, 'py> {
    /// The public call.
    pub(crate) api: Api,
    /// The bridged async iterator or manager.
    pub(crate) what: &'a Bound<'py, PyAny>,
}

/// Runs one step on `session` and waits for its outcome (or drives it, on its own loop), for
/// at most `bound`'s seconds where there is one.
pub(crate) fn step(
    loop_thread: &Bound<'_, LoopThreadBase>,
    session: &Py<Session>,
    op: Op,
    context: Option<Py<PyAny>>,
    bound: Option<(f64, Limit)>,
    purpose: &Purpose<'_, '_>,
) -> PyResult<Py<PyAny>> {
    let py = loop_thread.py();
    let timeout = bound.map(|(seconds, _)| seconds);
    let core = Arc::clone(&session.get().core);
    if !core.is_current() {
        return Err(gone());
    }
    let call = Arc::new(Call::default());
    let step = Step {
        op,
        call: Arc::clone(&call),
    };
    let job = Session::job(session, py, SessionJob::Step { step, context });
    let running = cached(py)?.get_running_loop.bind(py).call0()?;
    let this = loop_thread.get();
    if core.event_loop.bind(py).is(&running) {
        // Sync code on this session's own loop: drive the loop until the step is done.
        let nested = reentry::enter(&running)?;
        core.post(py, job);
        let (target, to_cancel) = (session.clone_ref(py), Arc::clone(&call));
        let cancel = move |py: Python<'_>| target.get().cancel_step(py, &to_cancel);
        return drive_nested(
            &running,
            &call,
            nested.queued,
            cancel,
            timeout,
            this.grace(),
        );
    }
    let blocked = (!running.is_none()).then_some(running);
    let cancel =
        |py: Python<'_>| Session::job(session, py, SessionJob::CancelStep(Arc::clone(&call)));
    let mut how = this.waiting(purpose.api, purpose.what, timeout, blocked);
    if let Some((_, limit)) = bound {
        how.limit = limit;
    }
    blocking::through_inbox(py, &core, job, &call, &cancel, &how)
}

/// Creates a session on `loop_thread`'s loop thread (starting it if needed), its task named
/// after the bridge (`api`) and what it bridges.
pub(crate) fn open(
    loop_thread: &Bound<'_, LoopThreadBase>,
    api: &str,
    what: &Bound<'_, PyAny>,
) -> PyResult<Py<Session>> {
    let core = LoopThreadBase::core(loop_thread)?;
    let name = format!("blockon.{api}({})", name_of(what));
    Py::new(loop_thread.py(), Session::new(core, name))
}

/// Queues `job` for `session` without waiting for it.
pub(crate) fn post(py: Python<'_>, session: &Py<Session>, job: SessionJob) {
    session.get().core.post(py, Session::job(session, py, job));
}

/// `RuntimeError` for a session whose loop thread is gone (closed, or from before a fork).
pub(crate) fn gone() -> PyErr {
    PyRuntimeError::new_err(
        "the loop thread this bridge was started on has closed (or this process was forked \
         since); create the bridge again",
    )
}
