"""The child tasks of a fan-out (``gather``, ``map``): what their exceptions become, and
cancelling them with their cleanup awaited.

Every child task records its own outcome and never ends with an exception, so the loop never
logs "Task exception was never retrieved", and a ``KeyboardInterrupt`` or ``SystemExit``
raised inside one travels to the caller instead of tearing the loop thread down (asyncio
re-raises those two out of ``run_forever``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterable

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Failed:
    """A failure handed to the sync side as a value (returned by the gather coroutine,
    yielded by the map generator), not raised: the sync side raises ``exc``, so the
    traceback shows the awaitable's own frames and not the loop side's."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def caught(exc: BaseException) -> BaseException | None:
    """What an exception that ended a child becomes in the results.

    ``None`` means "re-raise it": a cancellation of the child's own task (asked for by the
    gather or map that started it, or by the loop closing). Any other ``CancelledError`` came
    from inside the awaitable (it awaited something cancelled elsewhere) and becomes
    ``concurrent.futures.CancelledError``, as sync code sees cancellation everywhere in
    blockon. The child's own frame is dropped from the traceback, so it shows the
    awaitable's frames only.
    """
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return None
        converted = concurrent.futures.CancelledError(*exc.args)
        converted.__context__ = exc
        converted.__suppress_context__ = True
        return converted.with_traceback(exc.__traceback__)
    tb = exc.__traceback__
    return exc.with_traceback(tb.tb_next if tb is not None else None)


async def cancel_and_drain(
    tasks: Iterable[asyncio.Task[Any]],
    drained: Callable[[], bool],
    waiter: Callable[[], asyncio.Future[None]],
) -> None:
    """Cancel ``tasks``, then wait until ``drained()`` is true, waking on ``waiter()``.

    Cleanup goes on to the end even if the caller is cancelled again meanwhile (as a
    ``TaskGroup`` does); that cancellation is raised afterwards.
    """
    for task in tasks:
        if not task.cancelling():  # cancelled already (the loop closing): let it clean up
            task.cancel()
    cancelled_again = False
    while not drained():
        try:
            await waiter()
        except asyncio.CancelledError:
            cancelled_again = True
    if cancelled_again:
        raise asyncio.CancelledError
