"""Bridges dropped in a reference cycle are collected.

A bridge holds a session, the session holds the async iterator or context manager, and
that object may refer back to the bridge: the garbage collector must see every edge of the
cycle, through the native objects too, or the whole cycle lives until the interpreter exits.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_dropped_iterator_whose_async_generator_refers_to_it_is_collected(lt, prefetch):
    finalized = threading.Event()

    async def numbers(box):
        try:
            for i in range(10):
                yield i
        finally:
            finalized.set()

    box: list[object] = []
    agen = numbers(box)
    alive = weakref.ref(agen)
    it = lt.wrap_iter(agen, prefetch=prefetch)
    box.append(it)  # the generator's frame refers to the bridge: a cycle
    assert next(it) == 0
    # Turns of the loop after that step, until the session's task is parked, holding the
    # generator (while a step of it is queued or running, the loop itself holds it). Taking
    # item 0 may have told a prefetching producer there is room again; that news reaches the
    # loop no later than this call, and the producer then fills its buffer in a few steps:
    # one turn is not always enough for them, ten always are.
    lt.run(_turns(10))
    del it, agen, box
    gc.collect()
    assert alive() is None
    # asyncio's own hook closes the collected generator on its loop.
    assert finalized.wait(30)


def test_a_dropped_context_manager_that_refers_to_its_bridge_is_collected(lt):
    class Manager:
        bridge: object = None

        async def __aenter__(self):
            await asyncio.sleep(0)
            return self

        async def __aexit__(self, *exc_info):
            return None  # pragma: no cover - dropped without exit

    manager = Manager()
    alive = weakref.ref(manager)
    bridge = lt.wrap_context(manager)
    manager.bridge = bridge  # a cycle through the bridge and its session
    assert bridge.__enter__() is manager
    lt.run(asyncio.sleep(0))  # the session's task is parked now (see above)
    del bridge, manager
    gc.collect()
    assert alive() is None
