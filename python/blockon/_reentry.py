"""Re-entrant running: stepping a loop that is running in this thread, from inside one of
its own callbacks, until some work is done.

The engine calls ``drive_until`` for ``run(aw, nest=True)`` and for sync code on a loop
thread that calls ``run()`` (or a bridge) on its own loop. Scoped: asyncio is not patched and
the Task class is not swapped; the caller's task is "left" while other tasks step, and
entered again afterwards. It is a short sequence of asyncio calls whose correctness depends
on asyncio's own internals, so it reads best here, in Python, next to them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
from asyncio import tasks as _tasks
from collections.abc import Callable, Iterator

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from typing import Any

_enter_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = getattr(
    _tasks, "_enter_task", None
)
_leave_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = getattr(
    _tasks, "_leave_task", None
)


def _noop() -> None:
    pass


#: Seconds a cleanup after Ctrl-C may take before the wait for it is announced: most take
#: far less, and then nothing is printed.
_QUIET_CLEANUP = 0.1


def _reentry_points(loop: asyncio.AbstractEventLoop) -> tuple[Callable[[], None], Any]:
    """The loop's one-iteration step and ready queue, or a RuntimeError saying why not.

    Feature detection, not version checks: what re-entry needs is looked for on this loop
    and this Python's asyncio (docs/how-it-works.md, "CPython versions").
    """
    why = why_not_reentrant(loop)
    if why is None:
        return loop._run_once, loop._ready  # type: ignore[attr-defined]
    raise RuntimeError(
        f"blockon.run() must run this awaitable on the event loop already running in this "
        f"thread ({type(loop).__module__}.{type(loop).__qualname__}), re-entrantly, because "
        "the thread is blocked inside that loop (nest=True was passed, or sync code on "
        f"blockon's own loop thread called run()). This loop cannot be re-entered: {why}. "
        "Instead, await the awaitable from async code; or call blockon.run() without "
        "nest=True from a thread whose loop is another one; or move the sync code off the "
        "loop with `await blockon.to_thread(fn)`."
    )


def why_not_reentrant(loop: asyncio.AbstractEventLoop) -> str | None:
    """Why ``loop`` cannot be re-entered, or ``None`` where it can."""
    if not (_enter_task and _leave_task):
        return (
            "this Python's asyncio has no asyncio.tasks._enter_task/_leave_task to switch "
            "the current task with"
        )
    run_once = getattr(loop, "_run_once", None)
    ready = getattr(loop, "_ready", None)
    if callable(run_once) and isinstance(ready, collections.deque):
        return None
    return "it has no _run_once step to drive (uvloop is like this)"


@contextlib.contextmanager
def task_left(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """The task of ``loop`` (running in this thread) that is running, if any, left for the
    duration and entered again after: meanwhile another loop can run a task in this thread
    (asyncio keeps one current task per thread from CPython 3.14 on)."""
    outer = asyncio.current_task(loop)
    if outer is None or _enter_task is None or _leave_task is None:
        yield
        return
    _leave_task(loop, outer)
    try:
        yield
    finally:
        _enter_task(loop, outer)


def check_reentry(loop: asyncio.AbstractEventLoop) -> None:
    """Raise the RuntimeError that explains why ``loop`` cannot be re-entered, if it cannot."""
    _reentry_points(loop)


def drive_until(
    loop: asyncio.AbstractEventLoop,
    queued: int,
    done: Callable[[], bool],
    cancel: Callable[[], None],
    timeout: float | None,
    grace: float,
) -> bool:
    """Step ``loop``, which is running in this thread, until ``done()``.

    ``queued`` is how many handles the loop's ready queue held when the caller was entered,
    before it started its work (see ``_pad_ready``).

    Steps the loop one iteration at a time from inside the callback that called us. Scoped:
    asyncio is not patched, the Task class is not swapped. While nested, the caller's task
    is "left" so other tasks can be entered, and re-entered afterwards. ``cancel()`` stops
    the work on timeout, on Ctrl-C, and when the caller's own task is cancelled meanwhile.
    Returns whether the timeout fired; raises ``CancelledError`` if the caller's task was
    cancelled, and re-raises ``KeyboardInterrupt`` after a cleanup bounded by ``grace``.
    """
    run_once, ready = _reentry_points(loop)
    assert _enter_task is not None and _leave_task is not None
    outer = asyncio.current_task(loop)
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        cancel()

    timer = loop.call_later(max(timeout, 0.0), expire) if timeout is not None else None
    outer_cancels = outer.cancelling() if outer is not None else 0
    # A cancellation of the caller's task requested during its current step, before the
    # count above was taken (Ctrl-C under asyncio.run() during the work's eager first step,
    # say), is not delivered yet: it is for this work too, as for an await.
    outer_cancelled = outer is not None and getattr(outer, "_must_cancel", False) is True
    if outer_cancelled:
        cancel()
    if outer is not None:
        _leave_task(loop, outer)
    try:
        while not done():
            run_once()
            if not outer_cancelled and outer is not None and outer.cancelling() > outer_cancels:
                outer_cancelled = True
                cancel()
    except RecursionError:
        # Too deep to step the loop here: the cancelled work finishes in an outer step.
        cancel()
        raise
    except BaseException as exc:
        cancel()
        _finish_within(loop, run_once, done, grace, isinstance(exc, KeyboardInterrupt))
        raise
    finally:
        if timer is not None:
            timer.cancel()
        _pad_ready(loop, ready, queued)
        if outer is not None:
            _enter_task(loop, outer)
    if outer_cancelled:
        raise asyncio.CancelledError()
    return fired


def _finish_within(
    loop: asyncio.AbstractEventLoop,
    run_once: Callable[[], None],
    done: Callable[[], bool],
    grace: float,
    ctrl_c: bool,
) -> None:
    """Step the loop until ``done()`` or ``grace`` seconds pass. After Ctrl-C (``ctrl_c``),
    a cleanup still running after a moment is announced on stderr, as the engine does for
    the calls it waits for; a second Ctrl-C stops the wait."""
    deadline = loop.time() + grace
    announce_at = loop.time() + _QUIET_CLEANUP if ctrl_c else None
    alarms = [loop.call_at(deadline, _noop)]  # so a step never sleeps past the deadline
    if announce_at is not None:
        alarms.append(loop.call_at(announce_at, _noop))
    try:
        while not done() and loop.time() < deadline:
            if announce_at is not None and loop.time() >= announce_at:
                announce_at = None
                print(
                    f"blockon: waiting up to {grace} s for the awaitable to clean up after "
                    "Ctrl-C; press Ctrl-C again to stop waiting",
                    file=sys.stderr,
                    flush=True,
                )
            # Keep stepping: the task reports its own errors.
            with contextlib.suppress(Exception):
                run_once()
    finally:
        for alarm in alarms:
            alarm.cancel()


def _pad_ready(loop: asyncio.AbstractEventLoop, ready: Any, queued: int) -> None:
    """Top up the ready queue with cancelled handles, so the outer loop iteration, which
    counted its handles before we ran some of them, never pops an empty queue.

    Only as many as that iteration will still pop: handles queued by the callback that
    called us (a task it made, an eager step queued again) are not among them, and padding
    for them would leave fillers that every later nested run in the same callback steps
    over and pads back, ever more of them (nested runs in a loop would slow down
    quadratically).
    """
    missing = min(queued, _still_to_pop(loop, queued)) - len(ready)
    if missing > 0:
        filler = asyncio.Handle(_noop, (), loop)
        filler.cancel()
        ready.extendleft([filler] * missing)


def _still_to_pop(loop: asyncio.AbstractEventLoop, queued: int) -> int:
    """How many handles the iteration of ``loop._run_once`` that is running us (the
    innermost one on this thread's stack) will still pop: asyncio's ``_run_once`` counts
    ``ntodo`` handles, then pops them one by one (``for i in range(ntodo)``). ``queued``
    where that iteration is not found or not written that way (a loop of another kind)."""
    code = getattr(getattr(type(loop), "_run_once", None), "__code__", None)
    frame: types.FrameType | None = sys._getframe()
    while frame is not None:
        if frame.f_code is code:
            names = frame.f_locals
            if names.get("self") is loop:
                ntodo, i = names.get("ntodo"), names.get("i")
                if isinstance(ntodo, int) and isinstance(i, int):
                    return ntodo - i - 1
                return queued
        frame = frame.f_back
    return queued
