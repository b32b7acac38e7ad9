"""`run()` from a thread whose loop is running, `nest=True`, and the loop thread calling itself.

From a thread whose loop is running, a bare `run()` goes to the loop thread (with a warning
while it blocks that loop too long); `nest=True` runs on the caller's own loop, re-entrantly;
sync code on a loop thread calling `run()` on that loop re-enters it; a loop that cannot be
re-entered (uvloop) raises RuntimeError at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import threading
import time
import traceback
import warnings

import blockon
import pytest

from tests.support import (
    BaseBoom,
    Boom,
    answer,
    blockon_frames,
    debug_loop,
    run_script,
    started,
    this_task,
    where,
)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


class WarningRecorder:
    """Records warnings through warnings.showwarning, from whatever thread emits them."""

    def __init__(self):
        self.seen = []
        self.emitted = threading.Event()

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        self.seen.append((message, category, filename, lineno))
        self.emitted.set()


@contextlib.contextmanager
def recording_warnings():
    """catch_warnings that shows every warning to a recorder instead of raising it."""
    recorder = WarningRecorder()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = recorder
        yield recorder


# --- default path: the caller's loop is running, the work goes to the loop thread ---------


@pytest.mark.asyncio
async def test_default_path_runs_on_the_loop_thread():
    caller_loop = asyncio.get_running_loop()
    ident, loop = blockon.run(where())
    assert ident != threading.get_ident()
    assert loop is not caller_loop
    assert loop is blockon.default_loop_thread().loop


@pytest.mark.asyncio
async def test_default_path_on_a_loop_thread(lt):
    ident, loop = lt.run(where())
    assert ident != threading.get_ident()
    assert loop is lt.loop


@pytest.mark.asyncio
async def test_default_path_result_exception_and_context():
    assert blockon.run(answer()) == 42
    exc = Boom()

    async def fail():
        await asyncio.sleep(0)
        raise exc

    with pytest.raises(Boom) as info:
        blockon.run(fail())
    assert info.value is exc
    token = VAR.set("from the async test")
    try:

        async def read():
            return VAR.get()

        assert blockon.run(read()) == "from the async test"
    finally:
        VAR.reset(token)


@pytest.mark.asyncio
@pytest.mark.parametrize("which", ["loop-thread", "default"])
async def test_blocked_warning_after_blocked_warning_seconds(which):
    if which == "default":
        thread = blockon.default_loop_thread()
        previous = thread.blocked_warning
        thread.blocked_warning = 0.05
        run = blockon.run
    else:
        thread = blockon.LoopThread(debug_loop, blocked_warning=0.05)
        run = thread.run
    caller_loop = asyncio.get_running_loop()

    try:
        with recording_warnings() as recorder:

            async def held_until_warned():
                # Holds the caller until the warning has been emitted (hang guard 30 s).
                await asyncio.to_thread(recorder.emitted.wait, 30)
                # Then keeps it blocked for 6x blocked_warning more: still only one warning.
                await asyncio.sleep(0.3)
                return "released"

            assert run(held_until_warned()) == "released"
    finally:
        if which == "default":
            thread.blocked_warning = previous
        else:
            thread.close()

    assert recorder.emitted.is_set(), "no RuntimeWarning while the caller's loop was blocked"
    assert len(recorder.seen) == 1, recorder.seen
    message, category, filename, _lineno = recorder.seen[0]
    assert category is RuntimeWarning
    assert filename == __file__  # attributed to the caller's line, not to blockon
    text = str(message)
    assert "nest=True" in text
    assert type(caller_loop).__name__ in text or repr(caller_loop) in text, text


@pytest.mark.asyncio
async def test_blocked_warning_none_turns_it_off():
    lt = blockon.LoopThread(debug_loop, blocked_warning=0.05)
    try:
        lt.blocked_warning = None
        assert lt.blocked_warning is None
        with recording_warnings() as recorder:
            lt.run(asyncio.sleep(0.3))
        assert recorder.seen == []
    finally:
        lt.close()


@pytest.mark.asyncio
async def test_no_blocked_warning_when_the_call_is_quick():
    lt = blockon.LoopThread(debug_loop, blocked_warning=5.0)
    try:
        started(lt)  # a cold start is not the call being quick
        with recording_warnings() as recorder:
            assert lt.run(answer()) == 42
        assert recorder.seen == []
    finally:
        lt.close()


def test_no_blocked_warning_from_a_thread_without_a_loop():
    lt = blockon.LoopThread(debug_loop, blocked_warning=0.05)
    try:
        with recording_warnings() as recorder:
            lt.run(asyncio.sleep(0.3))
        assert recorder.seen == []
    finally:
        lt.close()


# --- nest=True: the caller's own loop, re-entrantly ---------------------------------------


@pytest.mark.asyncio
async def test_nest_runs_on_the_callers_own_loop():
    assert blockon.run(where(), nest=True) == (threading.get_ident(), asyncio.get_running_loop())


@pytest.mark.asyncio
async def test_nest_on_a_loop_thread_object_still_uses_the_callers_loop(lt):
    assert lt.run(where(), nest=True) == (threading.get_ident(), asyncio.get_running_loop())


@pytest.mark.asyncio
async def test_nest_other_tasks_of_the_loop_keep_running():
    ticks = []
    progressed = asyncio.Event()

    async def background():
        for i in range(5):
            ticks.append(i)
            await asyncio.sleep(0)
        progressed.set()

    bg = asyncio.create_task(background())

    async def nested():
        await progressed.wait()
        return list(ticks)

    assert blockon.run(nested(), nest=True) == [0, 1, 2, 3, 4]
    await bg


@pytest.mark.asyncio
async def test_nest_a_server_on_the_loop_keeps_serving():
    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        await writer.drain()
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line

    try:
        assert blockon.run(client(), nest=True) == b"PING\n"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_nest_wakes_for_call_soon_threadsafe_from_another_thread():
    loop = asyncio.get_running_loop()

    async def nested():
        event = asyncio.Event()
        threading.Thread(target=loop.call_soon_threadsafe, args=(event.set,)).start()
        await event.wait()
        return "woken"

    assert blockon.run(nested(), nest=True) == "woken"


@pytest.mark.asyncio
async def test_nest_awaits_a_task_and_a_future_of_the_callers_loop():
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(answer("task"))
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "future")
    assert blockon.run(task, nest=True) == "task"
    assert blockon.run(fut, nest=True) == "future"


@pytest.mark.parametrize("kind", ["task", "future"])
@pytest.mark.asyncio
async def test_default_path_with_an_awaitable_of_the_callers_loop_is_refused_at_once(kind, lt):
    loop = asyncio.get_running_loop()
    aw = asyncio.create_task(answer("task")) if kind == "task" else loop.create_future()
    for run, api in [(blockon.run, "blockon.run()"), (lt.run, "LoopThread.run()")]:
        with pytest.raises(RuntimeError) as info:
            run(aw)  # the caller's loop is blocked: never a hang
        message = str(info.value)
        belongs = f"{api} cannot run {aw!r}: it belongs to the event loop "
        assert message.startswith(belongs), message
        assert repr(loop) in message
        assert "the calling thread is running" in message
        assert f"blocked in {api}" in message
        assert "nest=True" in message and "`await` it" in message
        assert "inside the coroutine passed to run()" in message
    if kind == "task":
        assert await aw == "task"  # refused before anything touched it
    else:
        aw.cancel()


def test_awaitable_of_a_closed_loop_is_refused_at_once(target):
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    loop.close()
    with pytest.raises(RuntimeError) as info:
        target.run(future)
    message = str(info.value)
    assert f"it belongs to the event loop {loop!r}, which is closed" in message, message
    assert "anew inside the call" in message


@pytest.mark.asyncio
async def test_nest_current_task_is_the_nested_task_then_the_outer_again():
    outer = asyncio.current_task()
    assert outer is not None

    async def nested():
        task = asyncio.current_task()
        assert task in asyncio.all_tasks()
        await asyncio.sleep(0)
        assert asyncio.current_task() is task
        return task

    inner = blockon.run(nested(), nest=True)
    assert inner is not None
    assert inner is not outer
    assert isinstance(inner, asyncio.Task)
    assert inner.done()
    assert asyncio.current_task() is outer
    await asyncio.sleep(0)
    assert asyncio.current_task() is outer


@pytest.mark.asyncio
async def test_nest_current_task_restored_after_an_exception():
    outer = asyncio.current_task()

    async def fail():
        await asyncio.sleep(0)
        raise Boom

    with pytest.raises(Boom):
        blockon.run(fail(), nest=True)
    assert asyncio.current_task() is outer
    await asyncio.sleep(0)
    assert asyncio.current_task() is outer


@pytest.mark.asyncio
async def test_nest_exception_same_object_with_coroutine_frames():
    exc = Boom("nested")

    async def nested_fail():
        await asyncio.sleep(0)
        raise exc

    with pytest.raises(Boom) as info:
        blockon.run(nested_fail(), nest=True)
    assert info.value is exc
    frames = traceback.extract_tb(exc.__traceback__)
    assert frames[-1].name == "nested_fail"
    assert blockon_frames(exc) == []


@pytest.mark.asyncio
async def test_nest_context_is_copied():
    async def read_then_write():
        seen = VAR.get()
        VAR.set("inner")
        return seen

    token = VAR.set("outer")
    try:
        assert blockon.run(read_then_write(), nest=True) == "outer"
        assert VAR.get() == "outer"
    finally:
        VAR.reset(token)


@pytest.mark.asyncio
async def test_nest_timeout_runs_cleanup_before_timeout_error():
    log = []

    async def slow():
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)
            log.append("cleanup done")

    with pytest.raises(TimeoutError):
        blockon.run(slow(), nest=True, timeout=0.05)
    assert log == ["cleanup done"]


@pytest.mark.asyncio
async def test_nest_cancelled_from_elsewhere():
    async def cancels_itself():
        this_task().cancel()
        await asyncio.sleep(0)

    with pytest.raises(concurrent.futures.CancelledError) as info:
        blockon.run(cancels_itself(), nest=True)
    assert not isinstance(info.value, asyncio.CancelledError)
    # The outer task was not cancelled by it.
    assert this_task().cancelling() == 0
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_nest_a_cancel_of_the_caller_during_the_first_step_cancels_the_work():
    """The caller's task cancelled while the work's eager first step runs (Ctrl-C under
    asyncio.run() right then, say): the work is cancelled as an await would be."""
    seen = []
    guard = asyncio.Event()  # set after 10 s, so that a miss fails instead of hanging
    asyncio.get_running_loop().call_later(10, guard.set)

    async def caller():
        me = this_task()

        async def work():
            me.cancel()
            try:
                await guard.wait()
                seen.append("not cancelled")
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        blockon.run(work(), nest=True)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(caller())
    assert seen == ["cancelled"]


@pytest.mark.asyncio
@pytest.mark.parametrize("exc_type", [SystemExit, BaseBoom])
async def test_nest_base_exceptions_propagate_and_the_loop_stays_sound(exc_type):
    outer = asyncio.current_task()
    exc = exc_type()

    async def raiser():
        await asyncio.sleep(0)
        raise exc

    with pytest.raises(exc_type) as info:
        blockon.run(raiser(), nest=True)
    assert info.value is exc
    assert asyncio.current_task() is outer
    await asyncio.sleep(0)
    assert blockon.run(answer(), nest=True) == 42


@pytest.mark.asyncio
async def test_nest_twice():
    async def level2():
        await asyncio.sleep(0)
        return "deep", asyncio.get_running_loop()

    def sync_helper():
        return blockon.run(level2(), nest=True)

    async def level1():
        await asyncio.sleep(0)
        return sync_helper()

    assert blockon.run(level1(), nest=True) == ("deep", asyncio.get_running_loop())


@pytest.mark.asyncio
async def test_nest_many_times_in_one_callback_leaves_the_ready_queue_bounded():
    """Nested runs in a loop, in one step of the outer task: each pads the ready queue only
    for the outer iteration's handles, so fillers do not pile up (each later run would step
    over all of them: quadratic time)."""
    loop = asyncio.get_running_loop()
    sizes = []
    for _ in range(300):
        blockon.run(answer(), nest=True)  # may finish in its eager first step
        blockon.run(asyncio.ensure_future(answer()), nest=True)  # a task made by this step
        sizes.append(len(loop._ready))  # type: ignore[attr-defined]
    assert max(sizes) <= 3, sizes[-5:]


@pytest.mark.asyncio
async def test_nest_keeps_c_tasks_and_does_not_patch_asyncio():
    before_task_class = asyncio.Task

    async def nested():
        return type(asyncio.current_task())

    task_type = blockon.run(nested(), nest=True)
    assert asyncio.Task is before_task_class
    assert task_type is asyncio.Task
    try:
        import _asyncio
    except ImportError:  # pragma: no cover - CPython always has it
        return
    assert asyncio.Task is _asyncio.Task


def test_nest_does_not_monkey_patch_asyncio():
    proc, _ = run_script(
        """
        import asyncio, asyncio.base_events, asyncio.events, asyncio.tasks, asyncio.futures

        def snapshot():
            spaces = {
                "asyncio": vars(asyncio),
                "events": vars(asyncio.events),
                "tasks": vars(asyncio.tasks),
                "futures": vars(asyncio.futures),
                "base_events": vars(asyncio.base_events),
                "BaseEventLoop": vars(asyncio.base_events.BaseEventLoop),
                "SelectorEventLoop": vars(asyncio.SelectorEventLoop),
            }
            return {
                (space, name): value
                for space, ns in spaces.items()
                for name, value in list(ns.items())
                if callable(value)
            }

        before = snapshot()
        import blockon

        async def inner():
            await asyncio.sleep(0)
            return snapshot()

        async def main():
            during = blockon.run(inner(), nest=True)
            blockon.run(inner())
            return during

        during = asyncio.run(main())
        after = snapshot()
        for label, snap in (("during", during), ("after", after)):
            changed = sorted(k for k in before if snap.get(k) is not before[k])
            added = sorted(k for k in snap if k not in before)
            assert not changed and not added, (label, changed, added)
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"


# --- the loop thread calling run() on itself -----------------------------------------------


def test_loop_thread_calling_run_on_itself_does_not_deadlock(reentrant_target):
    target = reentrant_target

    def sync_code():
        return target.run(where())

    async def outer():
        await asyncio.sleep(0)
        return threading.get_ident(), asyncio.get_running_loop(), sync_code()

    ident, loop, (inner_ident, inner_loop) = target.run(outer())
    assert inner_ident == ident
    assert inner_loop is loop is target.loop


def test_loop_thread_self_call_other_tasks_keep_running(reentrant_target):
    target = reentrant_target

    async def outer():
        event = asyncio.Event()

        async def background():
            await asyncio.sleep(0)
            event.set()

        bg = asyncio.create_task(background())

        async def inner():
            await event.wait()
            return "saw background"

        result = target.run(inner())  # sync call from inside a coroutine on the loop thread
        await bg
        return result

    assert target.run(outer()) == "saw background"


def test_loop_thread_self_call_serves_other_threads_meanwhile(reentrant_target):
    """While the loop thread is inside a re-entrant run(), other threads' calls still run."""
    target = reentrant_target
    results = []

    async def outer():
        event = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def setter():
            event.set()
            return "set"

        async def inner():
            thread = threading.Thread(target=lambda: results.append(target.run(setter())))
            thread.start()
            await event.wait()
            await asyncio.to_thread(thread.join, 30)
            return "inner done"

        assert asyncio.get_running_loop() is loop
        return target.run(inner())

    assert target.run(outer()) == "inner done"
    assert results == ["set"]


def test_loop_thread_self_call_current_task_restored(reentrant_target):
    target = reentrant_target

    async def inner():
        return asyncio.current_task()

    async def outer():
        me = asyncio.current_task()
        nested = target.run(inner())
        return me, nested, asyncio.current_task()

    me, nested, after = target.run(outer())
    assert nested is not me
    assert after is me


def test_loop_thread_self_call_exception_and_timeout(reentrant_target):
    target = reentrant_target
    exc = Boom()
    log = []

    async def fail():
        await asyncio.sleep(0)
        raise exc

    async def slow():
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)
            log.append("cleanup")

    async def outer():
        with pytest.raises(Boom) as info:
            target.run(fail())
        assert info.value is exc
        with pytest.raises(TimeoutError):
            target.run(slow(), timeout=0.05)
        assert log == ["cleanup"]
        return "ok"

    assert target.run(outer()) == "ok"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, BaseBoom])
def test_loop_thread_self_call_base_exceptions_propagate(reentrant_target, exc_type):
    target = reentrant_target

    async def raiser():
        await asyncio.sleep(0)
        raise exc_type()

    async def outer():
        me = asyncio.current_task()
        with pytest.raises(exc_type):
            target.run(raiser())
        assert asyncio.current_task() is me
        await asyncio.sleep(0)
        return target.run(answer())

    assert target.run(outer()) == 42


def test_loop_thread_self_call_gives_no_blocked_warning():
    lt = blockon.LoopThread(debug_loop, blocked_warning=0.05)
    try:

        async def outer():
            return lt.run(asyncio.sleep(0.3, "slept"))

        with recording_warnings() as recorder:
            assert lt.run(outer()) == "slept"
        assert recorder.seen == []
    finally:
        lt.close()


def test_module_run_from_a_coroutine_on_the_default_loop_thread():
    async def outer():
        return asyncio.get_running_loop(), blockon.run(where())

    loop, (_ident, inner_loop) = blockon.run(outer())
    assert inner_loop is loop is blockon.default_loop_thread().loop


# --- loops that cannot re-enter (uvloop): RuntimeError at once, never a hang ---------------


def test_uvloop_nest_true_raises_at_once(uvloop_module):
    ran = []

    async def work():
        ran.append(True)

    async def main():
        coro = work()
        started = time.monotonic()
        with pytest.raises(RuntimeError) as info:
            blockon.run(coro, nest=True)
        return coro, str(info.value), time.monotonic() - started

    with asyncio.Runner(loop_factory=uvloop_module.new_event_loop) as runner:
        coro, message, elapsed = runner.run(main())
    assert elapsed < 5  # "at once" (generous bound for a loaded machine)
    assert message
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert ran == []


def test_uvloop_loop_thread_self_call_raises_at_once(uvloop_module):
    ran = []

    async def work():
        ran.append(True)

    with blockon.LoopThread(uvloop_module.new_event_loop) as lt:

        async def outer():
            coro = work()
            try:
                lt.run(coro)
            except RuntimeError as exc:
                return coro, str(exc)
            return coro, None

        coro, message = lt.run(outer())
        assert message, "expected RuntimeError from a re-entrant call on uvloop"
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        assert ran == []
        # The loop thread still works afterwards.
        assert lt.run(answer()) == 42


def test_uvloop_default_path_from_a_running_uvloop_works(uvloop_module):
    async def main():
        return blockon.run(where())

    with asyncio.Runner(loop_factory=uvloop_module.new_event_loop) as runner:
        ident, loop = runner.run(main())
    assert ident != threading.get_ident()
    assert loop is blockon.default_loop_thread().loop


# --- feature detection: a Python whose asyncio cannot switch tasks gets the RuntimeError ----


WITHOUT_TASK_SWITCHING = """
import asyncio, asyncio.tasks, inspect
delattr(asyncio.tasks, {missing!r})  # as on a Python whose asyncio lacks it
import blockon

ran = []

async def work():
    ran.append(True)

async def main():
    coro = work()
    try:
        blockon.run(coro, nest=True)
    except RuntimeError as exc:
        print("RuntimeError:", exc)
    print("closed", inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED, "ran", ran)
    print("default path", blockon.run(asyncio.sleep(0, "works")))

asyncio.run(main())
"""


@pytest.mark.parametrize("missing", ["_enter_task", "_leave_task"])
def test_nest_true_without_task_switching_raises_at_once(missing):
    proc, _ = run_script(WITHOUT_TASK_SWITCHING.format(missing=missing), "-W", "error")
    assert (proc.returncode, proc.stderr) == (0, "")
    error, closed, default = proc.stdout.splitlines()
    assert error.startswith("RuntimeError: "), proc.stdout
    assert "no asyncio.tasks._enter_task/_leave_task" in error
    assert closed == "closed True ran []"
    assert default == "default path works"


def test_nest_true_on_a_loop_without_run_once_names_the_missing_step():
    class Opaque(asyncio.SelectorEventLoop):
        # A loop that hides its one-iteration step, as uvloop's does not exist.
        _hide = False

        def __getattribute__(self, name):
            if name == "_run_once" and type(self)._hide:
                raise AttributeError(name)
            return super().__getattribute__(name)

    async def main():
        Opaque._hide = True
        try:
            coro = asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="no _run_once step"):
                blockon.run(coro, nest=True)
        finally:
            Opaque._hide = False

    with asyncio.Runner(loop_factory=Opaque) as runner:
        runner.run(main())
