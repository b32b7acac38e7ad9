"""The engine's two ways of waking its loop (docs/how-it-works.md, "Engine paths"): the fast
path of stdlib selector loops on Unix, and the portable path every other loop takes, Windows'
proactor loop among them. `make test` runs the whole suite once on each; these tests check
that the switch between them works, and what only the portable path does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import selectors
import socket
import threading
import time
import weakref
from typing import Any

import blockon
import pytest
from blockon._blockon import HotSelector
from blockon._running import GENERIC_PATH

from tests.support import clean_env, run_in_threads, run_script

SWITCH = "BLOCKON_GENERIC_PATH"


class NoReaderLoop(asyncio.BaseEventLoop):
    """A loop without ``add_reader``, as Windows' proactor loop is: it waits on a selector of
    its own for its self-pipe only, which is all ``call_soon_threadsafe`` needs."""

    def __init__(self) -> None:
        super().__init__()
        self._selector = selectors.DefaultSelector()  # what BaseEventLoop._run_once waits on
        self._ssock, self._csock = socket.socketpair()
        self._ssock.setblocking(False)
        self._csock.setblocking(False)
        self._selector.register(self._ssock, selectors.EVENT_READ)

    def _process_events(self, event_list: Any) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._ssock.recv(4096):
                pass

    def _write_to_self(self) -> None:
        with contextlib.suppress(OSError):
            self._csock.send(b"\0")

    def close(self) -> None:
        if self.is_closed():
            return
        super().close()
        self._selector.close()
        self._ssock.close()
        self._csock.close()


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_this_run_takes_the_path_its_environment_names():
    """The second run of `make test` is on the portable path, the first on the fast one."""
    assert (os.environ.get(SWITCH) == "1") is GENERIC_PATH
    loop: Any = blockon.run(running_loop())
    assert isinstance(loop._selector, HotSelector) is (os.name == "posix" and not GENERIC_PATH)


SWITCH_SCRIPT = """
import asyncio, os, blockon

async def running_loop():
    return asyncio.get_running_loop()

def describe(loop):
    # The loop's own self-pipe is one key of its selector; the fast path's wake-up socket is
    # a second one.
    return type(loop._selector).__name__, len(loop._selector.get_map())

print(*describe(blockon.run(running_loop())))
os.environ["BLOCKON_GENERIC_PATH"] = "0" if os.environ.get("BLOCKON_GENERIC_PATH") else "1"
with blockon.LoopThread() as lt:
    print(*describe(lt.run(running_loop())), "after changing the switch")
"""


@pytest.mark.skipif(os.name != "posix", reason="the fast path exists on Unix only")
@pytest.mark.parametrize("switch", [None, "1"])
def test_the_switch_is_read_once_at_import(switch):
    env = clean_env(SWITCH)
    if switch is not None:
        env[SWITCH] = switch
    proc, _ = run_script(SWITCH_SCRIPT, env=env)
    assert proc.returncode == 0, proc.stderr
    expected = "EpollSelector 1" if switch else "HotSelector 2"
    assert proc.stdout.splitlines() == [expected, f"{expected} after changing the switch"]


def test_a_loop_without_add_reader_takes_the_portable_path():
    """No switch needed: the loop thread sees that the loop cannot watch a socket."""
    with blockon.LoopThread(NoReaderLoop, name="test-no-reader") as lt:
        loop: Any = lt.run(running_loop())
        assert isinstance(loop, NoReaderLoop)
        assert len(loop._selector.get_map()) == 1, "only the loop's own self-pipe"

        async def double(x: int) -> int:
            await asyncio.sleep(0)
            return 2 * x

        assert lt.run(double(21)) == 42
        assert lt.submit(double(2)).result(timeout=5) == 4
        assert run_in_threads(8, lambda i: [lt.run(double(i)) for _ in range(50)][-1]) == [
            2 * i for i in range(8)
        ]

        async def numbers(n: int) -> Any:
            for i in range(n):
                await asyncio.sleep(0)
                yield i

        assert list(lt.wrap_iter(numbers(20), prefetch=4)) == list(range(20))
        with pytest.raises(TimeoutError):
            lt.run(asyncio.sleep(5), timeout=0.05)
        time.sleep(0.05)  # idle long enough to stop pulsing: the next call wakes it again
        assert lt.run(double(5)) == 10


INTERRUPTED_WAKE_SCRIPT = """
import asyncio, time, blockon

class Interrupting(asyncio.SelectorEventLoop):
    interrupts = 1

    def call_soon_threadsafe(self, *args, **kwargs):
        if self.interrupts:
            self.interrupts -= 1
            raise KeyboardInterrupt  # as a SIGINT handler would, inside the call
        return super().call_soon_threadsafe(*args, **kwargs)

lt = blockon.LoopThread(Interrupting)
began = time.monotonic()
try:
    lt.run(asyncio.sleep(10))
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted within 2 s:", time.monotonic() - began < 2)
print(lt.run(asyncio.sleep(0, "the loop still wakes up")))
lt.close()
"""


def test_ctrl_c_inside_the_portable_wake_up_is_neither_lost_nor_swallowed():
    """Python runs signal handlers inside ``call_soon_threadsafe``: the wake-up is made
    again, and the KeyboardInterrupt raised again where the caller waits."""
    env = clean_env()
    env[SWITCH] = "1"
    proc, _ = run_script(INTERRUPTED_WAKE_SCRIPT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["interrupted within 2 s: True", "the loop still wakes up"]


@pytest.mark.parametrize("factory", [None, NoReaderLoop], ids=["default-loop", "no-reader-loop"])
def test_a_closed_loop_thread_that_keeps_its_own_bridge_is_collected(factory):
    """On the portable path the engine holds the loop's wake-up, a callable that refers to the
    loop thread. A bridge the loop thread keeps holds the engine: closing lets go of the
    callable, or the two would keep each other alive through Rust, where the garbage
    collector cannot see."""

    async def numbers(n: int) -> Any:
        for i in range(n):
            yield i

    lt: Any = blockon.LoopThread(factory, name="test-collected")
    lt.kept = lt.wrap_iter(numbers(3))
    assert next(lt.kept) == 0
    loop = weakref.ref(lt.run(running_loop()))
    thread = weakref.ref(lt)
    lt.close()
    del lt
    # close() returns once the loop has stopped; the thread's last frames go when it ends.
    for ended in [t for t in threading.enumerate() if t.name == "test-collected"]:
        ended.join(timeout=30)
    gc.collect()
    assert thread() is None
    assert loop() is None
