"""What ``import blockon`` costs on top of ``import asyncio``, in fresh interpreters.

Two measurements, both over interleaved runs of fresh ``python -c`` processes:

- in-process (the one judged): ``import asyncio`` first, then ``time.perf_counter_ns()`` around
  ``import blockon`` alone. It counts exactly blockon's share (its modules, its extension's
  load, anything it imports that asyncio did not) and none of the process start-up noise;
- whole process, as a cross-check: wall time of ``python -c "import asyncio"`` against
  ``python -c "import asyncio, blockon"``, run in pairs; the median of the pairs' differences.

One untimed warm-up run first lets Python write blockon's bytecode cache (as ``pip install``
does at install time), even where PYTHONDONTWRITEBYTECODE is set.

Run on its own: ``python benches/bench_import.py [--quick]``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

import _harness as h

INNER = (
    "import time, asyncio; t0 = time.perf_counter_ns(); import blockon; "
    "t1 = time.perf_counter_ns(); print(t1 - t0)"
)
ASYNCIO_ALONE = (
    "import time; t0 = time.perf_counter_ns(); import asyncio; "
    "t1 = time.perf_counter_ns(); print(t1 - t0)"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME"):
        env.pop(k, None)
    return env


def _py(code: str, env: dict[str, str], cwd: str) -> tuple[int, str]:
    """Run ``python -c code``; return (wall ns, stdout)."""
    t0 = time.perf_counter_ns()
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    ns = time.perf_counter_ns() - t0
    if p.returncode != 0:
        raise RuntimeError((p.stderr.strip().splitlines() or ["failed"])[-1])
    return ns, p.stdout.strip()


def bench_import(cfg: h.Config) -> h.Section:
    runs = cfg.import_runs
    sec = h.Section(
        "import",
        "Import time of blockon on top of asyncio",
        f"{runs} fresh interpreters per measurement, interleaved. Judged: `import blockon` "
        "timed inside a fresh interpreter that has already imported asyncio. Cross-check: "
        'the wall time of `python -c "import asyncio, blockon"` minus that of '
        '`python -c "import asyncio"`, median of paired runs (it carries the noise of '
        "process start-up).",
    )
    target = "import blockon < 5 ms on top of import asyncio"
    env = _env()
    cwd = tempfile.gettempdir()  # so nothing in the current directory shadows an import
    try:
        _py("import asyncio, blockon", env, cwd)  # warm-up: bytecode caches written
    except RuntimeError as exc:
        sec.notes.append(f"`import blockon` fails: {exc}")
        sec.targets.append(h.Target(target, None, "not measured"))
        return sec

    inner: list[float] = []
    alone: list[float] = []
    diffs: list[float] = []
    wall_a: list[float] = []
    wall_b: list[float] = []
    for i in range(runs):
        steps = [
            ("inner", INNER),
            ("alone", ASYNCIO_ALONE),
            ("a", "import asyncio"),
            ("b", "import asyncio, blockon"),
        ]
        if i % 2:
            steps.reverse()
        got: dict[str, tuple[int, str]] = {key: _py(code, env, cwd) for key, code in steps}
        inner.append(int(got["inner"][1]) / 1e6)
        alone.append(int(got["alone"][1]) / 1e6)
        wall_a.append(got["a"][0] / 1e6)
        wall_b.append(got["b"][0] / 1e6)
        diffs.append(wall_b[-1] - wall_a[-1])

    med = statistics.median
    table = h.Table(["measurement", "median ms", "min ms", "max ms"])
    table.add("import blockon, after import asyncio (in-process)", *_ms(inner))
    table.add("import asyncio alone (in-process, for scale)", *_ms(alone))
    table.add('process: python -c "import asyncio"', *_ms(wall_a))
    table.add('process: python -c "import asyncio, blockon"', *_ms(wall_b))
    table.add("process difference (paired)", *_ms(diffs))
    sec.table = table
    sec.data = {
        "inner_ms": med(inner),
        "asyncio_ms": med(alone),
        "process_diff_ms": med(diffs),
    }
    sec.targets.append(
        h.Target(
            target,
            med(inner) < 5.0,
            f"{med(inner):.2f} ms in-process (whole-process difference: {med(diffs):+.2f} ms)",
        )
    )
    return sec


def _ms(xs: list[float]) -> tuple[str, str, str]:
    return f"{statistics.median(xs):.2f}", f"{min(xs):.2f}", f"{max(xs):.2f}"


SECTIONS = {"import": bench_import}


def main() -> None:
    h.main(__doc__, SECTIONS)


if __name__ == "__main__":
    main()
