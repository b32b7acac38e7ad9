"""``gather``: many awaitables at once from sync code, with a limit, cancellation and a
timeout.

One ``loop_thread.run()`` of a coroutine that fans out on the loop, so the whole batch
crosses into the loop thread in one submission and the list comes back through the
engine's completion slot; timeouts and Ctrl-C are the engine's (it cancels that coroutine,
which cancels everything it started and waits for their cleanup). ``LoopThread.gather`` is
the sync face; this module is the loop side.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable

from ._arguments import awaitables, check_limit, close_coroutines
from ._blockon import _timeout_arg
from ._children import Failed, cancel_and_drain, caught

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


_NEW, _RUNNING, _ABANDONED = 0, 1, 2


class Batch:
    """The state of one ``gather``: all of it lives on the loop thread once ``run`` starts."""

    def __init__(
        self, aws: tuple[object, ...], limit: object, return_exceptions: bool, timeout: object
    ) -> None:
        """Check the arguments (closing every coroutine passed if one is wrong)."""
        try:
            checked = check_limit(limit)
            #: ``timeout=`` in seconds, checked by the rule every blocking call follows.
            self.timeout = _timeout_arg(timeout, "blockon.gather()")
        except (TypeError, ValueError):
            close_coroutines(aws)
            raise
        self._aws = awaitables(aws, "gather")
        self._limit = len(aws) if checked is None else checked
        self._return_exceptions = return_exceptions
        self._results: list[Any] = [None] * len(aws)
        self._next = 0  # the next argument to start
        self._unfinished = len(aws)
        self._tasks: dict[asyncio.Task[None], int] = {}  # running, to their argument index
        self._failure: BaseException | None = None
        self._stopping = False  # start nothing more
        self._filling = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _NEW
        self._state_lock = threading.Lock()

    def _claim(self, state: int) -> bool:
        """Move from new to ``state``; false if ``run`` started or the caller gave up first."""
        with self._state_lock:
            if self._state != _NEW:
                return False
            self._state = state
            return True

    def abandon(self) -> None:
        """The caller's ``run()`` failed: if the coroutine never started, close the
        awaitables it would have awaited (it is never going to start now)."""
        if self._claim(_ABANDONED):
            close_coroutines(self._aws)

    async def run(self) -> list[Any] | Failed:
        if not self._claim(_RUNNING):
            return []
        loop = self._loop = asyncio.get_running_loop()
        try:
            if self._unfinished:
                self._waiter = loop.create_future()
                self._fill()
                if self._unfinished and self._failure is None:
                    await self._waiter
        except GeneratorExit:
            self._stopping = True
            for task in self._tasks:
                task.cancel()
            raise
        except BaseException:
            # Cancelled: the timeout, Ctrl-C, or the loop closing.
            await self._shutdown()
            raise
        finally:
            self._close_unstarted()
        if self._failure is not None:
            await self._shutdown()
            return Failed(self._failure)
        return self._results

    def _fill(self) -> None:
        """Start arguments until ``limit`` are in flight (re-entrant safe, for loops whose
        tasks start eagerly and may finish inside ``create_task``)."""
        if self._filling:
            return
        self._filling = True
        try:
            loop = self._loop
            assert loop is not None
            n = len(self._aws)
            on_done = self._on_done
            while not self._stopping and self._next < n and len(self._tasks) < self._limit:
                i = self._next
                self._next += 1
                aw = self._aws[i]
                assert aw is not None
                task = loop.create_task(self._child(i, aw))
                self._tasks[task] = i
                task.add_done_callback(on_done)
        finally:
            self._filling = False

    async def _child(self, i: int, aw: Awaitable[Any]) -> None:
        try:
            self._results[i] = await aw
        except GeneratorExit:
            raise
        except BaseException as exc:
            err = caught(exc)
            if err is None:
                raise
            if self._return_exceptions:
                self._results[i] = err
            elif self._failure is None:
                self._failure = err
                self._stopping = True
                self._wake()

    def _on_done(self, task: asyncio.Task[None]) -> None:
        i = self._tasks.pop(task)
        aw, self._aws[i] = self._aws[i], None
        if task.cancelled() and inspect.iscoroutine(aw):
            aw.close()  # it may never have run: no "never awaited" warning
        self._unfinished -= 1
        if self._stopping:
            if not self._tasks:
                self._wake()
            return
        self._fill()
        if not self._unfinished:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _new_waiter(self) -> asyncio.Future[None]:
        assert self._loop is not None
        self._waiter = self._loop.create_future()
        return self._waiter

    def _close_unstarted(self) -> None:
        unstarted = self._aws[self._next :]
        self._next = len(self._aws)
        close_coroutines(unstarted)

    async def _shutdown(self) -> None:
        """Start nothing more, cancel what runs and wait for its cleanup."""
        self._stopping = True
        self._close_unstarted()
        await cancel_and_drain(list(self._tasks), lambda: not self._tasks, self._new_waiter)
