"""``to_thread``: run sync code in a worker thread that is "at home" on the calling loop.

A bare ``blockon.run(aw)`` inside the worker runs ``aw`` on the loop that awaited
``to_thread`` (free meanwhile: its task is waiting for the worker), so objects bound to that
loop (connection pools, sessions) work from the sync code, and chains
(async -> to_thread -> run -> to_thread -> run ...) never deadlock: no thread in a chain is
ever needed again by the steps below it.

Workers come from a pool of blockon's own rather than the loop's default executor, whose
few workers a deep or wide set of chains could use up, each waiting for a worker that can
never free up. Idle workers are reused.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from . import _blockon

P = ParamSpec("P")
R = TypeVar("R")

#: Workers at most; a chain uses one per level, and idle ones are reused.
MAX_WORKERS = 512

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="blockon-to_thread")
        return _pool


def _reset_after_fork() -> None:
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


def _at_home(
    loop: asyncio.AbstractEventLoop, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    previous = _blockon._set_home_loop(loop)
    try:
        return fn(*args, **kwargs)
    finally:
        _blockon._set_home_loop(previous)


async def to_thread(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn(*args, **kwargs)`` in a worker thread and await its result.

    Like ``asyncio.to_thread``: the worker runs in a copy of the caller's context. Unlike
    it, the worker is at home on the calling loop: ``blockon.run(aw)`` inside it runs ``aw``
    on this loop. (``LoopThread.run`` and ``sync()`` twins keep running on their own loop
    thread; only a bare ``blockon.run`` follows the home loop.)

    Raised when called outside a running event loop: ``RuntimeError`` (from asyncio).
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    work: Callable[[], R] = functools.partial(context.run, _at_home, loop, fn, *args, **kwargs)  # type: ignore[arg-type]
    return await loop.run_in_executor(_executor(), work)
