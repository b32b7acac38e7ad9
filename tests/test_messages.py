"""What blockon says when a call goes wrong, and that a refused call leaves nothing behind.

The timeout rule (one for every ``timeout=``), ``run``'s and ``submit``'s argument errors
(the coroutine is closed), a closed loop thread, the default loop thread starting afresh after
``close()``, the blocked-loop warning naming the call, and the notice printed while Ctrl-C
waits for a cleanup.
"""

from __future__ import annotations

import asyncio
import decimal
import inspect
import math
import re
import signal
import subprocess
import sys
import textwrap
import time
import traceback

import blockon
import pytest
from blockon import _blockon

from tests.support import clean_env, debug_loop, run_script
from tests.test_nest import recording_warnings


async def answer(value=42):
    await asyncio.sleep(0)
    return value


class Unrun:
    """A coroutine the test checks was closed without running."""

    def __init__(self):
        self.ran = False

        async def work():
            self.ran = True  # pragma: no cover - must never run

        self.coro = work()

    def assert_closed_unrun(self):
        assert inspect.getcoroutinestate(self.coro) == inspect.CORO_CLOSED
        assert not self.ran


# --- the timeout rule ----------------------------------------------------------------------


class Seconds(float):
    pass


class Count(int):
    pass


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (None, None),
        (2, 2.0),
        (2.5, 2.5),
        (0, 0.0),
        (-1, -1.0),
        (Seconds(1.5), 1.5),
        (Count(3), 3.0),
        (math.inf, None),
        (1e300, None),
        (10**400, None),
        (-(10**400), -math.inf),
    ],
)
def test_timeout_rule_values(value, parsed):
    assert _blockon._timeout_arg(value, "blockon.map()") == parsed


@pytest.mark.parametrize("value", [True, False, "2", b"2", decimal.Decimal(2), [2]])
def test_timeout_rule_refuses_what_is_not_a_number(value):
    with pytest.raises(TypeError) as info:
        _blockon._timeout_arg(value, "blockon.map()")
    assert str(info.value) == (
        f"blockon.map(): timeout must be a number of seconds or None, got "
        f"{type(value).__name__!r}: pass e.g. timeout=2.5"
    )


def test_timeout_rule_refuses_nan():
    with pytest.raises(ValueError, match=r"timeout must be a number of seconds or None, got nan"):
        _blockon._timeout_arg(math.nan, "blockon.map()")


@pytest.mark.parametrize("value", [True, "soon", math.nan])
def test_run_applies_the_rule_and_closes_the_coroutine(target, value):
    unrun = Unrun()
    api = "blockon.run()" if target.kind == "default" else "LoopThread.run()"
    with pytest.raises((TypeError, ValueError), match=rf"^{re.escape(api)}: timeout must be"):
        target.run(unrun.coro, timeout=value)
    unrun.assert_closed_unrun()


@pytest.mark.parametrize("value", [math.inf, 1e300, 10**400])
def test_run_with_a_timeout_beyond_any_deadline_waits_without_limit(target, value):
    assert target.run(answer(), timeout=value) == 42


@pytest.mark.parametrize("value", [True, "1", math.nan])
def test_map_applies_the_rule(value):
    with pytest.raises((TypeError, ValueError), match=r"^blockon\.map\(\): timeout must be"):
        blockon.map(answer, [1], timeout=value)


@pytest.mark.parametrize("value", [True, "1", math.nan])
def test_gather_applies_the_rule_and_closes_the_coroutines(value):
    unrun = Unrun()
    with pytest.raises((TypeError, ValueError), match=r"^blockon\.gather\(\): timeout must be"):
        blockon.gather(unrun.coro, timeout=value)
    unrun.assert_closed_unrun()


def test_map_with_a_timeout_beyond_any_deadline(lt):
    assert list(lt.map(answer, [1, 2], timeout=10**400)) == [1, 2]


def test_close_applies_the_rule():
    lt = blockon.LoopThread(debug_loop)
    lt.run(answer())
    with pytest.raises(TypeError, match=r"^LoopThread\.close\(\): timeout must be"):
        lt.close(timeout="soon")  # type: ignore[arg-type]
    lt.close(timeout=1e300)
    assert lt.closed


# --- run() and submit() arguments ----------------------------------------------------------


def callers(lt):
    return [
        (blockon.run, "blockon.run()"),
        (lt.run, "LoopThread.run()"),
    ]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((5,), {}), ((5, True), {}), ((), {"aw": None}), ((), {"bogus": 1})],
    ids=["timeout-positionally", "two-extra", "aw-by-keyword", "unknown-keyword"],
)
def test_run_with_misplaced_arguments_closes_the_coroutine(lt, args, kwargs):
    for run, api in callers(lt):
        unrun = Unrun()
        if "aw" in kwargs:
            call_args, call_kwargs = (), {"aw": unrun.coro}
        else:
            call_args, call_kwargs = (unrun.coro, *args), kwargs
        with pytest.raises(TypeError) as info:
            run(*call_args, **call_kwargs)
        unrun.assert_closed_unrun()
        message = str(info.value)
        if "bogus" in kwargs:
            assert message == (
                f"{api} got an unexpected keyword argument 'bogus'; it takes timeout, nest and loop"
            )
        else:
            assert message == (
                f"{api} takes one awaitable positionally; pass timeout, nest and loop by "
                "keyword: run(aw, timeout=5)"
            )


def test_run_without_an_awaitable(lt):
    for run, api in callers(lt):
        with pytest.raises(TypeError, match=rf"^{re.escape(api)} takes one awaitable"):
            run()


@pytest.mark.parametrize("nest", [1, 0, "yes", None])
def test_nest_must_be_a_bool_and_the_coroutine_is_closed(lt, nest):
    for run, api in callers(lt):
        unrun = Unrun()
        with pytest.raises(TypeError) as info:
            run(unrun.coro, nest=nest)
        unrun.assert_closed_unrun()
        assert str(info.value) == (
            f"{api}: nest must be True or False, got {type(nest).__name__!r}"
        )


@pytest.mark.parametrize(("args", "kwargs"), [((5,), {}), ((), {"timeout": 5})])
def test_submit_with_extra_arguments_closes_the_coroutine(lt, args, kwargs):
    for submit, api in [(blockon.submit, "blockon.submit()"), (lt.submit, "LoopThread.submit()")]:
        unrun = Unrun()
        with pytest.raises(TypeError) as info:
            submit(unrun.coro, *args, **kwargs)
        unrun.assert_closed_unrun()
        assert str(info.value) == (
            f"{api} takes one awaitable, positionally, and nothing else: submit(aw)"
        )


def test_signatures_stay_precise(lt):
    run = "(aw, /, *, timeout=None, nest=False, loop=None)"
    assert str(inspect.signature(blockon.run)) == run
    assert str(inspect.signature(lt.run)) == run
    assert str(inspect.signature(blockon.submit)) == "(aw, /)"
    assert str(inspect.signature(lt.submit)) == "(aw, /)"


# --- closed loop threads -------------------------------------------------------------------


# --- the wrong kind of argument -----------------------------------------------------------


@pytest.mark.parametrize("container", [list, tuple])
def test_run_of_several_awaitables_points_to_gather(lt, container):
    first, second = Unrun(), Unrun()
    with pytest.raises(TypeError) as caught:
        lt.run(container([first.coro, second.coro]))
    name = container.__name__
    assert str(caught.value) == (
        f"blockon.run() runs one awaitable, got a {name} of 2: to run several at once, "
        "use blockon.gather(*aws)"
    )
    first.assert_closed_unrun()
    second.assert_closed_unrun()


def test_gather_of_a_list_says_to_spread_it(lt):
    first, second, third = Unrun(), Unrun(), Unrun()
    with pytest.raises(TypeError) as caught:
        lt.gather(third.coro, [first.coro, second.coro])
    assert str(caught.value) == (
        "blockon.gather() takes the awaitables as separate arguments, got a list as "
        "argument 2: spread it, gather(*aws)"
    )
    for unrun in (first, second, third):
        unrun.assert_closed_unrun()


def test_wrap_iter_of_a_coroutine_says_to_await_it_first(lt):
    unrun = Unrun()
    with pytest.raises(TypeError) as caught:
        lt.wrap_iter(unrun.coro)
    message = str(caught.value)
    assert message.startswith("blockon.wrap_iter() needs an async iterable"), message
    assert "got 'coroutine'" in message and "is awaited, not iterated: await it first" in message
    unrun.assert_closed_unrun()


def test_sync_of_a_coroutine_says_to_pass_the_function(lt):
    unrun = Unrun()
    with pytest.raises(TypeError) as caught:
        lt.sync(unrun.coro)
    message = str(caught.value)
    assert message.startswith(
        "blockon.sync() makes sync twins of async functions, generators, classes, instances "
        "and modules, but got the coroutine "
    ), message
    assert "pass the function itself, blockon.sync(f)" in message
    unrun.assert_closed_unrun()


def test_sync_of_a_future_says_to_run_it(lt):
    future = lt.loop.create_future()
    expected = r"got a lone awaitable of type '_?\w*Future'.*blockon\.run"
    with pytest.raises(TypeError, match=expected):
        lt.sync(future)


@pytest.mark.parametrize("which", ["gather", "map"])
def test_tracebacks_of_gather_and_map_show_one_blockon_line(lt, which):
    async def failing(_=None):
        raise ValueError("from the awaitable")

    with pytest.raises(ValueError) as caught:
        if which == "gather":
            lt.gather(failing())
        else:
            list(lt.map(failing, [1]))
    frames = traceback.extract_tb(caught.value.__traceback__)
    ours = [frame.name for frame in frames if "/blockon/" in frame.filename.replace("\\", "/")]
    assert ours == (["gather"] if which == "gather" else ["results"]), frames
    assert frames[-1].name == "failing"


def test_closed_loop_thread_says_what_to_do_instead():
    lt = blockon.LoopThread(debug_loop)
    lt.run(answer())
    lt.close()
    unrun = Unrun()
    with pytest.raises(RuntimeError) as info:
        lt.run(unrun.coro)
    unrun.assert_closed_unrun()
    assert str(info.value) == (
        "this LoopThread is closed; create a new blockon.LoopThread() (or use the "
        "module-level functions, which use the default loop thread)"
    )


def test_closed_default_loop_thread_starts_afresh_on_next_use():
    # In a fresh interpreter: the test process's own default loop thread stays as it is.
    script = """
    import asyncio, blockon

    async def double(x):
        return 2 * x

    default = blockon.default_loop_thread()
    twin = blockon.sync(double)
    assert blockon.run(asyncio.sleep(0, 1)) == 1
    first_loop = default.loop
    default.close()
    assert default.closed
    assert blockon.run(asyncio.sleep(0, 2)) == 2
    assert blockon.default_loop_thread() is default and not default.closed
    assert default.loop is not first_loop and first_loop.is_closed()
    default.close()
    assert blockon.submit(asyncio.sleep(0, 3)).result(timeout=30) == 3
    default.close()
    assert blockon.gather(double(1), double(2)) == [2, 4]  # the default's bound methods
    default.close()
    assert list(blockon.map(double, [3])) == [6]
    default.close()
    assert twin(4) == 8  # twins bound to it
    default.close()
    assert default.run(asyncio.sleep(0, 5)) == 5  # a reference kept to it
    print("ok", flush=True)
    """
    proc, _ = run_script(script, "-X", "dev")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


# --- the blocked-loop warning --------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("which", ["module", "method"])
async def test_blocked_warning_names_the_call_and_the_awaitable(which, lt):
    lt.blocked_warning = 0.05
    default = blockon.default_loop_thread()
    previous = default.blocked_warning
    default.blocked_warning = 0.05
    run, api = (blockon.run, "blockon.run()") if which == "module" else (lt.run, "LoopThread.run()")
    try:
        with recording_warnings() as recorder:

            async def held_until_warned():
                await asyncio.to_thread(recorder.emitted.wait, 30)

            run(held_until_warned())
    finally:
        default.blocked_warning = previous
    assert len(recorder.seen) == 1, recorder.seen
    text = str(recorder.seen[0][0])
    assert text.startswith(f"{api} has blocked the running event loop "), text
    assert "while it waits for 'test_blocked_warning_names_the_call_and_the_awaitable." in text
    assert "held_until_warned' on blockon's loop thread" in text
    assert "nest=True" in text


@pytest.mark.asyncio
async def test_blocked_warning_names_gather(lt):
    lt.blocked_warning = 0.05
    with recording_warnings() as recorder:

        async def held_until_warned():
            await asyncio.to_thread(recorder.emitted.wait, 30)
            return 1

        assert lt.gather(held_until_warned(), answer(2)) == [1, 2]
    assert len(recorder.seen) == 1, recorder.seen
    text = str(recorder.seen[0][0])
    assert text.startswith("gather() has blocked the running event loop "), text
    assert "while it waits for the awaitables on blockon's loop thread" in text
    assert "asyncio.gather" in text


@pytest.mark.asyncio
async def test_blocked_warning_names_wrap_iter_next(lt):
    lt.blocked_warning = 0.05
    with recording_warnings() as recorder:

        async def slow_numbers():
            await asyncio.to_thread(recorder.emitted.wait, 30)
            yield 1

        assert list(lt.wrap_iter(slow_numbers())) == [1]
    assert len(recorder.seen) == 1, recorder.seen
    text = str(recorder.seen[0][0])
    assert text.startswith("next() on a blockon.wrap_iter() iterator has blocked the "), text
    assert "slow_numbers' on blockon's loop thread" in text
    assert "async for" in text


@pytest.mark.asyncio
@pytest.mark.parametrize("step", ["enter", "exit"])
async def test_blocked_warning_names_wrap_context_enter_and_exit(lt, step):
    lt.blocked_warning = 0.05

    class Manager:
        async def __aenter__(self):
            if step == "enter":
                await asyncio.to_thread(recorder.emitted.wait, 30)
            return self

        async def __aexit__(self, *exc_info):
            if step == "exit":
                await asyncio.to_thread(recorder.emitted.wait, 30)

    with recording_warnings() as recorder, lt.wrap_context(Manager()):
        pass
    assert len(recorder.seen) == 1, recorder.seen
    text = str(recorder.seen[0][0])
    verb = "entering" if step == "enter" else "exiting"
    assert text.startswith(f"{verb} a blockon.wrap_context() manager has blocked the running"), text
    assert "async with" in text


# --- Ctrl-C while a cleanup runs -----------------------------------------------------------

STUBBORN_SCRIPT = """
import asyncio
import blockon

blockon.default_loop_thread().cancel_grace = {grace}

async def stubborn():
    print("started", flush=True)
    while True:  # swallows every cancellation, the one at interpreter exit too
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("swallowed", flush=True)

try:
    blockon.run(stubborn())
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
"""

NOTICE = (
    "blockon: waiting up to {grace} s for stubborn to clean up after Ctrl-C; "
    "press Ctrl-C again to stop waiting"
)


def start_stubborn(grace):
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(STUBBORN_SCRIPT.format(grace=grace))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first == "started\n", first
    return proc


def finish(proc):
    out, err = proc.communicate(timeout=30)
    return out.splitlines(), err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_announces_a_slow_cleanup_with_the_real_grace_and_exit_does_not_wait_again():
    proc = start_stubborn(0.5)
    try:
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        lines, err = finish(proc)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert lines[:2] == ["swallowed", "KeyboardInterrupt"], (lines, err)
    assert err.splitlines()[0] == NOTICE.format(grace=0.5), err
    assert err.count("blockon: waiting") == 1, err
    assert proc.returncode == -signal.SIGINT, err
    # 0.5 s of grace, then exit; a second wait at exit would add 5 s (SHUTDOWN_STEP_TIMEOUT).
    assert elapsed < 4, elapsed


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_ctrl_c_stops_waiting_for_the_cleanup():
    proc = start_stubborn(60)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        notice = proc.stderr.readline()  # printed once the cleanup is slow: the sync point
        assert notice.rstrip("\n") == NOTICE.format(grace=60), notice
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        lines, err = finish(proc)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert lines[:2] == ["swallowed", "KeyboardInterrupt"], (lines, err)
    assert proc.returncode == -signal.SIGINT, err
    assert elapsed < 4, elapsed  # neither the 60 s grace nor a second wait at exit


NESTED_STUBBORN_SCRIPT = """
import asyncio
import blockon

def started():
    print("started", flush=True)

async def stubborn():
    # Said once this coroutine waits, from the loop step that follows: Ctrl-C, delivered to
    # this (main) thread, then lands in blockon's stepping of the loop, not in this code.
    asyncio.get_running_loop().call_soon(started)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("swallowed", flush=True)

async def main():
    blockon.default_loop_thread().cancel_grace = 0.5
    blockon.run(stubborn(), nest=True)

loop = asyncio.new_event_loop()  # no asyncio.run: its Ctrl-C handler would cancel main
try:
    loop.run_until_complete(main())
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_announces_a_slow_cleanup_of_nested_work():
    proc = subprocess.Popen(
        [sys.executable, "-c", NESTED_STUBBORN_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGINT)
        lines, err = finish(proc)
    finally:
        proc.kill()
    assert lines[:2] == ["swallowed", "KeyboardInterrupt"], (lines, err)
    assert err.splitlines()[0] == (
        "blockon: waiting up to 0.5 s for the awaitable to clean up after Ctrl-C; "
        "press Ctrl-C again to stop waiting"
    ), err


def test_a_quick_cleanup_prints_nothing():
    script = """
    import asyncio, blockon, threading, signal, _thread

    started = threading.Event()

    async def polite():
        started.set()
        await asyncio.sleep(3600)

    threading.Timer(0, lambda: (started.wait(30), _thread.interrupt_main())).start()
    try:
        blockon.run(polite())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    """
    proc, _ = run_script(script)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "KeyboardInterrupt\n", "")
