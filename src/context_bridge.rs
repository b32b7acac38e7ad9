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

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::blocking::Api;
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
        let session = sync_step::open(loop_thread)?;
        session.get().set_closer(Step {
            op: Op::Exit(PyTuple::new(py, [py.None(), py.None(), py.None()])?.unbind()),
            call: Arc::new(Call::default()),
        });
        let context = cached(py)?.copy_context.call0(py)?;
        let what = source.bind(py).clone();
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
        let body_exc = exc.as_ref().map(|e| e.clone_ref(py));
        let args = PyTuple::new(py, [exc_type, exc, tb])?.unbind();
        let loop_thread = self.loop_thread.bind(py);
        let exited = sync_step::step(loop_thread, &session, Op::Exit(args), None, None, &purpose);
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
