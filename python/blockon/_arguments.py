"""Checking what users pass in, and the errors that teach when it is wrong.

The engine calls ``awaitable_iterator`` for every awaitable that is not a native coroutine.

Every message names the argument, says what was received and what to do instead. A
coroutine that will never run because its call failed is closed first, so Python does not
add a "coroutine ... was never awaited" warning to the error.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import reprlib
import types
from collections.abc import Awaitable, Iterable, Iterator

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def type_name(obj: object) -> str:
    """The quoted name of ``obj``'s type, as messages show what was received."""
    return repr(type(obj).__name__)


def name_of(obj: object, default: str = "f") -> str:
    """The qualified name of a function or class, for "call it: f()" hints."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return name if isinstance(name, str) else default


def close_coroutines(objs: Iterable[object]) -> None:
    """Close the coroutines among ``objs`` (a no-op for finished ones; other awaitables are
    left alone)."""
    for obj in objs:
        if inspect.iscoroutine(obj):
            obj.close()


def check_limit(limit: object) -> int | None:
    """``limit=`` of ``gather`` and ``map``: ``None`` or an int >= 1."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(
            f"limit must be None or an int >= 1, got {type_name(limit)}: pass e.g. limit=10"
        )
    if limit < 1:
        raise ValueError(f"limit must be None or an int >= 1, got {limit}")
    return limit


def awaitables(aws: tuple[object, ...], api: str) -> list[Awaitable[Any] | None]:
    """Check every positional argument of ``api`` is awaitable; on failure close every
    coroutine among them (and inside a list passed by mistake) and raise."""
    for position, aw in enumerate(aws, 1):
        if inspect.isawaitable(aw):
            continue
        close_coroutines(aws)
        if isinstance(aw, list | tuple | set):
            close_coroutines(aw)
            raise TypeError(
                f"blockon.{api}() takes the awaitables as separate arguments, got a "
                f"{type(aw).__name__} as argument {position}: spread it, {api}(*aws)"
            )
        hint = ""
        if inspect.iscoroutinefunction(aw) or inspect.isasyncgenfunction(aw):
            hint = f"; call it: {api}({name_of(aw)}())"
        raise TypeError(
            f"blockon.{api}() needs awaitables, got {type_name(aw)} as argument {position}{hint}"
        )
    return list(aws)  # type: ignore[arg-type]  # checked just above


def not_awaitable(obj: object, api: str) -> str:
    """The message for ``api(obj)`` when ``obj`` cannot be awaited; closes the coroutines
    inside a collection passed by mistake."""
    where = f"blockon.{api}()"
    name = name_of(obj)
    if inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    ):
        return (
            f"{where} needs an awaitable, but got the async function {name!r} itself. "
            f"Notice the missing parentheses; call it: {api}(f()), here {api}({name}(...))"
        )
    if inspect.isasyncgen(obj) or inspect.isasyncgenfunction(obj):
        return (
            f"{where} needs an awaitable, but got an async generator "
            f"{'function ' if callable(obj) else ''}{name!r}, which is iterated, not awaited: "
            "use `for item in blockon.wrap_iter(agen):` instead"
        )
    if isinstance(obj, list | tuple | set) and any(inspect.isawaitable(aw) for aw in obj):
        close_coroutines(obj)
        return (
            f"{where} runs one awaitable, got a {type(obj).__name__} of {len(obj)}: to run "
            "several at once, use blockon.gather(*aws)"
        )
    if callable(obj):
        return (
            f"{where} needs an awaitable, but got {name!r}, which is not an async function; "
            "call it directly, or pass the coroutine an async function returns"
        )
    return (
        f"{where} needs an awaitable (a coroutine object, Task or Future), "
        f"got {type_name(obj)}: {reprlib.repr(obj)}"
    )


def check_callable(fn: object, api: str) -> None:
    """``fn`` of ``api(fn, *args, **kwargs)``: something to call, not its result."""
    if callable(fn):
        return
    if inspect.iscoroutine(fn):
        close_coroutines((fn,))
        raise TypeError(
            f"blockon.{api}() needs a callable as fn, but got the coroutine {name_of(fn)}(...), "
            f"an async function already called: pass the function and its arguments, "
            f"{api}({name_of(fn)}, ...), or run the coroutine with blockon.run(coro)"
        )
    hint = ": run it with blockon.run(aw)" if inspect.isawaitable(fn) else ""
    raise TypeError(f"blockon.{api}() needs a callable as fn, got {type_name(fn)}{hint}")


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
