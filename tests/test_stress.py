"""64 threads at once, each mixing run, submit, wrap_iter (lockstep and prefetch) and gather on
one loop thread, every result checked. Written for free-threaded builds too, where nothing but
the engine's own locks keeps the threads apart."""

from __future__ import annotations

import asyncio
import sysconfig

import blockon
import pytest

from tests.support import clean_env, run_in_threads, run_script

THREADS = 64
ROUNDS = 8


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def numbers(n: int, start: int):
    for i in range(start, start + n):
        await asyncio.sleep(0)
        yield i


def mix(lt: blockon.LoopThread, ident: int) -> None:
    for r in range(ROUNDS):
        base = ident * 1000 + r * 100
        assert lt.run(double(base)) == 2 * base
        future = lt.submit(double(base + 1))
        assert list(lt.wrap_iter(numbers(5, base))) == list(range(base, base + 5))
        assert list(lt.wrap_iter(numbers(20, base), prefetch=8)) == list(range(base, base + 20))
        assert lt.gather(*(double(base + i) for i in range(4))) == [
            2 * (base + i) for i in range(4)
        ]
        assert future.result(timeout=60) == 2 * (base + 1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["stdlib", "uvloop"])
def test_64_threads_mixing_every_kind_of_call(kind):
    factory = None
    if kind == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    with blockon.LoopThread(factory, name="stress") as lt:
        run_in_threads(THREADS, lambda ident: mix(lt, ident), timeout=100)


@pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"),
    reason="needs a free-threaded CPython (3.14t); `make matrix` runs it there",
)
def test_import_keeps_the_gil_off_on_a_free_threaded_build():
    # A fresh interpreter: the running one may have imported extensions that turned it on.
    # PYTHON_GIL unset, so CPython's own choice (on unless every module says gil_used=false).
    proc, _ = run_script(
        "import sys, blockon; print(sys._is_gil_enabled())", env=clean_env("PYTHON_GIL")
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "False"), proc.stderr
