"""Property: any mix of the public API, used from several threads at once on one LoopThread,
gives every caller its own results, never hangs, leaves no task behind, finishes every
coroutine, async generator and async context manager it started, closes, and prints nothing.

Hypothesis draws the plan (per thread, a list of operations); each example runs in a fresh
interpreter through ``scripts/soak.py --example PLAN``, which runs the operations (the same
ones ``make soak`` runs for minutes), with a watchdog on its threads, and checks all of the
above. The interpreter's stderr must stay empty, its exit included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support import clean_env

SOAK = Path(__file__).resolve().parent.parent / "scripts" / "soak.py"

pytestmark = pytest.mark.skipif(not SOAK.exists(), reason="scripts/soak.py is not in this tree")

delays = st.sampled_from([0, 0.001, 0.005])
small = st.integers(min_value=0, max_value=6)
limits = st.sampled_from([None, 1, 2])


def op(name: str, **fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"op": st.just(name), **fields})


@st.composite
def gathers(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=0, max_value=5))
    timeout = draw(st.sampled_from([None, None, 0.005]))
    # With a timeout, one member never finishes: the outcome is always the TimeoutError.
    fail = None if timeout is not None or not n else draw(st.none() | st.integers(0, n - 1))
    return {
        "op": "gather",
        "n": n,
        "delay": draw(delays),
        "fail": fail,
        "return_exceptions": draw(st.booleans()),
        "limit": draw(limits),
        "timeout": timeout,
    }


@st.composite
def maps(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(small)
    return {
        "op": "map",
        "n": n,
        "delay": draw(delays),
        "fail": draw(st.none() | st.integers(0, n - 1)) if n else None,
        "limit": draw(limits),
        "ordered": draw(st.booleans()),
        "take": draw(st.sampled_from([None, None, 1, 2])),
    }


operations = st.one_of(
    op("run", delay=delays),
    op("run_timeout", timeout=st.sampled_from([0, 0.001, 0.01])),
    op("submit", delay=delays, cancel=st.booleans()),
    op(
        "iter",
        n=small,
        prefetch=st.sampled_from([0, 1, 3]),
        take=small,
        end=st.sampled_from(["close", "exhaust", "break", "drop"]),
    ),
    op("context", suppress=st.booleans(), drop=st.booleans(), **{"raise": st.booleans()}),
    gathers(),
    maps(),
    op("reenter", depth=st.integers(1, 3), timeout_inside=st.booleans()),
    op("reenter_bridges", n=st.integers(0, 3), prefetch=st.sampled_from([0, 2])),
)

plans = st.lists(st.lists(operations, min_size=1, max_size=4), min_size=2, max_size=4)


@settings(
    max_examples=25,
    deadline=None,
    database=None,  # nothing written into the checkout
    # No shrinking: each run is a fresh interpreter, and a hang costs its whole time limit;
    # the failing plan is printed as drawn.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=plans)
def test_any_mix_of_the_api_across_threads(plan: list[list[dict[str, Any]]]) -> None:
    encoded = json.dumps(plan)
    try:
        proc = subprocess.run(
            [sys.executable, str(SOAK), "--example", encoded],
            capture_output=True,
            text=True,
            timeout=20,
            env=clean_env(),
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"the example hung (20 s): {encoded}\n{hung.stdout!r}\n{hung.stderr!r}")
    report = f"plan: {encoded}\nexit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert proc.stdout == "ok\n", report
    assert proc.stderr == "", report
