//! The arguments of `run()` and `submit()` (the module-level functions and the methods),
//! parsed by hand.
//!
//! PyO3 could parse them from the declared signature, but its errors come before any of our
//! code runs: `run(coro, 5)` would raise "takes 1 positional argument" and leave the
//! coroutine unclosed, so Python warns later that it was never awaited, far from the
//! mistake. Parsed here, every refused call closes the coroutine it was given and says how
//! to call it instead. The declared text signatures keep `help()` and the type stubs
//! precise.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

use crate::awaitable::{discard, is_coroutine};
use crate::py::type_name;

/// `run(aw, /, *, timeout=None, nest=False, loop=None)`, checked for shape.
pub(crate) struct RunArgs<'py> {
    pub(crate) aw: Bound<'py, PyAny>,
    pub(crate) timeout: Option<Bound<'py, PyAny>>,
    pub(crate) nest: bool,
    pub(crate) target: Option<Bound<'py, PyAny>>,
}

/// Parses `run`'s arguments; `api` is the public name (`blockon.run()`).
pub(crate) fn run<'py>(
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
    api: &str,
) -> PyResult<RunArgs<'py>> {
    let parsed = parse_run(args, kwargs, api);
    if parsed.is_err() {
        close_given(args, kwargs);
    }
    parsed
}

fn parse_run<'py>(
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
    api: &str,
) -> PyResult<RunArgs<'py>> {
    let shape = || {
        PyTypeError::new_err(format!(
            "{api} takes one awaitable positionally; pass timeout, nest and loop by keyword: \
             run(aw, timeout=5)"
        ))
    };
    if args.len() != 1 {
        return Err(shape());
    }
    let mut parsed = RunArgs {
        aw: args.get_item(0)?,
        timeout: None,
        nest: false,
        target: None,
    };
    let Some(kwargs) = kwargs else {
        return Ok(parsed);
    };
    for (key, value) in kwargs.iter() {
        let key = key.cast_into::<PyString>()?;
        match &*key.to_cow()? {
            "timeout" => parsed.timeout = Some(value),
            "nest" => {
                let Ok(nest) = value.cast::<PyBool>() else {
                    return Err(PyTypeError::new_err(format!(
                        "{api}: nest must be True or False, got '{}'",
                        type_name(&value)
                    )));
                };
                parsed.nest = nest.is_true();
            }
            "loop" => parsed.target = (!value.is_none()).then_some(value),
            "aw" => return Err(shape()),
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "{api} got an unexpected keyword argument {}; it takes timeout, nest and \
                     loop",
                    key.repr()?
                )))
            }
        }
    }
    Ok(parsed)
}

/// Parses `submit`'s one argument; `api` is the public name (`blockon.submit()`).
pub(crate) fn submit<'py>(
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
    api: &str,
) -> PyResult<Bound<'py, PyAny>> {
    if args.len() == 1 && kwargs.is_none_or(PyDictMethods::is_empty) {
        return args.get_item(0);
    }
    close_given(args, kwargs);
    Err(PyTypeError::new_err(format!(
        "{api} takes one awaitable, positionally, and nothing else: submit(aw)"
    )))
}

/// Closes the coroutine a refused call was given (first positional, or `aw=`), so Python
/// does not warn later that it was never awaited.
fn close_given(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) {
    let by_keyword = kwargs.and_then(|kwargs| kwargs.get_item("aw").ok().flatten());
    for given in args.iter().take(1).chain(by_keyword) {
        if is_coroutine(&given) {
            discard(&given);
        }
    }
}
