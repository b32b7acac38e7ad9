//! blockon's engine: the native half of `blockon`, imported as `blockon._blockon`.
//!
//! This file only registers; each concept has its own module. From the entry points down:
//!
//! - `default`: the default loop thread, and the module-level `run` and `submit`.
//! - `loop_thread`: `LoopThreadBase` (the native base of `LoopThread`): `run` and `submit`
//!   routing, and the hooks its Python thread body calls.
//! - `run_args`: `run`'s and `submit`'s arguments, parsed by hand so a bad call closes its
//!   coroutine. `timeout`: the one `timeout=` rule. `awaitable`: checking awaitables.
//! - `lifecycle`: a loop thread's states and interpreter exit. `fork`: which process state
//!   belongs to. `job`: work for a loop
//!   thread. `inbox`: the submission queue, and `wakeup`: how it wakes its loop (a socket on
//!   Unix, `call_soon_threadsafe` anywhere). `loop_spin`: the loop thread's
//!   spin for work before it sleeps, from the stdlib loops' `selector` or from `pulse`s on
//!   other loops (uvloop, loops blockon does not know).
//! - `blocking`: blocking calls (waiting, timeouts, Ctrl-C). `waiter`: the GIL-free wait.
//!   `completion`: the slots callers wait on. `deferred_wake`: waking parked callers once
//!   the loop thread lets go of the GIL. `gil_hint`: whether a caller holds the GIL.
//! - `driver`: the native coroutine that settles outcomes. `eager_task`: starting its task
//!   with the first step at once. `stepping`: sending into awaitables. `reentry`: running
//!   re-entrantly on the caller's own loop. `to_thread_home`: `to_thread` workers' home loop.
//! - `iter_bridge` (`wrap_iter`) and `context_bridge` (`wrap_context`), over `sync_step`
//!   (one session step from sync code), `session` (one task, many steps), `session_op` (what
//!   each step does) and `prefetch` (bounded buffers).
//! - `py`: the Python objects the engine uses, and how messages name them.

mod awaitable;
mod blocking;
mod completion;
mod context_bridge;
mod default;
mod deferred_wake;
mod driver;
mod eager_task;
mod fork;
mod gil_hint;
mod inbox;
mod iter_bridge;
mod job;
mod lifecycle;
mod loop_spin;
mod loop_thread;
mod prefetch;
mod pulse;
mod py;
mod reentry;
mod run_args;
mod selector;
mod session;
mod session_op;
mod stepping;
mod sync_step;
mod timeout;
mod to_thread_home;
mod waiter;
mod wakeup;

/// `blockon._blockon`, as Python sees it.
///
/// `gil_used = false` (PyO3's default since 0.28, spelled out because it is a promise): on a
/// free-threaded CPython, importing blockon keeps the GIL off. The engine's shared state is
/// behind its own locks and atomics, never the GIL (docs/how-it-works.md, "Free-threaded
/// builds").
#[pyo3::pymodule(gil_used = false)]
mod _blockon {
    #[pymodule_export]
    use crate::context_bridge::ContextBridge;
    #[pymodule_export]
    use crate::default::{_default_loop_thread, _set_default_factory, run, submit};
    #[pymodule_export]
    use crate::driver::Driver;
    #[pymodule_export]
    use crate::eager_task::_spawn_here;
    #[pymodule_export]
    use crate::fork::_after_fork_in_child;
    #[pymodule_export]
    use crate::iter_bridge::IterBridge;
    #[pymodule_export]
    use crate::lifecycle::_interpreter_exiting;
    #[pymodule_export]
    use crate::loop_spin::_set_spin;
    #[pymodule_export]
    use crate::loop_thread::LoopThreadBase;
    #[pymodule_export]
    use crate::pulse::Pulser;
    #[pymodule_export]
    use crate::selector::HotSelector;
    #[pymodule_export]
    use crate::session::Session;
    #[pymodule_export]
    use crate::timeout::_timeout_arg;
    #[pymodule_export]
    use crate::to_thread_home::_set_home_loop;
}
