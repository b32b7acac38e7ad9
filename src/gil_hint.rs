//! Whether one of blockon's own callers holds the GIL, as far as blockon can tell.
//!
//! A thread that wants the GIL while another holds it sleeps on the GIL's condition variable
//! and must be woken when it is released: on a virtual machine, waking a thread on a CPU
//! that went idle costs tens of microseconds, many times a whole call. The loop thread
//! finds a caller's job the moment it is queued, while that caller still holds the GIL for
//! the microsecond it takes to let it go; so, having found jobs, the loop thread spins a
//! little longer (GIL released, `loop_spin`) while a caller holds the GIL, and takes it once
//! it has been let go. A caller holds the GIL from the moment its wait returns until its
//! next wait lets it go.
//!
//! It is a hint, never a lock: a caller that stopped calling blockon still reads as holding
//! the GIL for [`STALE_NANOS`], other threads of the program are unseen, and the spin on it is
//! bounded. Where the interpreter has no GIL (free-threaded builds) nothing is held.
//!
//! Rejected: callers woken from a park spinning until the GIL is free before they take it.
//! With several callers on one CPU the spinning one steals that CPU from the one holding
//! the GIL: on one CPU, 4 and 16 threads made 5-20% fewer calls/s than when CPython hands
//! the GIL over (interleaved in one process).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;

use crate::inbox::now_nanos;

/// Whether this interpreter has a GIL (`sys._is_gil_enabled()`; true where it is missing).
static GIL: AtomicBool = AtomicBool::new(true);

/// When the caller holding the GIL took it (`inbox::now_nanos`), or 0 if none does.
static HOLDER_SINCE: AtomicU64 = AtomicU64::new(0);

/// A caller that took the GIL longer ago than this is not assumed to hold it still.
const STALE_NANOS: u64 = 200_000;

/// A caller has taken the GIL back after a wait.
pub(crate) fn taken() {
    HOLDER_SINCE.store(now_nanos().max(1), Ordering::Release);
}

/// A caller is about to let the GIL go for a wait. Called while it still holds the GIL, so
/// the next holder's `taken` always comes after.
pub(crate) fn releasing() {
    HOLDER_SINCE.store(0, Ordering::Release);
}

/// Reads whether the interpreter has a GIL at all (a loop thread does, as it starts).
pub(crate) fn configure(py: Python<'_>) {
    let enabled = py
        .import("sys")
        .and_then(|sys| sys.call_method0("_is_gil_enabled"))
        .and_then(|enabled| enabled.is_truthy())
        .unwrap_or(true);
    GIL.store(enabled, Ordering::Relaxed);
}

/// Whether a caller likely holds the GIL now.
pub(crate) fn caller_holds() -> bool {
    if !GIL.load(Ordering::Relaxed) {
        return false;
    }
    let since = HOLDER_SINCE.load(Ordering::Acquire);
    since != 0 && now_nanos().saturating_sub(since) < STALE_NANOS
}
