"""Python helpers the engine calls: the parts that read best in Python.

- ``awaitable_iterator``: what to drive for a non-coroutine awaitable, and the error messages
  that teach when something else was passed.
- ``drive_until``: re-entrant running on the caller's own loop.
- ``settle_future``, ``link_future``, ``attach_task``: the ``concurrent.futures.Future``
  handed out by ``submit``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import sys
import threading
import types
from asyncio import tasks as _tasks
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError

from ._arguments import not_awaitable

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# --------------------------------------------------------------------------- input checks


def awaitable_iterator(obj: object, api: str) -> Iterator[Any]:
    """Return the iterator a driver steps for ``obj``, or raise a TypeError that teaches."""
    if isinstance(obj, types.GeneratorType) and inspect.isawaitable(obj):
        return obj  # a generator-based coroutine (@types.coroutine)
    await_ = getattr(type(obj), "__await__", None)
    if await_ is None:
        raise TypeError(not_awaitable(obj, api))
    if isinstance(obj, asyncio.Task) and obj is _current_task():
        raise RuntimeError(
            f"blockon.{api}() was given the task that is calling it ({obj!r}): a task cannot "
            "wait for itself. Run the work as a coroutine of its own instead: "
            f"{api}(work()), not {api}(asyncio.current_task())"
        )
    iterator = await_(obj)
    if not isinstance(iterator, collections.abc.Iterator):
        raise TypeError(
            f"{type(obj).__name__}.__await__() returned a {type(iterator).__name__!r}, "
            "not an iterator, so it cannot be awaited"
        )
    return iterator


def _current_task() -> asyncio.Task[Any] | None:
    """The task running in this thread, if a loop runs here."""
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


# --------------------------------------------------------------------------- re-entrant running

_enter_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = getattr(
    _tasks, "_enter_task", None
)
_leave_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = getattr(
    _tasks, "_leave_task", None
)


def _noop() -> None:
    pass


class _Nesting(threading.local):
    """How many ``drive_until`` calls are running in this thread, one inside the other."""

    depth = 0


_nesting = _Nesting()

#: Python frames one level of re-entrant running takes, at most (the driver's loop step,
#: the task step, the user's coroutine and sync code, and blockon's entry), so that the
#: nesting limit leaves Python's own recursion limit out of reach.
_FRAMES_PER_LEVEL = 12


def _reentry_points(loop: asyncio.AbstractEventLoop) -> tuple[Callable[[], None], Any]:
    """The loop's one-iteration step and ready queue, or a RuntimeError saying why not.

    Feature detection, not version checks: what re-entry needs is looked for on this loop
    and this Python's asyncio (docs/how-it-works.md, "CPython versions").
    """
    run_once = getattr(loop, "_run_once", None)
    ready = getattr(loop, "_ready", None)
    if callable(run_once) and isinstance(ready, collections.deque) and _enter_task and _leave_task:
        return run_once, ready
    if not (_enter_task and _leave_task):
        why = (
            "this Python's asyncio has no asyncio.tasks._enter_task/_leave_task to switch "
            "the current task with"
        )
    else:
        why = "it has no _run_once step to drive (uvloop is like this)"
    raise RuntimeError(
        f"blockon.run() must run this awaitable on the event loop already running in this "
        f"thread ({type(loop).__module__}.{type(loop).__qualname__}), re-entrantly, because "
        "the thread is blocked inside that loop (nest=True was passed, or sync code on "
        f"blockon's own loop thread called run()). This loop cannot be re-entered: {why}. "
        "Instead, await the awaitable from async code; or call blockon.run() without "
        "nest=True from a thread whose loop is another one; or move the sync code off the "
        "loop with `await blockon.to_thread(fn)`."
    )


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
    if _nesting.depth >= max(8, sys.getrecursionlimit() // _FRAMES_PER_LEVEL):
        # Stop before Python's own limit strikes inside a loop step, which would lose the
        # step's handle (its task never runs again) and fail again at each level's cleanup.
        cancel()
        raise RecursionError(
            f"blockon: {_nesting.depth} re-entrant run() calls are nested on {loop!r}; "
            "a coroutine that calls run() on its own loop, recursively, is the usual cause"
        )
    outer = asyncio.current_task(loop)
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        cancel()

    timer = loop.call_later(max(timeout, 0.0), expire) if timeout is not None else None
    outer_cancels = outer.cancelling() if outer is not None else 0
    outer_cancelled = False
    if outer is not None:
        _leave_task(loop, outer)
    _nesting.depth += 1
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
    except BaseException:
        cancel()
        _finish_within(loop, run_once, done, grace)
        raise
    finally:
        _nesting.depth -= 1
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
) -> None:
    """Step the loop until ``done()`` or ``grace`` seconds pass."""
    deadline = loop.time() + grace
    alarm = loop.call_at(deadline, _noop)  # so a step never sleeps past the deadline
    try:
        while not done() and loop.time() < deadline:
            # Keep stepping: the task reports its own errors.
            with contextlib.suppress(Exception):
                run_once()
    finally:
        alarm.cancel()


def _pad_ready(loop: asyncio.AbstractEventLoop, ready: Any, queued: int) -> None:
    """Top up the ready queue with cancelled handles, so the outer loop iteration, which
    counted its handles before we ran some of them, never pops an empty queue."""
    missing = queued - len(ready)
    if missing > 0:
        filler = asyncio.Handle(_noop, (), loop)
        filler.cancel()
        ready.extendleft([filler] * missing)


# --------------------------------------------------------------------------- submit's futures


class _Link:
    """Ties a ``submit`` future to its task: cancelling the future cancels the task.

    Registered as the future's done-callback when it is created; the task is attached later,
    on the loop thread. Whichever of the two happens second sees the other (see
    ``attach_task``), so a cancel is never lost.
    """

    __slots__ = ("cancelled", "loop", "task")

    def __init__(self) -> None:
        self.cancelled = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None

    def __call__(self, future: Future[Any]) -> None:
        if not future.cancelled():
            return
        self.cancelled = True
        # CANCELLED -> CANCELLED_AND_NOTIFIED: only then do concurrent.futures.wait() and
        # as_completed() count the future as done (asyncio's bridge misses this step).
        future.set_running_or_notify_cancel()
        task, loop = self.task, self.loop
        if task is not None and loop is not None and not task.done():
            # A closed loop refuses; its shutdown cancelled the task already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)


def link_future(future: Future[Any]) -> _Link:
    link = _Link()
    future.add_done_callback(link)
    return link


def attach_task(link: _Link, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    link.loop = loop
    link.task = task
    if link.cancelled:
        task.cancel()


def settle_future(future: Future[Any], kind: str, value: Any) -> None:
    """Deliver an outcome to a ``submit`` future (a no-op if it was cancelled meanwhile)."""
    if kind == "cancelled":
        future.cancel()
        return
    try:
        if kind == "result":
            future.set_result(value)
        else:
            future.set_exception(value)
    except InvalidStateError:
        pass  # cancelled by its owner while the result was on its way
