"""``blockon.run(...)`` typed at a pdb prompt, driven through a subprocess.

A real pdb reads commands from the subprocess's stdin, so what is tested is exactly what a user
types. Two places a user stops:

* plain sync code (no loop running in the thread): ``run()`` goes to the default loop thread;
* inside a coroutine under ``asyncio.run`` (the thread's loop is running, and stopped at the
  prompt): ``run()`` goes to the loop thread and returns; ``nest=True`` runs the awaitable on
  the stopped loop itself, re-entrantly, its other tasks running meanwhile; on uvloop
  ``nest=True`` is an immediate ``RuntimeError`` that pdb reports, and the session goes on.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import HANG, clean_env

PRELUDE = """
import asyncio
import pdb
import threading

import blockon

async def double(value):
    await asyncio.sleep(0)
    return value * 2

async def where():
    await asyncio.sleep(0)
    return threading.get_ident(), asyncio.get_running_loop()
"""


def run_pdb(tmp_path: Path, script: str, commands: list[str]) -> str:
    """Run `script` (which stops at pdb) feeding `commands`; return its stdout."""
    source = textwrap.dedent(PRELUDE) + textwrap.dedent(script)
    path = tmp_path / "debugged.py"
    path.write_text(source)
    env = clean_env("PYTHONBREAKPOINT", "PYTHONINSPECT", "PYTHONSTARTUP")
    # No .pdbrc of the user's: pdb reads one from HOME and from the working directory.
    env["HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(path)],
        input="".join(f"{command}\n" for command in commands),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=2 * HANG,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, ""), f"stdout:\n{proc.stdout}"
    return proc.stdout


def test_run_at_a_prompt_in_sync_code(tmp_path: Path) -> None:
    out = run_pdb(
        tmp_path,
        """
        def main():
            x = 21
            breakpoint()
            print("finished", x)

        main()
        """,
        [
            "p blockon.run(double(x))",
            "p ('loop-thread', blockon.run(where())[1] is blockon.default_loop_thread().loop)",
            "p ('again', blockon.run(double('ab')))",
            "c",
        ],
    )
    assert "(Pdb) 42\n" in out
    assert "('loop-thread', True)" in out
    assert "('again', 'abab')" in out
    assert out.endswith("finished 21\n")


def test_run_at_a_prompt_in_a_coroutine(tmp_path: Path) -> None:
    out = run_pdb(
        tmp_path,
        """
        async def background(ticks, done):
            # Needs several rounds of the loop: it finishes while the program is stopped at
            # the prompt only if nest=True keeps the stopped loop's other tasks running.
            for i in range(5):
                ticks.append(i)
                await asyncio.sleep(0)
            done.set()

        async def handler():
            x = 21
            ticks, done = [], asyncio.Event()
            task = asyncio.create_task(background(ticks, done))
            pdb.set_trace()
            print("finished", x, ticks, task.done())

        asyncio.run(handler())
        """,
        [
            # Default path: the thread's loop is running (stopped at the prompt) -> loop thread.
            "p ('default', blockon.run(double(x)))",
            "p ('default-where', blockon.run(where())[1] is blockon.default_loop_thread().loop)",
            "p ('ticks-before', ticks)",
            # nest=True: on the stopped loop itself, re-entrantly.
            "p ('nest', blockon.run(double(x), nest=True))",
            "p ('nest-where', blockon.run(where(), nest=True)"
            " == (threading.get_ident(), asyncio.get_running_loop()))",
            "p ('nest-wait', blockon.run(done.wait(), nest=True), ticks)",
            "c",
        ],
    )
    assert "('default', 42)" in out
    assert "('default-where', True)" in out
    assert "('ticks-before', [])" in out  # the stopped loop ran nothing on the default path
    assert "('nest', 42)" in out
    assert "('nest-where', True)" in out
    assert "('nest-wait', True, [0, 1, 2, 3, 4])" in out
    assert out.endswith("finished 21 [0, 1, 2, 3, 4] True\n")


def test_run_at_a_prompt_in_a_uvloop_coroutine(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    out = run_pdb(
        tmp_path,
        """
        import uvloop

        async def handler():
            x = 21
            pdb.set_trace()
            print("finished", x)

        uvloop.run(handler())
        """,
        [
            "p ('default', blockon.run(double(x)))",
            "p blockon.run(double(x), nest=True)",
            "p ('still-here', blockon.run(double(x)))",
            "c",
        ],
    )
    assert "('default', 42)" in out
    # pdb reports the exception and the session goes on.
    assert "*** RuntimeError: " in out
    error_line = next(line for line in out.splitlines() if "*** RuntimeError" in line)
    assert "uvloop" in error_line
    assert "nest=True" in error_line
    assert "('still-here', 42)" in out
    assert out.endswith("finished 21\n")
