"""``wrap_context``, ``enter_context`` and ``wrap_iter``: async context managers and async
iterables used from sync code. The bridges themselves are native (``IterBridge``,
``ContextBridge``); this module checks what users pass in and says what to do
instead when it is wrong. ``LoopThread`` holds the public signatures and docstrings.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, Awaitable, Iterator
from contextlib import AbstractAsyncContextManager

from ._arguments import close_coroutines, name_of, type_name
from ._blockon import ContextBridge, IterBridge, LoopThreadBase

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias, TypeVar

    T = TypeVar("T")

    #: What ``wrap_context`` accepts: an async context manager, or an awaitable returning
    #: one (as ``session.get(url)`` is used).
    AsyncContextSource: TypeAlias = (
        AbstractAsyncContextManager[T] | Awaitable[AbstractAsyncContextManager[T]]
    )


#: The largest ``prefetch``: a bound beyond any buffer that fits in memory.
MAX_PREFETCH = 2**31 - 1


def wrap_iter(loop_thread: LoopThreadBase, ait: AsyncIterable[T], prefetch: int = 0) -> Iterator[T]:
    """The ``IterBridge`` over ``ait``, after checking the arguments."""
    kind = type(ait)
    if not hasattr(kind, "__aiter__"):
        hint = ""
        if inspect.isawaitable(ait):
            close_coroutines((ait,))
            hint = (
                f"; {name_of(ait, 'it')} is awaited, not iterated: await it first, and pass "
                "what it returns if that is an async iterable: "
                "wrap_iter(blockon.run(make_stream()))"
            )
        elif hasattr(kind, "__iter__"):
            hint = "; it is already a plain iterable: iterate it directly"
        elif inspect.isasyncgenfunction(ait):
            hint = f"; call it first: wrap_iter({name_of(ait, 'agen')}(...))"
        raise TypeError(
            "blockon.wrap_iter() needs an async iterable (an object with __aiter__, such as "
            f"an async generator), got {type_name(ait)}{hint}"
        )
    if isinstance(prefetch, bool) or not isinstance(prefetch, int):
        raise TypeError(
            f"prefetch must be an int (0 for lockstep), got {type_name(prefetch)}: "
            "pass e.g. prefetch=256"
        )
    if not 0 <= prefetch <= MAX_PREFETCH:
        raise ValueError(
            f"prefetch must be 0 (lockstep) or a positive bound up to {MAX_PREFETCH}, "
            f"got {prefetch}"
        )
    iterator: Iterator[T] = IterBridge(loop_thread, ait, prefetch)
    return iterator


def wrap_context(loop_thread: LoopThreadBase, acm: AsyncContextSource[T]) -> ContextBridge[T]:
    """The ``ContextBridge`` over ``acm``, after checking it."""
    kind = type(acm)
    if not (hasattr(kind, "__aenter__") or hasattr(kind, "__await__") or inspect.isawaitable(acm)):
        hint = ""
        if hasattr(kind, "__enter__"):
            hint = "; it is already a plain context manager: use `with` on it directly"
        elif inspect.isasyncgenfunction(acm) or inspect.iscoroutinefunction(acm):
            hint = "; call it first: wrap_context(manager(...))"
        raise TypeError(
            "blockon.wrap_context() needs an async context manager (an object with "
            f"__aenter__ and __aexit__) or an awaitable returning one, got {type_name(acm)}{hint}"
        )
    return ContextBridge(loop_thread, acm)


def enter(loop_thread: LoopThreadBase, acm: AsyncContextSource[T]) -> tuple[ContextBridge[T], T]:
    """Enter ``acm`` now: its bridge (to exit it later) and what ``__aenter__`` returned."""
    bridge = wrap_context(loop_thread, acm)
    return bridge, bridge.__enter__()
