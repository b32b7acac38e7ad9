"""``patch_asyncio()`` and ``unpatch_asyncio()``: asyncio's entry points (``asyncio.run``,
``asyncio.Runner.run`` and the event loop's ``run_until_complete``) made to work where the
calling thread's loop is already running, for libraries that call them from sync code.

Opt-in and process-wide, and nothing but those entry points is replaced. Each wrapper first
asks whether a loop runs in the calling thread; where none does (and after
``unpatch_asyncio()``) it calls the original at once. Where one does:

- ``run_until_complete`` on that very loop runs the awaitable on it re-entrantly, as
  ``blockon.run(aw, nest=True)`` does (the engine's scoped re-entry: no Task class swap,
  the current task kept right);
- ``asyncio.run`` runs the coroutine there too, re-entrantly, unless ``loop_factory=`` asks
  for a loop of another kind or the loop cannot be re-entered (uvloop);
- otherwise (``Runner.run``, ``run_until_complete`` on another loop, the two cases above)
  the work runs on a loop of its own, by asyncio's own code: in this thread, with the
  running loop set aside (paused) until it returns; on blockon's own loop thread, which
  must keep serving, in a worker thread.

docs/reference.md, "patch_asyncio", is the contract; docs/guide-notebook.md says when to use
it rather than ``blockon.run``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import signal
import threading
import types
from asyncio.events import _get_running_loop, _set_running_loop

from . import _blockon
from ._arguments import type_name
from ._reentry import task_left, why_not_reentrant
from ._running import in_a_loop_thread

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from typing import Any, TypeVar

    T = TypeVar("T")

_lock = threading.Lock()
#: Whether the wrappers are in place. A wrapper someone kept (``from asyncio import run``
#: after patching) calls the original at once once this is false.
_active = False
#: What ``patch_asyncio()`` replaced, to put back: (owner, name, the owner's own attribute
#: before, or ``_ABSENT`` where the owner inherited it, the wrapper installed).
_replaced: list[tuple[Any, str, Any, Any]] = []
_ABSENT = object()


def patch_asyncio() -> None:
    """Make asyncio's entry points work where the calling thread's loop is running.

    Wraps ``asyncio.run``, ``asyncio.Runner.run`` and ``run_until_complete`` of asyncio's
    event loops (and of uvloop's ``uvloop.Loop``, where uvloop is installed); nothing else of
    asyncio is touched. Where no loop runs in the calling thread they are the originals.
    Where one runs: ``loop.run_until_complete(aw)`` on it runs ``aw`` on it re-entrantly,
    as ``blockon.run(aw, nest=True)``; ``asyncio.run(coro)`` runs ``coro`` on it
    re-entrantly too (on a new loop of its own with ``loop_factory=``, or when the running
    loop cannot be re-entered); ``Runner.run(coro)`` runs ``coro`` on the runner's loop.

    Process-wide, idempotent, safe to call from any thread. ``unpatch_asyncio()`` undoes it;
    ``%load_ext blockon`` calls it in IPython.
    """
    global _active
    with _lock:
        if _active:
            return
        targets: list[tuple[Any, str, Callable[[Any], Any]]] = [
            (asyncio, "run", _wrap_run),
            (asyncio.Runner, "run", _wrap_runner_run),
            (asyncio.BaseEventLoop, "run_until_complete", _wrap_run_until_complete),
        ]
        uvloop = _uvloop()
        if uvloop is not None:
            targets.append((uvloop.Loop, "run_until_complete", _wrap_run_until_complete))
        for owner, name, wrap in targets:
            wrapper = wrap(getattr(owner, name))
            _replaced.append((owner, name, vars(owner).get(name, _ABSENT), wrapper))
            setattr(owner, name, wrapper)
        _active = True


def unpatch_asyncio() -> None:
    """Undo ``patch_asyncio()``: put back exactly what it replaced.

    Idempotent, safe to call from any thread; ``%unload_ext blockon`` calls it in IPython.
    An entry point replaced again by other code since ``patch_asyncio()`` is left as that
    code made it; a wrapper still referenced anywhere behaves as the original from now on.
    """
    global _active
    with _lock:
        _active = False
        while _replaced:
            owner, name, before, wrapper = _replaced.pop()
            if vars(owner).get(name) is not wrapper:
                continue
            if before is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, before)


def _uvloop() -> Any:
    """uvloop, where it is installed (imported now: ``import blockon`` never imports it)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


# --- the wrappers --------------------------------------------------------------------------


def _wrap_run(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run(*args: Any, **kwargs: Any) -> Any:
        running = _get_running_loop()
        if running is None or not _active:
            return original(*args, **kwargs)
        if len(args) == 1 and not kwargs:
            main, debug, loop_factory = args[0], None, None
        else:
            # Bound as asyncio.run binds them (its TypeError where it would refuse them);
            # 3.11's asyncio.run has no loop_factory.
            main, debug, loop_factory = (*_arguments(original, args, kwargs), None)[:3]
        if not asyncio.iscoroutine(main):
            # asyncio's own error for it, as with no loop running (or, where asyncio.run
            # takes other awaitables, a run), on a loop of its own.
            with _set_aside(running):
                return _run_on_a_new_loop(main, debug, loop_factory)
        why = _why_a_loop_of_its_own(running, loop_factory)
        if why is None:
            return _reentrant_run(running, main, debug)
        return _on_a_loop_of_its_own(
            running,
            "asyncio.run()",
            main,
            why,
            lambda: _run_on_a_new_loop(main, debug, loop_factory),
        )

    return run


def _wrap_runner_run(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run(self: asyncio.Runner, *args: Any, **kwargs: Any) -> Any:
        running = _get_running_loop()
        if running is None or not _active:
            return original(self, *args, **kwargs)
        coro = _arguments(original, (self, *args), kwargs)[1]
        if self.get_loop() is running:
            # The runner's own loop is the one running here: run on it, re-entrantly.
            return self.get_loop().run_until_complete(coro)
        return _on_a_loop_of_its_own(
            running,
            "asyncio.Runner.run()",
            coro,
            "an asyncio.Runner runs a loop of its own",
            lambda: original(self, *args, **kwargs),
        )

    return run


# Event loop classes whose loops were found re-entrant: the check is then skipped, since it
# was a fifth of what a nested run_until_complete() of a coroutine that returns at once cost.
_reentrant_classes: set[type] = set()


def _wrap_run_until_complete(original: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(original)
    def run_until_complete(self: asyncio.AbstractEventLoop, future: Awaitable[T]) -> T:
        running = _get_running_loop()
        if running is None or not _active:
            return original(self, future)
        if running is self:
            if type(future) is not types.CoroutineType and not _is_awaitable(future):
                raise TypeError(_not_awaitable(future))
            if type(self) in _reentrant_classes:
                return _nested(future)
            why = why_not_reentrant(self)
            if why is None:
                _reentrant_classes.add(type(self))
                return _nested(future)
            return _elsewhere(self, future, why)
        if self.is_running():
            return original(self, future)  # running in another thread: asyncio's own error
        return _on_a_loop_of_its_own(
            running,
            "loop.run_until_complete()",
            future,
            f"it was called on {self!r}, not on the loop running in this thread",
            lambda: original(self, future),
        )

    return run_until_complete


# --- where the work runs -------------------------------------------------------------------


def _nested(aw: Awaitable[T]) -> T:
    """``aw`` on the loop running in this thread, re-entrantly: ``run(aw, nest=True)``, with
    work cancelled from elsewhere raising asyncio's ``CancelledError``, as asyncio does."""
    try:
        return _blockon.run(aw, nest=True)
    except concurrent.futures.CancelledError as exc:
        if asyncio.isfuture(aw):
            if aw.cancelled():
                aw.result()  # raises its own CancelledError, as asyncio's would
        elif exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
            # Raised by blockon (the awaitable's own would show its frames): it was cancelled.
            raise asyncio.CancelledError() from None
        raise


def _reentrant_run(loop: asyncio.AbstractEventLoop, main: Awaitable[T], debug: Any) -> T:
    """``asyncio.run(main, debug=debug)`` on the running ``loop``, re-entrantly: ``debug``
    (where not ``None``) sets the loop's debug mode for the duration of the call."""
    before = loop.get_debug()
    switch = debug is not None and bool(debug) != before
    if switch:
        loop.set_debug(bool(debug))
    try:
        return _nested(main)
    finally:
        if switch:
            loop.set_debug(before)


def _run_on_a_new_loop(main: Any, debug: Any, loop_factory: Any) -> Any:
    """What ``asyncio.run`` does, on a new loop made by ``loop_factory`` (default:
    ``asyncio.new_event_loop``, not installed as the thread's current loop, which belongs
    to the code whose loop is running)."""
    with asyncio.Runner(debug=debug, loop_factory=loop_factory or asyncio.new_event_loop) as r:
        return r.run(main)


def _elsewhere(loop: asyncio.AbstractEventLoop, aw: Awaitable[T], why: str) -> T:
    """``loop.run_until_complete(aw)`` on the running ``loop``, which cannot be re-entered:
    ``aw`` on a new loop, if it is not bound to ``loop``."""
    if asyncio.isfuture(aw) and aw.get_loop() is loop:
        raise RuntimeError(
            f"loop.run_until_complete() was given {aw!r}, which belongs to the event loop "
            f"running in this thread ({loop!r}), and was called from inside that loop. That "
            f"loop cannot be re-entered: {why}. So it cannot run while this call waits, and "
            "what belongs to it can finish only there: it would wait forever. Await it "
            "from async code instead, or move the sync code off the loop with "
            "`await blockon.to_thread(fn)`."
        )

    def on_a_new_loop() -> T:
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.get_loop().run_until_complete(aw)

    return _on_a_loop_of_its_own(
        loop,
        "loop.run_until_complete()",
        aw,
        f"the running loop cannot be re-entered: {why}",
        on_a_new_loop,
    )


def _on_a_loop_of_its_own(
    paused: asyncio.AbstractEventLoop, what: str, aw: Any, why: str, start: Callable[[], T]
) -> T:
    """``start()``, which runs another loop, in this thread with ``paused`` (the loop running
    here) set aside until it returns, or on blockon's loop thread in a worker thread while
    ``paused`` keeps running; refused at once if ``aw`` waits for ``paused``."""
    held = _held(paused, aw)
    if held is not None:
        name, future = held
        aw.close()  # it never ran: no "never awaited" warning
        raise RuntimeError(
            f"{what} runs {aw.__qualname__}() on an event loop of its own here, because "
            f"{why}; but its argument {name!r} holds {future!r}, which belongs to the event "
            f"loop running in this thread ({paused!r}). A coroutine on another loop cannot "
            "wait for it, and that loop is paused until the call returns: it would wait "
            "forever. Await it from async code instead."
        )
    if in_a_loop_thread() and why_not_reentrant(paused) is None:
        # blockon's own loop thread: paused, it would stall every thread that uses it, and
        # a blockon call made from inside would wait for it forever. It keeps running
        # instead, while the other loop runs in a worker thread.
        return _nested(asyncio.to_thread(start))
    with _set_aside(paused):
        return start()


@contextlib.contextmanager
def _set_aside(paused: asyncio.AbstractEventLoop) -> Iterator[None]:
    """No loop and no task run in this thread meanwhile, as far as asyncio can tell, so that
    another loop can run here; ``paused`` and its task are running again afterwards.

    Ctrl-C: where the running loop came from ``asyncio.run`` (its Runner's SIGINT handler,
    which cancels only its own main task, is installed), Python's default one is put back
    meanwhile, so that the inner run's own handling applies to the inner run.
    """
    outer_handler = _runner_sigint_handler()
    if outer_handler is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with task_left(paused):
            _set_running_loop(None)
            try:
                yield
            finally:
                _set_running_loop(paused)
    finally:
        if outer_handler is not None and signal.getsignal(signal.SIGINT) is (
            signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, outer_handler)


def _runner_sigint_handler() -> Any:
    """The SIGINT handler of an ``asyncio.Runner`` (``asyncio.run``), if it is installed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    handler = signal.getsignal(signal.SIGINT)
    if not isinstance(handler, functools.partial):
        return None
    on_sigint = getattr(asyncio.Runner, "_on_sigint", None)
    return handler if getattr(handler.func, "__func__", None) is on_sigint else None


# --- arguments -----------------------------------------------------------------------------


def _arguments(original: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> list[Any]:
    """The arguments of a call of ``original``, as it binds them, defaults included:
    asyncio's TypeError where it would not bind them."""
    bound = _signature(original).bind(*args, **kwargs)
    bound.apply_defaults()
    return list(bound.arguments.values())


@functools.cache
def _signature(original: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(original)


def _why_a_loop_of_its_own(loop: asyncio.AbstractEventLoop, loop_factory: Any) -> str | None:
    if loop_factory is not None:
        return f"loop_factory={loop_factory!r} asks for a loop of that kind"
    why = why_not_reentrant(loop)
    if why is not None:
        return f"the running loop cannot be re-entered: {why}"
    return None


def _not_awaitable(obj: object) -> str:
    hint = ""
    if inspect.iscoroutinefunction(obj):
        hint = f"; call it: run_until_complete({getattr(obj, '__name__', 'f')}(...))"
    return (
        "loop.run_until_complete() needs an awaitable (a coroutine, Task, Future or object "
        f"with __await__), got {type_name(obj)}{hint}"
    )


def _is_awaitable(aw: object) -> bool:
    return type(aw) is types.CoroutineType or asyncio.isfuture(aw) or inspect.isawaitable(aw)


def _held(loop: asyncio.AbstractEventLoop, aw: object) -> tuple[str, object] | None:
    """The name of an argument of ``aw``, a coroutine not yet started, and a Task or Future
    of ``loop`` that it holds (directly, or in a list, tuple, set or dict): what the coroutine
    would wait for while ``loop`` is paused. (A Task or Future passed itself gets asyncio's
    own error.)"""
    frame = getattr(aw, "cr_frame", None)
    if not isinstance(aw, types.CoroutineType) or frame is None:
        return None
    if inspect.getcoroutinestate(aw) != inspect.CORO_CREATED:
        return None
    for name, value in frame.f_locals.items():
        if isinstance(value, (list, tuple, set, frozenset)):
            candidates = list(value)
        elif isinstance(value, dict):
            candidates = list(value.values())
        else:
            candidates = [value]
        for candidate in candidates:
            if asyncio.isfuture(candidate) and _loop_of(candidate) is loop:
                return name, candidate
    return None


def _loop_of(future: Any) -> object:
    get_loop = getattr(future, "get_loop", None)
    return get_loop() if callable(get_loop) else None
