"""Module-level functions that act on the default loop thread."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterator
from contextlib import AbstractContextManager

from ._bridges import AsyncContextSource, T
from ._loopthread import default_loop_thread


def wrap_context(acm: AsyncContextSource[T]) -> AbstractContextManager[T]:
    """``with blockon.wrap_context(session.get(url)) as response:``, on the default loop
    thread. See :meth:`LoopThread.wrap_context`."""
    return default_loop_thread().wrap_context(acm)


def enter_context(acm: AsyncContextSource[T]) -> T:
    """Enter an async context manager now, on the default loop thread; it is exited at
    interpreter exit (newest first). See :meth:`LoopThread.enter_context`."""
    return default_loop_thread().enter_context(acm)


def wrap_iter(ait: AsyncIterable[T], *, prefetch: int = 0) -> Iterator[T]:
    """``for item in blockon.wrap_iter(response.content):``, on the default loop thread.
    See :meth:`LoopThread.wrap_iter`."""
    return default_loop_thread().wrap_iter(ait, prefetch=prefetch)
