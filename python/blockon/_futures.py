"""The ``concurrent.futures.Future`` that ``submit`` hands out: tied to its task, so that
cancelling the future cancels the task, and settled by the engine when the task ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, InvalidStateError

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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
