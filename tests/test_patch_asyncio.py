"""`patch_asyncio()` / `unpatch_asyncio()`: asyncio's entry points where a loop is running.

With the patch, third-party sync code that calls `asyncio.run()`, `asyncio.Runner.run()` or
`loop.run_until_complete()` works inside a running loop: on that loop, re-entrantly, where it
can (`run_until_complete` on the running loop, `asyncio.run`), else on a loop of its own with
the running loop set aside (`Runner.run`, `loop_factory=`, another loop, uvloop); what can
never finish (a task of a running uvloop loop) raises RuntimeError at once. Where no loop
runs, the entry points are the originals; unpatching restores them exactly.

The async tests run on pytest-asyncio's loop, in asyncio debug mode (conftest.py). What could
hang if broken (uvloop, Ctrl-C) runs in a fresh interpreter with a timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import gc
import inspect
import threading
import traceback
import warnings
from typing import Any

import blockon
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import (
    HANG,
    BaseBoom,
    Boom,
    answer,
    debug_loop,
    run_in_threads,
    run_script,
    send_sigint_after_started,
    this_task,
)

ORIGINAL_RUN = asyncio.run
ORIGINAL_RUNNER_RUN = asyncio.Runner.run
ORIGINAL_RUN_UNTIL_COMPLETE = asyncio.BaseEventLoop.run_until_complete
#: asyncio's C task class, where this Python has one.
C_TASK = getattr(asyncio.tasks, "_CTask", asyncio.Task)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def restored() -> bool:
    return (
        asyncio.run is ORIGINAL_RUN
        and asyncio.Runner.run is ORIGINAL_RUNNER_RUN
        and asyncio.BaseEventLoop.run_until_complete is ORIGINAL_RUN_UNTIL_COMPLETE
    )


@pytest.fixture
def patched():
    blockon.patch_asyncio()
    try:
        yield
    finally:
        blockon.unpatch_asyncio()
        assert restored()


def patched_script(body: str) -> list[str]:
    """Run ``body`` in a fresh interpreter (warnings are errors) after ``patch_asyncio()``;
    its stdout lines. It must exit 0 and print nothing on stderr."""
    script = "import asyncio, blockon\nblockon.patch_asyncio()\n" + inspect.cleandoc(body)
    proc, _ = run_script(script, "-W", "error")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout + proc.stderr
    return proc.stdout.splitlines()


# --- what a third-party library does -------------------------------------------------------


async def where(value: Any = None) -> tuple[Any, asyncio.AbstractEventLoop, asyncio.Task[Any]]:
    """The value, the loop and the task a coroutine runs on."""
    await asyncio.sleep(0)
    return value, asyncio.get_running_loop(), this_task()


def library_run(coro: Any, **kwargs: Any) -> Any:
    """A sync function of a library that calls asyncio.run() inside."""
    return asyncio.run(coro, **kwargs)


def library_run_until_complete(coro: Any) -> Any:
    """A sync function of an older library: the thread's event loop, run_until_complete."""
    return asyncio.get_event_loop().run_until_complete(coro)


def library_runner(*coros: Any, **kwargs: Any) -> tuple[list[Any], asyncio.AbstractEventLoop]:
    """A sync function that keeps one asyncio.Runner for several calls."""
    with asyncio.Runner(**kwargs) as runner:
        return [runner.run(coro) for coro in coros], runner.get_loop()


# --- patching: only the entry points, restored exactly --------------------------------------


def test_patch_replaces_only_the_entry_points_and_unpatch_restores_them_exactly():
    lines = patched_script(
        """
        import asyncio.base_events, asyncio.events, asyncio.futures, asyncio.runners
        import asyncio.tasks, uvloop

        blockon.unpatch_asyncio()  # back to unpatched, to take the "before" snapshot

        def snapshot():
            spaces = {
                "asyncio": asyncio,
                "events": asyncio.events,
                "tasks": asyncio.tasks,
                "futures": asyncio.futures,
                "runners": asyncio.runners,
                "base_events": asyncio.base_events,
                "BaseEventLoop": asyncio.BaseEventLoop,
                "SelectorEventLoop": asyncio.SelectorEventLoop,
                "Runner": asyncio.Runner,
                "Task": asyncio.Task,
                "Future": asyncio.Future,
                "uvloop.Loop": uvloop.Loop,
            }
            return {
                (label, name): value
                for label, space in spaces.items()
                for name, value in list(vars(space).items())
                if callable(value)  # functions, methods, classes: not state such as the policy
            }

        def changed(before, after):
            return sorted(
                f"{label}.{name}"
                for label, name in before.keys() | after.keys()
                if before.get((label, name), "absent") is not after.get((label, name), "absent")
            )

        before = snapshot()
        task_class = asyncio.Task
        for _ in range(2):  # idempotent: twice is once
            blockon.patch_asyncio()
        print(*changed(before, snapshot()))

        async def inside():
            return changed(before, snapshot()), type(asyncio.current_task()) is task_class

        async def main():
            return asyncio.run(inside())  # patched: runs re-entrantly

        print(*asyncio.run(main()))
        for _ in range(2):
            blockon.unpatch_asyncio()
        print(changed(before, snapshot()), "run_until_complete" in vars(uvloop.Loop))
        """
    )
    entry_points = (
        "BaseEventLoop.run_until_complete Runner.run asyncio.run uvloop.Loop.run_until_complete"
    )
    assert lines == [
        entry_points,
        f"{entry_points.split()} True",
        "[] False",
    ]


def test_the_wrappers_keep_the_originals_signatures_and_names(patched):
    pairs: list[tuple[Any, Any]] = [
        (asyncio.run, ORIGINAL_RUN),
        (asyncio.Runner.run, ORIGINAL_RUNNER_RUN),
        (asyncio.BaseEventLoop.run_until_complete, ORIGINAL_RUN_UNTIL_COMPLETE),
    ]
    for wrapper, original in pairs:
        assert wrapper is not original
        assert inspect.signature(wrapper) == inspect.signature(original)
        assert (wrapper.__name__, wrapper.__doc__) == (original.__name__, original.__doc__)


def test_patch_and_unpatch_from_many_threads_at_once():
    def body(i):
        for _ in range(20):
            (blockon.patch_asyncio if i % 2 else blockon.unpatch_asyncio)()
            assert library_run(answer(i)) == i  # works in a thread with no loop, either way
        return i

    try:
        assert run_in_threads(8, body) == list(range(8))
        blockon.patch_asyncio()
        assert not restored()
    finally:
        blockon.unpatch_asyncio()
    assert restored()


@pytest.mark.asyncio
async def test_a_wrapper_kept_after_unpatch_is_the_original_again():
    blockon.patch_asyncio()
    kept = asyncio.run
    blockon.unpatch_asyncio()
    coro = answer()
    with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
        kept(coro)
    coro.close()


def test_unpatch_leaves_what_other_code_installed_since(patched):
    def theirs(main, **kwargs):
        return "theirs"

    asyncio.run = theirs
    try:
        blockon.unpatch_asyncio()
        assert asyncio.run is theirs
        assert asyncio.Runner.run is ORIGINAL_RUNNER_RUN
    finally:
        asyncio.run = ORIGINAL_RUN


def test_the_ipython_extension_hooks_patch_and_unpatch():
    blockon.load_ipython_extension(object())
    try:
        assert not restored()
        blockon.load_ipython_extension(object())  # %reload_ext: unload, then load
    finally:
        blockon.unload_ipython_extension(object())
    assert restored()


# --- no loop running in the thread: the originals ------------------------------------------


async def cancels_itself() -> None:
    this_task().cancel()
    await asyncio.sleep(0)


def finished_future_of_a_closed_loop() -> asyncio.Future[str]:
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    future.set_result("future")
    loop.close()
    return future


async def leaves_one_unawaited() -> str:
    _ = answer()  # a coroutine never awaited: RuntimeWarning when it is collected
    return "left one"


OUTCOMES = {
    "returns": lambda: answer("value"),
    "raises": lambda: _raises(Boom("boom")),
    "raises a BaseException": lambda: _raises(BaseBoom("base")),
    "cancels itself": cancels_itself,
    "leaves a coroutine unawaited": leaves_one_unawaited,
    "a Future of another loop": finished_future_of_a_closed_loop,
    "not awaitable": lambda: 42,
}


async def _raises(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


def outcome(entry: str, make: Any, debug: Any) -> tuple[Any, ...]:
    """What calling the entry point does, as comparable data: the result or the exception's
    type and text, and the warnings it emitted."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        aw = make()
        try:
            if entry == "asyncio.run":
                result: Any = ("returned", asyncio.run(aw, debug=debug))
            elif entry == "Runner.run":
                with asyncio.Runner(debug=debug) as runner:
                    result = ("returned", runner.run(aw))
            else:
                loop = asyncio.new_event_loop()
                try:
                    loop.set_debug(bool(debug))
                    result = ("returned", loop.run_until_complete(aw))
                finally:
                    loop.close()
        except BaseException as exc:
            result = ("raised", type(exc), str(exc))
        finally:
            if inspect.iscoroutine(aw):
                aw.close()
        gc.collect()
    # A warning's text, without the stack where a coroutine was made (debug mode), which
    # shows the wrapper's frame too.
    return result, sorted((w.category.__name__, str(w.message).split("\n")[0]) for w in seen)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    entry=st.sampled_from(["asyncio.run", "Runner.run", "loop.run_until_complete"]),
    what=st.sampled_from(sorted(OUTCOMES)),
    debug=st.sampled_from([None, False, True]),
)
def test_with_no_loop_running_the_entry_points_are_the_originals(entry, what, debug):
    unpatched = outcome(entry, OUTCOMES[what], debug)
    blockon.patch_asyncio()
    try:
        assert outcome(entry, OUTCOMES[what], debug) == unpatched
    finally:
        blockon.unpatch_asyncio()


def test_with_no_loop_running_bad_arguments_get_asyncios_errors(patched):
    for call in (
        lambda coro: asyncio.run(coro, bogus=1),  # type: ignore[call-arg]
        lambda coro: asyncio.run(),  # type: ignore[call-arg]
        lambda coro: asyncio.Runner().run(coro, 1),  # type: ignore[call-arg, arg-type]
    ):
        coro = answer()
        with pytest.raises(TypeError):
            call(coro)
        coro.close()


# --- loop.run_until_complete() on the running loop: re-entrant -----------------------------


@pytest.mark.asyncio
async def test_run_until_complete_runs_on_the_running_loop_in_a_c_task(patched):
    outer = asyncio.current_task()
    value, loop, inner = library_run_until_complete(where("value"))
    assert (value, loop) == ("value", asyncio.get_running_loop())
    assert inner is not outer and inner.done()
    assert type(inner) is C_TASK and asyncio.Task is C_TASK
    assert asyncio.current_task() is outer
    await asyncio.sleep(0)
    assert asyncio.current_task() is outer


@pytest.mark.asyncio
async def test_the_running_loops_other_tasks_keep_running_meanwhile(patched):
    ticks: list[int] = []
    ticked = asyncio.Event()

    async def background():
        for i in range(5):
            ticks.append(i)
            await asyncio.sleep(0)
        ticked.set()

    task = asyncio.create_task(background())

    async def wait_for_the_others():
        await ticked.wait()
        return list(ticks)

    assert library_run_until_complete(wait_for_the_others()) == [0, 1, 2, 3, 4]
    assert library_run(wait_for_the_others()) == [0, 1, 2, 3, 4]
    await task


@pytest.mark.asyncio
async def test_run_until_complete_of_the_outer_loops_tasks_wait_and_gather(patched):
    loop = asyncio.get_running_loop()
    gate = asyncio.Event()

    async def member(i):
        await gate.wait()
        return i

    tasks = [asyncio.create_task(member(i)) for i in range(3)]
    loop.call_soon(gate.set)
    assert loop.run_until_complete(tasks[0]) == 0
    done, pending = loop.run_until_complete(asyncio.wait(tasks))
    assert (done, pending) == (set(tasks), set())
    assert loop.run_until_complete(asyncio.gather(*tasks)) == [0, 1, 2]
    assert await tasks[2] == 2


@pytest.mark.asyncio
async def test_a_task_cancelled_elsewhere_raises_asyncios_cancelled_error(patched):
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(asyncio.sleep(3600))
    task.cancel()
    # Shutdown code written for asyncio (and nest_asyncio) relies on this.
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled()
    for run in (library_run, library_run_until_complete):
        with pytest.raises(asyncio.CancelledError):
            run(cancels_itself())
    # Not the caller's own task, which goes on.
    assert this_task().cancelling() == 0
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_errors_are_the_same_object_with_the_coroutines_frames(patched):
    for run in (library_run, library_run_until_complete):
        exc = Boom()
        with pytest.raises(Boom) as info:
            run(_raises(exc))
        assert info.value is exc
        assert traceback.extract_tb(exc.__traceback__)[-1].name == "_raises"


@pytest.mark.asyncio
async def test_run_until_complete_needs_an_awaitable(patched):
    loop = asyncio.get_running_loop()
    with pytest.raises(TypeError) as info:
        loop.run_until_complete(42)  # type: ignore[arg-type]
    assert str(info.value) == (
        "loop.run_until_complete() needs an awaitable (a coroutine, Task, Future or object "
        "with __await__), got 'int'"
    )
    with pytest.raises(TypeError, match=r"; call it: run_until_complete\(answer\(...\)\)"):
        loop.run_until_complete(answer)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_wait_for_timeouts_inside_a_nested_run(patched):
    cleaned = []

    async def slow():
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(True)

    for run in (library_run, library_run_until_complete):
        with pytest.raises(TimeoutError):
            run(asyncio.wait_for(slow(), 0.05))
    assert cleaned == [True, True]
    assert library_run(asyncio.wait_for(answer("in time"), 30)) == "in time"


@pytest.mark.asyncio
async def test_contextvars_as_without_the_patch(patched):
    async def read_then_set():
        seen = VAR.get()
        VAR.set("set inside")
        return seen

    token = VAR.set("outer")
    try:
        assert library_run(read_then_set()) == "outer"
        assert library_run_until_complete(read_then_set()) == "outer"
        assert VAR.get() == "outer"  # a task runs in a copy of the context, as always
    finally:
        VAR.reset(token)

    async def read():
        return VAR.get()

    # A Runner keeps one context for all its runs, as it does with no loop running.
    (first, second), _ = library_runner(read_then_set(), read())
    assert (first, second) == ("unset", "set inside")


# --- asyncio.run() and Runner.run() inside a running loop -----------------------------------


@pytest.mark.asyncio
async def test_asyncio_run_runs_re_entrantly_on_the_running_loop(patched):
    outer = asyncio.current_task()
    value, loop, inner = library_run(where("value"))
    assert (value, loop) == ("value", asyncio.get_running_loop())
    assert type(inner) is C_TASK and inner is not outer
    assert asyncio.current_task() is outer
    assert not loop.is_closed()


@pytest.mark.asyncio
async def test_asyncio_run_debug_sets_the_loops_debug_mode_for_the_call_only(patched):
    loop = asyncio.get_running_loop()
    assert loop.get_debug()  # the suite runs asyncio in debug mode

    async def debug_mode():
        await asyncio.sleep(0)
        return asyncio.get_running_loop().get_debug()

    assert library_run(debug_mode(), debug=False) is False
    assert loop.get_debug()
    assert library_run(debug_mode(), debug=True) is True
    assert library_run(debug_mode()) is True  # debug=None: the loop's own
    loop.set_debug(False)
    try:
        assert library_run(debug_mode(), debug=True) is True
        assert not loop.get_debug()
    finally:
        loop.set_debug(True)


@pytest.mark.asyncio
async def test_asyncio_run_with_loop_factory_runs_on_a_loop_of_its_own(patched):
    made = []

    def factory():
        made.append(debug_loop())
        return made[-1]

    outer_loop = asyncio.get_running_loop()
    outer = asyncio.current_task()
    kwargs: dict[str, Any] = {"loop_factory": factory}
    if "loop_factory" not in inspect.signature(ORIGINAL_RUN).parameters:
        # CPython 3.11's asyncio.run has no loop_factory: asyncio's TypeError.
        coro = answer()
        with pytest.raises(TypeError, match="loop_factory"):
            library_run(coro, **kwargs)
        coro.close()
        return
    value, loop, _ = library_run(where("own"), **kwargs)
    assert (value, loop) == ("own", made[0])
    assert loop.is_closed()  # as asyncio.run closes its loop
    assert asyncio.get_running_loop() is outer_loop
    assert asyncio.current_task() is outer


@pytest.mark.asyncio
async def test_runner_run_runs_on_the_runners_own_loop(patched):
    outer_loop = asyncio.get_running_loop()
    outer = asyncio.current_task()

    async def remember():
        # A loop-bound object made by one run and used by the next: one loop.
        return asyncio.Queue()

    async def use(queue_holder):
        queue = queue_holder[0]
        await queue.put("kept")
        return await queue.get(), asyncio.get_running_loop()

    holder: list[Any] = []

    async def first():
        holder.append(await remember())
        return "first"

    (one, (kept, loop)), runner_loop = library_runner(first(), use(holder))
    assert (one, kept) == ("first", "kept")
    assert loop is runner_loop is not outer_loop
    assert runner_loop.is_closed()
    assert asyncio.get_running_loop() is outer_loop
    assert asyncio.current_task() is outer
    debug_made: list[asyncio.AbstractEventLoop] = []

    def factory():
        debug_made.append(asyncio.new_event_loop())
        return debug_made[-1]

    (debug_on,), _ = library_runner(_debug_mode(), loop_factory=factory, debug=True)
    assert debug_on is True and debug_made[0].is_closed()


async def _debug_mode() -> bool:
    return asyncio.get_running_loop().get_debug()


def test_runner_run_re_enters_when_the_runners_loop_is_the_running_one(patched):
    with asyncio.Runner() as runner:

        async def main():
            value, loop, _ = runner.run(where("nested"))
            return value, loop is asyncio.get_running_loop() is runner.get_loop()

        assert runner.run(main()) == ("nested", True)


@pytest.mark.asyncio
async def test_run_until_complete_of_another_loop_runs_it_here(patched):
    other = asyncio.new_event_loop()
    try:
        value, loop, _ = other.run_until_complete(where("other"))
        assert (value, loop) == ("other", other)
        assert other.run_until_complete(answer()) == 42  # and again
    finally:
        other.close()
    assert asyncio.get_running_loop() is not other


@pytest.mark.asyncio
async def test_a_loop_of_its_own_refuses_a_coroutine_given_the_paused_loops_tasks(patched):
    task = asyncio.create_task(answer("outer task"))
    other = asyncio.new_event_loop()
    try:
        coro = asyncio.wait([task])
        with pytest.raises(RuntimeError) as info:
            other.run_until_complete(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        message = str(info.value)
        assert "loop.run_until_complete() runs wait() on an event loop of its own" in message
        assert "its argument 'fs' holds <Task" in message
        assert "that loop is paused until the call returns: it would wait forever" in message
    finally:
        other.close()
    assert await task == "outer task"


@pytest.mark.asyncio
async def test_run_until_complete_of_a_loop_running_in_another_thread_is_asyncios_error(
    patched, lt
):
    coro = answer()
    with pytest.raises(RuntimeError, match="already running"):
        lt.loop.run_until_complete(coro)
    coro.close()


# --- hazards: nesting, two tasks, the loop thread -------------------------------------------


@pytest.mark.asyncio
async def test_nested_several_levels_deep_mixing_the_entry_points(patched):
    outer = asyncio.current_task()
    seen: list[tuple[int, bool]] = []

    async def level(n):
        me = this_task()
        if n == 0:
            return "bottom"
        call = [library_run, library_run_until_complete, lambda c: library_runner(c)[0][0]][n % 3]
        result = call(level(n - 1))
        seen.append((n, asyncio.current_task() is me and type(me) is C_TASK))
        await asyncio.sleep(0)
        return result

    assert library_run(level(7)) == "bottom"
    assert seen == [(n, True) for n in range(1, 8)]
    assert asyncio.current_task() is outer


@given(
    entries=st.lists(
        st.sampled_from(["run", "run_until_complete", "runner", "other loop"]),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=30, deadline=None)
def test_any_nesting_of_the_entry_points_returns_and_keeps_the_current_task(entries):
    """Property: sync code at each level calls the next entry point; each returns what the
    level below returned, and each level's task is the current task again afterwards."""

    def call(entry: str, coro: Any) -> Any:
        if entry == "run":
            return asyncio.run(coro)
        if entry == "run_until_complete":
            return asyncio.get_running_loop().run_until_complete(coro)
        if entry == "runner":
            with asyncio.Runner() as runner:
                return runner.run(coro)
        other = asyncio.new_event_loop()
        try:
            return other.run_until_complete(coro)
        finally:
            other.close()

    async def level(depth: int) -> list[int]:
        me = this_task()
        if depth == len(entries):
            return [depth]
        below = call(entries[depth], level(depth + 1))
        assert asyncio.current_task() is me
        await asyncio.sleep(0)
        return [depth, *below]

    blockon.patch_asyncio()
    try:
        with asyncio.Runner(loop_factory=debug_loop) as runner:
            assert runner.run(level(0)) == list(range(len(entries) + 1))
    finally:
        blockon.unpatch_asyncio()


@pytest.mark.asyncio
async def test_two_nested_runs_started_by_two_tasks_of_one_loop(patched):
    a_inside, b_inside = asyncio.Event(), asyncio.Event()
    order = []

    async def a_inner():
        a_inside.set()
        await b_inside.wait()  # b nests inside a's run, then both unwind
        order.append("a inner done")
        return "a"

    async def b_inner():
        b_inside.set()
        await asyncio.sleep(0.01)
        order.append("b inner done")
        return "b"

    async def a():
        me = this_task()
        result = library_run_until_complete(a_inner())
        assert asyncio.current_task() is me
        return result

    async def b():
        await a_inside.wait()
        me = this_task()
        result = library_run(b_inner())
        assert asyncio.current_task() is me
        return result

    results = await asyncio.wait_for(asyncio.gather(a(), b()), HANG)
    assert list(results) == ["a", "b"]
    assert sorted(order) == ["a inner done", "b inner done"]


def test_sync_code_on_blockons_loop_thread_runs_asyncio_run_there(patched, reentrant_target):
    target = reentrant_target

    async def main():
        loop = asyncio.get_running_loop()
        value, inner_loop, _ = library_run(where("on the loop thread"))
        return value, inner_loop is loop is target.loop

    assert target.run(main()) == ("on the loop thread", True)


def test_a_loop_of_its_own_on_blockons_loop_thread_leaves_it_serving(patched, reentrant_target):
    """Runner.run in sync code on the loop thread: the runner's loop runs in a worker thread
    while the loop thread keeps running, so blockon calls to it, from inside that run and
    from other threads, are served."""
    target = reentrant_target
    served = threading.Event()

    async def leaf(value):
        return value, threading.current_thread().name

    async def inside_the_runner():
        # Sync code on the runner's loop, calling blockon's loop thread.
        def from_another_thread():
            target.run(leaf("other"))
            served.set()

        other = threading.Thread(target=from_another_thread)
        other.start()
        await asyncio.to_thread(other.join, HANG)
        return target.run(leaf("inside"), timeout=HANG), asyncio.get_running_loop()

    async def on_the_loop_thread():
        with asyncio.Runner() as runner:
            (value, where), runner_loop = runner.run(inside_the_runner())
            return value, where, runner_loop is runner.get_loop() is not target.loop

    value, where_it_ran, own_loop = target.run(on_the_loop_thread(), timeout=HANG)
    assert (value, where_it_ran, own_loop) == ("inside", target.thread.name, True)
    assert served.is_set()


# --- uvloop: what can run elsewhere does, the rest is refused at once ------------------------


def test_uvloop_entry_points_run_elsewhere_or_refuse_at_once(uvloop_module):
    lines = patched_script(
        """
        import time, uvloop

        async def where(value):
            await asyncio.sleep(0)
            return value, type(asyncio.get_running_loop()).__name__

        async def main():
            loop = asyncio.get_running_loop()
            me = asyncio.current_task()
            print(*asyncio.run(where("asyncio.run")))
            print(*loop.run_until_complete(where("run_until_complete")))
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                print(*runner.run(where("Runner.run")))
            task = asyncio.create_task(where("task"))
            for aw in (task, asyncio.gather(task), asyncio.wait([task])):
                began = time.monotonic()
                try:
                    loop.run_until_complete(aw)
                except RuntimeError as exc:
                    fast = time.monotonic() - began < 5
                    print("RuntimeError", fast, "cannot be re-entered" in str(exc))
            print(*await task, asyncio.current_task() is me)

        uvloop.run(main())
        """
    )
    assert lines == [
        "asyncio.run _UnixSelectorEventLoop",
        "run_until_complete _UnixSelectorEventLoop",
        "Runner.run Loop",
        "RuntimeError True True",
        "RuntimeError True True",
        "RuntimeError True True",
        "task Loop True",
    ]


def test_uvloop_refusal_says_why_and_what_to_do(uvloop_module):
    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(answer("task"))
        shown = repr(task)
        with pytest.raises(RuntimeError) as info:
            loop.run_until_complete(task)
        return shown, repr(loop), str(info.value), await task

    blockon.patch_asyncio()
    try:
        with asyncio.Runner(loop_factory=uvloop_module.new_event_loop) as runner:
            task, loop, message, result = runner.run(main())
    finally:
        blockon.unpatch_asyncio()
    assert result == "task"
    assert message == (
        f"loop.run_until_complete() was given {task}, which belongs to the event loop "
        f"running in this thread ({loop}), and was called from inside that loop. That loop "
        "cannot be re-entered: it has no _run_once step to drive (uvloop is like this). So it "
        "cannot run while this call waits, and what belongs to it can finish only there: it "
        "would wait forever. Await it from async code instead, or move the sync code off the "
        "loop with `await blockon.to_thread(fn)`."
    )


# --- Ctrl-C inside a nested run ---------------------------------------------------------------

CTRL_C = """
import asyncio, blockon, sys
blockon.patch_asyncio()

def started():
    print("started", flush=True)

async def inner():
    try:
        # Said from the loop step after this coroutine suspends: Ctrl-C then lands in the
        # nested run's stepping of the loop, not in the moment before it begins.
        asyncio.get_running_loop().call_soon(started)
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0)
        print("inner cleanup", flush=True)

def library():
    {call}

async def main():
    try:
        library()
    finally:
        print("outer finally", flush=True)

{outer}
"""

CALLS = {
    "asyncio.run": "asyncio.run(inner())",
    "run_until_complete": "asyncio.get_event_loop().run_until_complete(inner())",
    "Runner.run": "with asyncio.Runner() as runner: runner.run(inner())",
}
OUTERS = {
    "asyncio.run": "asyncio.run(main())",
    "uvloop.run": "import uvloop; uvloop.run(main())",
    # No Runner: Python's default handler raises KeyboardInterrupt inside the nested run.
    "run_until_complete": "asyncio.new_event_loop().run_until_complete(main())",
}


@pytest.mark.parametrize("outer", sorted(OUTERS))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_ctrl_c_inside_a_nested_run_cleans_up_and_interrupts(call, outer):
    if outer == "uvloop.run":
        pytest.importorskip("uvloop")
    script = CTRL_C.format(call=CALLS[call], outer=OUTERS[outer])
    result = send_sigint_after_started(script, exit_within=HANG)
    assert result.texts == ["inner cleanup", "outer finally"], result.stderr
    assert result.returncode != 0
    assert result.stderr.rstrip().endswith("KeyboardInterrupt"), result.stderr


# --- the notebook use, sync code from a pytest-asyncio test ---------------------------------


@pytest.mark.asyncio
async def test_code_written_for_nest_asyncio_runs_unchanged(patched):
    # As nest_asyncio's README shows it: the loop is the running one, used from sync code.
    loop = asyncio.get_event_loop()
    assert loop is asyncio.get_running_loop()

    async def fetch(i):
        await asyncio.sleep(0.001)
        return i

    tasks = [loop.create_task(fetch(i)) for i in range(3)]
    assert loop.run_until_complete(asyncio.gather(*tasks)) == [0, 1, 2]
    assert asyncio.run(fetch(3)) == 3
    # And from a thread with no loop: the originals.
    worker = concurrent.futures.ThreadPoolExecutor(1)
    try:
        assert await asyncio.wrap_future(worker.submit(asyncio.run, fetch(4))) == 4
    finally:
        worker.shutdown()


@pytest.mark.asyncio
async def test_a_worker_thread_with_no_loop_gets_the_originals(patched):
    value = await asyncio.to_thread(functools.partial(library_run, answer("worker")))
    assert value == "worker"
    assert threading.current_thread() is threading.main_thread()
