//! blockon's engine: the native half of `blockon`, imported as `blockon._blockon`.
//!
//! This file only registers; each concept has its own module: `portal` (entry points and
//! routing), `lifecycle` (a loop thread's states and fork), `inbox` (submission queue and
//! wake-ups), `driver` (the native coroutine that settles outcomes), `completion` (the slots
//! callers wait on), `waiter` (GIL-free waiting), `calls` (blocking calls, timeouts,
//! cancellation), `reentry` (nested running), `home` (`to_thread` workers), `hot` (the
//! loop's spin-before-sleep selector), `default` (the
//! default loop thread), `awaitable` (input checks), `session` (one task, many steps),
//! `prefetch` (bounded buffers), `bridge` (`wrap_iter`, `wrap_context`), `stepping`
//! (sending into awaitables), `py` (cached Python objects).

use pyo3::prelude::*;

pub mod awaitable;
pub mod bridge;
pub mod blocking;
pub mod completion;
pub mod default;
pub mod driver;
pub mod to_thread_home;
pub mod selector;
pub mod inbox;
pub mod lifecycle;
pub mod loop_thread;
pub mod prefetch;
pub mod py;
pub mod reentry;
pub mod session;
pub mod stepping;
pub mod waiter;

// `gil_used = false` (PyO3's default since 0.28, spelled out because it is a promise): on a
// free-threaded CPython, importing blockon keeps the GIL off. The engine's shared state is
// behind its own locks and atomics, never the GIL (docs/how-it-works.md, "Free-threaded
// builds").
#[pymodule(gil_used = false)]
fn _blockon(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<loop_thread::LoopThreadBase>()?;
    m.add_class::<driver::Driver>()?;
    m.add_class::<selector::HotSelector>()?;
    m.add_class::<session::Session>()?;
    m.add_class::<bridge::IterBridge>()?;
    m.add_class::<bridge::ContextBridge>()?;
    m.add_function(wrap_pyfunction!(default::run, m)?)?;
    m.add_function(wrap_pyfunction!(default::submit, m)?)?;
    m.add_function(wrap_pyfunction!(default::_default_loop_thread, m)?)?;
    m.add_function(wrap_pyfunction!(default::_set_default_factory, m)?)?;
    m.add_function(wrap_pyfunction!(lifecycle::_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(blocking::_spawn_here, m)?)?;
    m.add_function(wrap_pyfunction!(to_thread_home::_set_home_loop, m)?)?;
    m.add_function(wrap_pyfunction!(to_thread_home::_interpreter_exiting, m)?)?;
    Ok(())
}
