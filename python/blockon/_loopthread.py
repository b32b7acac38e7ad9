"""``LoopThread``: a thread running one asyncio event loop, and the process's default one.

Each public operation is defined here once, with its signature, overloads and docstring; the
module-level functions of ``blockon`` are the default loop thread's methods. ``run`` and
``submit`` are the engine's own (``LoopThreadBase``); the other operations check
their arguments and hand the work to the modules named for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager as ContextManager
from types import TracebackType

from . import _bridges, _call, _gather, _map, _running
from ._arguments import check_callable, type_name
from ._blockon import _default_loop_thread, _timeout_arg
from ._children import Failed
from ._running import LoopRunner, register

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from collections.abc import AsyncGenerator, AsyncIterator
    from typing import Any, Literal, ParamSpec, TypeVar, overload

    from ._bridges import AsyncContextSource

    T = TypeVar("T")
    S = TypeVar("S")
    P = ParamSpec("P")
    A1 = TypeVar("A1")
    A2 = TypeVar("A2")
    A3 = TypeVar("A3")


class LoopThread(LoopRunner):
    """A thread running one asyncio event loop, started lazily on first use.

    Safe to use from any number of threads at once. Closed by ``close()``, by leaving a
    ``with`` block, or at interpreter exit. ``loop_factory`` makes the loop (default:
    ``asyncio.new_event_loop``, which honours an installed event-loop policy such as
    uvloop's); ``name`` names the thread; ``blocked_warning`` is the number of seconds a
    caller may block a running event loop before a ``RuntimeWarning`` says so (``None``: never).

    Raised when ``loop_factory`` is not callable or ``name`` is not a str: ``TypeError``.
    """

    def __init__(
        self,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        *,
        name: str = "blockon",
        blocked_warning: float | None = 10.0,
    ) -> None:
        if loop_factory is not None and not callable(loop_factory):
            raise TypeError(
                "loop_factory must be a callable that returns a new event loop, such as "
                f"uvloop.new_event_loop (no parentheses), got {type_name(loop_factory)}"
            )
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type_name(name)}")
        super().__init__(loop_factory, name)
        self.blocked_warning = blocked_warning

    @property
    def name(self) -> str:
        """The loop thread's name, as ``threading.current_thread().name`` says inside it."""
        return self._name

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop, starting the thread if it is not running yet.

        Raised when closed: ``RuntimeError``.
        """
        return self._event_loop()

    if TYPE_CHECKING:

        @overload
        def sync(self, obj: type[Any], /) -> type[Any]: ...
        @overload
        def sync(self, obj: types.ModuleType, /) -> Any: ...
        @overload
        def sync(
            self, obj: Callable[P, AsyncGenerator[T, S]], /
        ) -> Callable[P, Generator[T, S, None]]: ...
        @overload
        def sync(
            self, obj: Callable[P, AsyncIterator[T]], /
        ) -> Callable[P, Generator[T, Any, None]]: ...
        @overload
        def sync(self, obj: Callable[P, Awaitable[T]], /) -> Callable[P, T]: ...
        @overload
        def sync(self, obj: Callable[P, T], /) -> Callable[P, T]: ...
        @overload
        def sync(self, obj: Any, /) -> Any: ...

    def sync(self, obj: Any, /) -> Any:
        """The sync twin of ``obj``, bound to this loop thread; usable as a decorator.

        - async function -> function (bound and unbound methods, classmethods,
          staticmethods, ``functools.partial`` objects alike); a call returns the awaited
          value;
        - async generator function -> generator function (``send``/``throw``/``close`` map
          to ``asend``/``athrow``/``aclose``, lockstep, in one task on the loop);
        - class with async methods (or an async context manager or async iterable class)
          -> twin class; instance of one -> its twin; module -> module twin: attributes
          twinned by the same rules, call results awaited, bridged or twinned; a call
          result that is awaitable and also an async context manager or async iterable is
          used as the async syntax would: ``with`` on it is ``async with`` and iteration is
          ``async for`` (no await first), any other use awaits it at the call;
        - an async generator object -> a generator over it, lockstep;
        - sync callables, twins and plain data -> returned unchanged.

        Twins always run on this loop thread.

        Raised when ``obj`` is a lone awaitable (a coroutine, task or future):
        ``TypeError`` (a coroutine is closed first); run it with ``run()`` instead.
        """
        # Loaded on first use: the twin machinery is a third of `import blockon`'s time, and
        # many programs never make a twin.
        from . import _sync

        return _sync.sync(self, obj)

    if TYPE_CHECKING:

        @overload
        def call(
            self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
        ) -> T: ...
        @overload
        def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` on this loop thread and return its result, awaited
        there first if it is awaitable.

        For objects that bind to the loop of the thread that makes them (a connection pool,
        a client session, a stub): made here, they belong to this loop thread, where
        ``run()``, ``sync()`` twins and the bridges use them, e.g.
        ``pool = call(asyncpg.create_pool, dsn)``. Runs in a copy of the caller's context,
        and waits as ``run()`` does (from the loop thread itself, re-entrantly).

        Raised when ``fn`` raises, or what it returns raises when awaited: that exception,
        the same object.
        Raised when Ctrl-C is pressed while the main thread waits: ``KeyboardInterrupt``,
        after the awaited work was cancelled and its cleanup ran.
        Raised when the work is cancelled by something other than the caller:
        ``concurrent.futures.CancelledError``.
        Raised when ``fn`` is not callable: ``TypeError`` (a coroutine passed instead of its
        function is closed first, and the message says what to pass).
        Raised when the loop thread is closed: ``RuntimeError``.
        """
        check_callable(fn, "call")
        out = self.run(_call.call(fn, args, kwargs))
        if isinstance(out, Failed):
            raise out.exc  # raised here, so the traceback shows fn's own frames
        return out

    def wrap_context(self, acm: AsyncContextSource[T]) -> ContextManager[T]:
        """``with`` over an async context manager (or an awaitable returning one).

        ``__enter__`` returns what ``__aenter__`` returned; the body's exception goes to
        ``__aexit__``, whose true result suppresses it. ``__aenter__`` and ``__aexit__`` run
        in one task on the loop, so managers bound to their task (``asyncio.timeout()``,
        task groups, cancel scopes) work.

        Raised when ``acm`` is neither an async context manager nor awaitable: ``TypeError``.
        """
        return _bridges.wrap_context(self, acm)

    def enter_context(self, acm: AsyncContextSource[T]) -> T:
        """Enter an async context manager now and return what ``__aenter__`` returned.

        It is exited, newest first, when this loop thread closes (for the default one, at
        interpreter exit), or when a ``with LoopThread() as lt:`` block ends.

        Raised when ``acm`` is neither an async context manager nor awaitable: ``TypeError``.
        Raised when ``__aenter__`` raises: that exception.
        """
        bridge, value = _bridges.enter(self, acm)
        with self._entered_lock:
            self._entered.append(bridge)
        return value

    def wrap_iter(self, ait: AsyncIterable[T], *, prefetch: int = 0) -> Iterator[T]:
        """Iterate an async iterable from sync code.

        ``prefetch=0`` (lockstep): each ``next()`` pulls exactly one item, so nothing is
        consumed that was not asked for. ``prefetch=N``: up to N items are pulled ahead into
        a bounded buffer, and items pulled ahead but never taken are dropped on close.
        ``close()``, ``break`` and garbage collection await the iterator's ``aclose()``.

        Raised when ``ait`` has no ``__aiter__``: ``TypeError`` (saying what to do, e.g.
        await a coroutine first). Raised when ``prefetch`` is not an int: ``TypeError``;
        when it is negative or too large: ``ValueError``.
        """
        return _bridges.wrap_iter(self, ait, prefetch)

    if TYPE_CHECKING:

        @overload
        def gather(
            self,
            *aws: Awaitable[T],
            limit: int | None = None,
            return_exceptions: Literal[False] = False,
            timeout: float | None = None,
        ) -> list[T]: ...
        @overload
        def gather(
            self,
            *aws: Awaitable[T],
            limit: int | None = None,
            return_exceptions: bool,
            timeout: float | None = None,
        ) -> list[T | BaseException]: ...

    def gather(
        self,
        *aws: Awaitable[Any],
        limit: int | None = None,
        return_exceptions: bool = False,
        timeout: float | None = None,
    ) -> list[Any]:
        """Await the awaitables concurrently on this loop thread; return their results in
        argument order.

        The whole batch goes to the loop thread in one submission. At most ``limit`` of the
        awaitables are awaited at a time (``None``: all at once); a coroutine is started
        only when a slot frees up, and coroutines never started (because the gather ended
        early) are closed, so nothing warns "never awaited". Tasks and futures passed in run
        on their own already: ``limit`` only bounds how many are awaited at once.

        With ``return_exceptions=True`` an awaitable's exception takes its place in the
        list. Otherwise the first exception cancels every other awaitable, waits for their
        cleanup (``finally``, ``__aexit__``) to finish, and is then raised. An awaitable
        cancelled from elsewhere counts as raising ``concurrent.futures.CancelledError``.

        Raised when an awaitable raises (unless ``return_exceptions``): that exception, the
        same object.
        Raised when ``timeout`` seconds pass first: ``TimeoutError``, after everything
        started was cancelled and its cleanup ran.
        Raised when Ctrl-C is pressed while the main thread waits: ``KeyboardInterrupt``,
        after the same cancellation (cleanup bounded by ``cancel_grace``).
        Raised when an argument is not awaitable (a list of them included: spread it,
        ``gather(*aws)``): ``TypeError`` naming its type and position, every coroutine
        passed closed first.
        Raised when ``limit`` is not ``None`` or an int, or ``timeout`` not a number of
        seconds: ``TypeError``; when ``limit`` is below 1 or ``timeout`` NaN: ``ValueError``.
        Raised when the loop thread is closed: ``RuntimeError``.
        """
        batch = _gather.Batch(aws, limit, return_exceptions, timeout)
        try:
            out = self._run_gather(batch.run(), batch.timeout)
        except BaseException:
            batch.abandon()
            raise
        if isinstance(out, Failed):
            raise out.exc  # raised here, so the traceback shows the awaitable's own frames
        return out

    if TYPE_CHECKING:

        @overload
        def map(
            self,
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
            self,
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
            self,
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
            self,
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
        self,
        fn: Callable[..., Awaitable[Any]],
        /,
        *iterables: Iterable[Any],
        limit: int | None = None,
        ordered: bool = True,
        timeout: float | None = None,
    ) -> Generator[Any, None, None]:
        """``concurrent.futures.Executor.map`` for an async ``fn``: an iterator over
        ``await fn(*args)`` for ``args`` taken from ``zip(*iterables)``, run concurrently on
        this loop thread.

        Inputs are consumed lazily, on the loop thread, only as slots free up: at most
        ``limit`` are held at a time (started and not yet handed to you: a finished result
        waiting for an earlier one keeps its slot), so an endless input works and memory
        stays bounded. ``limit=None`` means 100 (the default connection-pool size of aiohttp
        and httpx). Nothing starts until the first ``next()``. ``ordered=True`` yields in
        input order; ``ordered=False`` in completion order.

        Closing the iterator (``close()``, ``break``, garbage collection), or an exception
        raised by it, cancels what is in flight and waits for its cleanup.

        ``timeout`` is measured from the call to ``map()``, as in ``Executor.map``: every
        result must be ready by then; one that is already finished is still returned after.

        Raised by ``next()`` when ``fn`` raises for an item: that exception, in that item's
        place (``ordered=False``: when it happens); the iterator is finished afterwards.
        Raised by ``next()`` when the next result is not ready ``timeout`` seconds after the
        call: ``TimeoutError``, after everything in flight was cancelled and its cleanup ran.
        Raised by ``next()`` when Ctrl-C is pressed while the main thread waits:
        ``KeyboardInterrupt``, after the same cancellation.
        Raised by ``next()`` when iterating an input raises: that exception, after the
        results of the items before it.
        Raised when ``fn`` is not callable, an argument is not iterable, ``limit`` is not
        ``None`` or an int, or ``timeout`` is not a number: ``TypeError``; when ``limit`` is
        below 1: ``ValueError``.
        """
        return _map.start(self, fn, iterables, limit, ordered, timeout)

    def _exit_entered(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        deadline: float | None = None,
    ) -> bool:
        """Exit what ``enter_context`` entered, newest first, like ``contextlib.ExitStack``:
        each exit sees the exception still pending and may suppress it; an exception raised
        by an exit replaces the pending one (chained to it) and goes on to the older exits.
        Returns whether the original exception was suppressed.

        Closing must never hang on an ``__aexit__`` that never returns: each exit may run
        until ``deadline`` (a ``time.monotonic()`` time; ``None``: each for the shutdown step
        limit), and one still running then is abandoned with a ``TimeoutError`` that says so.
        """
        pending = exc
        suppressed = False
        while True:
            with self._entered_lock:
                if not self._entered:
                    break
                bridge = self._entered.pop()
            if deadline is None:
                within = _running.SHUTDOWN_STEP_TIMEOUT
            else:
                within = max(0.0, deadline - time.monotonic())
            try:
                if bridge._exit_within(
                    type(pending) if pending else None,
                    pending,
                    pending.__traceback__ if pending else None,
                    within,
                ):
                    suppressed, pending = True, None
            except BaseException as new:  # handed on to the older exits, like ExitStack
                if new is not pending:
                    new.__context__ = pending
                pending, suppressed = new, False
        if pending is not None and pending is not exc:
            raise pending
        return suppressed and exc is not None

    def close(self, timeout: float | None = None) -> None:
        """Stop the loop thread and shut its loop down, as interpreter exit does.

        What ``enter_context`` entered is exited (newest first), leftover tasks are
        cancelled and awaited, async generators finalized, the default executor shut down,
        the loop closed. Idempotent. Called from the loop thread itself, it only asks the
        loop to stop (it cannot wait for itself).

        ``timeout`` bounds the whole close, the exits included; without it, each exit may
        take the shutdown step limit (5 s). An exit still running then is abandoned (the
        shutdown cancels its task).

        Raised when ``timeout`` seconds pass before the thread is done: ``TimeoutError``
        (it goes on closing in the background); when an exit was abandoned: ``TimeoutError``
        naming the manager. Raised when ``timeout`` is not a number of seconds or ``None``:
        ``TypeError``; when it is NaN: ``ValueError``.
        """
        timeout = _timeout_arg(timeout, "LoopThread.close()")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if self._entered and not self._in_loop_thread() and not self.closed:
                self._exit_entered(None, None, None, deadline)
        except BaseException:
            # Closes even when an exit failed; that error then propagates, rather than this
            # wait's timeout: an abandoned exit has used the time up, and says so.
            self._finish_closing(deadline)
            raise
        if not self._finish_closing(deadline):
            raise TimeoutError(
                f"{self!r} did not finish closing within {timeout} s; "
                "it goes on closing in the background"
            )

    def _finish_closing(self, deadline: float | None) -> bool:
        """Ask the loop thread to stop and wait until ``deadline`` for it to finish (not on
        the loop thread itself, which cannot wait for itself); whether it finished or need
        not be waited for."""
        if not self._request_close() or self._in_loop_thread():
            return True
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._wait_closed(left)

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            suppressed = self._exit_entered(exc_type, exc, tb)
        finally:
            self.close()
        return suppressed

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<blockon.LoopThread name={self._name!r} {state}>"


def default_loop_thread() -> LoopThread:
    """The process's default loop thread, which the module-level functions use.

    Its loop comes from ``asyncio.new_event_loop()``, and its thread starts on first use. It
    is closed at interpreter exit, and starts afresh on next use after ``close()`` and in a
    child after ``os.fork()``.
    """
    # The factory registered below makes LoopThreads (typing.cast would import typing).
    loop_thread: LoopThread = _default_loop_thread()  # type: ignore[assignment]
    return loop_thread


register(LoopThread)
