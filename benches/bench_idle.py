"""CPU burnt while idle: the ``idle`` section.

A fresh process makes one call (``blockon.run`` on the default stdlib loop thread, or a
``LoopThread(uvloop.new_event_loop)``'s ``run``), then sleeps; the CPU time all its threads
used during the sleep is read from ``/proc`` (``/proc/self/task/*/schedstat``, nanoseconds
on the CPU; ``/proc/self/stat``'s clock ticks where schedstat is missing). The two processes
run at once: both should be asleep, loop threads included.

Run on its own: ``python benches/bench_idle.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import _harness as h

#: The target: CPU used while idle, in percent of one CPU.
LIMIT_PCT = 1.0

CHILD = textwrap.dedent(
    """
    import json, os, sys, time

    def cpu_ns():
        # Every thread's time on a CPU, in ns (schedstat), else clock ticks of the process.
        try:
            total = 0
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            return total, "schedstat"
        except (OSError, ValueError, IndexError):
            with open("/proc/self/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime
            return ticks * 10**9 // os.sysconf("SC_CLK_TCK"), "stat"

    import asyncio
    import blockon

    async def noop():
        return None

    kind, seconds = sys.argv[1], float(sys.argv[2])
    if kind == "uvloop":
        import uvloop

        blockon.LoopThread(uvloop.new_event_loop, name="idle-uvloop").run(noop())
    else:
        blockon.run(noop())
    c0, source = cpu_ns()
    t0 = time.monotonic()
    time.sleep(seconds)
    c1, _ = cpu_ns()
    t1 = time.monotonic()
    print(json.dumps({"cpu_s": (c1 - c0) / 1e9, "wall_s": t1 - t0, "source": source}))
    """
)


def _has_uvloop() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def bench_idle(cfg: h.Config) -> h.Section:
    seconds = 2.0 if cfg.quick else 10.0
    sec = h.Section(
        "idle",
        "CPU burnt while idle",
        f"A fresh process makes one call, then sleeps {seconds:g} s; the CPU time all its "
        "threads (the loop thread included) used during the sleep, read from `/proc` "
        "(`/proc/self/task/*/schedstat`), in percent of one CPU. One process per loop type, "
        "both at once.",
    )
    kinds = ["stdlib"] + (["uvloop"] if _has_uvloop() else [])
    if len(kinds) == 1:
        sec.notes.append("uvloop is not installed: its row is missing (pip install uvloop).")
    here = Path(__file__).resolve().parent
    procs = {
        kind: subprocess.Popen(
            [sys.executable, "-c", CHILD, kind, str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=here,
            env={**os.environ, "PYTHONASYNCIODEBUG": ""},
        )
        for kind in kinds
    }
    table = h.Table(["process", "sleep s", "CPU s", "% of one CPU", "read from"])
    worst: float | None = None
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=seconds + 60)
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = (err.strip().splitlines() or ["no output"])[-1]
            sec.notes.append(f"{kind}: the child failed (exit {proc.returncode}): {tail}")
            continue
        r = json.loads(lines[-1])
        pct = 100 * r["cpu_s"] / r["wall_s"]
        worst = pct if worst is None else max(worst, pct)
        what = "blockon.run" if kind == "stdlib" else "LoopThread(uvloop).run"
        table.add(
            f"one {what} call, then sleep [{kind}]",
            f"{r['wall_s']:.1f}",
            f"{r['cpu_s']:.4f}",
            f"{pct:.3f}%",
            r["source"],
        )
    sec.table = table
    sec.data = {"worst_pct": worst}
    sec.targets.append(
        h.Target(
            f"idle: a process that made one call uses < {LIMIT_PCT:g}% of a CPU while it sleeps",
            None if worst is None or len(table.rows) < len(kinds) else worst < LIMIT_PCT,
            "not measured" if worst is None else f"{worst:.3f}% at most",
        )
    )
    return sec


SECTIONS = {"idle": bench_idle}


def main() -> None:
    h.main(__doc__, SECTIONS)


if __name__ == "__main__":
    main()
