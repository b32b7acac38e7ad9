"""Fixtures and process-wide set-up for blockon's test suite.

Most behaviour tests take the ``target`` fixture, which runs them three times: against the
module-level functions (the default loop thread), against a ``LoopThread`` whose stdlib loop is
in asyncio debug mode (debug mode raises when a loop is touched from a foreign thread), and
against a ``LoopThread`` running uvloop (skipped when uvloop is missing). Helpers the test files
share are in ``tests/support.py``.
"""

from __future__ import annotations

import ast
import functools
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

# A CPython 3.11 bug: ast.parse called from two threads at once can raise
# "AST constructor recursion depth mismatch". inspect.signature() of a native function parses
# its text signature with ast.parse, and these tests call into blockon from many threads at
# once, so serialise every ast.parse in the process.
_ast_parse_lock = threading.RLock()
_unlocked_ast_parse = ast.parse


@functools.wraps(_unlocked_ast_parse)
def _locked_ast_parse(*args: Any, **kwargs: Any) -> Any:
    with _ast_parse_lock:
        return _unlocked_ast_parse(*args, **kwargs)


ast.parse = _locked_ast_parse

# A suite started in the background of a non-interactive shell (`make test &`, nohup, some CI
# runners) inherits SIGINT ignored, and Python keeps it ignored, as does every interpreter
# started from it: the Ctrl-C tests would then send a signal nobody hears. With a handler
# here, the scripts the tests start get the default disposition, and Python's own handler.
signal.signal(signal.SIGINT, signal.default_int_handler)

# Every stdlib loop made from here on (pytest-asyncio's, the default loop thread's) runs in
# asyncio debug mode, which checks that a loop is touched only from its own thread.
# Subprocess tests choose their own environment.
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")

import blockon  # noqa: E402  (after the ast.parse guard and the debug switch)

from tests.support import Target, debug_loop, loop_factory  # noqa: E402


def _make_target(kind: str) -> Iterator[Target]:
    if kind == "default":
        yield Target(kind, blockon.run, blockon.submit, blockon.default_loop_thread())
        return
    lt = blockon.LoopThread(
        loop_factory("uvloop" if kind == "uvloop" else "asyncio"), name=f"test-{kind}"
    )
    try:
        yield Target(kind, lt.run, lt.submit, lt)
    finally:
        lt.close()


@pytest.fixture(params=["default", "asyncio-debug", "uvloop"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Every kind of loop thread: the default one, a debug stdlib one, a uvloop one."""
    yield from _make_target(request.param)


@pytest.fixture(params=["default", "asyncio-debug"])
def reentrant_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Loop threads whose loop can be re-entered (stdlib asyncio loops)."""
    yield from _make_target(request.param)


@pytest.fixture
def lt() -> Iterator[blockon.LoopThread]:
    """A fresh LoopThread on a debug stdlib loop, closed after the test."""
    thread = blockon.LoopThread(debug_loop, name="test-lt")
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
def uvloop_module() -> Any:
    return pytest.importorskip("uvloop")
