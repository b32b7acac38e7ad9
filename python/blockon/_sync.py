"""The rules of ``sync()``: what becomes a twin, and what a twin's call results and
attribute reads become.

- an async function becomes a function, an async generator function a generator function
  whose ``send``/``throw``/``close`` map to ``asend``/``athrow``/``aclose`` in lockstep;
- a class, instance or module becomes a twin whose attributes are twinned by the same rules
  and whose call results are: awaited if awaitable; bridged if an async generator; twinned
  if an object with async methods (an async context manager or async iterable counts as
  one); returned as they are otherwise. A result that is awaitable and also an async
  context manager or async iterable mirrors what the caller does with it (``_callsite``
  reads that): entered by ``with``, it is twinned unawaited, so ``with`` is ``async with``
  on it; iterated, likewise, so iteration is ``async for``; anything else awaits it at the
  call;
- sync callables and plain data pass through unchanged.

A twin is bound to the loop thread it was made from and does all its work there through
that thread's own ``run`` and native bridges, never through the module-level functions. The
twin classes themselves are in ``_twins``.
"""

from __future__ import annotations

import functools
import inspect
import threading
import types
import weakref

from . import _blockon
from ._arguments import close_coroutines, name_of, type_name
from ._twin_classes import make_class
from ._twins import (
    PLAIN,
    CallTwin,
    CoroTwin,
    GenTwin,
    ModuleTwin,
    TwinBase,
    TwinFunction,
    TwinMeta,
    drive,
)

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


#: Callables that a twin's attribute read wraps, so that their results follow the rules.
_ROUTINES = (
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.ClassMethodDescriptorType,
    functools.partial,
)


_lock = threading.RLock()
_async_types: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _is_async_fn(obj: Any) -> bool:
    return inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(obj)


def _wraps_an_async_fn(fn: Any) -> bool:
    """Whether ``fn`` is a sync wrapper (``functools.wraps``) of an async function: it
    returns what the async function returns, as asyncpg's pool connection methods do on
    CPython 3.11, where nothing marks them as coroutine functions."""
    if not isinstance(fn, types.FunctionType) or not hasattr(fn, "__wrapped__"):
        return False
    try:
        return _is_async_fn(inspect.unwrap(fn))
    except ValueError:  # a cycle of __wrapped__
        return False


def _is_async_type(cls: type) -> bool:
    """Whether instances of ``cls`` are "objects with async methods": the class (or a base)
    defines an ``async def`` (a coroutine or async generator function, ``__call__``
    included, also as a classmethod or staticmethod, or wrapped by a sync function), or is an
    async context manager (``__aenter__``) or async iterable (``__aiter__``). Cached per
    class."""
    try:
        return _async_types[cls]
    except KeyError:
        pass
    except TypeError:  # a class that cannot be weakly referenced: do not cache
        return _scan(cls)
    found = _scan(cls)
    with _lock:
        _async_types[cls] = found
    return found


def _scan(cls: type) -> bool:
    if isinstance(cls, TwinMeta):
        return False
    for klass in getattr(cls, "__mro__", (cls,)):
        if klass is object:
            continue
        names = vars(klass)
        if "__aenter__" in names or "__aiter__" in names:
            return True
        for raw in list(names.values()):
            if isinstance(raw, (classmethod, staticmethod)):
                raw = raw.__func__
            if _is_async_fn(raw) or _wraps_an_async_fn(raw):
                return True
    return False


# ------------------------------------------------------------------------------ registry


class Registry:
    """Per loop thread: its twin classes (one per wrapped class) and its live twins (one
    per wrapped object, held weakly, so a twin lives as long as someone uses it)."""

    def __init__(self, loop_thread: _blockon.LoopThreadBase) -> None:
        self.loop_thread = loop_thread
        self.lock = threading.RLock()
        # A twin class holds its wrapped class, so an entry here lives as long as this
        # registry (as long as the loop thread object): classes are long-lived anyway.
        self.classes: weakref.WeakKeyDictionary[type, type[TwinBase]] = weakref.WeakKeyDictionary()
        self.twins: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

    # --- what call results and attribute reads become

    def adopt(self, value: Any) -> Any:
        """A call result (awaited, or left for ``with`` or ``for``), an iterator item, or what
        ``__aenter__`` gave."""
        kind = type(value)
        if kind in PLAIN:
            return value
        if kind is types.AsyncGeneratorType:
            return drive(_blockon.IterBridge(self.loop_thread, value, 0), value, self.adopt)
        if _is_async_type(kind):
            return self.twin_of(value)
        return value

    def adopt_attr(self, value: Any) -> Any:
        """An attribute of a twinned class, instance or module: twinned by sync()'s rules,
        except that sync routines are wrapped (their results follow the rules) and nothing
        is awaited or iterated."""
        kind = type(value)
        if kind in PLAIN:
            return value
        if isinstance(value, (TwinBase, ModuleTwin, TwinFunction, TwinMeta)):
            return value
        if isinstance(value, type):
            return self.twin_class(value) if _is_async_type(value) else value
        if isinstance(value, types.ModuleType):
            return self.module_twin(value)
        if inspect.isasyncgenfunction(value):
            return GenTwin(value, self.loop_thread, self.adopt)
        if inspect.iscoroutinefunction(value):
            return CoroTwin(value, self.loop_thread, self.adopt)
        if _is_async_type(kind):
            return self.twin_of(value)
        if isinstance(value, _ROUTINES):
            return CallTwin(value, self.loop_thread, self.adopt)
        return value

    def routine(self, fn: Any) -> TwinFunction:
        """The twin of a function defined in a twinned class (or a module's function)."""
        if inspect.isasyncgenfunction(fn):
            return GenTwin(fn, self.loop_thread, self.adopt)
        if inspect.iscoroutinefunction(fn):
            return CoroTwin(fn, self.loop_thread, self.adopt)
        return CallTwin(fn, self.loop_thread, self.adopt)

    # --- twins of objects

    def twin_of(self, target: Any, cls: type | None = None) -> Any:
        """The one live twin of ``target``, made if there is none (an instance of ``cls``,
        by default the twin class of ``type(target)``)."""
        key = id(target)
        with self.lock:
            twin = self.twins.get(key)
            if (
                twin is not None
                and twin._blockon_target is target
                and (cls is None or isinstance(twin, cls))
            ):
                return twin
            twin_cls = cls if cls is not None else self.twin_class(type(target))
            twin = object.__new__(twin_cls)
            object.__setattr__(twin, "_blockon_target", target)
            object.__setattr__(twin, "_blockon_exits", None)
            if key not in self.twins:
                self.twins[key] = twin
            return twin

    def module_twin(self, module: types.ModuleType) -> ModuleTwin:
        key = id(module)
        with self.lock:
            twin = self.twins.get(key)
            if isinstance(twin, ModuleTwin) and twin._blockon_target is module:
                return twin
            twin = ModuleTwin(module, self)
            self.twins[key] = twin
            return twin

    def twin_class(self, cls: type) -> type[TwinBase]:
        with self.lock:
            twin_cls = self.classes.get(cls)
            if twin_cls is None:
                bases = tuple(
                    self.twin_class(base)
                    for base in cls.__bases__
                    if base is not object and _is_async_type(base)
                )
                twin_cls = make_class(self, cls, bases)
                self.classes[cls] = twin_cls
            return twin_cls


_registries_lock = threading.Lock()


def registry_of(loop_thread: _blockon.LoopThreadBase) -> Registry:
    """The twins' registry of ``loop_thread``, made on first use."""
    registry: Registry | None = getattr(loop_thread, "_blockon_sync_registry", None)
    if registry is None:
        with _registries_lock:
            registry = getattr(loop_thread, "_blockon_sync_registry", None)
            if registry is None:
                registry = Registry(loop_thread)
                # Kept on the loop thread object itself, so that the twins (which hold
                # their loop thread) and their loop thread are collected together.
                loop_thread._blockon_sync_registry = registry  # type: ignore[attr-defined]
    return registry


def sync(loop_thread: _blockon.LoopThreadBase, obj: Any, /) -> Any:
    """The twin of ``obj`` on ``loop_thread``: the rules of ``LoopThread.sync``."""
    if isinstance(obj, (TwinBase, ModuleTwin, TwinFunction, TwinMeta)):
        return obj
    registry = registry_of(loop_thread)
    if isinstance(obj, type):
        return registry.twin_class(obj) if _is_async_type(obj) else obj
    if isinstance(obj, types.ModuleType):
        return registry.module_twin(obj)
    if isinstance(obj, (classmethod, staticmethod)):
        return type(obj)(sync(loop_thread, obj.__func__))
    if inspect.isasyncgenfunction(obj):
        return GenTwin(obj, loop_thread, None)
    if inspect.iscoroutinefunction(obj):
        return CoroTwin(obj, loop_thread, None)
    if type(obj) is types.AsyncGeneratorType:
        return drive(_blockon.IterBridge(loop_thread, obj, 0), obj, None)
    if _is_async_type(type(obj)):
        return registry.twin_of(obj)
    if inspect.isawaitable(obj):
        if inspect.iscoroutine(obj):
            close_coroutines((obj,))
            what = f"the coroutine {name_of(obj)}(...), an async function already called"
            fix = "pass the function itself, blockon.sync(f), or run the coroutine once with"
        else:
            what = f"a lone awaitable of type {type_name(obj)}"
            fix = "run it with"
        raise TypeError(
            "blockon.sync() makes sync twins of async functions, generators, classes, "
            f"instances and modules, but got {what}: {fix} blockon.run(aw)"
        )
    return obj
