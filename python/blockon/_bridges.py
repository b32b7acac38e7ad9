"""``wrap_context``, ``enter_context`` and ``wrap_iter``: async context managers and async
iterables used from sync code. The bridges themselves are native (``_blockon.IterBridge``,
``_blockon.ContextBridge``); this module checks what users pass in and says what to do
instead when it is wrong.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, Awaitable, Iterator
from contextlib import AbstractAsyncContextManager

from . import _blockon

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias, TypeVar

    from ._loopthread import LoopThread

    T = TypeVar("T")

    #: What ``wrap_context`` accepts: an async context manager, or an awaitable returning
    #: one (as ``session.get(url)`` is used).
    AsyncContextSource: TypeAlias = (
        AbstractAsyncContextManager[T] | Awaitable[AbstractAsyncContextManager[T]]
    )


def wrap_iter(portal: LoopThread, ait: AsyncIterable[T], prefetch: int = 0) -> Iterator[T]:
    if not hasattr(type(ait), "__aiter__"):
        hint = (
            "; it is already a plain iterable: iterate it directly"
            if hasattr(type(ait), "__iter__")
            else ""
        )
        if inspect.isasyncgenfunction(ait):
            hint = f"; call it first: wrap_iter({getattr(ait, '__name__', 'agen')}(...))"
        raise TypeError(
            "blockon.wrap_iter() needs an async iterable (an object with __aiter__, such as "
            f"an async generator), got {type(ait).__name__!r}{hint}"
        )
    if isinstance(prefetch, bool) or not isinstance(prefetch, int):
        raise TypeError(f"prefetch must be an int, got {type(prefetch).__name__!r}")
    if prefetch < 0:
        raise ValueError(f"prefetch must be 0 (lockstep) or a positive bound, got {prefetch}")
    iterator: Iterator[T] = _blockon.IterBridge(portal, ait, prefetch)
    return iterator


def wrap_context(portal: LoopThread, acm: AsyncContextSource[T]) -> _blockon.ContextBridge[T]:
    kind = type(acm)
    if not (hasattr(kind, "__aenter__") or hasattr(kind, "__await__") or inspect.isawaitable(acm)):
        hint = ""
        if hasattr(kind, "__enter__"):
            hint = "; it is already a plain context manager: use `with` on it directly"
        elif inspect.isasyncgenfunction(acm) or inspect.iscoroutinefunction(acm):
            hint = "; call it first: wrap_context(manager(...))"
        raise TypeError(
            "blockon.wrap_context() needs an async context manager (an object with "
            f"__aenter__ and __aexit__) or an awaitable returning one, got {kind.__name__!r}{hint}"
        )
    return _blockon.ContextBridge(portal, acm)


def enter(portal: LoopThread, acm: AsyncContextSource[T]) -> Any:
    bridge = wrap_context(portal, acm)
    return bridge, bridge.__enter__()
