//! What one session step does to the session's subject (the async iterator, or the async
//! context manager), up to the awaitable the session's task then steps.
//!
//! Kept apart from `session`, which decides when steps run (queueing, parking, pumping,
//! cancelling): this module only knows how each operation starts, so it needs nothing of the
//! session but its subject, which it owns.
//!
//! What the bridges are given is checked in Python (`blockon._bridges`), where the messages
//! can teach; the checks here are on what only the loop can know: the object an awaitable
//! passed to `wrap_context` returned, and what the subject's own protocol methods return. A
//! subject that breaks its protocol is named with the method that broke it, as `async for`
//! and `async with` would, never blamed on the argument to the bridge.

use std::sync::Mutex;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyIterator, PyString, PyTuple};
use pyo3::PyVisit;

use crate::awaitable::{discard, is_coroutine, prepare};
use crate::completion::lock;
use crate::py::{cached, described, type_name};

/// What a step does, in the session's task.
pub(crate) enum Op {
    /// `subject = type(source).__aiter__(source)`.
    Aiter(Py<PyAny>),
    /// Await `type(subject).__anext__(subject)`.
    Anext,
    /// Await `subject.asend(value)` (an async generator's `send`).
    Asend(Py<PyAny>),
    /// Await `subject.athrow(*args)` (an async generator's `throw`).
    Athrow(Py<PyTuple>),
    /// Await `subject.aclose()` where it has one.
    Aclose,
    /// Enter an async context manager, or an awaitable that returns one: the subject becomes
    /// the manager, and the step's value is what `__aenter__` returned.
    Enter(Py<PyAny>),
    /// Await `type(subject).__aexit__(subject, *args)`.
    Exit(Py<PyTuple>),
}

impl Op {
    /// Shows the garbage collector the objects this operation holds.
    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        match self {
            Op::Aiter(obj) | Op::Asend(obj) | Op::Enter(obj) => visit.call(obj),
            Op::Athrow(args) | Op::Exit(args) => visit.call(args),
            Op::Anext | Op::Aclose => Ok(()),
        }
    }

    /// Delivers a `CancelledError` that arrived while the session was parked into this
    /// operation, where `async for` or `async with` would have seen it: an `__anext__`
    /// becomes `athrow(CancelledError())`, an `__aexit__` without an exception gets the
    /// `CancelledError` (so `asyncio.timeout()` turns it into `TimeoutError`, and a task
    /// group into its errors). `Err(op)` hands back an operation that cannot take it; the
    /// cancel then waits for the next one.
    pub(crate) fn with_cancel(self, py: Python<'_>) -> PyResult<Result<Op, Op>> {
        let cancelled = cached(py)?.asyncio_cancelled.bind(py);
        Ok(match self {
            Op::Anext | Op::Asend(_) => {
                Ok(Op::Athrow(PyTuple::new(py, [cancelled.call0()?])?.unbind()))
            }
            Op::Exit(args) if args.bind(py).get_item(0)?.is_none() => {
                let exc = cancelled.call0()?;
                let args = [cancelled.clone().into_any(), exc, py.None().into_bound(py)];
                Ok(Op::Exit(PyTuple::new(py, args)?.unbind()))
            }
            other => Err(other),
        })
    }
}

/// What a running step does when its awaitable finishes.
pub(crate) enum Then {
    /// Settle the step's call (or feed the pump) with the outcome.
    Settle,
    /// The awaited value is the context manager: make it the subject and enter it.
    Enter,
}

/// How an operation began.
pub(crate) enum Begun<'py> {
    /// Finished at once with this value.
    Done(Py<PyAny>),
    /// Step this awaitable, then do `Then`.
    Await(Bound<'py, PyAny>, Then),
}

/// The object a session's steps work on, or why there is none.
///
/// Behind its own lock, taken only for a moment and never across a Python call: an
/// operation runs Python code (`__aiter__`, `__aenter__`), which may use the same bridge
/// again, and would then wait for a lock its own thread holds.
#[derive(Default)]
pub(crate) struct Subject(Mutex<SubjectState>);

#[derive(Default)]
struct SubjectState {
    value: Option<Py<PyAny>>,
    /// Why there is no subject (`__aiter__` failed): what later steps raise.
    error: Option<Py<PyAny>>,
}

impl Subject {
    /// Whether it exists (`__aiter__` succeeded, or the manager was entered).
    pub(crate) fn exists(&self) -> bool {
        lock(&self.0).value.is_some()
    }

    /// Shows the garbage collector what it holds. `try_lock`: a traversal must never block;
    /// whoever holds the lock is about to take or put the object, and holds it meanwhile.
    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        if let Ok(state) = self.0.try_lock() {
            visit.call(&state.value)?;
            visit.call(&state.error)?;
        }
        Ok(())
    }

    fn set(&self, value: Bound<'_, PyAny>) {
        let old = lock(&self.0).value.replace(value.unbind());
        drop(old);
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = lock(&self.0);
        if let Some(value) = &state.value {
            return Ok(value.bind(py).clone());
        }
        Err(match &state.error {
            Some(exc) => PyErr::from_value(exc.bind(py).clone()),
            None => pyo3::exceptions::PyRuntimeError::new_err(
                "blockon: no async iterator or context manager yet",
            ),
        })
    }

    /// Awaits `type(subject).name(subject, *args)`, as the interpreter looks special methods
    /// up.
    fn await_call<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        args: &[Bound<'py, PyAny>],
        api: &str,
    ) -> PyResult<Begun<'py>> {
        let subject = self.get(py)?;
        let func = subject.get_type().getattr(name)?;
        let mut all = vec![subject.clone()];
        all.extend_from_slice(args);
        let returned = func.call1(PyTuple::new(py, all)?)?;
        let step = for_step(&subject, name.to_str()?, &returned, api)?;
        Ok(Begun::Await(step, Then::Settle))
    }

    /// Starts one operation: either it is done at once, or there is an awaitable to step.
    /// Runs on the loop thread, in the session's task.
    pub(crate) fn begin<'py>(&self, py: Python<'py>, op: Op) -> PyResult<Begun<'py>> {
        let api = if matches!(op, Op::Enter(_) | Op::Exit(_)) {
            "wrap_context"
        } else {
            "wrap_iter"
        };
        match op {
            Op::Aiter(source) => {
                let source = source.bind(py);
                let aiter = source.get_type().getattr(intern!(py, "__aiter__"));
                let iterator = aiter
                    .and_then(|aiter| aiter.call1((source,)))
                    .and_then(|iterator| async_iterator(source, iterator));
                match iterator {
                    Ok(iterator) => {
                        self.set(iterator);
                        Ok(Begun::Done(py.None()))
                    }
                    Err(err) => {
                        lock(&self.0).error = Some(err.clone_ref(py).into_value(py).into_any());
                        Err(err)
                    }
                }
            }
            Op::Anext => self.await_call(py, intern!(py, "__anext__"), &[], api),
            Op::Asend(value) => {
                self.await_call(py, intern!(py, "asend"), &[value.into_bound(py)], api)
            }
            Op::Athrow(args) => {
                let args: Vec<Bound<'py, PyAny>> = args.bind(py).iter().collect();
                self.await_call(py, intern!(py, "athrow"), &args, api)
            }
            Op::Aclose => {
                let Ok(subject) = self.get(py) else {
                    return Ok(Begun::Done(py.None())); // never started: nothing to close
                };
                match subject.getattr_opt(intern!(py, "aclose"))? {
                    Some(aclose) => {
                        let step = for_step(&subject, "aclose", &aclose.call0()?, api)?;
                        Ok(Begun::Await(step, Then::Settle))
                    }
                    None => Ok(Begun::Done(py.None())),
                }
            }
            Op::Enter(source) => {
                let source = source.into_bound(py);
                if source.get_type().hasattr(intern!(py, "__aenter__"))? {
                    self.enter(py, source)
                } else {
                    // The argument itself, checked as awaitable when the bridge was made.
                    Ok(Begun::Await(prepare(&source, api)?, Then::Enter))
                }
            }
            Op::Exit(args) => {
                let args: Vec<Bound<'py, PyAny>> = args.bind(py).iter().collect();
                self.await_call(py, intern!(py, "__aexit__"), &args, api)
            }
        }
    }

    /// Enters what the awaitable given to `wrap_context` returned, in the same step.
    pub(crate) fn enter_returned<'py>(
        &self,
        py: Python<'py>,
        manager: Py<PyAny>,
    ) -> PyResult<Begun<'py>> {
        let manager = manager.into_bound(py);
        if manager.get_type().hasattr(intern!(py, "__aenter__"))? {
            return self.enter(py, manager);
        }
        if is_coroutine(&manager) {
            discard(&manager); // it will never run: no "never awaited" warning
        }
        Err(PyTypeError::new_err(format!(
            "blockon.wrap_context(): the awaitable returned '{}', not an async context manager \
             (an object with __aenter__ and __aexit__)",
            type_name(&manager)
        )))
    }

    fn enter<'py>(&self, py: Python<'py>, manager: Bound<'py, PyAny>) -> PyResult<Begun<'py>> {
        // Checked before entering, as `async with` does: found missing only at the exit, what
        // `__aenter__` acquired could never be released.
        if !manager.get_type().hasattr(intern!(py, "__aexit__"))? {
            return Err(PyTypeError::new_err(format!(
                "'{}' object has __aenter__ but no __aexit__, so it is not an async context \
                 manager",
                type_name(&manager)
            )));
        }
        self.set(manager);
        self.await_call(py, intern!(py, "__aenter__"), &[], "wrap_context")
    }
}

/// What `type(source).__aiter__(source)` returned, if it is an async iterator; else the
/// `TypeError` that `async for` raises, naming the object that returned it.
fn async_iterator<'py>(
    source: &Bound<'py, PyAny>,
    iterator: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if iterator
        .get_type()
        .hasattr(intern!(source.py(), "__anext__"))?
    {
        return Ok(iterator);
    }
    Err(PyTypeError::new_err(format!(
        "{}.__aiter__() returned {}, which has no __anext__, so it is not an async iterator",
        type_name(source),
        described(&iterator)
    )))
}

/// The object to step for what `owner.method()` returned: itself when it can be sent into
/// directly (a coroutine, or an iterator such as an async generator's `asend` object), else
/// `__await__()`. Not awaitable at all: a `TypeError` naming `owner` and `method`, the
/// object that broke its protocol (`api` names the bridge for awaitables that fail later).
fn for_step<'py>(
    owner: &Bound<'py, PyAny>,
    method: &str,
    returned: &Bound<'py, PyAny>,
    api: &str,
) -> PyResult<Bound<'py, PyAny>> {
    if returned.cast::<PyIterator>().is_ok() || is_coroutine(returned) {
        return Ok(returned.clone());
    }
    if !returned
        .get_type()
        .hasattr(intern!(returned.py(), "__await__"))?
    {
        return Err(PyTypeError::new_err(format!(
            "{}.{method}() returned {}, not an awaitable",
            type_name(owner),
            described(returned)
        )));
    }
    prepare(returned, api)
}
