"""``LoopThread``: a thread running one asyncio event loop, and the process's default one.

The native base class (``_blockon.LoopThreadBase``) holds the engine: the state machine, the inbox,
``run`` and ``submit``. This class supplies the thread itself and the part of its life that
is a sequence of asyncio calls: making the loop, and shutting it down the way
``asyncio.run`` does (cancel leftover tasks, finalize async generators, shut the default
executor down, close), each step bounded in time so that closing, and interpreter exit,
never hang.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import threading
import traceback
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager as ContextManager
from types import TracebackType

from . import _blockon, _bridges, _fanout, _sync

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

_SelectorLoop = asyncio.selector_events.BaseSelectorEventLoop

#: Seconds each shutdown step (cancelled tasks, async generators, executor) may take.
SHUTDOWN_STEP_TIMEOUT = 5.0
#: Seconds interpreter exit waits for each loop thread to close.
EXIT_TIMEOUT = 10.0

_live: weakref.WeakSet[LoopThread] = weakref.WeakSet()


class LoopThread(_blockon.LoopThreadBase):
    """A thread running one asyncio event loop, started lazily on first use.

    Safe to use from any number of threads at once. Closed by ``close()``, by leaving a
    ``with`` block, or at interpreter exit. ``loop_factory`` makes the loop (default:
    ``asyncio.new_event_loop``, which honours an installed event-loop policy such as
    uvloop's); ``name`` names the thread; ``blocked_warning`` is the number of seconds a
    caller may block a running event loop before a ``RuntimeWarning`` says so (``None``: never).
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
                f"uvloop.new_event_loop (no parentheses), got {type(loop_factory).__name__!r}"
            )
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__!r}")
        self._loop_factory = loop_factory
        self._name = name
        self.blocked_warning = blocked_warning
        self._entered: list[_blockon.ContextBridge[Any]] = []
        self._entered_lock = threading.Lock()
        _live.add(self)

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

    #: The sync twin of an async function, generator function, class, instance or module,
    #: bound to this loop thread. See ``blockon.sync``.
    sync = _sync.sync

    def wrap_context(self, acm: _bridges.AsyncContextSource[T]) -> ContextManager[T]:
        """``with`` over an async context manager (or an awaitable returning one).

        ``__enter__`` returns what ``__aenter__`` returned; the body's exception goes to
        ``__aexit__``, whose true result suppresses it. ``__aenter__`` and ``__aexit__`` run
        in one task on the loop, so managers bound to their task (``asyncio.timeout()``,
        task groups, cancel scopes) work.
        """
        return _bridges.wrap_context(self, acm)

    def enter_context(self, acm: _bridges.AsyncContextSource[T]) -> T:
        """Enter an async context manager now and return what ``__aenter__`` returned.

        It is exited, newest first, when this loop thread closes (for the default one, at
        interpreter exit), or when a ``with LoopThread() as lt:`` block ends.
        """
        bridge, value = _bridges.enter(self, acm)
        with self._entered_lock:
            self._entered.append(bridge)
        entered: T = value
        return entered

    def wrap_iter(self, ait: AsyncIterable[T], *, prefetch: int = 0) -> Iterator[T]:
        """Iterate an async iterable from sync code.

        ``prefetch=0`` (lockstep): each ``next()`` pulls exactly one item, so nothing is
        consumed that was not asked for. ``prefetch=N``: up to N items are pulled ahead into
        a bounded buffer, and items pulled ahead but never taken are dropped on close.
        ``close()``, ``break`` and garbage collection await the iterator's ``aclose()``.
        """
        return _bridges.wrap_iter(self, ait, prefetch)

    def gather(
        self,
        *aws: Awaitable[Any],
        limit: int | None = None,
        return_exceptions: bool = False,
        timeout: float | None = None,
    ) -> list[Any]:
        """Await the awaitables concurrently on this loop thread; return their results in
        argument order.

        The whole batch goes to the loop thread in one submission; at most ``limit`` run
        at a time (the rest start as slots free up, and are closed unstarted if the gather
        ends early). On the first exception (unless ``return_exceptions``) the others are
        cancelled and awaited, then it is raised. ``timeout`` cancels everything and raises
        ``TimeoutError``; so does Ctrl-C, with ``KeyboardInterrupt``.
        """
        return _fanout.gather(
            self, *aws, limit=limit, return_exceptions=return_exceptions, timeout=timeout
        )

    def map(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *iterables: Iterable[Any],
        limit: int | None = None,
        ordered: bool = True,
        timeout: float | None = None,
    ) -> Generator[T, None, None]:
        """``Executor.map`` for an async ``fn``: inputs consumed lazily on the loop, at most
        ``limit`` in flight (``None``: 100), results in input order, or in completion order
        with ``ordered=False``. Closing the iterator cancels what is in flight and awaits its
        cleanup. ``timeout`` counts from this call, as in ``Executor.map``.
        """
        return _fanout.map(self, fn, *iterables, limit=limit, ordered=ordered, timeout=timeout)

    def _exit_entered(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Exit what ``enter_context`` entered, newest first, like ``contextlib.ExitStack``:
        each exit sees the exception still pending and may suppress it; an exception raised
        by an exit replaces the pending one (chained to it) and goes on to the older exits.
        Returns whether the original exception was suppressed."""
        pending = exc
        suppressed = False
        while True:
            with self._entered_lock:
                if not self._entered:
                    break
                bridge = self._entered.pop()
            try:
                if bridge.__exit__(
                    type(pending) if pending else None,
                    pending,
                    pending.__traceback__ if pending else None,
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

        Leftover tasks are cancelled and awaited, async generators finalized, the default
        executor shut down, the loop closed. Idempotent. Called from the loop thread itself,
        it only asks the loop to stop (it cannot wait for itself).

        Raised when ``timeout`` seconds pass before the thread is done: ``TimeoutError``
        (it goes on closing in the background).
        """
        timeout = _blockon._timeout_arg(timeout, "LoopThread.close()")
        try:
            if self._entered and not self._in_loop_thread() and not self.closed:
                self._exit_entered(None, None, None)
        finally:
            # Closes even when an exit failed; that error then propagates.
            if (
                self._request_close()
                and not self._in_loop_thread()
                and not self._wait_closed(timeout)
            ):
                raise TimeoutError(
                    f"{self!r} did not finish closing within {timeout} s; "
                    "it goes on closing in the background"
                )

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

    # ------------------------------------------------------------------ the thread

    def _spawn(self) -> None:
        threading.Thread(target=self._main, name=self._name, daemon=True).start()

    def _main(self) -> None:
        loop: asyncio.AbstractEventLoop | None = None
        try:
            factory = self._loop_factory or asyncio.new_event_loop
            loop = factory()
            if not isinstance(loop, asyncio.AbstractEventLoop):
                raise TypeError(f"loop_factory returned {type(loop).__name__!r}, not an event loop")
            fd = self._attach(loop)
            if isinstance(loop, _SelectorLoop):
                # A stdlib loop: it drains the inbox from its selector, and spins briefly
                # before it sleeps (see selector.rs).
                loop.add_reader(fd, self._drain)
                loop._selector = self._hot_selector(loop._selector)  # type: ignore[attr-defined]
            else:
                # Another loop (uvloop): woken by the reader, it pulses while busy.
                self._watch_pulsed()
                loop.add_reader(fd, self._on_wake, loop)
        except BaseException as exc:
            try:
                if isinstance(loop, asyncio.AbstractEventLoop):
                    loop.close()
            finally:
                self._start_failed(exc)
            return
        self._started()
        try:
            loop.run_forever()
        finally:
            self._shut_down(loop, fd)

    def _on_wake(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._wake():
            loop.call_soon(self._pulse_on, loop)

    def _pulse_on(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pulse():
            loop.call_soon(self._pulse_on, loop)

    def _shut_down(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._shutdown_inbox()
        try:
            _cancel_leftovers(loop)
            for step in (loop.shutdown_asyncgens, loop.shutdown_default_executor):
                try:
                    loop.run_until_complete(asyncio.wait_for(step(), SHUTDOWN_STEP_TIMEOUT))
                except TimeoutError:
                    loop.call_exception_handler(
                        {
                            "message": f"blockon: {step.__name__}() took over "
                            f"{SHUTDOWN_STEP_TIMEOUT} s while closing {self!r}; gave up on it"
                        }
                    )
        finally:
            loop.remove_reader(fd)
            loop.close()
            self._stopped()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still running and wait (bounded) for their cleanup, as asyncio.run."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    # A task whose caller gave up on it after Ctrl-C had its grace period already.
    waited = [task for task in tasks if not getattr(task.get_coro(), "_abandoned", False)]
    if waited:
        loop.run_until_complete(asyncio.wait(waited, timeout=SHUTDOWN_STEP_TIMEOUT))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task while closing blockon's loop thread",
                    "exception": task.exception(),
                    "task": task,
                }
            )


def default_loop_thread() -> LoopThread:
    """The process's default loop thread, which the module-level functions use.

    Created on first use, closed at interpreter exit, started afresh in a child after
    ``os.fork()``. Its loop comes from ``asyncio.new_event_loop()``.
    """
    # The factory _register installs makes LoopThreads (typing.cast would import typing).
    portal: LoopThread = _blockon._default_loop_thread()  # type: ignore[assignment]
    return portal


def _close_all_at_exit() -> None:
    for loop_thread in list(_live):
        # Exit goes on whatever happens (the thread is a daemon), but says what went wrong.
        try:
            loop_thread.close(timeout=EXIT_TIMEOUT)
        except Exception as exc:
            print(
                f"blockon: closing {loop_thread!r} at interpreter exit failed:",
                file=sys.stderr,
            )
            traceback.print_exception(exc, file=sys.stderr)


def _register(factory: Callable[[], Any]) -> None:
    _blockon._set_default_factory(factory)
    atexit.register(_close_all_at_exit)
    # Runs before interpreter exit joins its threads (as concurrent.futures' own hook does):
    # to_thread workers waiting on a loop stop waiting, so that join cannot hang.
    register_early = getattr(threading, "_register_atexit", atexit.register)
    register_early(_blockon._interpreter_exiting)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_blockon._after_fork_in_child)


_register(LoopThread)
