#!/usr/bin/env python3
"""Soak test: blockon's public API mixed across threads, for minutes on end.

    python scripts/soak.py [MINUTES]       # default: $SOAK_MINUTES, else 10
    python scripts/soak.py --example PLAN  # one plan (JSON), once; used by the property test

Rounds of a random plan run one after another: several threads at once, each doing a list of
operations on one long-lived ``blockon.LoopThread`` (every tenth round on a fresh one, closed
at the end of the round): ``run`` (with and without timeouts), ``submit`` and cancel,
``wrap_iter`` (lockstep and prefetched; next, close, exhaust, break, drop), ``wrap_context``
(the body raising, suppressed or not; or entered and dropped without exiting), ``gather``
(``return_exceptions``, ``limit``, ``timeout``), ``map`` (``limit``, ``ordered``, closed
early), and re-entrant calls (a coroutine on the loop thread calling ``run``, bridges and
``gather`` synchronously).

Every result is checked to be its caller's own; every coroutine, async generator and async
context manager that started must have finished by the end of its round; no task may be left
on the loop; a thread still busy after the round's watchdog counts as a hang; and an exception
that reaches ``threading.excepthook`` or ``sys.unraisablehook`` fails the run.

Once a minute it prints the thread, file descriptor, pending-task and RSS counts. It fails
(exit 1) when the last sample exceeds the first one taken after warm-up by more than a
tolerance, i.e. when something grows without bound.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import faulthandler
import json
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import blockon

#: Seconds a round's threads may take before the round counts as hung.
WATCHDOG = 30.0
#: Seconds the loop may take to finish tasks that are ending (cancelled, closing) after a round.
SETTLE = 5.0

# ------------------------------------------------------------------------------- bookkeeping


class Boom(Exception):
    """Raised on purpose; carries the token of the operation that raised it."""


class Ledger:
    """What started and finished, per kind, and what went wrong, shared by every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()
        self.failures: list[str] = []

    def start(self, kind: str) -> None:
        with self._lock:
            self.started[kind] += 1

    def finish(self, kind: str) -> None:
        with self._lock:
            self.finished[kind] += 1

    def fail(self, message: str) -> None:
        with self._lock:
            self.failures.append(message)

    def unfinished(self) -> dict[str, int]:
        with self._lock:
            return {
                kind: self.started[kind] - self.finished[kind]
                for kind in self.started
                if self.started[kind] != self.finished[kind]
            }


class Mismatch(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


# ------------------------------------------------------------------------ awaitables, on the loop


async def echo(ledger: Ledger, value: Any, delay: float) -> Any:
    ledger.start("coroutine")
    try:
        await asyncio.sleep(delay)
        return value
    finally:
        ledger.finish("coroutine")


async def boom(ledger: Ledger, value: Any) -> Any:
    ledger.start("coroutine")
    try:
        await asyncio.sleep(0)
        raise Boom(value)
    finally:
        ledger.finish("coroutine")


async def slow(ledger: Ledger) -> None:
    ledger.start("coroutine")
    try:
        await asyncio.sleep(3600)
    finally:
        ledger.finish("coroutine")


async def numbers(ledger: Ledger, token: Any, n: int) -> AsyncIterator[Any]:
    ledger.start("async generator")
    try:
        for i in range(n):
            await asyncio.sleep(0)
            yield (token, i)
    finally:
        ledger.finish("async generator")


class Manager:
    """An async context manager that checks it sees its own body's exception."""

    def __init__(self, ledger: Ledger, token: Any, suppress: bool) -> None:
        self.ledger, self.token, self.suppress = ledger, token, suppress

    async def __aenter__(self) -> Any:
        self.ledger.start("context manager")
        await asyncio.sleep(0)
        return self.token

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            await asyncio.sleep(0)
            if exc is not None and exc.args != (self.token,):
                self.ledger.fail(f"__aexit__ of {self.token!r} got {exc!r}")
            return self.suppress and exc is not None
        finally:
            self.ledger.finish("context manager")


async def reenter(lt: Any, ledger: Ledger, token: Any, depth: int, timeout_inside: bool) -> Any:
    """Calls ``lt.run`` synchronously from the loop thread (re-entrantly), ``depth`` deep."""
    ledger.start("coroutine")
    try:
        await asyncio.sleep(0)
        if timeout_inside:
            try:
                lt.run(slow(ledger), timeout=0.002)
                ledger.fail(f"{token!r}: no TimeoutError from a re-entrant run")
            except TimeoutError:
                pass
        if depth == 0:
            return token
        return lt.run(reenter(lt, ledger, token, depth - 1, timeout_inside))
    finally:
        ledger.finish("coroutine")


async def bridges_inside(lt: Any, ledger: Ledger, token: Any, n: int, prefetch: int) -> Any:
    """Uses ``wrap_iter``, ``wrap_context`` and ``gather`` synchronously from the loop thread."""
    ledger.start("coroutine")
    try:
        await asyncio.sleep(0)
        items = list(lt.wrap_iter(numbers(ledger, token, n), prefetch=prefetch))
        with lt.wrap_context(Manager(ledger, token, False)) as entered:
            pass
        gathered = lt.gather(echo(ledger, (token, "a"), 0), echo(ledger, (token, "b"), 0.001))
        return items, entered, gathered
    finally:
        ledger.finish("coroutine")


# --------------------------------------------------------------------------------- operations


def op_run(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    got = lt.run(echo(ledger, token, spec["delay"]))
    expect(got == token, f"run: got {got!r}")


def op_run_timeout(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    started = time.monotonic()
    try:
        lt.run(slow(ledger), timeout=spec["timeout"])
    except TimeoutError:
        elapsed = time.monotonic() - started
        expect(elapsed < spec["timeout"] + 5, f"run(timeout=...): took {elapsed:.2f} s")
    else:
        raise Mismatch("run(timeout=...): no TimeoutError")


def op_submit(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    future = lt.submit(echo(ledger, token, spec["delay"]))
    cancelled = spec["cancel"] and future.cancel()
    try:
        got = future.result(timeout=WATCHDOG)
    except concurrent.futures.CancelledError:
        expect(cancelled, "submit: cancelled, but nobody cancelled it")
        return
    expect(not cancelled, "submit: a result after a successful cancel()")
    expect(got == token, f"submit: got {got!r}")


def op_iter(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    n, take, end = spec["n"], min(spec["take"], spec["n"]), spec["end"]
    it = lt.wrap_iter(numbers(ledger, token, n), prefetch=spec["prefetch"])
    got = [next(it) for _ in range(take)]
    if end == "exhaust":
        got += list(it)
        expect(got == [(token, i) for i in range(n)], f"wrap_iter: got {got!r}")
        return
    expect(got == [(token, i) for i in range(take)], f"wrap_iter: got {got!r}")
    if end == "close":
        it.close()
    elif end == "break":
        for item in it:
            expect(item == (token, take), f"wrap_iter: got {item!r}")
            break
    del it  # "drop": closed by garbage collection


def op_context(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    if spec.get("drop"):
        # Entered, then dropped without __exit__: __aexit__ must still run, on the loop.
        manager = lt.wrap_context(Manager(ledger, token, spec["suppress"]))
        entered = manager.__enter__()
        expect(entered == token, f"wrap_context: entered {entered!r}")
        del manager
        return
    raised = False
    try:
        with lt.wrap_context(Manager(ledger, token, spec["suppress"])) as entered:
            expect(entered == token, f"wrap_context: entered {entered!r}")
            if spec["raise"]:
                raise Boom(token)
    except Boom as exc:
        raised = True
        expect(exc.args == (token,), f"wrap_context: got {exc!r}")
    expect(raised == (spec["raise"] and not spec["suppress"]), "wrap_context: suppression")


def op_gather(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    n, fail = spec["n"], spec["fail"]
    aws: list[Any] = [
        boom(ledger, (token, i)) if i == fail else echo(ledger, (token, i), spec["delay"])
        for i in range(n)
    ]
    if spec["timeout"] is not None:
        aws.append(slow(ledger))
    kwargs = {"limit": spec["limit"], "return_exceptions": spec["return_exceptions"]}
    try:
        got = lt.gather(*aws, timeout=spec["timeout"], **kwargs)
    except TimeoutError:
        expect(spec["timeout"] is not None, "gather: TimeoutError without a timeout")
        return
    except Boom as exc:
        expect(fail is not None and not spec["return_exceptions"], f"gather: raised {exc!r}")
        expect(exc.args == ((token, fail),), f"gather: raised {exc!r}")
        return
    expect(spec["timeout"] is None, "gather: no TimeoutError")
    expect(fail is None or spec["return_exceptions"], "gather: the failure was not raised")
    for i, value in enumerate(got):
        if i == fail:
            expect(isinstance(value, Boom) and value.args == ((token, i),), f"gather: {value!r}")
        else:
            expect(value == (token, i), f"gather: item {i} is {value!r}")
    expect(len(got) == n, f"gather: {len(got)} results for {n}")


def op_map(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    n, fail, ordered = spec["n"], spec["fail"], spec["ordered"]

    def fn(i: int) -> Any:
        return boom(ledger, (token, i)) if i == fail else echo(ledger, (token, i), spec["delay"])

    results = lt.map(fn, range(n), limit=spec["limit"], ordered=ordered)
    got: list[Any] = []
    try:
        for value in results:
            got.append(value)
            if spec["take"] is not None and len(got) >= spec["take"]:
                results.close()
                break
    except Boom as exc:
        expect(exc.args == ((token, fail),), f"map: raised {exc!r}")
        if ordered:
            expect(got == [(token, i) for i in range(fail)], f"map: before the failure {got!r}")
        return
    expect(all(value[0] == token for value in got), f"map: got {got!r}")
    if spec["take"] is None:
        expect(fail is None, "map: the failure was not raised")
        want = [(token, i) for i in range(n)]
        expect((got if ordered else sorted(got)) == want, f"map: got {got!r}")


def op_reenter(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    got = lt.run(reenter(lt, ledger, token, spec["depth"], spec["timeout_inside"]))
    expect(got == token, f"re-entrant run: got {got!r}")


def op_reenter_bridges(lt: Any, ledger: Ledger, token: Any, spec: dict[str, Any]) -> None:
    n = spec["n"]
    items, entered, gathered = lt.run(bridges_inside(lt, ledger, token, n, spec["prefetch"]))
    expect(items == [(token, i) for i in range(n)], f"re-entrant wrap_iter: got {items!r}")
    expect(entered == token, f"re-entrant wrap_context: entered {entered!r}")
    expect(gathered == [(token, "a"), (token, "b")], f"re-entrant gather: got {gathered!r}")


OPERATIONS: dict[str, Callable[[Any, Ledger, Any, dict[str, Any]], None]] = {
    "run": op_run,
    "run_timeout": op_run_timeout,
    "submit": op_submit,
    "iter": op_iter,
    "context": op_context,
    "gather": op_gather,
    "map": op_map,
    "reenter": op_reenter,
    "reenter_bridges": op_reenter_bridges,
}


def random_operation(rng: random.Random) -> dict[str, Any]:
    """One operation, as the property test's strategies draw them."""
    delay = rng.choice([0, 0, 0.001, 0.005])
    op = rng.choice(list(OPERATIONS))
    if op == "run":
        return {"op": op, "delay": delay}
    if op == "run_timeout":
        return {"op": op, "timeout": rng.choice([0, 0.001, 0.01])}
    if op == "submit":
        return {"op": op, "delay": delay, "cancel": rng.random() < 0.5}
    if op == "iter":
        return {
            "op": op,
            "n": rng.randint(0, 6),
            "prefetch": rng.choice([0, 1, 3]),
            "take": rng.randint(0, 6),
            "end": rng.choice(["close", "exhaust", "break", "drop"]),
        }
    if op == "context":
        return {
            "op": op,
            "raise": rng.random() < 0.5,
            "suppress": rng.random() < 0.5,
            "drop": rng.random() < 0.2,
        }
    if op == "gather":
        n = rng.randint(0, 5)
        timeout = rng.choice([None, None, 0.005])
        fail = None if timeout is not None or not n or rng.random() < 0.5 else rng.randrange(n)
        return {
            "op": op,
            "n": n,
            "delay": delay,
            "fail": fail,
            "return_exceptions": rng.random() < 0.5,
            "limit": rng.choice([None, 1, 2]),
            "timeout": timeout,
        }
    if op == "map":
        n = rng.randint(0, 6)
        return {
            "op": op,
            "n": n,
            "delay": delay,
            "fail": rng.randrange(n) if n and rng.random() < 0.3 else None,
            "limit": rng.choice([None, 1, 2]),
            "ordered": rng.random() < 0.5,
            "take": rng.choice([None, None, 1, 2]),
        }
    if op == "reenter":
        return {"op": op, "depth": rng.randint(1, 3), "timeout_inside": rng.random() < 0.5}
    return {"op": op, "n": rng.randint(0, 3), "prefetch": rng.choice([0, 2])}


def random_plan(rng: random.Random, threads: int, per_thread: int) -> list[list[dict[str, Any]]]:
    return [
        [random_operation(rng) for _ in range(rng.randint(1, per_thread))] for _ in range(threads)
    ]


# ------------------------------------------------------------------------------------ a round


class Hung(Exception):
    """Threads of a round still busy after its watchdog."""

    def __init__(self, threads: list[str]) -> None:
        super().__init__(threads)
        self.threads = threads


async def _other_tasks() -> list[str]:
    me = asyncio.current_task()
    return [repr(task) for task in asyncio.all_tasks() if task is not me]


def pending_tasks(lt: Any) -> list[str]:
    """The tasks on ``lt``'s loop, once those that are ending have had ``SETTLE`` s to end."""
    deadline = time.monotonic() + SETTLE
    while True:
        tasks: list[str] = lt.run(_other_tasks(), timeout=WATCHDOG)
        if not tasks or time.monotonic() > deadline:
            return tasks
        lt.run(asyncio.sleep(0.005))  # a few loop iterations for them to end


def run_plan(lt: Any, ledger: Ledger, plan: list[list[dict[str, Any]]], watchdog: float) -> None:
    """Runs each thread's operations in its own thread; raises ``Hung`` for threads still
    busy after ``watchdog`` seconds."""

    def worker(index: int, operations: list[dict[str, Any]]) -> None:
        for position, spec in enumerate(operations):
            token = f"t{index}.{position}"
            try:
                OPERATIONS[spec["op"]](lt, ledger, token, spec)
            except Exception as exc:  # every failure is reported, none stops the thread
                ledger.fail(f"{token} {spec}: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=worker, args=(i, ops), name=f"soak-{i}", daemon=True)
        for i, ops in enumerate(plan)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + watchdog
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [thread.name for thread in threads if thread.is_alive()]
    if alive:
        raise Hung(alive)


def check_round(lt: Any, ledger: Ledger) -> list[str]:
    """What is wrong after a round: failures, tasks left, things started and never finished."""
    problems = list(ledger.failures)
    left = pending_tasks(lt)
    if left:
        problems.append(f"{len(left)} task(s) left on the loop: {left}")
    unfinished = ledger.unfinished()
    if unfinished:
        problems.append(f"started and never finished: {unfinished}")
    return problems


class Hooks:
    """Counts exceptions that escape to ``threading.excepthook`` and ``sys.unraisablehook``
    (and still prints them)."""

    def __init__(self) -> None:
        self.escaped = 0
        self._thread_hook = threading.excepthook
        self._unraisable_hook = sys.unraisablehook

    def __enter__(self) -> Hooks:
        def thread_hook(args: Any) -> None:
            self.escaped += 1
            self._thread_hook(args)

        def unraisable_hook(args: Any) -> None:
            self.escaped += 1
            self._unraisable_hook(args)

        threading.excepthook = thread_hook
        sys.unraisablehook = unraisable_hook
        return self

    def __exit__(self, *exc: object) -> None:
        threading.excepthook = self._thread_hook
        sys.unraisablehook = self._unraisable_hook


def hang_report(hung: Hung, plan: Any) -> None:
    print(f"HANG: threads {hung.threads} still busy after the watchdog; plan:", file=sys.stderr)
    print(json.dumps(plan), file=sys.stderr)
    faulthandler.dump_traceback(all_threads=True)
    sys.stderr.flush()


def run_example(plan: list[list[dict[str, Any]]]) -> int:
    """One plan on a fresh LoopThread, which is then closed: exit status 0 if all is well."""

    def loop_factory() -> asyncio.AbstractEventLoop:
        # Debug mode raises when the loop is touched from a foreign thread; its slow-callback
        # log is off, since a re-entrant call legitimately blocks a callback for a while.
        loop = asyncio.new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 3600
        return loop

    ledger = Ledger()
    with Hooks() as hooks:
        lt = blockon.LoopThread(loop_factory, name="example")
        try:
            run_plan(lt, ledger, plan, watchdog=WATCHDOG / 3)
        except Hung as hung:
            hang_report(hung, plan)
            os._exit(1)
        problems = check_round(lt, ledger)
        lt.close(timeout=WATCHDOG)
        unfinished = ledger.unfinished()
        if unfinished and not any("never finished" in p for p in problems):
            problems.append(f"after close, started and never finished: {unfinished}")
    if hooks.escaped:
        problems.append(f"{hooks.escaped} exception(s) escaped to excepthook/unraisablehook")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print("ok")
    return 0


# ------------------------------------------------------------------------------------ the soak


@dataclass
class Sample:
    at: float
    rounds: int
    threads: int
    os_threads: int | None
    fds: int | None
    tasks: int
    rss: int | None  # bytes

    def line(self) -> str:
        def show(value: int | None) -> str:
            return "?" if value is None else str(value)

        rss = "?" if self.rss is None else f"{self.rss / 2**20:.1f} MB"
        return (
            f"[{int(self.at) // 60:02d}:{int(self.at) % 60:02d}] rounds={self.rounds} "
            f"threads={self.threads} os_threads={show(self.os_threads)} fds={show(self.fds)} "
            f"pending_tasks={self.tasks} rss={rss}"
        )


def _count(directory: str) -> int | None:
    try:
        return len(os.listdir(directory))
    except OSError:
        return None


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def sample(lt: Any, at: float, rounds: int) -> Sample:
    return Sample(
        at=at,
        rounds=rounds,
        threads=threading.active_count(),
        os_threads=_count("/proc/self/task"),
        fds=_count("/proc/self/fd") or _count("/dev/fd"),
        tasks=len(pending_tasks(lt)),
        rss=_rss(),
    )


#: How much the last sample may exceed the first after warm-up: (absolute, relative).
TOLERANCE = {"threads": (2, 0.0), "os_threads": (2, 0.0), "fds": (8, 0.0), "tasks": (2, 0.0)}
RSS_TOLERANCE = (32 * 2**20, 0.25)


def growth(first: Sample, last: Sample) -> list[str]:
    grown = []
    for name, (absolute, relative) in TOLERANCE.items():
        before, after = getattr(first, name), getattr(last, name)
        if before is not None and after is not None and after > before * (1 + relative) + absolute:
            grown.append(f"{name}: {before} -> {after}")
    if first.rss is not None and last.rss is not None:
        absolute, relative = RSS_TOLERANCE
        if last.rss > first.rss * (1 + relative) + absolute:
            grown.append(f"rss: {first.rss / 2**20:.1f} MB -> {last.rss / 2**20:.1f} MB")
    return grown


def soak(minutes: float, threads: int, seed: int) -> int:
    rng = random.Random(seed)
    duration = minutes * 60
    warm_up = min(60.0, duration / 4)
    print(
        f"soak: {minutes:g} min, {threads} threads, seed {seed}; warm-up {warm_up:.0f} s",
        flush=True,
    )
    ledger = Ledger()
    lt = blockon.LoopThread(name="soak")
    samples: list[Sample] = []
    started = time.monotonic()
    next_sample = started + warm_up
    rounds = 0
    with Hooks() as hooks:
        while True:
            now = time.monotonic()
            if now >= next_sample or now - started >= duration:
                samples.append(sample(lt, now - started, rounds))
                print(samples[-1].line(), flush=True)
                if now - started >= duration:
                    break
                minute = (int((now - started) // 60) + 1) * 60
                next_sample = started + min(minute, duration)
            fresh = rounds % 10 == 9
            target = blockon.LoopThread(name="soak-fresh") if fresh else lt
            plan = random_plan(rng, threads, per_thread=5)
            try:
                run_plan(target, ledger, plan, watchdog=WATCHDOG)
            except Hung as hung:
                hang_report(hung, plan)
                os._exit(1)
            problems = check_round(target, ledger)
            if fresh:
                target.close(timeout=WATCHDOG)
            if hooks.escaped:
                problems.append(f"{hooks.escaped} exception(s) escaped to the hooks")
            if problems:
                print(f"FAILED in round {rounds}; plan: {json.dumps(plan)}", flush=True)
                for problem in problems:
                    print("  " + problem, flush=True)
                return 1
            rounds += 1
    lt.close(timeout=WATCHDOG)
    grown = growth(samples[0], samples[-1])
    if grown:
        print("FAILED: grew from the first sample after warm-up to the last: " + "; ".join(grown))
        return 1
    print(f"ok: {rounds} rounds, nothing grew")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "minutes",
        nargs="?",
        type=float,
        default=float(os.environ.get("SOAK_MINUTES") or 10),
        help="how long to run (default: $SOAK_MINUTES, else 10)",
    )
    parser.add_argument("--threads", type=int, default=4, help="threads per round (4)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--example", metavar="PLAN", help="run this JSON plan once and exit")
    args = parser.parse_args(argv)
    if args.example is not None:
        return run_example(json.loads(args.example))
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    try:
        return soak(args.minutes, args.threads, seed)
    except Exception:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
