"""Realistic coroutines called from sync code, side by side: the ``workloads`` section.

The workloads (``_workloads.py``): a no-op, ``await asyncio.sleep(0)`` once and three times, a
round trip to a TCP echo server and an aiohttp GET (both served on 127.0.0.1 by the loop that
runs the call), each called from 1, 4 and 16 threads at once, by blockon and by every
contender, on the stdlib loop and on uvloop. All of it (every workload, contender and thread
count) is measured in the same interleaved rounds, in both pinned placements (the calling
threads on one CPU, the loop threads on the same CPU or on another).

Run on its own: ``python benches/bench_workloads.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import _harness as h
import _workloads as W

THREADS = (1, 4, 16)
#: The rows where the bridge's own cost dominates, judged against the 4x target.
BRIDGE_BOUND = ("noop", "sleep0x1", "sleep0x3")
#: The rows whose many-thread rate is judged against one thread's.
SCALED = ("noop", "sleep0x1")
LOOPS = (W.STD, W.UV)


def key(workload: str, contender: str, threads: int) -> str:
    return f"{workload} | {contender} | {threads}"


def ckey(name: str, loop: str) -> str:
    return f"{name} [{loop}]"


def _placements() -> list[h.Placement]:
    pinned = [p for p in h.placements() if p.pinned]
    return pinned or [h.UNPINNED]


Results = dict[str, dict[str, h.Samples]]
SwitchCounts = dict[str, dict[str, W.Switches]]


def measure(
    cfg: h.Config, notes: list[str]
) -> tuple[list[W.Workload], list[W.Contender], Results, SwitchCounts]:
    """Every workload x contender x thread count, interleaved, in each placement; and the
    thread switches per call of blockon's and run_coroutine_threadsafe's rows."""
    rounds = max(3, cfg.rounds * 3 // 5)
    batch_s = cfg.batch_s * 2 / 3
    ws = W.workloads(notes)
    results: Results = {}
    switches: SwitchCounts = {}
    with W.contenders(notes) as cs, contextlib.ExitStack() as stack:
        crews: dict[tuple[str, int], W.Crew] = {}
        failed_crews: dict[tuple[str, int], str] = {}
        for c in cs:
            if not c.per_thread:
                # Registered before the crews, so it runs after they close: from Python 3.12
                # a server's wait_closed() waits for every connection to it, and each crew
                # thread closes its own when its crew closes.
                stack.callback(c.close_shared, ws, mine=False)
            for n in THREADS:
                try:
                    crews[(c.key, n)] = crew = W.Crew(c, n, ws)
                except Exception as exc:
                    failed_crews[(c.key, n)] = f"{type(exc).__name__}: {exc}"
                else:
                    stack.callback(crew.close)
        loop_tids = [t for c in cs for t in c.tids]
        caller_tids = [t for crew in crews.values() for t in crew.tids]
        for p in _placements():
            with h.placed(p, loop_tids, caller_tids):
                measures: dict[str, h.Measure] = {}
                failed: dict[str, str] = {}
                counted = switches.setdefault(p.label, {})
                for w in ws:
                    for c in cs:
                        for n in THREADS:
                            k = key(w.key, c.key, n)
                            if (c.key, n) in failed_crews:
                                failed[k] = failed_crews[(c.key, n)]
                                continue
                            count = None
                            if c.name in (W.BLOCKON, W.RCTS):
                                count = counted[k] = W.Switches()
                            try:
                                measures[k] = crews[(c.key, n)].measure(w, batch_s, count)
                            except Exception as exc:
                                failed[k] = f"{type(exc).__name__}: {exc}"
                results[p.label] = h.interleave(measures, rounds, failed=failed)
        notes.append(
            f"{rounds} rounds per placement, about {batch_s * 1000:g} ms a batch; "
            f"{len(crews)} crews of calling threads, {len(caller_tids)} threads in all."
        )
    return ws, cs, results, switches


def wake_latency_us(a: int, b: int, trips: int = 2000) -> float:
    """µs to wake a sleeping thread: half a round trip of one byte between two processes
    pinned to CPUs ``a`` and ``b``, through pipes (each side sleeps in ``read``)."""
    echo = "import os\nwhile os.read(0, 1):\n    os.write(1, b'x')\n"
    child = subprocess.Popen(
        [sys.executable, "-c", echo], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
    )
    assert child.stdin is not None and child.stdout is not None
    mine = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(child.pid, {b})
        os.sched_setaffinity(0, {a})
        w, r = child.stdin.fileno(), child.stdout.fileno()
        for _ in range(100):  # the child is up, its code warm
            os.write(w, b"x")
            os.read(r, 1)
        t0 = time.perf_counter_ns()
        for _ in range(trips):
            os.write(w, b"x")
            os.read(r, 1)
        ns = time.perf_counter_ns() - t0
    finally:
        os.sched_setaffinity(0, mine)
        child.stdin.close()
        child.wait()
        child.stdout.close()
    return ns / trips / 2 / 1000.0


def wake_note() -> str | None:
    """The cost of waking a sleeping thread on this machine, same CPU and other CPU."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    same = statistics.median(wake_latency_us(cpus[0], cpus[0]) for _ in range(3))
    other = statistics.median(wake_latency_us(cpus[0], cpus[1]) for _ in range(3))
    return (
        f"Reference, the physics of this machine: waking a thread that sleeps costs "
        f"{h.fmt_us(same)} µs when it shares the waker's CPU and {h.fmt_us(other)} µs on the "
        "other CPU (half a round trip of one byte between two processes pinned that way, "
        "through pipes; median of 3 runs of 2,000)."
    )


# --------------------------------------------------------------------------- tables


def _med(samples: dict[str, h.Samples], k: str) -> float | None:
    s = samples.get(k)
    return s.median if s is not None and s.ok else None


def _us(x: float | None) -> str:
    return h.fmt_us(x) if x is not None else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return h.fmt_ratio(a / b) if a is not None and b is not None else "-"


def main_table(ws: list[W.Workload], samples: dict[str, h.Samples]) -> h.Table:
    head = ["workload", "threads"]
    for loop in LOOPS:
        head += [
            f"blockon {loop} µs",
            f"rcts {loop} µs",
            "rcts ÷ blockon",
            f"same-thread {loop} µs",
            "blockon ÷ same-thread",
        ]
    t = h.Table(head, align="lr")
    for w in ws:
        for n in THREADS:
            cells = [w.title, str(n)]
            for loop in LOOPS:
                b = _med(samples, key(w.key, ckey(W.BLOCKON, loop), n))
                r = _med(samples, key(w.key, ckey(W.RCTS, loop), n))
                s = _med(samples, key(w.key, ckey(W.SAME, loop), n))
                cells += [_us(b), _us(r), _ratio(r, b), _us(s), _ratio(b, s)]
            t.add(*cells)
    return t


def peers_table(ws: list[W.Workload], results: dict[str, dict[str, h.Samples]]) -> h.Table:
    peers = [W.ATR, W.ANYIO, W.SYNCHRONICITY]
    head = ["workload", "threads"]
    for where in results:
        head += [f"{where}: {p} µs (÷ blockon)" for p in peers]
    t = h.Table(head, align="lr")
    for w in ws:
        for n in THREADS:
            cells = [w.title, str(n)]
            for samples in results.values():
                b = _med(samples, key(w.key, ckey(W.BLOCKON, W.STD), n))
                for p in peers:
                    x = _med(samples, key(w.key, ckey(p, W.STD), n))
                    cells.append(f"{_us(x)} ({_ratio(x, b)})" if x is not None else "-")
            t.add(*cells)
    return t


def scaling_table(ws: list[W.Workload], results: dict[str, dict[str, h.Samples]]) -> h.Table:
    head = ["contender", "workload"]
    for where in results:
        head += [f"{where}: 1 thread calls/s", "4 threads ÷ 1", "16 threads ÷ 1"]
    t = h.Table(head, align="ll")
    for name in (W.BLOCKON, W.RCTS):
        for loop in LOOPS:
            for w in ws:
                cells = [ckey(name, loop), w.title]
                for samples in results.values():
                    one = _med(samples, key(w.key, ckey(name, loop), 1))
                    cells.append(h.fmt_rate(1e6 / one) if one is not None else "-")
                    for n in THREADS[1:]:
                        many = _med(samples, key(w.key, ckey(name, loop), n))
                        cells.append(_ratio(one, many))  # µs per call: one / many = rate ratio
                t.add(*cells)
    return t


def switches_table(ws: list[W.Workload], switches: SwitchCounts) -> h.Table:
    head = ["contender", "workload", "threads"]
    for where in switches:
        head += [f"{where}: callers vol / invol", "loop vol / invol"]
    t = h.Table(head, align="llr")
    for name in (W.BLOCKON, W.RCTS):
        for loop in LOOPS:
            for w in ws:
                if w.key not in ("noop", "sleep0x1", "echo"):
                    continue
                for n in THREADS:
                    cells = [ckey(name, loop), w.title, str(n)]
                    for counted in switches.values():
                        s = counted.get(key(w.key, ckey(name, loop), n))
                        if s is None or not s.calls:
                            cells += ["-", "-"]
                            continue
                        cv, ci, lv, li = s.per_call()
                        cells += [f"{cv:.2f} / {ci:.2f}", f"{lv:.2f} / {li:.2f}"]
                    t.add(*cells)
    return t


# --------------------------------------------------------------------------- targets


Check = tuple[str, float | None, bool, str]  # (what, ratio, passed, round by round)
Row = tuple[str, str, str]  # (what, numerator key, denominator key): the ratio is num ÷ den


def _target(label: str, need: str, checks: list[Check]) -> h.Target:
    missing = [w for w, r, _, _ in checks if r is None]
    if not checks or missing:
        return h.Target(label, None, f"not measured: {', '.join(missing) or 'no rows'}")
    failed = [
        f"{w} {h.fmt_ratio(r)} ({rounds})"
        for w, r, ok, rounds in checks
        if not ok and r is not None
    ]
    shown = "; ".join(f"{w} {h.fmt_ratio(r)}" for w, r, _, _ in checks if r is not None)
    detail = f"need {need}. " + (f"FAILED: {'; '.join(failed)}. All: " if failed else "") + shown
    return h.Target(label, not failed, detail, short=shown)


def _checks(
    results: dict[str, dict[str, h.Samples]], rows: list[Row], ok: Callable[[float], bool]
) -> list[Check]:
    """Each row's ratio (num ÷ den) in each placement, whether ``ok`` holds for it, and how
    it went round by round (see ``_rounds``)."""
    found: list[Check] = []
    for where, samples in results.items():
        for what, num, den in rows:
            a, b = _med(samples, num), _med(samples, den)
            r = a / b if a is not None and b is not None else None
            rounds = _rounds(samples[num], samples[den], ok) if r is not None else ""
            found.append((f"{where} {what}", r, r is not None and ok(r), rounds))
    return found


def _rounds(num: h.Samples, den: h.Samples, ok: Callable[[float], bool]) -> str:
    """The ratio round by round: both ran in every round, one after the other, so a round's
    pair met the same state of the machine. How many rounds met the target and their range
    tell a near miss within the run's noise from a steady one."""
    per_round = [a / b for a, b in zip(num.values, den.values, strict=True)]
    met = sum(ok(r) for r in per_round)
    low, high = h.fmt_ratio(min(per_round)), h.fmt_ratio(max(per_round))
    return f"met in {met} of {len(per_round)} rounds, {low} to {high}"


def targets(ws: list[W.Workload], results: dict[str, dict[str, h.Samples]]) -> list[h.Target]:
    """The targets, judged in every placement measured (the two pinned ones).

    Every figure is µs per call, so a speed-up is the slower one's time ÷ blockon's, and a
    rate ratio (many threads ÷ one) is one thread's µs per call ÷ many threads'.
    """
    names = {w.key: w.key.replace("sleep0x", "sleep(0) x") for w in ws}
    s1 = "sleep0x1"
    out: list[h.Target] = []
    for loop in LOOPS:
        bl, rc = ckey(W.BLOCKON, loop), ckey(W.RCTS, loop)
        bound = [(names[w], key(w, rc, 1), key(w, bl, 1)) for w in BRIDGE_BOUND if w in names]
        out.append(
            _target(
                "blockon >= 4x faster than run_coroutine_threadsafe where the bridge's cost "
                f"dominates (no-op, sleep(0) x1 and x3; 1 thread) [{loop}]",
                ">= 4x",
                _checks(results, bound, lambda r: r >= 4),
            )
        )
        every = [
            (f"{names[w.key]} {n}t", key(w.key, rc, n), key(w.key, bl, n))
            for w in ws
            for n in THREADS
        ]
        out.append(
            _target(
                "blockon never slower than run_coroutine_threadsafe (every workload, "
                f"1/4/16 threads) [{loop}]",
                "rcts ÷ blockon >= 1x",
                _checks(results, every, lambda r: r >= 1),
            )
        )
    uv_std = (
        "uvloop ÷ stdlib",
        key(s1, ckey(W.BLOCKON, W.UV), 1),
        key(s1, ckey(W.BLOCKON, W.STD), 1),
    )
    out.append(
        _target(
            "sleep(0): blockon on uvloop within 1.5x of blockon on the stdlib loop (1 thread)",
            "<= 1.5x",
            _checks(results, [uv_std], lambda r: r <= 1.5),
        )
    )
    for loop in LOOPS:
        row = (
            "blockon ÷ same-thread",
            key(s1, ckey(W.BLOCKON, loop), 1),
            key(s1, ckey(W.SAME, W.STD), 1),
        )
        out.append(
            _target(
                "sleep(0): blockon within 1.5x of a cached stdlib loop's run_until_complete "
                f"in the calling thread (1 thread) [{loop}]",
                "<= 1.5x",
                _checks(results, [row], lambda r: r <= 1.5),
            )
        )
    for loop in LOOPS:
        bl = ckey(W.BLOCKON, loop)
        scaled = [
            (f"{names[w]} {n}t", key(w, bl, 1), key(w, bl, n))
            for w in SCALED
            if w in names
            for n in THREADS[1:]
        ]
        out.append(
            _target(
                f"4 and 16 threads: total calls/s >= one thread's (no-op, sleep(0)) [{loop}]",
                "many ÷ one >= 1x",
                _checks(results, scaled, lambda r: r >= 1),
            )
        )
    return out


# --------------------------------------------------------------------------- section


def bench_workloads(cfg: h.Config) -> h.Section:
    sec = h.Section(
        "workloads",
        "Realistic coroutines from sync code: sleep(0), TCP echo, HTTP GET; 1, 4, 16 threads",
        "Each call runs one coroutine: a no-op; `await asyncio.sleep(0)` once, and three times; "
        "one round trip to a TCP echo server (`asyncio.open_connection` to 127.0.0.1, one write "
        "and one read per call, each calling thread's connection reused); one aiohttp GET of a "
        "tiny page (one `ClientSession` per loop, reused). The servers run on the loop that "
        "runs the calls. Each is called from 1, 4 and 16 threads at once, the threads sharing "
        "one loop thread (except the same-thread loop: there each thread runs its own cached "
        "loop with `run_until_complete`). Contenders: blockon (`blockon.run` on the stdlib "
        "loop, `LoopThread(uvloop.new_event_loop).run`), `run_coroutine_threadsafe(...)."
        "result()` (rcts) on a background loop of each type, the same-thread cached loop of "
        "each type, and on stdlib loops asyncio-thread-runner, anyio's blocking portal and "
        "synchronicity. Figures are µs per call: wall time over all the threads' calls (so "
        "with 4 or 16 threads, the inverse of the total rate), median over interleaved rounds "
        "in which every workload, contender and thread count takes its turn, in the two pinned "
        "placements: every calling thread on one CPU and the loop threads on the same CPU "
        "(`same CPU`) or on another (`other CPU`).",
    )
    ws, _, results, switches = measure(cfg, sec.notes)
    first = True
    for where, samples in results.items():
        caption = f"µs per call, {where}; `rcts ÷ blockon` above 1 means blockon is faster."
        if first:
            sec.table = main_table(ws, samples)
            sec.intro += " " + caption
            first = False
        else:
            sec.extra.append((caption, main_table(ws, samples)))
    sec.extra.append(
        (
            "The peers on stdlib loops, µs per call (÷ blockon on the stdlib loop, same "
            "placement).",
            peers_table(ws, results),
        )
    )
    sec.extra.append(
        (
            "Threads: one thread's calls/s, and the total rate of 4 and 16 threads ÷ one "
            "thread's (1 or more: the threads together make at least one thread's calls).",
            scaling_table(ws, results),
        )
    )
    sec.extra.append(
        (
            "Where the time goes: thread switches per call, read from /proc over every batch "
            "measured. Voluntary: the thread slept (on its call's slot, on the GIL, in the "
            "selector) and had to be woken; involuntary: it gave up the CPU in a spin "
            "(`sched_yield`) or was pre-empted. Callers: all calling threads together.",
            switches_table(ws, switches),
        )
    )
    wake = wake_note()
    if wake:
        sec.notes.append(wake)
    errors = {k: s.error for r in results.values() for k, s in r.items() if s.error}
    sec.notes += [f"{k} failed: {e}" for k, e in errors.items()]
    sec.targets += targets(ws, results)
    sec.data = {
        "us": {w: {k: s.median for k, s in r.items() if s.ok} for w, r in results.items()},
        "titles": {w.key: w.title for w in ws},
    }
    return sec


SECTIONS = {"workloads": bench_workloads}


def main() -> None:
    h.main(__doc__, SECTIONS)


if __name__ == "__main__":
    main()
