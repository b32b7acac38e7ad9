"""``gather`` and ``map``: many awaitables at once from sync code, with limits, cancellation and
timeouts.

Both are thin Python over the engine. ``gather`` is one ``portal.run()`` of a coroutine that
fans out on the loop, so the whole batch crosses into the loop thread in one submission and
the list comes back through the engine's completion slot; timeouts and Ctrl-C are the
engine's (it cancels that coroutine, which cancels everything it started and waits for their
cleanup). ``map`` is an async generator iterated through ``portal.wrap_iter()`` in lockstep:
inputs are pulled on the loop thread only as slots free up, and closing the iterator awaits
the generator's ``aclose()``, whose ``finally`` cancels what is in flight.

Every child task records its own outcome and never ends with an exception, so the loop never
logs "Task exception was never retrieved", and a ``KeyboardInterrupt`` or ``SystemExit``
raised inside one travels to the caller instead of tearing the loop thread down (asyncio
re-raises those two out of ``run_forever``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator

from . import _blockon

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal, TypeAlias, TypeVar, overload

    from ._loopthread import LoopThread

    T = TypeVar("T")
    A1 = TypeVar("A1")
    A2 = TypeVar("A2")
    A3 = TypeVar("A3")

    #: A child's outcome: ``(True, value)`` or ``(False, exception)``.
    _Outcome: TypeAlias = tuple[Literal[True], Any] | tuple[Literal[False], BaseException]

#: The ``limit`` of ``map()`` when none is given. ``map`` consumes its inputs lazily (an
#: endless input must work), so it cannot start everything at once as ``gather`` does; 100 is
#: the default connection-pool size of aiohttp and httpx, beyond which more concurrency
#: against one service usually just queues inside the client.
DEFAULT_MAP_LIMIT = 100


# ---------------------------------------------------------------------------- shared helpers


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be None or an int >= 1, got {type(limit).__name__!r}")
    if limit < 1:
        raise ValueError(f"limit must be None or an int >= 1, got {limit}")
    return limit


def _caught(exc: BaseException) -> BaseException | None:
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


def _close_coroutines(aws: Iterable[object]) -> None:
    """Close the coroutines among ``aws`` so none warns "was never awaited" (a no-op for
    finished ones; other awaitables are left alone)."""
    for aw in aws:
        if inspect.iscoroutine(aw):
            aw.close()


async def _cancel_and_drain(
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


# ------------------------------------------------------------------------------------ gather


class _Failed:
    """Returned (not raised) by the gather coroutine: the sync side raises ``exc``, so the
    traceback shows the awaitable's frames, not the gather coroutine's."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_NEW, _RUNNING, _ABANDONED = 0, 1, 2


class _Gather:
    """The state of one ``gather``: all of it lives on the loop thread once ``run`` starts."""

    def __init__(
        self, aws: list[Awaitable[Any] | None], limit: int | None, return_exceptions: bool
    ) -> None:
        self._aws = aws
        self._limit = len(aws) if limit is None else limit
        self._return_exceptions = return_exceptions
        self._results: list[Any] = [None] * len(aws)
        self._next = 0  # the next argument to start
        self._unfinished = len(aws)
        self._tasks: dict[asyncio.Task[None], int] = {}  # running, to their argument index
        self._failure: BaseException | None = None
        self._stopping = False  # start nothing more
        self._filling = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _NEW
        self._state_lock = threading.Lock()

    def _claim(self, state: int) -> bool:
        """Move from new to ``state``; false if ``run`` started or the caller gave up first."""
        with self._state_lock:
            if self._state != _NEW:
                return False
            self._state = state
            return True

    def abandon(self) -> None:
        """The caller's ``run()`` failed: if the coroutine never started, close the
        awaitables it would have awaited (it is never going to start now)."""
        if self._claim(_ABANDONED):
            _close_coroutines(self._aws)

    async def run(self) -> list[Any] | _Failed:
        if not self._claim(_RUNNING):
            return []
        loop = self._loop = asyncio.get_running_loop()
        try:
            if self._unfinished:
                self._waiter = loop.create_future()
                self._fill()
                if self._unfinished and self._failure is None:
                    await self._waiter
        except GeneratorExit:
            self._stopping = True
            for task in self._tasks:
                task.cancel()
            raise
        except BaseException:
            # Cancelled: the timeout, Ctrl-C, or the loop closing.
            await self._shutdown()
            raise
        finally:
            self._close_unstarted()
        if self._failure is not None:
            await self._shutdown()
            return _Failed(self._failure)
        return self._results

    def _fill(self) -> None:
        """Start arguments until ``limit`` are in flight (re-entrant safe, for loops whose
        tasks start eagerly and may finish inside ``create_task``)."""
        if self._filling:
            return
        self._filling = True
        try:
            loop = self._loop
            assert loop is not None
            n = len(self._aws)
            on_done = self._on_done
            while not self._stopping and self._next < n and len(self._tasks) < self._limit:
                i = self._next
                self._next += 1
                aw = self._aws[i]
                assert aw is not None
                task = loop.create_task(self._child(i, aw))
                self._tasks[task] = i
                task.add_done_callback(on_done)
        finally:
            self._filling = False

    async def _child(self, i: int, aw: Awaitable[Any]) -> None:
        try:
            self._results[i] = await aw
        except GeneratorExit:
            raise
        except BaseException as exc:
            err = _caught(exc)
            if err is None:
                raise
            if self._return_exceptions:
                self._results[i] = err
            elif self._failure is None:
                self._failure = err
                self._stopping = True
                self._wake()

    def _on_done(self, task: asyncio.Task[None]) -> None:
        i = self._tasks.pop(task)
        aw, self._aws[i] = self._aws[i], None
        if task.cancelled() and inspect.iscoroutine(aw):
            aw.close()  # it may never have run: no "never awaited" warning
        self._unfinished -= 1
        if self._stopping:
            if not self._tasks:
                self._wake()
            return
        self._fill()
        if not self._unfinished:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _new_waiter(self) -> asyncio.Future[None]:
        assert self._loop is not None
        self._waiter = self._loop.create_future()
        return self._waiter

    def _close_unstarted(self) -> None:
        unstarted = self._aws[self._next :]
        self._next = len(self._aws)
        _close_coroutines(unstarted)

    async def _shutdown(self) -> None:
        """Start nothing more, cancel what runs and wait for its cleanup."""
        self._stopping = True
        self._close_unstarted()
        await _cancel_and_drain(list(self._tasks), lambda: not self._tasks, self._new_waiter)


def _awaitables(aws: tuple[object, ...], fname: str) -> list[Awaitable[Any] | None]:
    """Check every argument is awaitable; on failure close them all and raise."""
    for position, aw in enumerate(aws, 1):
        if not inspect.isawaitable(aw):
            _close_coroutines(aws)
            hint = ""
            if inspect.iscoroutinefunction(aw) or inspect.isasyncgenfunction(aw):
                name = getattr(aw, "__name__", "f")
                hint = f"; call it: {fname}({name}())"
            raise TypeError(
                f"blockon.{fname}() needs awaitables, got {type(aw).__name__!r} "
                f"as argument {position}{hint}"
            )
    return list(aws)  # type: ignore[arg-type]  # checked just above


if TYPE_CHECKING:

    @overload
    def gather(
        portal: LoopThread,
        *aws: Awaitable[T],
        limit: int | None = None,
        return_exceptions: Literal[False] = False,
        timeout: float | None = None,
    ) -> list[T]: ...
    @overload
    def gather(
        portal: LoopThread,
        *aws: Awaitable[T],
        limit: int | None = None,
        return_exceptions: bool,
        timeout: float | None = None,
    ) -> list[T | BaseException]: ...


def gather(
    portal: LoopThread,
    *aws: Awaitable[Any],
    limit: int | None = None,
    return_exceptions: bool = False,
    timeout: float | None = None,
) -> list[Any]:
    """Await every awaitable concurrently on ``portal``'s loop; return their results in
    argument order.

    The whole batch goes to the loop thread in one submission. At most ``limit`` of the
    awaitables are awaited at a time (``None``: all at once); a coroutine is started only
    when a slot frees up, and coroutines never started (because the gather ended early) are
    closed, so nothing warns "never awaited". Tasks and futures passed in run on their own
    already: ``limit`` only bounds how many are awaited at once.

    With ``return_exceptions=True`` an awaitable's exception takes its place in the list.
    Otherwise the first exception cancels every other awaitable, waits for their cleanup
    (``finally``, ``__aexit__``) to finish, and is then raised. An awaitable that was
    cancelled from elsewhere counts as raising ``concurrent.futures.CancelledError``.

    Raised when an awaitable raises (unless ``return_exceptions``): that exception, the same
    object.
    Raised when ``timeout`` seconds pass first: ``TimeoutError``, after everything started
    was cancelled and its cleanup ran.
    Raised when Ctrl-C is pressed while the main thread waits: ``KeyboardInterrupt``, after
    the same cancellation (cleanup bounded by the loop thread's ``cancel_grace``).
    Raised when an argument is not awaitable: ``TypeError`` naming its type and position
    (every coroutine passed is closed first).
    Raised when ``limit`` is not ``None`` or an int: ``TypeError``; when it is below 1:
    ``ValueError``.
    Raised when the loop thread is closed: ``RuntimeError``.
    """
    __tracebackhide__ = True
    try:
        limit = _check_limit(limit)
        timeout = _blockon._timeout_arg(timeout, "blockon.gather()")
    except (TypeError, ValueError):
        _close_coroutines(aws)
        raise
    batch = _Gather(_awaitables(aws, "gather"), limit, return_exceptions)
    try:
        out = portal.run(batch.run(), timeout=timeout)
    except BaseException:
        batch.abandon()
        raise
    if isinstance(out, _Failed):
        raise out.exc
    return out


# --------------------------------------------------------------------------------------- map


async def _apply(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> _Outcome:
    """One ``map`` item: call ``fn`` on the loop (in this task's context) and await it."""
    try:
        aw = fn(*args)
        if not inspect.isawaitable(aw):
            name = getattr(fn, "__qualname__", None) or type(fn).__name__
            _close_coroutines((aw,))
            return (
                False,
                TypeError(
                    f"blockon.map() needs fn to return an awaitable; {name}(...) returned "
                    f"{type(aw).__name__!r}"
                ),
            )
        return (True, await aw)
    except GeneratorExit:
        raise
    except BaseException as exc:
        err = _caught(exc)
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
                raise value
            yield value
            del value
        if input_error is not None:
            raise input_error
    finally:
        waiter = None
        window.clear()
        finished.clear()
        if live:
            await _cancel_and_drain(list(live), lambda: not live, new_waiter)


if TYPE_CHECKING:

    @overload
    def map(
        portal: LoopThread,
        fn: Callable[[A1], Awaitable[T]],
        iterable: Iterable[A1],
        /,
        *,
        limit: int | None = None,
        ordered: bool = True,
        timeout: float | None = None,
    ) -> Generator[T, None, None]: ...
    @overload
    def map(
        portal: LoopThread,
        fn: Callable[[A1, A2], Awaitable[T]],
        iterable1: Iterable[A1],
        iterable2: Iterable[A2],
        /,
        *,
        limit: int | None = None,
        ordered: bool = True,
        timeout: float | None = None,
    ) -> Generator[T, None, None]: ...
    @overload
    def map(
        portal: LoopThread,
        fn: Callable[[A1, A2, A3], Awaitable[T]],
        iterable1: Iterable[A1],
        iterable2: Iterable[A2],
        iterable3: Iterable[A3],
        /,
        *,
        limit: int | None = None,
        ordered: bool = True,
        timeout: float | None = None,
    ) -> Generator[T, None, None]: ...
    @overload
    def map(
        portal: LoopThread,
        fn: Callable[..., Awaitable[T]],
        iterable1: Iterable[Any],
        iterable2: Iterable[Any],
        iterable3: Iterable[Any],
        iterable4: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        limit: int | None = None,
        ordered: bool = True,
        timeout: float | None = None,
    ) -> Generator[T, None, None]: ...


def map(
    portal: LoopThread,
    fn: Callable[..., Awaitable[Any]],
    /,
    *iterables: Iterable[Any],
    limit: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
) -> Generator[Any, None, None]:
    """Like ``concurrent.futures.Executor.map`` for an async ``fn``: an iterator over
    ``await fn(*args)`` for ``args`` taken from ``zip(*iterables)``, run concurrently on
    ``portal``'s loop.

    Inputs are consumed lazily, on the loop thread, only as slots free up: at most ``limit``
    are held at a time (started and not yet handed to you: a finished result waiting for an
    earlier one keeps its slot), so an endless input works and memory stays bounded.
    ``limit=None`` means ``DEFAULT_MAP_LIMIT`` (100). Nothing starts until the first
    ``next()``. ``ordered=True`` yields in input order; ``ordered=False`` in completion order.

    Closing the iterator (``close()``, ``break``, garbage collection), or an exception
    raised by it, cancels what is in flight and waits for its cleanup.

    ``timeout`` is measured from the call to ``map()``, as in ``Executor.map``: every result
    must be ready by then; one that is already finished is still returned after it.

    Raised by ``next()`` when ``fn`` raises for an item: that exception, in that item's
    place (``ordered=False``: when it happens); the iterator is finished afterwards.
    Raised by ``next()`` when the next result is not ready ``timeout`` seconds after the call:
    ``TimeoutError``, after everything in flight was cancelled and its cleanup ran.
    Raised by ``next()`` when Ctrl-C is pressed while the main thread waits:
    ``KeyboardInterrupt``, after the same cancellation.
    Raised by ``next()`` when iterating an input raises: that exception, after the results of
    the items before it.
    Raised when ``fn`` is not callable, an argument is not iterable, or ``limit`` is not
    ``None`` or an int: ``TypeError``; when ``limit`` is below 1: ``ValueError``.
    """
    called = time.monotonic()
    if not callable(fn):
        hint = (
            "; pass the function itself, not a call of it: map(fetch, urls)"
            if inspect.isawaitable(fn)
            else ""
        )
        _close_coroutines((fn,))
        raise TypeError(f"blockon.map() needs an async function, got {type(fn).__name__!r}{hint}")
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
                f"blockon.map() needs iterables, got {type(it).__name__!r} as iterable "
                f"{position}{hint}"
            )
    timeout = _blockon._timeout_arg(timeout, "blockon.map()")
    bound = _check_limit(limit) or DEFAULT_MAP_LIMIT
    deadline = None if timeout is None else called + timeout
    agen = _map_async(fn, zip(*iterables, strict=False), bound, ordered, deadline, timeout)
    return _closing(portal, portal.wrap_iter(agen))


def _closing(portal: LoopThread, bridge: Iterator[T]) -> Generator[T, None, None]:
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
        for item in bridge:  # noqa: UP028
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
                if report and not portal.closed:
                    raise
