"""Module-level functions that act on the default loop thread."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager

from . import _fanout
from ._loopthread import default_loop_thread

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal, overload

    from ._bridges import AsyncContextSource, T


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


if TYPE_CHECKING:

    @overload
    def gather(
        *aws: Awaitable[T],
        limit: int | None = None,
        return_exceptions: Literal[False] = False,
        timeout: float | None = None,
    ) -> list[T]: ...
    @overload
    def gather(
        *aws: Awaitable[T],
        limit: int | None = None,
        return_exceptions: bool,
        timeout: float | None = None,
    ) -> list[T | BaseException]: ...


def gather(
    *aws: Awaitable[Any],
    limit: int | None = None,
    return_exceptions: bool = False,
    timeout: float | None = None,
) -> list[Any]:
    """Await the awaitables concurrently on the default loop thread; results in argument
    order. See :meth:`LoopThread.gather`."""
    return _fanout.gather(
        default_loop_thread(),
        *aws,
        limit=limit,
        return_exceptions=return_exceptions,
        timeout=timeout,
    )


def map(
    fn: Callable[..., Awaitable[T]],
    /,
    *iterables: Iterable[Any],
    limit: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
) -> Generator[T, None, None]:
    """``Executor.map`` for an async ``fn``, on the default loop thread. See
    :meth:`LoopThread.map`."""
    return _fanout.map(
        default_loop_thread(), fn, *iterables, limit=limit, ordered=ordered, timeout=timeout
    )
