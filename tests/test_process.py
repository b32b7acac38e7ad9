"""Whole-process behaviour, in fresh interpreters: Ctrl-C, interpreter exit, os.fork."""

from __future__ import annotations

import signal
import sys

import pytest

from tests.support import run_script, send_sigint_after_started

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")


# --- Ctrl-C --------------------------------------------------------------------------------

CTRL_C_SCRIPT = """
import asyncio, sys
import blockon

KIND = {kind!r}

async def main():
    try:
        print("started", flush=True)
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        print("cancelled", flush=True)
        raise
    finally:
        await asyncio.sleep(0.05)  # cleanup that needs the loop for a while
        print("cleanup done", flush=True)

def call():
    if KIND == "default":
        return blockon.run(main())
    if KIND == "timeout":
        return blockon.run(main(), timeout=3600)
    import uvloop
    with blockon.LoopThread(uvloop.new_event_loop) as lt:
        return lt.run(main())

try:
    call()
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
print("returned normally", flush=True)
"""


@pytest.mark.parametrize("kind", ["default", "timeout", "uvloop"])
def test_ctrl_c_while_main_thread_waits_in_run(kind):
    if kind == "uvloop":
        pytest.importorskip("uvloop")
    # The loop thread runs before "started" is printed: the timed part starts warm.
    done = send_sigint_after_started(CTRL_C_SCRIPT.format(kind=kind), exit_within=5)
    assert done.texts == ["cancelled", "cleanup done", "KeyboardInterrupt"], done.stderr
    assert "KeyboardInterrupt" in done.stderr
    assert done.returncode == -signal.SIGINT, done.stderr
    # Ctrl-C is noticed within 100 ms; the bound is 20x that, so a loaded machine does not
    # flake.
    noticed = done.lines[0][1]
    assert noticed < 2, f"the task was cancelled {noticed:.3f} s after SIGINT"


STUBBORN_SCRIPT = """
import asyncio
import blockon

blockon.default_loop_thread().cancel_grace = 0.3

async def main():
    try:
        print("started", flush=True)
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        print("swallowed", flush=True)
        await asyncio.sleep(3600)  # cleanup that does not finish; cancelled again at exit

try:
    blockon.run(main())
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
"""


def test_ctrl_c_with_cleanup_that_does_not_finish_is_bounded():
    # cancel_grace 0.3 s (the default is 5 s), then a bounded exit.
    done = send_sigint_after_started(STUBBORN_SCRIPT, exit_within=4)
    assert done.texts == ["swallowed", "KeyboardInterrupt"], done.stderr
    assert done.returncode == -signal.SIGINT, done.stderr


# --- interpreter exit ----------------------------------------------------------------------

EXIT_SCRIPT = """
import asyncio, threading
import blockon

task_started = threading.Event()

async def leftover():
    try:
        task_started.set()
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0)
        print("task finally", flush=True)

async def agen():
    try:
        yield 1
        yield 2
    finally:
        await asyncio.sleep(0)
        print("agen finally", flush=True)

async def start_gen():
    gen = agen()
    return gen, await gen.__anext__()

fut = blockon.submit(leftover())
assert task_started.wait(30)
gen, first = blockon.run(start_gen())
print("main done", first, flush=True)
"""


@pytest.mark.parametrize("args", [(), ("-X", "dev")], ids=["plain", "dev-mode"])
def test_exit_with_leftover_task_and_half_consumed_async_generator(args):
    proc, elapsed = run_script(EXIT_SCRIPT, *args)
    assert proc.stderr == ""
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "main done 1"
    assert sorted(lines[1:]) == ["agen finally", "task finally"]
    assert elapsed < 10, elapsed


@pytest.mark.parametrize(
    "script",
    [
        "import blockon\n",
        "import asyncio, blockon\nassert blockon.run(asyncio.sleep(0, 5)) == 5\n",
        "import asyncio, blockon\nblockon.submit(asyncio.sleep(0)).result()\n",
    ],
    ids=["import-only", "one-run", "one-submit"],
)
@pytest.mark.parametrize("args", [(), ("-X", "dev")], ids=["plain", "dev-mode"])
def test_clean_program_exits_quickly_and_prints_nothing(script, args):
    proc, elapsed = run_script(script, *args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert elapsed < 10, elapsed


def test_exit_with_a_user_loop_thread_closed_explicitly():
    script = """
    import asyncio, blockon
    lt = blockon.LoopThread()
    assert lt.run(asyncio.sleep(0, 1)) == 1
    lt.close()
    """
    proc, _ = run_script(script, "-X", "dev")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


# --- os.fork -------------------------------------------------------------------------------

FORK_SCRIPT = """
import asyncio, os, sys, threading, warnings
import blockon

# Python 3.12+ warns that fork() in a multi-threaded process may deadlock; that is the point.
warnings.filterwarnings("ignore", category=DeprecationWarning)

BUSY = {busy!r}

async def pid_and_thread():
    await asyncio.sleep(0)
    return os.getpid(), threading.get_ident()

parent_pid, parent_loop_thread = blockon.run(pid_and_thread())
assert parent_pid == os.getpid()
if BUSY:
    started = threading.Event()
    async def busy():
        started.set()
        await asyncio.sleep(3600)
    busy_future = blockon.submit(busy())
    assert started.wait(30)

child = os.fork()
if child == 0:
    pid, _ = blockon.run(pid_and_thread())
    assert pid == os.getpid() != parent_pid
    assert blockon.submit(asyncio.sleep(0, "submitted")).result(timeout=30) == "submitted"
    print("child ok", flush=True)
    sys.exit(0)  # a normal interpreter exit in the child

_, status = os.waitpid(child, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
assert blockon.run(pid_and_thread()) == (parent_pid, parent_loop_thread)
print("parent ok", flush=True)
"""


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_fork_child_uses_run(busy):
    proc, elapsed = run_script(FORK_SCRIPT.format(busy=busy), timeout=45)
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["child ok", "child exit 0", "parent ok"]
    assert elapsed < 15, elapsed


def test_exit_with_an_unclosed_user_loop_thread_and_a_thread_blocked_in_run():
    script = """
    import asyncio, os, threading
    import blockon

    def say(*words):  # one write per line: two threads print at once here
        os.write(1, (" ".join(words) + "\\n").encode())

    user = blockon.LoopThread(name="user")  # never closed by the program
    started = threading.Event()

    async def leftover():
        try:
            started.set()
            await asyncio.sleep(3600)
        finally:
            say("user leftover finally")

    user.submit(leftover())
    assert started.wait(30)

    blocked = threading.Event()

    async def forever():
        blocked.set()
        await asyncio.sleep(3600)

    def daemon():
        try:
            blockon.run(forever())
        except BaseException as exc:
            say("daemon caller got", type(exc).__module__, type(exc).__name__)

    threading.Thread(target=daemon, daemon=True).start()
    assert blocked.wait(30)
    say("main done")
    """
    proc, elapsed = run_script(script, "-X", "dev")
    assert proc.stderr == ""
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "main done"
    assert "user leftover finally" in lines[1:]
    # The daemon caller may or may not get to print before the process ends; if it does,
    # it got concurrent.futures' CancelledError (cancelled by its loop closing).
    for line in lines[1:]:
        if line.startswith("daemon caller got"):
            assert line == "daemon caller got concurrent.futures._base CancelledError"
    assert elapsed < 10, elapsed


def test_fork_child_can_use_a_loop_thread_made_in_the_parent():
    # Not only the default loop thread: any LoopThread made in the parent works in the child
    # (or raises RuntimeError), never hangs there.
    script = """
    import asyncio, os, sys, warnings
    import blockon

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    lt = blockon.LoopThread(name="made-in-parent")

    async def pid():
        await asyncio.sleep(0)
        return os.getpid()

    assert lt.run(pid()) == os.getpid()
    child = os.fork()
    if child == 0:
        try:
            ok = lt.run(pid(), timeout=10) == os.getpid()
            print("child", "ok" if ok else "wrong pid", flush=True)
        except RuntimeError as exc:
            print("child RuntimeError", flush=True)
        sys.exit(0)
    _, status = os.waitpid(child, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    assert lt.run(pid()) == os.getpid()
    lt.close()
    """
    proc, elapsed = run_script(script, timeout=45)
    assert proc.stderr == ""
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] in ("child ok", "child RuntimeError")
    assert lines[1:] == ["child exit 0"]
    assert elapsed < 15, elapsed
