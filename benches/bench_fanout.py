"""Fan-out: 10,000 coroutines that each ``await asyncio.sleep(0.1)``, from sync code.

Contenders, all on stdlib event loops running in a background thread, from a thread with no
running loop:

- ``blockon.gather(*coros)``: one submission to the default loop thread, the list back
  through the engine's completion slot (``blockon._fanout.gather`` on the default loop
  thread until ``blockon.gather`` is wired);
- ``run_coroutine_threadsafe(gather_all(coros), loop).result()``, where ``gather_all`` is
  ``async def gather_all(coros): return await asyncio.gather(*coros)`` (``asyncio.gather``
  itself returns a future, which ``run_coroutine_threadsafe`` refuses, and must be called on
  the loop);
- one ``run_coroutine_threadsafe(coro, loop)`` per coroutine, then ``.result()`` on each.

Each run creates the 10,000 coroutines and returns the 10,000 results; the time includes
both. Wall time is measured in interleaved rounds (every round runs each contender once,
starting one contender later each round; garbage collected before each run); the figure is
the median. Peak memory is measured in separate interleaved rounds under ``tracemalloc``
(which slows everything down, so it is kept out of the timed rounds): the peak of traced
Python allocations during the run above what was allocated before it. ``tracemalloc`` sees
allocations from every thread, including the loop thread, but not the engine's own Rust
allocations (a few small structs per call here).

Target: ``gather()`` of 10,000 coroutines that each sleep 0.1 s is done in
under 1 s.

Run on its own: ``python benches/bench_fanout.py [--quick]``; ``run_all.py`` runs it as the
``fanout`` section.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import _harness as h

try:
    import blockon
except ImportError as exc:  # the engine may not be built: the other contenders still run
    blockon = None  # type: ignore[assignment]
    BLOCKON_MISSING = f"blockon not importable ({exc})"
else:
    BLOCKON_MISSING = ""

N = 10_000
SLEEP_S = 0.1
BLOCKON = "blockon.gather(*coros)"
RCTS_GATHER = "run_coroutine_threadsafe(asyncio.gather(*coros)).result()"
RCTS_EACH = "run_coroutine_threadsafe(coro) per coroutine, .result() each"

Run = Callable[[], list[Any]]


def coros(n: int) -> list[Coroutine[Any, Any, None]]:
    return [asyncio.sleep(SLEEP_S) for _ in range(n)]


async def gather_all(aws: list[Coroutine[Any, Any, None]]) -> list[Any]:
    results: list[Any] = await asyncio.gather(*aws)
    return results


def background_loop() -> asyncio.AbstractEventLoop:
    """A stdlib loop running forever in a daemon thread, as asyncio users set one up."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    threading.Thread(target=main, name="bench-fanout-loop", daemon=True).start()
    ready.wait()
    return loop


def blockon_gather() -> Callable[..., list[Any]] | None:
    if blockon is None:
        return None
    public = getattr(blockon, "gather", None)
    if public is not None:
        return public  # type: ignore[no-any-return]
    from blockon import _fanout

    return functools.partial(_fanout.gather, blockon.default_loop_thread())


def contenders(n: int, loop: asyncio.AbstractEventLoop) -> dict[str, Run]:
    def rcts_gather() -> list[Any]:
        return asyncio.run_coroutine_threadsafe(gather_all(coros(n)), loop).result()

    def rcts_each() -> list[Any]:
        futures = [asyncio.run_coroutine_threadsafe(c, loop) for c in coros(n)]
        return [f.result() for f in futures]

    out: dict[str, Run] = {}
    gather = blockon_gather()
    if gather is not None:
        out[BLOCKON] = lambda: gather(*coros(n))
    out[RCTS_GATHER] = rcts_gather
    out[RCTS_EACH] = rcts_each
    return out


def wall_s(run: Run, n: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - t0
    if len(results) != n:
        raise RuntimeError(f"got {len(results)} results, expected {n}")
    return elapsed


def peak_bytes(run: Run, n: int) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        results = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if len(results) != n:
        raise RuntimeError(f"got {len(results)} results, expected {n}")
    return float(peak - before)


def interleaved(
    runs: dict[str, Run], rounds: int, measure: Callable[[Run], float]
) -> dict[str, h.Samples]:
    out = {name: h.Samples(name) for name in runs}
    names = list(runs)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            s = out[name]
            if s.error is not None:
                continue
            try:
                s.values.append(measure(runs[name]))
            except Exception as exc:  # a broken contender must not sink the others
                s.error = f"{type(exc).__name__}: {exc}"
    return out


def bench_fanout(cfg: h.Config) -> h.Section:
    n = N
    rounds = max(3, cfg.rounds // 2)
    mem_rounds = 2 if cfg.quick else 3
    sec = h.Section(
        "fanout",
        f"Fan-out: {n:,} coroutines that each sleep {SLEEP_S} s",
        f"From a thread with no running loop, {n:,} coroutines that each `await "
        f"asyncio.sleep({SLEEP_S})` are created and run on a stdlib loop in a background "
        f"thread, and their {n:,} results collected. Wall time: median of {rounds} "
        f"interleaved rounds. Peak memory: median of {mem_rounds} separate interleaved rounds "
        "under tracemalloc (peak traced Python allocations during the run; MB = 10^6 bytes).",
    )
    loop = background_loop()
    try:
        runs = contenders(n, loop)
        for run in runs.values():  # warm-up: loop threads started, code paths touched
            run()
        times = interleaved(runs, rounds, lambda run: wall_s(run, n))
        memory = interleaved(runs, mem_rounds, lambda run: peak_bytes(run, n))
    finally:
        loop.call_soon_threadsafe(loop.stop)
    table = h.Table(
        ["contender", "wall s (median)", "min", "max", "overhead s", "peak MB", "vs blockon"]
    )
    base = times.get(BLOCKON)
    for name in runs:
        t, m = times[name], memory[name]
        if not t.ok:
            table.add(name, f"failed: {t.error}", "", "", "", "", "")
            continue
        ratio = h.fmt_ratio(t.median / base.median) if base is not None and base.ok else "-"
        table.add(
            name,
            f"{t.median:.3f}",
            f"{t.min:.3f}",
            f"{t.max:.3f}",
            f"{t.median - SLEEP_S:.3f}",
            f"{m.median / 1e6:.1f}" if m.ok else "-",
            ratio,
        )
    sec.table = table
    sec.notes.append(
        f"overhead = wall time - {SLEEP_S} s (the sleep every coroutine does, concurrently)."
    )
    sec.data = {
        "wall_s": {k: s.median for k, s in times.items() if s.ok},
        "peak_bytes": {k: s.median for k, s in memory.items() if s.ok},
    }
    label = f"gather() of {n:,} coroutines sleeping {SLEEP_S} s: under 1 s"
    if base is None or not base.ok:
        why = BLOCKON_MISSING or (base.error if base is not None else "not measured")
        sec.targets.append(h.Target(label, None, f"not measured: {why}"))
    else:
        sec.targets.append(
            h.Target(
                label,
                base.median < 1.0,
                f"{base.median:.3f} s median (min {base.min:.3f}, max {base.max:.3f})",
            )
        )
    return sec


SECTIONS = {"fanout": bench_fanout}


def main() -> None:
    h.main(__doc__, SECTIONS)


if __name__ == "__main__":
    main()
