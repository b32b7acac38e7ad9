"""``to_thread``: run sync code in a worker thread that is "at home" on the calling loop.

A bare ``blockon.run(aw)`` inside the worker runs ``aw`` on the loop that awaited
``to_thread`` (free meanwhile: its task is waiting for the worker), so objects bound to that
loop (connection pools, sessions) work from the sync code, and chains
(async -> to_thread -> run -> to_thread -> run ...) never deadlock: no thread in a chain is
ever needed again by the steps below it.

Each call gets a thread of its own. Rejected: the loop's default executor, whose few
workers a deep or wide set of chains can use up, each waiting for a worker that can never
free up. The threads are not daemons, so interpreter exit waits for them (as it does for
``asyncio.to_thread``'s executor) and their ``finally`` blocks run; daemon threads would be
cut off, or killed mid-call while the interpreter finalizes. So that this wait cannot hang,
a worker still waiting on a loop when the interpreter starts exiting stops waiting: its
awaitable is cancelled and its cleanup awaited, and ``blockon.run`` raises ``RuntimeError``
in the worker (``_interpreter_exiting``, registered in ``_running``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable

from ._blockon import _set_home_loop

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")


def _at_home(
    loop: asyncio.AbstractEventLoop, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    previous = _set_home_loop(loop)
    try:
        return fn(*args, **kwargs)
    finally:
        _set_home_loop(previous)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def to_thread(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn(*args, **kwargs)`` in a worker thread and await its result.

    Like ``asyncio.to_thread``: the worker runs in a copy of the caller's context. Unlike
    it, the worker is at home on the calling loop: ``blockon.run(aw)`` inside it runs ``aw``
    on this loop. (``LoopThread.run`` and ``sync()`` twins keep running on their own loop
    thread; only a bare ``blockon.run`` follows the home loop.) Cancelling the awaiting task
    does not stop the worker, as with ``asyncio.to_thread``.

    Raised when called outside a running event loop: ``RuntimeError`` (from asyncio).
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future: asyncio.Future[R] = loop.create_future()

    def work() -> None:
        try:
            outcome: tuple[bool, Any] = (True, context.run(_at_home, loop, fn, *args, **kwargs))
        except BaseException as exc:
            outcome = (False, exc)
        # A loop closed meanwhile has no one left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, *outcome)

    threading.Thread(target=work, name="blockon-to_thread", daemon=False).start()
    return await future
