"""``map``: ``Executor.map`` for an async function, from sync code.

An async generator iterated through a lockstep ``wrap_iter`` bridge: inputs are pulled on
the loop thread only as slots free up, and closing the iterator awaits the generator's
``aclose()``, whose ``finally`` cancels what is in flight. ``LoopThread.map`` is the sync
face; this module is the loop side.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator

from ._arguments import check_limit, close_coroutines, name_of, type_name
from ._blockon import IterBridge, LoopThreadBase, _timeout_arg
from ._children import Failed, cancel_and_drain, caught

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal, TypeAlias, TypeVar

    T = TypeVar("T")

    #: A child's outcome: ``(True, value)`` or ``(False, exception)``.
    _Outcome: TypeAlias = tuple[Literal[True], Any] | tuple[Literal[False], BaseException]

#: The ``limit`` of ``map()`` when none is given. ``map`` consumes its inputs lazily (an
#: endless input must work), so it cannot start everything at once as ``gather`` does; 100 is
#: the default connection-pool size of aiohttp and httpx, beyond which more concurrency
#: against one service usually just queues inside the client.
DEFAULT_MAP_LIMIT = 100


async def _apply(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> _Outcome:
    """One ``map`` item: call ``fn`` on the loop (in this task's context) and await it."""
    try:
        aw = fn(*args)
        if not inspect.isawaitable(aw):
            name = name_of(fn, type(fn).__name__)
            close_coroutines((aw,))
            return (
                False,
                TypeError(
                    f"blockon.map() needs fn to return an awaitable; {name}(...) returned "
                    f"{type_name(aw)}"
                ),
            )
        return (True, await aw)
    except GeneratorExit:
        raise
    except BaseException as exc:
        err = caught(exc)
        if err is None:
            raise
        return (False, err)


def _outcome_of(task: asyncio.Task[_Outcome]) -> _Outcome:
    if task.cancelled():  # cancelled before it could record anything (the loop closing)
        return (False, concurrent.futures.CancelledError())
    return task.result()


async def _map_async(
    fn: Callable[..., Awaitable[Any]],
    inputs: Iterator[tuple[Any, ...]],
    limit: int,
    ordered: bool,
    deadline: float | None,
    timeout: float | None,
) -> AsyncIterator[Any]:
    """The loop-side half of ``map``: an async generator stepped in lockstep by a
    ``wrap_iter`` bridge, so it runs only while the caller waits in ``next()``.

    At most ``limit`` inputs are held at a time: started and not yet handed to the caller
    (a result waiting for its turn keeps its slot), so memory stays bounded however slow the
    consumer, and nothing is pulled from the inputs until a slot is free.
    """
    __tracebackhide__ = True
    loop = asyncio.get_running_loop()
    window: deque[asyncio.Task[_Outcome]] = deque()  # ordered: held tasks, in input order
    finished: deque[asyncio.Task[_Outcome]] = deque()  # unordered: done, in completion order
    live: set[asyncio.Task[_Outcome]] = set()  # started and not done
    held = 0
    exhausted = False
    input_error: BaseException | None = None
    waiter: asyncio.Future[None] | None = None

    def wake() -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_done(task: asyncio.Task[_Outcome]) -> None:
        live.discard(task)
        if not ordered:
            finished.append(task)
        wake()

    def new_waiter() -> asyncio.Future[None]:
        nonlocal waiter
        waiter = loop.create_future()
        return waiter

    def fill() -> None:
        nonlocal held, exhausted, input_error
        while not exhausted and held < limit:
            try:
                args = next(inputs)
            except StopIteration:
                exhausted = True
                break
            except Exception as exc:  # raised in its place, after the results before it
                exhausted = True
                input_error = exc
                break
            task = loop.create_task(_apply(fn, args))
            held += 1
            if not task.done():
                live.add(task)
            task.add_done_callback(on_done)
            if ordered:
                window.append(task)

    async def until_woken() -> None:
        """Wait for a child to finish, or raise ``TimeoutError`` at the deadline."""
        fut = new_waiter()
        handle = None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"blockon.map(): no result within timeout={timeout} s of the call"
                )
            handle = loop.call_later(remaining, wake)
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()

    try:
        while True:
            fill()
            if ordered:
                if not window:
                    break
                while not window[0].done():
                    await until_woken()
                task = window.popleft()
            else:
                if not held:
                    break
                while not finished:
                    await until_woken()
                task = finished.popleft()
            held -= 1
            fill()  # refill the freed slot before the caller gets the result
            ok, value = _outcome_of(task)
            del task
            if not ok:
                yield Failed(value)
                return
            yield value
            del value
        if input_error is not None:
            yield Failed(input_error)
    finally:
        waiter = None
        window.clear()
        finished.clear()
        if live:
            await cancel_and_drain(list(live), lambda: not live, new_waiter)


def start(
    loop_thread: LoopThreadBase,
    fn: Callable[..., Awaitable[Any]],
    iterables: tuple[Iterable[Any], ...],
    limit: int | None,
    ordered: bool,
    timeout: float | None,
) -> Generator[Any, None, None]:
    """Check the arguments of ``LoopThread.map`` and return its iterator (nothing starts
    until the first ``next()``)."""
    called = time.monotonic()
    if not callable(fn):
        hint = (
            "; pass the function itself, not a call of it: map(fetch, urls)"
            if inspect.isawaitable(fn)
            else ""
        )
        close_coroutines((fn,))
        raise TypeError(f"blockon.map() needs an async function, got {type_name(fn)}{hint}")
    if not iterables:
        raise TypeError("blockon.map() needs at least one iterable")
    for position, it in enumerate(iterables, 1):
        if not hasattr(type(it), "__iter__") and not hasattr(type(it), "__getitem__"):
            hint = (
                "; it is an async iterable: map() takes plain iterables"
                if hasattr(type(it), "__aiter__")
                else ""
            )
            raise TypeError(
                f"blockon.map() needs iterables, got {type_name(it)} as iterable {position}{hint}"
            )
    seconds = _timeout_arg(timeout, "blockon.map()")
    bound = check_limit(limit) or DEFAULT_MAP_LIMIT
    deadline = None if seconds is None else called + seconds
    agen = _map_async(fn, zip(*iterables, strict=False), bound, ordered, deadline, timeout)
    return results(loop_thread, IterBridge(loop_thread, agen, 0))


def results(loop_thread: LoopThreadBase, bridge: Iterator[Any]) -> Generator[Any, None, None]:
    """The native ``wrap_iter`` bridge, closed explicitly when iteration ends for any reason.

    The native bridge closes itself when dropped, but a bridge dropped while an exception is
    propagating (``list(it)`` or a ``for`` loop when ``next()`` raises) runs that close with
    the exception still set, loses it, and the caller gets ``SystemError: error return
    without exception set``. A generator's ``finally`` runs with the exception saved, so
    closing the bridge here first leaves nothing for its drop to do. Once the loop thread is
    closed (an iterator still open at interpreter exit) there is nothing left to close: the
    loop's shutdown already cancelled the work and finalized the async generator.
    """
    __tracebackhide__ = True
    report = False  # whether a failure to close is the caller's to see
    try:
        # Not ``yield from``: that would close the bridge itself on GeneratorExit, outside
        # the handling below.
        for item in bridge:
            if type(item) is Failed:
                raise item.exc  # raised here, so the traceback shows the awaitable's frames
            yield item
        report = True
    except GeneratorExit:
        report = True  # closed by the caller (close(), break, garbage collection)
        raise
    finally:
        close = getattr(bridge, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                # After next() raised, the async generator has finished and the exception
                # says what went wrong; closing can then only fail for the same reason
                # (the loop thread closed, or unable to re-enter its loop).
                if report and not loop_thread.closed:
                    raise
