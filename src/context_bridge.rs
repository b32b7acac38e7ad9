//! `ContextBridge`, what `wrap_context` returns (and what `enter_context` enters): a sync
//! context manager over an async one, whose `__aenter__` and `__aexit__` run as two steps of
//! one session, so in one task on the loop, and managers bound to their task
//! (`asyncio.timeout()`, task groups, cancel scopes) work.
//!
//! Native so that an exception from the manager reaches the caller with the caller's frame
//! and then the manager's own, and no blockon frame.
//!
//! What the bridge is given is checked in Python (`blockon._bridges`), where the messages
//! can teach.
//!
//! An entered bridge dropped without `__exit__` is exited on the loop soon after, as
//! `__aexit__(None, None, None)`, as a dropped `wrap_iter` iterator closes its async iterator.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::blocking::{Api, Limit};
use crate::completion::{lock, Call};
use crate::loop_thread::LoopThreadBase;
use crate::py::cached;
use crate::session::{Session, SessionJob, Step};
use crate::session_op::Op;
use crate::sync_step::{self, Purpose};

/// A sync context manager over an async one, made by `wrap_context`.
#[pyclass(frozen, module = "blockon._blockon")]
pub(crate) struct ContextBridge {
    loop_thread: Py<LoopThreadBase>,
    /// The manager (or the awaitable that returns one), until entered.
    source: Mutex<Option<Py<PyAny>>>,
    /// What was entered, for messages while exiting.
    entered: Mutex<Option<Py<PyAny>>>,
    session: Mutex<Option<Py<Session>>>,
}

/// `__aexit__(None, None, None)`: the exit of a manager left without an exception.
fn clean_exit(py: Python<'_>) -> PyResult<Op> {
    Ok(Op::Exit(
        PyTuple::new(py, [py.None(), py.None(), py.None()])?.unbind(),
    ))
}

impl ContextBridge {
    /// Exits in the same task that entered; waits at most `bound`'s seconds, where given.
    fn exit(
        &self,
        py: Python<'_>,
        args: [Option<Py<PyAny>>; 3],
        bound: Option<(f64, Limit)>,
    ) -> PyResult<bool> {
        let Some(session) = lock(&self.session).take() else {
            return Ok(false);
        };
        let what = match lock(&self.entered).take() {
            Some(entered) => entered.into_bound(py),
            None => py.None().into_bound(py),
        };
        let purpose = Purpose {
            api: Api::CONTEXT_EXIT,
            what: &what,
        };
        let body_exc = args[1].as_ref().map(|e| e.clone_ref(py));
        let args = Op::Exit(PyTuple::new(py, args)?.unbind());
        let loop_thread = self.loop_thread.bind(py);
        let exited = sync_step::step(loop_thread, &session, args, None, bound, &purpose);
        sync_step::post(py, &session, SessionJob::Finish);
        match exited {
            Ok(suppress) => suppress.bind(py).is_truthy(),
            Err(err) => {
                // `async with` raises `__aexit__`'s error inside the handler of the body's
                // exception, which chains them; so does this.
                if let Some(body_exc) = body_exc {
                    let value = err.value(py);
                    if !value.is(&body_exc) && value.getattr("__context__")?.is_none() {
                        value.setattr("__context__", body_exc)?;
                    }
                }
                Err(err)
            }
        }
    }
}

#[pymethods]
impl ContextBridge {
    #[new]
    fn new(loop_thread: Py<LoopThreadBase>, source: Py<PyAny>) -> Self {
        Self {
            loop_thread,
            source: Mutex::new(Some(source)),
            entered: Mutex::new(None),
            session: Mutex::new(None),
        }
    }

    /// Shows the garbage collector what the bridge holds: a manager that refers to its own
    /// bridge makes a cycle through the bridge, its session and the manager.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_thread)?;
        // try_lock: a traversal must never block.
        for held in [&self.source, &self.entered] {
            if let Ok(held) = held.try_lock() {
                visit.call(&*held)?;
            }
        }
        if let Ok(session) = self.session.try_lock() {
            visit.call(&*session)?;
        }
        Ok(())
    }

    /// Breaks such a cycle: the bridge is garbage, nobody can exit it any more.
    fn __clear__(&self) {
        let dropped = (
            lock(&self.source).take(),
            lock(&self.entered).take(),
            lock(&self.session).take(),
        );
        drop(dropped); // outside the locks: freeing them runs Python
    }

    /// Enters the async context manager on the loop; returns what ``__aenter__`` returned.
    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let source = lock(&self.source).take().ok_or_else(|| {
            PyValueError::new_err(
                "this wrap_context() manager was entered already; wrap the async manager again",
            )
        })?;
        let loop_thread = self.loop_thread.bind(py);
        let what = source.bind(py).clone();
        let session = sync_step::open(loop_thread, "wrap_context", &what)?;
        session.get().set_closer(Step {
            op: clean_exit(py)?,
            call: Arc::new(Call::default()),
        });
        let context = cached(py)?.copy_context.call0(py)?;
        let purpose = Purpose {
            api: Api::CONTEXT_ENTER,
            what: &what,
        };
        let entered = sync_step::step(
            loop_thread,
            &session,
            Op::Enter(source),
            Some(context),
            None,
            &purpose,
        );
        if entered.is_ok() {
            *lock(&self.entered) = Some(what.unbind());
            *lock(&self.session) = Some(session);
        } else {
            sync_step::post(py, &session, SessionJob::Finish);
        }
        entered
    }

    /// Exits it, in the same task that entered it; a true ``__aexit__`` result suppresses
    /// the exception.
    #[pyo3(signature = (exc_type=None, exc=None, tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<Py<PyAny>>,
        exc: Option<Py<PyAny>>,
        tb: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        self.exit(py, [exc_type, exc, tb], None)
    }

    /// ``__exit__`` for ``LoopThread.close()``, which must finish in bounded time: an
    /// ``__aexit__`` still running after ``timeout`` seconds is abandoned with a
    /// ``TimeoutError`` that names it, and the loop thread's shutdown cancels its task.
    fn _exit_within(
        &self,
        py: Python<'_>,
        exc_type: Option<Py<PyAny>>,
        exc: Option<Py<PyAny>>,
        tb: Option<Py<PyAny>>,
        timeout: f64,
    ) -> PyResult<bool> {
        let bound = (timeout, Limit::Deadline("__aexit__()"));
        self.exit(py, [exc_type, exc, tb], Some(bound))
    }
}

impl Drop for ContextBridge {
    fn drop(&mut self) {
        // Entered and never exited: without this, the manager's task would stay pending, and
        // what `__aenter__` acquired held, until the loop thread closes. Queued, not awaited
        // (a drop must not block; the loop's own thread cannot wait for itself), and only on
        // the live loop that entered it: a forked child has no such loop, and a closing one
        // exits it itself.
        let session = self
            .session
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(session) = session else {
            return;
        };
        let core = &session.get().core;
        if !core.is_current() || core.inbox.is_closed() {
            return;
        }
        Python::try_attach(|py| {
            // Dropped while the collector takes apart a cycle through the manager (before the
            // bridge's own `__clear__`): the task is part of it, and waking it would run a
            // cleared task. asyncio's view of such a task is that it was destroyed pending.
            if session.get().task(py).is_none() {
                return;
            }
            if let Ok(op) = clean_exit(py) {
                let call = Arc::new(Call::default());
                let step = Step { op, call };
                let exit = SessionJob::Step {
                    step,
                    context: None,
                };
                sync_step::post(py, &session, exit);
            }
            sync_step::post(py, &session, SessionJob::Finish);
        });
    }
}
