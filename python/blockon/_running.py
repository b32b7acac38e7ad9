"""Running a loop thread: the thread itself, and the part of its life that is a sequence of
asyncio calls: making the loop, and shutting it down the way ``asyncio.run`` does (cancel
leftover tasks, finalize async generators, shut the default executor down, close), each
step bounded in time so that closing, and interpreter exit, never hang.

The native base class (``LoopThreadBase``) holds the engine: the state machine,
the inbox, ``run`` and ``submit``. ``LoopThread`` (the public class) adds the API on top.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import sys
import threading
import traceback
import weakref

from ._arguments import type_name
from ._blockon import (
    ContextBridge,
    LoopThreadBase,
    _interpreter_exiting,
    _set_default_factory,
)
from ._blockon import (
    _after_fork_in_child as _engine_after_fork_in_child,
)

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_SelectorLoop = asyncio.selector_events.BaseSelectorEventLoop

#: The testing switch (docs/how-it-works.md, "Engine paths"): ``BLOCKON_GENERIC_PATH=1`` in
#: the environment when blockon is imported sends every loop down the portable path (woken
#: through ``call_soon_threadsafe``, pulsing while busy), the one Windows' proactor loop
#: takes, so that the whole suite can check it on Linux. Read once, here.
GENERIC_PATH = os.environ.get("BLOCKON_GENERIC_PATH") == "1"

#: Seconds each shutdown step (cancelled tasks, async generators, executor) may take.
SHUTDOWN_STEP_TIMEOUT = 5.0
#: Seconds interpreter exit waits for each loop thread to close.
EXIT_TIMEOUT = 10.0

#: Every loop thread not yet collected, for interpreter exit to close.
_live: weakref.WeakSet[LoopRunner] = weakref.WeakSet()


class LoopRunner(LoopThreadBase):
    """The thread body of a loop thread: start the loop, run it, shut it down."""

    def __init__(
        self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None, name: str
    ) -> None:
        self._loop_factory = loop_factory
        self._name = name
        #: What ``enter_context`` entered, oldest first (``LoopThread`` exits them).
        self._entered: list[ContextBridge[Any]] = []
        self._entered_lock = threading.Lock()
        _live.add(self)

    if TYPE_CHECKING:

        def close(self, timeout: float | None = None) -> None: ...

    def _forget_entered(self) -> None:
        """In a forked child: what the parent entered lives on the parent's loop, which the
        child does not have; the parent exits it, the child lets it go."""
        self._entered_lock = threading.Lock()  # the parent may have held it at the fork
        self._entered = []

    def _spawn(self) -> None:
        threading.Thread(target=self._main, name=self._name, daemon=True).start()

    def _main(self) -> None:
        loop: asyncio.AbstractEventLoop | None = None
        ours = False  # whether the loop is ours to close if starting fails
        try:
            factory = self._loop_factory or asyncio.new_event_loop
            made = factory()
            if not isinstance(made, asyncio.AbstractEventLoop):
                raise TypeError(
                    f"loop_factory returned {type_name(made)}, not an event loop: pass a "
                    "callable that makes a new loop, such as asyncio.new_event_loop"
                )
            if made.is_running() or made.is_closed():
                # Someone else's loop: touching it (a reader, a shutdown) would break them.
                state = "already running" if made.is_running() else "closed"
                raise RuntimeError(
                    f"loop_factory of {self!r} returned {made!r}, which is {state}; a "
                    "LoopThread runs a new loop of its own: pass a callable that makes one "
                    "each time, such as asyncio.new_event_loop or uvloop.new_event_loop"
                )
            loop, ours = made, True
            fd = self._attach_to(loop)
        except BaseException as exc:
            try:
                if ours and loop is not None:
                    loop.close()
            finally:
                self._start_failed(exc)
            return
        self._started()
        pid = os.getpid()
        try:
            loop.run_forever()
        except (SystemExit, KeyboardInterrupt) as exc:
            if os.getpid() != pid:
                _end_forked_child(exc)
            raise
        finally:
            self._shut_down(loop, fd)

    def _attach_to(self, loop: asyncio.AbstractEventLoop) -> int | None:
        """Give ``loop`` its inbox and the way callers wake it; the descriptor it watches
        for that, if any."""
        if not _wakes_by_socket(loop):
            # The portable path: woken through call_soon_threadsafe, it pulses while busy.
            self._attach(loop, functools.partial(loop.call_soon_threadsafe, self._woken))
            self._portable_pulser: Any = self._pulser()
            return None
        fd = self._attach(loop)
        if isinstance(loop, _SelectorLoop):
            # A stdlib loop: it drains the inbox from its selector, and spins briefly
            # before it sleeps (see the engine's selector).
            loop.add_reader(fd, self._drain)
            loop._selector = self._hot_selector(loop._selector)  # type: ignore[attr-defined]
        else:
            # Another loop (uvloop, or one blockon does not know): woken by the reader,
            # it pulses while busy (see the engine's pulse).
            loop.add_reader(fd, self._pulser().wake)
        return fd

    def _woken(self) -> None:
        """The portable path's wake-up, queued on the loop by a caller."""
        self._portable_pulser.wake()

    def _shut_down(self, loop: asyncio.AbstractEventLoop, fd: int | None) -> None:
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
            try:
                if fd is not None:
                    loop.remove_reader(fd)
                loop.close()
            finally:
                # The portable path's pulser holds the engine, whose wake-up holds this
                # object: let go of it, or the two keep each other alive through Rust.
                self._portable_pulser = None
                self._stopped()  # whatever happened, callers must learn the thread is gone


def _wakes_by_socket(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether callers wake ``loop`` with a byte on a socket it watches (Unix, a loop with
    ``add_reader``) rather than through ``call_soon_threadsafe`` (any loop, any system)."""
    has_reader = type(loop).add_reader is not asyncio.AbstractEventLoop.add_reader
    return os.name == "posix" and has_reader and not GENERIC_PATH


def _end_forked_child(exc: SystemExit | KeyboardInterrupt) -> None:
    """End a child forked on the loop thread, where a coroutine raised ``exc``.

    The child's only thread is this one, so nothing else would ever end the process. It
    exits as ``sys.exit`` would in a main thread (exit handlers run, output flushed, the exit
    code kept), without shutting down the loop, whose tasks are the parent's.
    """
    if isinstance(exc, KeyboardInterrupt):
        code = 130  # as a shell reports a process ended by Ctrl-C
    elif exc.code is None or isinstance(exc.code, int):
        code = exc.code or 0
    else:
        print(exc.code, file=sys.stderr)
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


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


def _close_all_at_exit() -> None:
    for loop_thread in list(_live):
        # Exit goes on whatever happens (the thread is a daemon), but says what went wrong.
        try:
            loop_thread.close(timeout=EXIT_TIMEOUT)
        except Exception as exc:
            if exc.__context__ is None and _raised_by_blockon(exc):
                # Its message says it all (an abandoned exit, a close that took too long);
                # a traceback of blockon's own frames would only bury it.
                print(f"blockon: at interpreter exit: {exc}", file=sys.stderr)
            else:
                print(
                    f"blockon: closing {loop_thread!r} at interpreter exit failed:",
                    file=sys.stderr,
                )
                traceback.print_exception(exc, file=sys.stderr)
            # An abandoned exit leaves the shutdown no time, yet it is quick (that exit's
            # task is cancelled, not waited for again). It must end before the interpreter
            # finalizes: CPython up to 3.13 ends a thread still running then with
            # pthread_exit, which aborts the process inside the engine's native frames.
            loop_thread._wait_closed(SHUTDOWN_STEP_TIMEOUT)


def in_a_loop_thread() -> bool:
    """Whether the calling thread is one of blockon's loop threads, inside its loop."""
    return any(loop_thread._in_loop_thread() for loop_thread in list(_live))


def _raised_by_blockon(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by blockon itself, not by user code it ran (whose frames
    would come last in the traceback)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is None or tb.tb_frame.f_globals.get("__name__", "").startswith("blockon.")


def register(factory: Callable[[], Any]) -> None:
    """Make ``factory`` the default loop thread's class; hook interpreter exit and fork."""
    _set_default_factory(factory)
    atexit.register(_close_all_at_exit)
    # Runs before interpreter exit joins its threads (as concurrent.futures' own hook does):
    # to_thread workers waiting on a loop stop waiting, so that join cannot hang.
    register_early = getattr(threading, "_register_atexit", atexit.register)
    register_early(_interpreter_exiting)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_fork_in_child() -> None:
    _engine_after_fork_in_child()
    for loop_thread in list(_live):
        loop_thread._forget_entered()
