"""``sync()``: sync twins of async functions, generators, classes, instances and modules.

Rule by rule, over hand-written fakes. Real loops only (the default loop thread, a debug stdlib
``LoopThread``, a uvloop one); threads and loops are synchronised with events and barriers,
never sleeps. The two real libraries are in ``test_sync_real_libraries.py``; call results that
are awaitable and also async context managers or async iterables (``with`` and ``for`` on
them) in ``test_sync_with_and_for.py``; twins of real SDKs against real servers in
``test_sync_real_servers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import functools
import gc
import inspect
import pickle
import subprocess
import sys
import threading
import types
import warnings
import weakref
from pathlib import Path
from typing import Any

import blockon
import pytest

from tests.support import HANG, Boom, clean_env, run_in_threads

ROOT = Path(__file__).resolve().parent.parent
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


@blockon.sync
async def module_level_double(x: int) -> int:
    return 2 * x


def where() -> tuple[str, asyncio.Task[Any] | None]:
    return threading.current_thread().name, asyncio.current_task()


# --- async functions -----------------------------------------------------------------------


async def add(a: int, b: int = 1, *, scale: int = 1) -> int:
    """Add two numbers, then scale."""
    await asyncio.sleep(0)
    return (a + b) * scale


async def whereabouts() -> tuple[str, asyncio.AbstractEventLoop, str]:
    return threading.current_thread().name, asyncio.get_running_loop(), VAR.get()


async def fail(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


def test_async_function_becomes_a_function_on_the_loop_thread(target):
    twin = target.api.sync(add)
    assert twin(1) == 2
    assert twin(2, 3, scale=10) == 50
    name, loop, _ = target.api.sync(whereabouts)()
    assert name == target.thread.name
    assert loop is target.loop


def asyncio_iscoroutinefunction(obj: object) -> bool:
    """asyncio's own check, which frameworks still call; deprecated (with a warning) in 3.14."""
    with warnings.catch_warnings(action="ignore", category=DeprecationWarning):
        return asyncio.iscoroutinefunction(obj)


def test_function_twin_keeps_name_doc_signature_and_says_what_it_is(target):
    twin = target.api.sync(add)
    assert twin.__name__ == "add"
    assert twin.__qualname__ == "add"
    assert twin.__module__ == __name__
    assert twin.__doc__ == "Add two numbers, then scale."
    assert twin.__wrapped__ is add
    assert inspect.signature(twin) == inspect.signature(add)
    assert "twin" in repr(twin) and "add" in repr(twin)
    assert callable(twin)
    assert not inspect.iscoroutinefunction(twin)
    assert not asyncio_iscoroutinefunction(twin)


def test_a_coroutine_marker_on_the_function_is_not_copied(target):
    async def marked() -> int:
        return 1

    marked._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    marked._is_coroutine_marker = object()  # type: ignore[attr-defined]
    twin = target.api.sync(marked)
    assert not asyncio_iscoroutinefunction(twin)
    assert "_is_coroutine_marker" not in vars(twin)
    assert twin() == 1


def test_errors_propagate_as_the_same_object(target):
    twin = target.api.sync(fail)
    exc = Boom("x")
    with pytest.raises(Boom) as info:
        twin(exc)
    assert info.value is exc
    # the coroutine's own frame is in the traceback
    assert "fail" in [frame.name for frame in info.traceback]


def test_base_exceptions_propagate(target):
    with pytest.raises(KeyboardInterrupt):
        target.api.sync(fail)(KeyboardInterrupt())


def test_caller_context_is_copied(target):
    token = VAR.set("caller")
    try:
        assert target.api.sync(whereabouts)()[2] == "caller"
    finally:
        VAR.reset(token)


def test_decorator_form():
    @blockon.sync
    async def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    assert double(21) == 42
    assert double.__name__ == "double"
    assert double.__doc__ == "Twice x."


def test_twins_from_a_loop_thread_run_there_and_nowhere_else(lt):
    twin = lt.sync(whereabouts)
    name, loop, _ = twin()
    assert (name, loop) == ("test-lt", lt.loop)
    assert loop is not blockon.default_loop_thread().loop


def test_twin_of_a_closed_loop_thread_says_so():
    lt = blockon.LoopThread(name="test-closed")
    twin = lt.sync(add)
    assert twin(1) == 2
    lt.close()
    with pytest.raises(RuntimeError, match="closed"):
        twin(1)


def test_twin_waits_from_inside_a_running_loop_without_touching_it(target):
    twin = target.api.sync(whereabouts)

    async def caller() -> tuple[str, Any]:
        # a sync call from a coroutine on another loop (as in a notebook cell or handler)
        return twin()[0], asyncio.get_running_loop()

    name, caller_loop = asyncio.run(caller())
    assert name == target.thread.name
    assert caller_loop is not target.loop


def test_twin_called_on_its_own_loop_thread_reenters(reentrant_target):
    target = reentrant_target
    twin = target.api.sync(add)

    async def sync_code_inside_a_coroutine() -> Any:
        return twin(20, 22)

    assert target.run(sync_code_inside_a_coroutine()) == 42


def test_partial_of_an_async_function(target):
    twin = target.api.sync(functools.partial(add, 1, scale=3))
    assert twin(2) == 9


def test_a_plain_async_function_result_is_returned_as_it_is(target):
    """Only twins of classes, instances and modules twin their results (see the docs)."""
    client = FakeClient.__new__(FakeClient)

    async def give() -> FakeClient:
        return client

    assert target.api.sync(give)() is client


def test_twin_arguments_are_unwrapped(target):
    sync = target.api.sync
    inner = Counter()
    twin_counter = sync(inner)

    async def bump(counter: Counter, *, by: Counter | None = None) -> tuple[bool, bool]:
        return counter is inner, by is inner

    assert sync(bump)(twin_counter, by=twin_counter) == (True, True)


# --- methods -------------------------------------------------------------------------------


class Counter:
    """Counts."""

    step = 1

    def __init__(self) -> None:
        self.value = 0

    async def increment(self, by: int | None = None) -> int:
        """Add `by` (default: step)."""
        await asyncio.sleep(0)
        self.value += self.step if by is None else by
        return self.value

    @classmethod
    async def make(cls) -> Counter:
        return cls()

    @staticmethod
    async def zero() -> int:
        return 0


def test_bound_unbound_class_and_static_methods(target):
    sync = target.api.sync
    counter = Counter()
    assert sync(counter.increment)(5) == 5
    assert sync(Counter.increment)(counter) == 6
    assert sync(Counter.increment)(counter, by=10) == 16
    made = sync(Counter.make)()
    assert type(made) is Counter
    assert sync(Counter.zero)() == 0
    assert inspect.signature(sync(counter.increment)) == inspect.signature(counter.increment)
    assert sync(counter.increment).__name__ == "increment"


def test_decorating_methods_in_a_class_body():
    class Api:
        def __init__(self) -> None:
            self.calls = 0

        @blockon.sync
        async def call(self, x: int) -> int:
            self.calls += 1
            return x

        @blockon.sync
        @classmethod
        async def build(cls) -> Api:
            return cls()

        @classmethod
        @blockon.sync
        async def build_too(cls) -> Api:
            return cls()

        @blockon.sync
        @staticmethod
        async def const() -> str:
            return "c"

    api = Api()
    assert api.call(7) == 7
    assert api.calls == 1
    assert Api.call(api, 8) == 8
    assert api.call == api.call
    assert list(inspect.signature(api.call).parameters) == ["x"]
    assert isinstance(Api.build(), Api)
    assert isinstance(Api.build_too(), Api)
    assert Api.const() == "c"
    assert api.const() == "c"


# --- async generator functions -------------------------------------------------------------


def test_async_generator_function_becomes_a_generator_function(target):
    async def count(n: int):
        """Count to n."""
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    twin = target.api.sync(count)
    assert inspect.isgeneratorfunction(twin)
    assert not inspect.isasyncgenfunction(twin)
    assert twin.__name__ == "count" and twin.__doc__ == "Count to n."
    assert inspect.signature(twin) == inspect.signature(count)
    gen = twin(4)
    assert inspect.isgenerator(gen)
    assert iter(gen) is gen
    assert list(gen) == [0, 1, 2, 3]
    assert list(twin(0)) == []


def test_generator_is_lockstep_in_one_task_on_the_loop_thread(target):
    steps: list[Any] = []

    async def source():
        try:
            for i in range(3):
                steps.append((i, *where()))
                yield i
        finally:
            steps.append(("finally", *where()))

    gen = target.api.sync(source)()
    assert steps == []  # nothing runs before the first next()
    assert next(gen) == 0
    assert len(steps) == 1
    assert next(gen) == 1
    assert len(steps) == 2
    gen.close()
    assert [s[0] for s in steps] == [0, 1, "finally"]
    assert {s[1] for s in steps} == {target.thread.name}
    tasks = {s[2] for s in steps}
    assert len(tasks) == 1 and None not in tasks


def test_wrong_arguments_fail_at_the_call(target):
    async def one(x: int):
        yield x

    with pytest.raises(TypeError):
        target.api.sync(one)(1, 2)


def test_send_maps_to_asend(target):
    async def echo():
        received = yield "ready"
        while received != "stop":
            received = yield f"got {received}"

    gen = target.api.sync(echo)()
    assert next(gen) == "ready"
    assert gen.send("a") == "got a"
    assert next(gen) == "got None"
    assert gen.send("b") == "got b"
    with pytest.raises(StopIteration):
        gen.send("stop")
    with pytest.raises(StopIteration):
        next(gen)


def test_send_tells_a_yielded_none_from_the_end(target):
    async def nones():
        yield None
        yield None

    gen = target.api.sync(nones)()
    assert next(gen) is None
    assert gen.send(1) is None
    with pytest.raises(StopIteration):
        gen.send(2)


def test_throw_maps_to_athrow(target):
    seen: list[Any] = []

    async def resilient():
        while True:
            try:
                yield "ok"
            except Boom as exc:
                seen.append(exc)
                yield "recovered"
            except KeyError:
                return

    gen = target.api.sync(resilient)()
    assert next(gen) == "ok"
    exc = Boom("in")
    assert gen.throw(exc) == "recovered"
    assert seen == [exc]
    assert next(gen) == "ok"
    with pytest.raises(StopIteration):
        gen.throw(KeyError("end"))


def test_throw_uncaught_propagates_the_same_object_after_cleanup(target):
    cleaned = threading.Event()

    async def fragile():
        try:
            yield 1
        finally:
            cleaned.set()

    gen = target.api.sync(fragile)()
    assert next(gen) == 1
    exc = Boom("out")
    with pytest.raises(Boom) as info:
        gen.throw(exc)
    assert info.value is exc
    assert cleaned.is_set()
    with pytest.raises(StopIteration):
        next(gen)


def test_close_maps_to_aclose_on_the_loop(target):
    seen: list[Any] = []

    async def closable():
        try:
            yield 1
            yield 2
        except GeneratorExit:
            seen.append(("exit", threading.current_thread().name))
            raise

    gen = target.api.sync(closable)()
    assert next(gen) == 1
    gen.close()
    assert seen == [("exit", target.thread.name)]
    with pytest.raises(StopIteration):
        next(gen)
    gen.close()  # idempotent


def test_break_and_drop_finalize_on_the_loop(target):
    done = threading.Event()
    seen: list[str] = []

    async def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            seen.append(threading.current_thread().name)
            done.set()

    gen = target.api.sync(endless)()
    for item in gen:
        if item == 3:
            break
    del gen
    gc.collect()
    assert done.wait(HANG)
    assert seen == [target.thread.name]


def test_errors_inside_the_generator_propagate(target):
    exc = Boom("mid")

    async def breaks():
        yield 1
        raise exc

    gen = target.api.sync(breaks)()
    assert next(gen) == 1
    with pytest.raises(Boom) as info:
        next(gen)
    assert info.value is exc


def test_an_async_generator_object_becomes_a_generator(target):
    async def letters():
        yield "a"
        yield "b"

    gen = target.api.sync(letters())
    assert inspect.isgenerator(gen)
    assert list(gen) == ["a", "b"]


# --- classes -------------------------------------------------------------------------------


class SubApi:
    """A sub-object with async methods (like `client.secrets`)."""

    def __init__(self, owner: FakeClient) -> None:
        self.owner = owner

    async def resolve(self, ref: str) -> str:
        await asyncio.sleep(0)
        self.resolved_in = threading.current_thread().name
        return f"{self.owner.name}:{ref}"


class Cursor:
    """An async iterable with async methods (like aiosqlite's cursor)."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.closed = False

    def __aiter__(self):
        return self._rows()

    async def _rows(self):
        for row in self.rows:
            await asyncio.sleep(0)
            yield row

    async def close(self) -> None:
        self.closed = True


class Pager:
    """A class-based async iterator: __aiter__ returns self, __anext__ is async."""

    def __init__(self, n: int) -> None:
        self.i, self.n = 0, n

    def __aiter__(self) -> Pager:
        return self

    async def __anext__(self) -> int:
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        return self.i


class FakeClient:
    """A fake async client."""

    kind = "fake"

    def __init__(self, name: str = "client", *, flag: bool = False) -> None:
        # Needs a running loop, as aiohttp.ClientSession() does.
        self.loop = asyncio.get_running_loop()
        self.made_in = where()
        self.name = name
        self.flag = flag
        self.sub = SubApi(self)
        self.log: list[Any] = []
        self._label = "label"

    @property
    def label(self) -> str:
        """A property."""
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        self._label = value

    async def get(self, key: str, *, default: Any = None) -> dict[str, Any]:
        """Get a thing."""
        await asyncio.sleep(0)
        self.log.append(("get", key, *where()))
        return {"key": key, "default": default}

    def describe(self, x: int) -> tuple[int, str, bool]:
        """A sync method: it runs on the loop thread, with the loop running."""
        running = True
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            running = False
        return x, threading.current_thread().name, running

    def later(self, key: str):
        """A sync method returning a coroutine: the twin awaits it."""
        return self.get(key)

    async def items(self, n: int):
        for i in range(n):
            yield i

    def stream(self, n: int):
        """A sync method returning an async generator: the twin bridges it."""
        return self.items(n)

    async def child(self) -> SubApi:
        return self.sub

    async def sibling(self, name: str) -> FakeClient:
        return FakeClient(name)

    async def cursor(self, rows: list[Any]) -> Cursor:
        return Cursor(rows)

    def pages(self, n: int) -> Pager:
        return Pager(n)

    async def rows(self) -> list[SubApi]:
        return [self.sub]

    @contextlib.asynccontextmanager
    async def session(self, tag: str):
        self.log.append(("open", tag, *where()))
        try:
            yield SubApi(self)
        finally:
            self.log.append(("close", tag, *where()))

    @classmethod
    async def create(cls, name: str) -> FakeClient:
        return cls(name)

    @classmethod
    def create_sync(cls, name: str) -> FakeClient:
        return cls(name)

    @staticmethod
    async def ping() -> str:
        return "pong"

    @staticmethod
    def helper(x: int) -> int:
        return x * 2

    async def __aenter__(self) -> FakeClient:
        self.log.append(("aenter", *where()))
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self.log.append(("aexit", exc_type, *where()))
        return exc_type is Boom and str(exc) == "swallow"


def test_class_twin_constructs_the_wrapped_class_on_the_loop_thread(target):
    Client = target.api.sync(FakeClient)
    client = Client("c1", flag=True)
    target_obj = client.__wrapped__
    assert type(target_obj) is FakeClient
    assert target_obj.loop is target.loop
    assert target_obj.made_in[0] == target.thread.name
    assert (client.name, client.flag) == ("c1", True)
    assert isinstance(client, Client)
    assert not isinstance(object(), Client)


def test_class_twin_keeps_names_and_says_what_it_is(target):
    Client = target.api.sync(FakeClient)
    assert Client.__name__ == "FakeClient"
    assert Client.__qualname__ == "FakeClient"
    assert Client.__module__ == __name__
    assert Client.__doc__ == "A fake async client."
    assert Client.__wrapped__ is FakeClient
    assert inspect.signature(Client) == inspect.signature(FakeClient)
    assert "twin" in repr(Client) and "FakeClient" in repr(Client)
    assert target.api.sync(FakeClient) is Client
    client = Client()
    assert "twin" in repr(client) and "FakeClient" in repr(client)
    assert client.__doc__ == "A fake async client."
    assert Client.get.__doc__ == "Get a thing."
    assert inspect.signature(client.get) == inspect.signature(client.__wrapped__.get)
    assert {"get", "describe", "name", "sub"} <= set(dir(client))
    assert {"get", "describe"} <= set(dir(Client))


def test_methods_are_twinned(target):
    client = target.api.sync(FakeClient)()
    assert client.get("k", default=1) == {"key": "k", "default": 1}
    assert client.log[-1][:3] == ("get", "k", target.thread.name)
    assert client.describe(3) == (3, target.thread.name, True)
    assert client.later("z")["key"] == "z"
    assert list(client.items(3)) == [0, 1, 2]
    assert inspect.isgeneratorfunction(client.items)
    assert list(client.stream(2)) == [0, 1]
    assert client.get == client.get


def test_class_and_static_methods_on_the_twin_class(target):
    Client = target.api.sync(FakeClient)
    made = Client.create("made")
    assert isinstance(made, Client)
    assert made.name == "made"
    assert made.__wrapped__.made_in[0] == target.thread.name
    assert isinstance(Client.create_sync("s"), Client)
    assert Client.ping() == "pong"
    assert Client.helper(4) == 8
    instance = Client()
    assert instance.ping() == "pong"
    assert isinstance(instance.create("from instance"), Client)
    assert Client.get(instance, "u")["key"] == "u"  # unbound, with a twin as self


def test_properties_and_plain_attributes_pass_through(target):
    Client = target.api.sync(FakeClient)
    client = Client("p")
    assert client.label == "label"
    client.label = "new"
    assert client.__wrapped__._label == "new"
    client.name = "renamed"
    assert client.__wrapped__.name == "renamed"
    client.extra = [1]
    assert client.__wrapped__.extra == [1]
    del client.extra
    assert not hasattr(client.__wrapped__, "extra")
    assert client.kind == "fake"
    assert Client.kind == "fake"
    assert isinstance(Client.label, property)


def test_with_is_async_with_in_one_task(target):
    client = target.api.sync(FakeClient)()
    with client as entered:
        assert entered is client
    log = client.__wrapped__.log
    assert [e[0] for e in log] == ["aenter", "aexit"]
    assert log[0][-2] == target.thread.name
    assert log[0][-1] is log[1][-1]  # the same task
    assert log[1][1] is None


def test_with_hands_the_body_exception_to_aexit(target):
    client = target.api.sync(FakeClient)()
    with client:
        raise Boom("swallow")
    exc = Boom("keep")
    with pytest.raises(Boom) as info, client:
        raise exc
    assert info.value is exc
    assert [e[1] for e in client.__wrapped__.log if e[0] == "aexit"] == [Boom, Boom]


def test_nested_with_on_one_twin(target):
    client = target.api.sync(FakeClient)()
    with client, client:
        pass
    assert [e[0] for e in client.__wrapped__.log] == ["aenter", "aenter", "aexit", "aexit"]


def test_exit_without_enter_says_so(target):
    client = target.api.sync(FakeClient)()
    with pytest.raises(RuntimeError, match="not in a `with` block"):
        client.__exit__(None, None, None)


def test_async_context_manager_results_are_bridged(target):
    client = target.api.sync(FakeClient)("owner")
    with client.session("s1") as sub:
        assert sub.resolve("r") == "owner:r"
        assert client.log[-1][:2] == ("open", "s1")
    assert client.log[-1][:2] == ("close", "s1")
    opened, closed = client.log[-2], client.log[-1]
    assert opened[-1] is closed[-1]  # asynccontextmanager's enter and exit in one task


def test_for_over_async_iterables(target):
    client = target.api.sync(FakeClient)()
    cursor = client.cursor(["a", "b"])
    assert list(cursor) == ["a", "b"]
    cursor.close()
    assert cursor.closed is True
    assert list(client.pages(3)) == [1, 2, 3]


def test_objects_with_async_methods_are_twinned_once(target):
    Client = target.api.sync(FakeClient)
    client = Client("deep")
    sub = client.sub
    assert sub.resolve("x") == "deep:x"
    assert sub.resolved_in == target.thread.name  # deep twins run on the same loop thread
    assert client.sub is sub  # attribute reads give the same twin
    assert client.child() is sub  # so do call results
    assert client.child() == sub
    assert hash(client.child()) == hash(sub)
    assert sub.owner is client  # back-references too
    sibling = client.sibling("sib")
    assert isinstance(sibling, Client)
    assert sibling.name == "sib"


def test_twins_live_as_long_as_they_are_used(target):
    sync = target.api.sync
    counter = Counter()
    twin = sync(counter)
    assert sync(counter) is twin
    ref = weakref.ref(twin)
    del twin
    gc.collect()
    assert ref() is None
    assert sync(counter).increment() == 1


def test_plain_results_are_returned_as_they_are(target):
    client = target.api.sync(FakeClient)()
    rows = client.rows()
    assert type(rows) is list
    assert type(rows[0]) is SubApi  # containers are not searched


def test_a_class_without_async_methods_passes_through(target):
    class Plain:
        def method(self) -> int:
            return 1

    assert target.api.sync(Plain) is Plain


def test_sync_wrappers_of_async_functions_count_as_async_methods(target):
    # As asyncpg's pool connections are made on 3.11: each method a sync function, wrapped
    # with functools.wraps around the connection's async one, returning its coroutine.
    async def fetch(self: Any, q: str) -> str:
        await asyncio.sleep(0)
        return q.upper()

    @functools.wraps(fetch)
    def forward(self: Any, q: str) -> Any:
        return fetch(self, q)

    class Proxy:
        pass

    Proxy.fetch = forward  # type: ignore[attr-defined]
    proxy = target.api.sync(Proxy())
    assert isinstance(proxy, target.api.sync(Proxy))
    assert proxy.fetch("q") == "Q"


def test_twin_class_inheritance_is_mirrored(target):
    sync = target.api.sync

    class Base:
        async def base(self) -> str:
            return "base"

    class Child(Base):
        async def child(self) -> str:
            return "child"

    TwinChild = sync(Child)
    TwinBase = sync(Base)
    assert issubclass(TwinChild, TwinBase)
    twin = TwinChild()
    assert isinstance(twin, TwinBase)
    assert (twin.base(), twin.child()) == ("base", "child")


def test_a_subclass_of_a_twin_class(target):
    class Client(target.api.sync(FakeClient)):  # type: ignore[misc]
        """The sync client."""

        def shout(self) -> Any:
            return self.get("x")["key"].upper()

    client = Client("sub")
    assert isinstance(client, Client)
    assert client.shout() == "X"
    assert client.__wrapped__.made_in[0] == target.thread.name
    assert Client.__doc__ == "The sync client."


def test_a_method_set_on_the_object_wins(target):
    client = target.api.sync(FakeClient)()

    async def replaced(key: str, **_: Any) -> str:
        return f"mock {key}"

    client.__wrapped__.get = replaced
    assert client.get("k") == "mock k"


def test_async_callable_objects_get_a_twin(target):
    class Handler:
        def __init__(self) -> None:
            self.seen: list[Any] = []

        async def __call__(self, x: int) -> int:
            self.seen.append(where()[0])
            return x + 1

    handler = Handler()
    twin = target.api.sync(handler)
    assert twin is not handler
    assert twin(1) == 2
    assert handler.seen == [target.thread.name]
    assert target.api.sync(Handler)()(5) == 6


def test_operators_are_forwarded(target):
    class Store:
        def __init__(self) -> None:
            self.data = {"a": SubApi.__new__(SubApi), "b": 2}

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, key: str) -> Any:
            return self.data[key]

        def __contains__(self, key: object) -> bool:
            return key in self.data

        def __str__(self) -> str:
            return "store"

        async def refresh(self) -> None:
            pass

    store = target.api.sync(Store)()
    assert len(store) == 2
    assert "a" in store and "z" not in store
    assert store["b"] == 2
    assert isinstance(store["a"], target.api.sync(SubApi))  # adopted
    assert str(store) == "store"
    assert bool(store)


def test_twins_look_sync(target):
    client = target.api.sync(FakeClient)()
    assert not inspect.isawaitable(client)
    assert not hasattr(client, "__aenter__")
    assert not hasattr(client, "__aiter__")
    assert hasattr(client, "__enter__")


def test_constructor_errors_propagate(target):
    class Broken:
        def __init__(self) -> None:
            raise Boom("init")

        async def method(self) -> None:
            pass

    with pytest.raises(Boom, match="init"):
        target.api.sync(Broken)()


# --- modules -------------------------------------------------------------------------------


def make_sdk() -> types.ModuleType:
    sdk = types.ModuleType("fake_sdk", "A fake async SDK.")
    sub = types.ModuleType("fake_sdk.tools")

    async def fetch(x: int) -> int:
        """Fetch x."""
        return x * 10

    async def numbers(n: int):
        for i in range(n):
            yield i

    def plain(x: int) -> tuple[int, str]:
        return x, threading.current_thread().name

    async def tool() -> str:
        return "tool"

    vars(sub).update(tool=tool)
    vars(sdk).update(
        fetch=fetch,
        numbers=numbers,
        plain=plain,
        Client=FakeClient,
        Plain=Boom,
        VERSION="1.2",
        tools=sub,
        default_client=Counter(),
    )
    return sdk


def test_module_twin(target):
    sync = target.api.sync
    module = make_sdk()
    sdk = sync(module)
    assert sync(module) is sdk
    assert sdk.__wrapped__ is module
    assert sdk.__name__ == "fake_sdk"
    assert sdk.__doc__ == "A fake async SDK."
    assert "twin" in repr(sdk) and "fake_sdk" in repr(sdk)
    assert {"fetch", "Client"} <= set(dir(sdk))
    assert sdk.fetch(2) == 20
    assert sdk.fetch.__name__ == "fetch"
    assert sdk.fetch is sdk.fetch
    assert list(sdk.numbers(3)) == [0, 1, 2]
    assert sdk.plain(1) == (1, target.thread.name)
    assert sdk.VERSION == "1.2"
    assert sdk.Plain is Boom
    assert sdk.Client is sync(FakeClient)
    assert isinstance(sdk.Client("m"), sdk.Client)
    assert sdk.tools.tool() == "tool"
    assert sdk.tools is sdk.tools
    assert sdk.default_client.increment() == 1


def test_module_twin_follows_the_module(target):
    module = make_sdk()
    sdk = target.api.sync(module)
    sdk.VERSION = "2"
    assert module.VERSION == "2"

    async def fetch(x: int) -> int:
        return -x

    setattr(module, "fetch", fetch)  # noqa: B010 - a module changed after it was twinned
    assert sdk.fetch(1) == -1
    with pytest.raises(AttributeError):
        sdk.missing  # noqa: B018


# --- pass-through and bad input ------------------------------------------------------------


def test_sync_things_pass_through_unchanged(target):
    sync = target.api.sync

    def plain(x: int) -> int:
        return x

    data = {"a": 1}
    assert sync(plain) is plain
    assert sync(print) is print
    assert sync(data) is data
    assert sync(5) == 5
    assert sync(None) is None
    twin = sync(add)
    assert sync(twin) is twin
    Client = sync(FakeClient)
    assert sync(Client) is Client


def test_a_lone_awaitable_is_refused(target):
    coro = add(1)
    try:
        with pytest.raises(TypeError, match=r"blockon\.run"):
            target.api.sync(coro)
    finally:
        coro.close()


def test_pickling_twins(target):
    assert pickle.loads(pickle.dumps(module_level_double)) is module_level_double
    assert copy.copy(module_level_double) is module_level_double
    twin = target.api.sync(Counter())
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(twin)
    with pytest.raises(TypeError, match="cannot be pickled or copied"):
        copy.copy(twin)


def test_send_past_the_end_of_an_iterated_twin(lt):
    class Source:
        def __aiter__(self):
            return self._gen()

        async def _gen(self):
            yield "only"

    it = iter(lt.sync(Source()))
    assert next(it) == "only"
    with pytest.raises(StopIteration):
        it.send("more")


# --- threads ---------------------------------------------------------------------------------


def test_many_threads_share_one_twin(target):
    client = target.api.sync(FakeClient)()
    counter = target.api.sync(Counter)()

    def work(i: int) -> None:
        for j in range(20):
            assert client.get(f"{i}-{j}")["key"] == f"{i}-{j}"
            counter.increment()

    run_in_threads(8, work)
    assert counter.value == 160


def test_one_twin_in_with_blocks_in_several_threads_at_once(target):
    class Gate:
        def __init__(self) -> None:
            self.open_tasks: dict[Any, int] = {}
            self.pairs = 0

        async def __aenter__(self) -> None:
            self.open_tasks[asyncio.current_task()] = 1

        async def __aexit__(self, *exc_info: Any) -> None:
            del self.open_tasks[asyncio.current_task()]  # exits the task that entered
            self.pairs += 1

    n = 4
    gate = target.api.sync(Gate())
    inside = threading.Barrier(n, timeout=HANG)

    def use(_: int) -> None:
        with gate:
            inside.wait()  # all threads are inside at once

    run_in_threads(n, use)
    assert gate.pairs == n
    assert gate.open_tasks == {}
    assert gate._blockon_exits == {}  # no stack left behind per thread


# --- typing ------------------------------------------------------------------------------

EXAMPLE = ROOT / "tests" / "typing_sync_example.py"


@pytest.mark.timeout(240)
def test_typing_example_passes_mypy():
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", str(EXAMPLE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(120)
def test_typing_example_runs():
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"
    assert proc.stderr == ""
