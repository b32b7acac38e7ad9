"""Timing helpers shared by the benchmarks.

Everything here is plain stdlib. The method, used by every in-process section:

- a contender is a zero-argument callable that does one operation (one call);
- it is calibrated once (which also warms it up) to a batch size ``n`` whose batch takes about
  ``batch_s`` seconds, then timed with ``time.perf_counter_ns`` over whole batches, never per
  call, so the clock's own cost stays out of the numbers;
- contenders are measured in interleaved rounds: each round runs one batch of every contender,
  round-robin, starting from a different contender each round, so that drift of the machine
  (frequency, other load, heap growth) lands on all of them alike;
- the reported figure is the median over rounds; min and max are shown beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import math
import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Call = Callable[[], object]
Batch = Callable[[int], None]
Measure = Callable[[], float]


@dataclass(frozen=True)
class Config:
    """How hard to measure. ``FULL`` is ``make bench``; ``QUICK`` is a smoke run."""

    quick: bool
    rounds: int  # interleaved rounds of the per-call and nest sections
    batch_s: float  # target seconds of one batch of one contender
    thread_rounds: int
    thread_round_s: float  # target seconds of one single-thread round of the threads section
    threads: int
    mem_calls: int
    mem_warmup: int
    import_runs: int


FULL = Config(
    quick=False,
    rounds=15,
    batch_s=0.03,
    thread_rounds=11,
    thread_round_s=0.25,
    threads=16,
    mem_calls=1_000_000,
    mem_warmup=50_000,
    import_runs=25,
)
QUICK = Config(
    quick=True,
    rounds=3,
    batch_s=0.01,
    thread_rounds=3,
    thread_round_s=0.05,
    threads=16,
    mem_calls=50_000,
    mem_warmup=5_000,
    import_runs=5,
)


def main(
    doc: str,
    sections: dict[str, Callable[[Config], Section]],
    children: dict[str, Callable[[Config], None]] | None = None,
) -> None:
    """A bench file run on its own: ``--quick`` or not, prints each of its ``sections``.

    ``children`` maps a hidden flag to what a child process the file starts itself runs.
    """
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a fast smoke run")
    for flag in children or {}:
        ap.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    for flag, child in (children or {}).items():
        if getattr(args, flag.lstrip("-").replace("-", "_")):
            child(cfg)
            return
    for section in sections.values():
        print(section(cfg).text(), flush=True)


# --------------------------------------------------------------------------- timing


def batch_of(call: Call) -> Batch:
    """A batch runner: ``batch(n)`` calls ``call()`` ``n`` times."""

    def batch(n: int) -> None:
        for _ in itertools.repeat(None, n):
            call()

    return batch


def time_batch_ns(batch: Batch, n: int) -> int:
    t0 = time.perf_counter_ns()
    batch(n)
    return time.perf_counter_ns() - t0


def calibrate(batch: Batch, target_s: float, *, max_n: int = 10_000_000) -> int:
    """The batch size whose batch takes about ``target_s`` seconds (at least 1).

    The first call is made on its own first, so one-time costs (a loop thread starting, a
    lazy import) do not shrink the estimate. Then the estimate is timed again, and grown
    while its batch comes out well short of the target: a stall while estimating (the
    hypervisor taking the CPU, a garbage collection) makes a batch look slow and the estimate
    small, and a batch of a few calls times mostly its fixed costs (for a crew of threads,
    releasing and joining them) for the rest of the run. A stall only ever lengthens a
    batch, so a short one is never a stall.
    """
    batch(1)
    target_ns = target_s * 1e9

    def scaled(n: int, ns: int) -> int:
        """The size whose batch would take the target, from ``n`` calls taking ``ns``."""
        return max(1, min(max_n, math.ceil(n * target_ns / max(ns, 1))))

    n = 1
    while True:
        ns = time_batch_ns(batch, n)
        if ns >= target_ns / 4 or n >= max_n:
            break
        n *= 2 if ns > target_ns / 64 else 8
    n = scaled(n, ns)
    for _ in range(3):
        ns = time_batch_ns(batch, n)
        if ns >= target_ns / 2 or n >= max_n:
            break
        n = scaled(n, ns)
    return n


def per_call_us(batch: Batch, n: int) -> Measure:
    """A measure: one batch of ``n``, returning microseconds per call."""

    def measure() -> float:
        return time_batch_ns(batch, n) / n / 1000.0

    return measure


@dataclass
class Samples:
    """The samples of one contender across rounds; ``error`` if it failed."""

    name: str
    values: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)


def interleave(
    measures: dict[str, Measure],
    rounds: int,
    *,
    failed: dict[str, str] | None = None,
) -> dict[str, Samples]:
    """Run ``rounds`` round-robin rounds of every measure; return the samples by name.

    Each round starts one contender later than the last, and the garbage collector is run
    before every batch so each starts from the same state (collections triggered inside a
    batch still count). A measure that raises is dropped and keeps its error.
    """
    out = {name: Samples(name) for name in measures}
    for name, err in (failed or {}).items():
        out[name] = Samples(name, error=err)
    names = list(measures)
    for r in range(rounds):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            s = out[name]
            if s.error is not None:
                continue
            gc.collect()
            try:
                s.values.append(measures[name]())
            except Exception as exc:  # a broken contender must not sink the others
                s.error = f"{type(exc).__name__}: {exc}"
    return out


def in_new_loop(batch: Batch) -> Batch:
    """``batch`` run as one stretch of sync code inside a fresh ``asyncio.run()``."""

    def run_batch(n: int) -> None:
        async def go() -> None:
            await _greenback_portal()
            batch(n)

        asyncio.run(go())

    return run_batch


def per_call_us_in_new_loop(batch: Batch, n: int) -> Measure:
    """Like ``per_call_us``, but the batch runs inside a fresh ``asyncio.run()`` (the thread's
    loop is running during it); only the batch itself is timed, not the loop's set-up."""

    async def timed() -> int:
        await _greenback_portal()
        return time_batch_ns(batch, n)

    def measure() -> float:
        return asyncio.run(timed()) / n / 1000.0

    return measure


async def _greenback_portal() -> None:
    """Gives the running task a greenback portal, where greenback is installed, so that its
    ``await_`` can run as a contender; the set-up is not timed."""
    try:
        import greenback
    except ImportError:
        return
    await greenback.ensure_portal()


def prepare(
    calls: dict[str, Call], batch_s: float, *, new_loop: bool = False
) -> tuple[dict[str, Measure], dict[str, int], dict[str, str]]:
    """Calibrate each call; return the per-call-µs measures, batch sizes and failures.

    ``new_loop``: every batch runs inside a fresh ``asyncio.run()``, so the calls are made by
    sync code called from a coroutine, and the loop gets control back between batches.
    """
    measures: dict[str, Measure] = {}
    sizes: dict[str, int] = {}
    failed: dict[str, str] = {}
    for name, call in calls.items():
        batch = batch_of(call)
        try:
            n = calibrate(in_new_loop(batch) if new_loop else batch, batch_s)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        sizes[name] = n
        measures[name] = per_call_us_in_new_loop(batch, n) if new_loop else per_call_us(batch, n)
    return measures, sizes, failed


# --------------------------------------------------------------------------- placement
#
# A call that hops to a loop thread and back costs very different amounts depending on where
# the OS runs the two threads: on one CPU it is a context switch; on two, the loop thread's
# CPU may be idle and need waking (an inter-processor interrupt, slow on VMs). The OS's choice
# sticks to a thread for a while, so two identical contenders on two loop threads can differ by
# 2x for a whole run. The thread-hopping sections therefore measure every contender with the
# caller and the loop threads pinned to one CPU, then to two, and judge the targets in both;
# unpinned numbers are shown as well, not judged.


@dataclass(frozen=True)
class Placement:
    label: str
    caller: int | None  # CPU of the calling thread; None: unpinned
    loops: int | None  # CPU of every loop thread

    @property
    def pinned(self) -> bool:
        return self.caller is not None


UNPINNED = Placement("unpinned", None, None)


def placements() -> list[Placement]:
    """Same CPU, other CPU and unpinned where threads can be pinned; else unpinned only."""
    if not hasattr(os, "sched_setaffinity"):
        return [UNPINNED]
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [UNPINNED]
    a, b = cpus[0], cpus[1]
    return [Placement("same CPU", a, a), Placement("other CPU", a, b), UNPINNED]


def _set_affinity(tid: int, cpus: set[int]) -> None:
    with contextlib.suppress(OSError):  # a thread that has ended meanwhile
        os.sched_setaffinity(tid, cpus)


def _all_tids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []


@contextlib.contextmanager
def placed(p: Placement, loop_tids: Iterable[int], callers: Iterable[int] = ()) -> Iterator[None]:
    """Pin the calling thread (and ``callers``, other calling threads) and the given loop
    threads (native ids) for the block.

    On exit every thread of the process gets the original CPU set back, including any that
    was started inside the block (threads inherit their creator's pinning).
    """
    if not p.pinned:
        yield
        return
    assert p.caller is not None and p.loops is not None
    allowed = os.sched_getaffinity(0)
    me = threading.get_native_id()
    tids = set(loop_tids)
    try:
        for t in {me, *callers}:
            _set_affinity(t, {p.caller})
        for t in tids:
            _set_affinity(t, {p.loops})
        yield
    finally:
        for t in {me, *tids, *_all_tids()}:
            _set_affinity(t, allowed)


def measure_placed(
    calls: dict[str, Call],
    loop_tids: Iterable[int],
    cfg: Config,
    *,
    new_loop: bool = False,
    sizes: dict[str, dict[str, int]] | None = None,
) -> dict[str, dict[str, Samples]]:
    """Calibrate and interleave ``calls`` in every placement; samples by placement label.

    ``sizes``, if given, receives the calls per batch, by placement label then call.
    """
    out: dict[str, dict[str, Samples]] = {}
    tids = list(loop_tids)
    for p in placements():
        with placed(p, tids):
            measures, n, failed = prepare(calls, cfg.batch_s, new_loop=new_loop)
            if sizes is not None:
                sizes[p.label] = n
            out[p.label] = interleave(measures, cfg.rounds, failed=failed)
    return out


def judged_labels(results: dict[str, dict[str, Samples]]) -> list[str]:
    """The placements targets are judged in: the pinned ones, or unpinned if none."""
    pinned = {p.label for p in placements() if p.pinned}
    return [k for k in results if k in pinned] or [k for k in results if k == UNPINNED.label]


def placed_target(
    label: str,
    results: dict[str, dict[str, Samples]],
    num: tuple[str, str],
    den: tuple[str, str],
    need: float,
    *,
    at_most: bool = False,
) -> Target:
    """Judge ``median(num) / median(den)`` against ``need`` in each judged placement.

    ``num`` and ``den`` are (sample key, short name). ``at_most=False``: the ratio must be
    >= need (a speed-up: ``num`` is the slower one); ``at_most=True``: it must be <= need.
    Passes only if it holds in every judged placement.
    """
    judged = judged_labels(results)
    parts: list[str] = []
    verdicts: list[bool] = []
    judged_ratios: list[str] = []
    for where, samples in results.items():
        a, b = samples.get(num[0]), samples.get(den[0])
        if a is None or b is None or not a.ok or not b.ok:
            if where in judged:
                return Target(label, None, f"{where}: not measured (a contender is missing/failed)")
            continue
        x = a.median / b.median
        ok = x <= need if at_most else x >= need
        times = f"{den[1]} {fmt_us(b.median)} µs, {num[1]} {fmt_us(a.median)} µs"
        if where in judged:
            verdicts.append(ok)
            ours = a if at_most else b  # blockon's side: the one being judged
            judged_ratios.append(f"{where} {fmt_ratio(x)} ({fmt_us(ours.median)} µs)")
            parts.append(f"{where} {'PASS' if ok else 'FAIL'} {fmt_ratio(x)} ({times})")
        else:
            parts.append(f"{where} {fmt_ratio(x)} ({times}; not judged)")
    bound = f"ratio <= {need:g}x" if at_most else f">= {need:g}x"
    return Target(
        label, all(verdicts), f"need {bound}. " + "; ".join(parts), ", ".join(judged_ratios)
    )


# --------------------------------------------------------------------------- reporting


def fmt_us(us: float) -> str:
    if us >= 1000:
        return f"{us:,.0f}"
    if us >= 100:
        return f"{us:.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    align: str = ""  # one of "l"/"r" per column; default: first column left, others right

    def _align(self) -> str:
        a = self.align or ("l" + "r" * (len(self.headers) - 1))
        return a[: len(self.headers)].ljust(len(self.headers), "r")

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self, indent: str = "  ") -> str:
        cols = list(zip(self.headers, *self.rows, strict=False))
        widths = [max(len(c) for c in col) for col in cols]
        align = self._align()

        def line(cells: Sequence[str]) -> str:
            parts = [
                c.ljust(w) if a == "l" else c.rjust(w)
                for c, w, a in zip(cells, widths, align, strict=False)
            ]
            return (indent + "  ".join(parts)).rstrip()

        rule = indent + "  ".join("-" * w for w in widths)
        return "\n".join([line(self.headers), rule, *(line(r) for r in self.rows)])

    def markdown(self) -> str:
        align = self._align()
        sep = ["---:" if a == "r" else "---" for a in align]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        return "\n".join([line(self.headers), "|" + "|".join(sep) + "|", *map(line, self.rows)])


def replace_block(path: Path, begin: str, end: str, text: str, *, before: str = "") -> None:
    """Put ``text`` (which starts with ``begin`` and ends with ``end``) in place of the
    ``begin``...``end`` block of the file at ``path``; where there is none yet, just before
    the line starting with ``before``, or at the end."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _m: text, old, count=1)
    elif before and before in old:
        at = old.index(before)
        new = old[:at] + text + "\n" + old[at:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


@dataclass
class Target:
    """One performance target: ``passed`` is None when it could not be judged."""

    label: str
    passed: bool | None
    detail: str
    short: str = ""  # the figures alone, for the per-version table; default: detail's head

    @property
    def figures(self) -> str:
        return self.short or self.detail.split(" (")[0]

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]

    def line(self) -> str:
        return f"{self.verdict}  {self.label}: {self.detail}"


@dataclass
class Section:
    key: str
    title: str
    intro: str
    table: Table | None = None
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    data: dict[str, object] = field(default_factory=dict)
    #: More tables, shown after the main one, before the notes: (caption, table) pairs.
    extra: list[tuple[str, Table]] = field(default_factory=list)

    def text(self) -> str:
        out = [f"== {self.title}", *wrap(self.intro, "   ")]
        if self.table is not None:
            out += ["", self.table.text()]
        for caption, table in self.extra:
            out += ["", *wrap(caption, "   "), "", table.text()]
        if self.notes:
            out += ["", *(f"  * {n}" for n in self.notes)]
        if self.targets:
            out += ["", *(f"  {t.line()}" for t in self.targets)]
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        out = [f"### {self.title}", "", self.intro, ""]
        if self.table is not None:
            out += [self.table.markdown(), ""]
        for caption, table in self.extra:
            out += [caption, "", table.markdown(), ""]
        if self.notes:
            out += [*(f"- {n}" for n in self.notes), ""]
        if self.targets:
            out += [*(f"- **{t.verdict}** {t.label}: {t.detail}" for t in self.targets), ""]
        return "\n".join(out)


def wrap(text: str, indent: str, width: int = 96) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent)


# --------------------------------------------------------------------------- machine load


def _proc_stat() -> tuple[int, int] | None:
    """(busy, steal) jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Load:
    """CPU used by other processes (and stolen by the hypervisor) while a block ran."""

    wall_s: float
    other_pct: float  # of the whole machine (all CPUs)
    steal_pct: float

    def disturbed(self, limit_pct: float = 5.0) -> bool:
        return self.other_pct > limit_pct or self.steal_pct > limit_pct

    def text(self) -> str:
        return f"other processes {self.other_pct:.1f}%, steal {self.steal_pct:.1f}% of the CPUs"


@contextlib.contextmanager
def watch_load() -> Iterator[list[Load]]:
    """``with watch_load() as out:`` appends one ``Load`` to ``out`` when the block ends
    (nothing where /proc/stat is missing)."""
    out: list[Load] = []
    s0, own0, t0 = _proc_stat(), _own_cpu_s(), time.monotonic()
    try:
        yield out
    finally:
        s1, own1, t1 = _proc_stat(), _own_cpu_s(), time.monotonic()
        if s0 is not None and s1 is not None and t1 > t0:
            tick = os.sysconf("SC_CLK_TCK")
            cpus = os.cpu_count() or 1
            capacity = (t1 - t0) * cpus
            busy = (s1[0] - s0[0]) / tick
            other = max(0.0, busy - (own1 - own0))
            steal = (s1[1] - s0[1]) / tick
            out.append(Load(t1 - t0, 100 * other / capacity, 100 * steal / capacity))
