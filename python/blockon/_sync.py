"""``sync()``: sync twins of async functions, generators, classes, instances and modules.

A twin is bound to the loop thread (``LoopThread``) it was made from and does all its work
there through that thread's own ``run`` and native bridges, never through the module-level
functions. The rules (SPEC section 3, issue 5, docs/ship-a-sync-api.md):

- an async function becomes a function, an async generator function a generator function
  whose ``send``/``throw``/``close`` map to ``asend``/``athrow``/``aclose`` in lockstep;
- a class, instance or module becomes a twin whose attributes are twinned by the same rules
  and whose call results are: awaited if awaitable (an awaitable that is also an async
  context manager is awaited at once; when the await returned the object itself, ``with``
  on its twin does not enter it again and only exits it); bridged if an async generator;
  twinned if an object with async methods (an async context manager or async iterable
  counts as one); returned as they are otherwise;
- sync callables and plain data pass through unchanged.

Where the work runs: every call a twin makes into the wrapped library (async methods, sync
methods, constructors, module functions) runs on the loop thread; attribute reads, property
gets and sets, and the operators Python calls implicitly (``len``, ``==``, ``hash``,
``str``, ``[]``) run in the caller's thread.
"""

from __future__ import annotations

import functools
import inspect
import threading
import types
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator

from . import _blockon

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ParamSpec, TypeVar, overload

    P = ParamSpec("P")
    T = TypeVar("T")
    S = TypeVar("S")

__all__ = ["sync", "sync_default"]

#: Types whose values are plain data: returned as they are without looking further.
_PLAIN: frozenset[type] = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        bytearray,
        memoryview,
        list,
        tuple,
        dict,
        set,
        frozenset,
        range,
        type(NotImplemented),
        type(Ellipsis),
    }
)

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

#: Async protocol methods a twin never forwards: a twin is sync, and must not look async.
_ASYNC_DUNDERS = frozenset({"__aenter__", "__aexit__", "__aiter__", "__anext__", "__await__"})

_lock = threading.RLock()
_async_types: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _is_async_fn(obj: Any) -> bool:
    return inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(obj)


def _is_async_type(cls: type) -> bool:
    """Whether instances of ``cls`` are "objects with async methods": the class (or a base)
    defines an ``async def`` (a coroutine or async generator function, ``__call__``
    included, also as a classmethod or staticmethod), or is an async context manager
    (``__aenter__``) or async iterable (``__aiter__``). Cached per class."""
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
    if isinstance(cls, _TwinMeta):
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
            if _is_async_fn(raw):
                return True
    return False


def _unwrap(value: Any) -> Any:
    return value._blockon_target if isinstance(value, _TWINS) else value


def _unwrap_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    for arg in args:
        if isinstance(arg, _TWINS):
            return tuple([_unwrap(a) for a in args])
    return args


def _unwrap_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    for value in kwargs.values():
        if isinstance(value, _TWINS):
            return {k: _unwrap(v) for k, v in kwargs.items()}
    return kwargs


async def _call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, bool]:
    """Run on the loop: call ``fn``; await its result if awaitable. Returns the value and
    whether the await returned the very object it awaited (as ``aiosqlite.connect()`` and
    ``asyncpg.create_pool()`` do)."""
    __tracebackhide__ = True
    result = fn(*args, **kwargs)
    if type(result) in _PLAIN or not inspect.isawaitable(result):
        return result, False
    value = await result
    return value, value is result


def _ended(agen: Any) -> bool:
    """Whether an async generator has finished (its frame is gone)."""
    return agen is not None and getattr(agen, "ag_frame", True) is None


def _drive(bridge: Any, agen: Any, adopt: Callable[[Any], Any] | None) -> Generator[Any, Any, None]:
    """A generator over a lockstep ``IterBridge``: ``next``/``send``/``throw``/``close`` go
    to the async iterator's ``__anext__``/``asend``/``athrow``/``aclose``, one step each, in
    the bridge's one task; items pass through ``adopt``."""
    __tracebackhide__ = True
    try:
        item = next(bridge)
    except StopIteration:
        return
    while True:
        try:
            sent = yield item if adopt is None else adopt(item)
        except GeneratorExit:
            bridge.close()
            raise
        except BaseException as exc:
            try:
                item = bridge.throw(exc)
            except StopIteration:
                return
            # The bridge may report the end of the generator as a None result; an async
            # generator whose frame is gone has ended, so a None is not an item then.
            if item is None and _ended(agen):
                return
            continue
        try:
            if sent is None:
                item = next(bridge)
            else:
                item = bridge.send(sent)
                if item is None and _ended(agen):
                    return
        except StopIteration:
            return


# ------------------------------------------------------------------------------ functions


class _TwinFunction:
    """A sync twin of a callable: keeps the wrapped callable's ``__name__``,
    ``__qualname__``, ``__module__``, ``__doc__``, ``__wrapped__`` (so
    ``inspect.signature`` is the wrapped one) and binds as a method like a function does."""

    __defaults__ = None
    __kwdefaults__ = None

    #: Each kind of twin defines how a call runs.
    __call__: Callable[..., Any]

    def __init__(
        self, fn: Any, portal: _blockon.LoopThreadBase, adopt: Callable[..., Any] | None
    ) -> None:
        self._fn = fn
        self._portal = portal
        self._run = portal.run
        self._adopt = adopt
        functools.update_wrapper(self, fn)
        # A twin is sync: never let a copied marker make it look like a coroutine function.
        for marker in ("_is_coroutine_marker", "_is_coroutine"):
            self.__dict__.pop(marker, None)

    @property
    def __code__(self) -> types.CodeType:
        # The code that runs when the twin is called (for a generator twin, the generator's):
        # lets inspect.isgeneratorfunction() tell a generator twin is a generator function,
        # and inspect.iscoroutinefunction() that no twin is a coroutine function.
        return type(self)._code

    _code: types.CodeType

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __repr__(self) -> str:
        return f"<blockon.sync twin of {self._fn!r}>"

    def __reduce__(self) -> str:
        # Pickled (and copied) by reference, as functions are: a decorated module-level
        # function pickles by its name; other twins cannot be pickled.
        return str(getattr(self, "__qualname__", repr(self)))


class _CoroTwin(_TwinFunction):
    """Twin of a coroutine function: ``run(fn(...))`` on the twin's loop thread."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if args:
            args = _unwrap_args(args)
        if kwargs:
            kwargs = _unwrap_kwargs(kwargs)
        if self._adopt is None:
            return self._run(self._fn(*args, **kwargs))
        return self._adopt(self._run(self._fn(*args, **kwargs)))


_CoroTwin._code = _CoroTwin.__call__.__code__


class _GenTwin(_TwinFunction):
    """Twin of an async generator function: a generator function, lockstep. The async
    generator object is made at call time (so wrong arguments fail there, as they do for the
    async generator function); nothing runs before the first ``next()``."""

    _code = _drive.__code__

    def __call__(self, *args: Any, **kwargs: Any) -> Generator[Any, Any, None]:
        __tracebackhide__ = True
        if args:
            args = _unwrap_args(args)
        if kwargs:
            kwargs = _unwrap_kwargs(kwargs)
        agen = self._fn(*args, **kwargs)
        return _drive(_blockon.IterBridge(self._portal, agen, 0), agen, self._adopt)


class _CallTwin(_TwinFunction):
    """Twin of a sync callable reached through a class, instance or module twin: called
    on the loop thread, its result awaited there if awaitable, then adopted."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if args:
            args = _unwrap_args(args)
        if kwargs:
            kwargs = _unwrap_kwargs(kwargs)
        value, itself = self._run(_call(self._fn, args, kwargs))
        assert self._adopt is not None
        return self._adopt(value, itself)


_CallTwin._code = _CallTwin.__call__.__code__


# ------------------------------------------------------------------------------ registry


class _Registry:
    """Per loop thread: its twin classes (one per wrapped class) and its live twins (one
    per wrapped object, held weakly, so a twin lives as long as someone uses it)."""

    def __init__(self, portal: _blockon.LoopThreadBase) -> None:
        self.portal = portal
        self.lock = threading.RLock()
        # A twin class holds its wrapped class, so an entry here lives as long as this
        # registry (as long as the loop thread object): classes are long-lived anyway.
        self.classes: weakref.WeakKeyDictionary[type, type[_TwinBase]] = weakref.WeakKeyDictionary()
        self.twins: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

    # --- what call results and attribute reads become

    def adopt(self, value: Any, itself: bool = False) -> Any:
        """A call result (already awaited), an iterator item, or what ``__aenter__`` gave."""
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is types.AsyncGeneratorType:
            return _drive(_blockon.IterBridge(self.portal, value, 0), value, self.adopt)
        if _is_async_type(kind):
            return self.twin_of(value, itself)
        return value

    def adopt_attr(self, value: Any) -> Any:
        """An attribute of a twinned class, instance or module: twinned by sync()'s rules,
        except that sync routines are wrapped (their results follow the rules) and nothing
        is awaited or iterated."""
        kind = type(value)
        if kind in _PLAIN:
            return value
        if isinstance(value, (_TwinBase, _ModuleTwin, _TwinFunction, _TwinMeta)):
            return value
        if isinstance(value, type):
            return self.twin_class(value) if _is_async_type(value) else value
        if isinstance(value, types.ModuleType):
            return self.module_twin(value)
        if inspect.isasyncgenfunction(value):
            return _GenTwin(value, self.portal, self.adopt)
        if inspect.iscoroutinefunction(value):
            return _CoroTwin(value, self.portal, self.adopt)
        if _is_async_type(kind):
            return self.twin_of(value)
        if isinstance(value, _ROUTINES):
            return _CallTwin(value, self.portal, self.adopt)
        return value

    def routine(self, fn: Any) -> _TwinFunction:
        """The twin of a function defined in a twinned class (or a module's function)."""
        if inspect.isasyncgenfunction(fn):
            return _GenTwin(fn, self.portal, self.adopt)
        if inspect.iscoroutinefunction(fn):
            return _CoroTwin(fn, self.portal, self.adopt)
        return _CallTwin(fn, self.portal, self.adopt)

    # --- twins of objects

    def twin_of(self, target: Any, itself: bool = False, cls: type | None = None) -> Any:
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
                if itself:
                    object.__setattr__(twin, "_blockon_entered", True)
                return twin
            twin_cls = cls if cls is not None else self.twin_class(type(target))
            twin = object.__new__(twin_cls)
            object.__setattr__(twin, "_blockon_target", target)
            object.__setattr__(
                twin, "_blockon_entered", itself and hasattr(type(target), "__aexit__")
            )
            object.__setattr__(twin, "_blockon_exits", None)
            if key not in self.twins:
                self.twins[key] = twin
            return twin

    def module_twin(self, module: types.ModuleType) -> _ModuleTwin:
        key = id(module)
        with self.lock:
            twin = self.twins.get(key)
            if isinstance(twin, _ModuleTwin) and twin._blockon_target is module:
                return twin
            twin = _ModuleTwin(module, self)
            self.twins[key] = twin
            return twin

    def twin_class(self, cls: type) -> type[_TwinBase]:
        with self.lock:
            twin_cls = self.classes.get(cls)
            if twin_cls is None:
                twin_cls = self._make_class(cls)
                self.classes[cls] = twin_cls
            return twin_cls

    def _make_class(self, cls: type) -> type[_TwinBase]:
        namespace: dict[str, Any] = {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": getattr(cls, "__qualname__", cls.__name__),
            "__doc__": cls.__doc__,
            "_blockon_wrapped": cls,
            "_blockon_registry": self,
        }
        dunders: dict[str, Any] = {}
        for klass in cls.__mro__:
            if klass is object:
                continue
            for name, raw in list(vars(klass).items()):
                if name.startswith("__") and name.endswith("__"):
                    dunders.setdefault(name, raw)
                elif name not in namespace and not name.startswith("_blockon_"):
                    namespace[name] = self._member(name, raw)
        self._add_dunders(namespace, dunders)
        bases = tuple(
            self.twin_class(base)
            for base in cls.__bases__
            if base is not object and _is_async_type(base)
        )
        try:
            twin_cls = _TwinMeta(cls.__name__, bases or (_TwinBase,), namespace)
        except TypeError:  # bases whose twins cannot be combined: flat twin, no mirroring
            twin_cls = _TwinMeta(cls.__name__, (_TwinBase,), namespace)
        made: type[_TwinBase] = twin_cls  # type: ignore[assignment]  # a _TwinBase subclass
        return made

    def _member(self, name: str, raw: Any) -> Any:
        if isinstance(raw, staticmethod) and callable(raw.__func__):
            return staticmethod(self.routine(raw.__func__))
        if isinstance(raw, types.FunctionType):
            return _Method(name, raw, self.routine(raw))
        return _Forward(name)

    def _add_dunders(self, namespace: dict[str, Any], dunders: dict[str, Any]) -> None:
        if "__aenter__" in dunders and "__aexit__" in dunders:
            namespace["__enter__"] = _twin_enter
            namespace["__exit__"] = _twin_exit
        elif "__enter__" in dunders and "__exit__" in dunders:
            namespace["__enter__"] = _forwarder("__enter__", adopt=True)
            namespace["__exit__"] = _forwarder("__exit__", adopt=False)
        if "__aiter__" in dunders:
            namespace["__iter__"] = _twin_iter
        elif "__iter__" in dunders:
            namespace["__iter__"] = _twin_sync_iter
        call = dunders.get("__call__")
        if isinstance(call, types.FunctionType):
            namespace["__call__"] = self.routine(call)
        elif call is not None:
            namespace["__call__"] = _twin_call
        for name, adopt in _DATA_DUNDERS.items():
            if name in dunders and dunders[name] is not None:
                namespace[name] = _forwarder(name, adopt)


# ------------------------------------------------------------------------------ descriptors


class _Method:
    """A method of a twinned class. On an instance it is the twin of what the wrapped
    object's attribute is now (normally the class's function, whose twin is made once; an
    attribute set on the object itself, such as a mock, wins as it does on the object)."""

    __slots__ = ("name", "raw", "twin")

    def __init__(self, name: str, raw: Any, twin: _TwinFunction) -> None:
        self.name = name
        self.raw = raw
        self.twin = twin

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self.twin
        value = getattr(instance._blockon_target, self.name)
        if getattr(value, "__func__", None) is self.raw:
            return types.MethodType(self.twin, instance)
        return type(instance)._blockon_registry.adopt_attr(value)


class _Forward:
    """Any other attribute of a twinned class (property, class attribute, classmethod,
    descriptor): read from the wrapped object (or class) each time, then adopted."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return owner._blockon_registry.adopt_attr(getattr(owner._blockon_wrapped, self.name))
        registry = type(instance)._blockon_registry
        return registry.adopt_attr(getattr(instance._blockon_target, self.name))


class _Wrapped:
    """``__wrapped__``: the wrapped class on a twin class, the wrapped object on a twin."""

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return owner._blockon_wrapped
        return instance._blockon_target


# ------------------------------------------------------------------------------ twin classes


class _TwinMeta(type):
    """The metaclass of twin classes: a repr that says so, and class attributes read
    through to the wrapped class."""

    _blockon_wrapped: type
    _blockon_registry: _Registry

    def __repr__(cls) -> str:
        wrapped = cls.__dict__.get("_blockon_wrapped")
        if wrapped is None:
            return super().__repr__()
        return f"<blockon.sync twin class of {wrapped!r}>"

    @property
    def __signature__(cls) -> inspect.Signature | None:
        # The wrapped class's: from 3.13, inspect.signature() of a class whose metaclass
        # defines __call__ or __getattr__ would otherwise report (*args, **kwargs). On the
        # metaclass, so twin instances do not inherit it.
        wrapped = cls.__dict__.get("_blockon_wrapped")
        if wrapped is None:
            return None
        try:
            return inspect.signature(wrapped)
        except (TypeError, ValueError):
            return None

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_blockon_") or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        return cls._blockon_registry.adopt_attr(getattr(cls._blockon_wrapped, name))

    def __dir__(cls) -> list[str]:
        names = set(super().__dir__())
        wrapped = cls.__dict__.get("_blockon_wrapped")
        if wrapped is not None:
            names.update(dir(wrapped))
        return sorted(names)


class _TwinBase(metaclass=_TwinMeta):
    """Base of every twin class. A twin holds its wrapped object (``__wrapped__``)."""

    __slots__ = ("__weakref__", "_blockon_entered", "_blockon_exits", "_blockon_target")

    _blockon_target: Any
    _blockon_entered: bool
    _blockon_exits: dict[int, list[Any]] | None

    __wrapped__ = _Wrapped()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        registry = cls._blockon_registry
        wrapped = cls._blockon_wrapped
        value, itself = registry.portal.run(
            _call(wrapped, _unwrap_args(args), _unwrap_kwargs(kwargs))
        )
        if type(value) is wrapped:
            return registry.twin_of(value, itself, cls)
        return registry.adopt(value, itself)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # the wrapped object was constructed by __new__

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_blockon_") or name in _ASYNC_DUNDERS:
            raise AttributeError(name)
        return type(self)._blockon_registry.adopt_attr(getattr(self._blockon_target, name))

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_blockon_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._blockon_target, name, _unwrap(value))

    def __delattr__(self, name: str) -> None:
        delattr(self._blockon_target, name)

    def __eq__(self, other: object) -> bool:
        return bool(self._blockon_target == _unwrap(other))

    def __hash__(self) -> int:
        return hash(self._blockon_target)

    def __repr__(self) -> str:
        return f"<blockon.sync twin of {self._blockon_target!r}>"

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | set(dir(self._blockon_target)))

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            f"a blockon.sync twin cannot be pickled or copied; use its __wrapped__ ({self!r})"
        )


def _exits(twin: _TwinBase) -> dict[int, list[Any]]:
    """The twin's stacks of entered contexts, one per thread (a twin may be in several
    ``with`` blocks at once, in several threads; each thread exits what it entered)."""
    exits = twin._blockon_exits
    if exits is None:
        with type(twin)._blockon_registry.lock:
            exits = twin._blockon_exits
            if exits is None:
                exits = {}
                object.__setattr__(twin, "_blockon_exits", exits)
    return exits


_ALREADY_ENTERED = object()


def _twin_enter(self: _TwinBase) -> Any:
    __tracebackhide__ = True
    registry = type(self)._blockon_registry
    if self._blockon_entered:
        # The await that made this object returned the object itself, and that await is
        # what its __aenter__ does: do not do it again; exit through __aexit__.
        object.__setattr__(self, "_blockon_entered", False)
        _exits(self).setdefault(threading.get_ident(), []).append(_ALREADY_ENTERED)
        return self
    bridge: _blockon.ContextBridge[Any] = _blockon.ContextBridge(
        registry.portal, self._blockon_target
    )
    value = bridge.__enter__()
    _exits(self).setdefault(threading.get_ident(), []).append(bridge)
    return registry.adopt(value)


def _twin_exit(self: _TwinBase, exc_type: Any, exc: Any, tb: Any) -> bool:
    __tracebackhide__ = True
    exits, thread = _exits(self), threading.get_ident()
    stack = exits.get(thread)
    if not stack:
        raise RuntimeError(
            f"{self!r} is not in a `with` block in this thread: exit a twin in the thread "
            "that entered it (blockon.wrap_context() gives a manager any thread may exit)"
        )
    bridge: Any = stack.pop()
    if not stack:
        del exits[thread]  # threads come and go: keep no empty stacks
    if bridge is _ALREADY_ENTERED:
        registry = type(self)._blockon_registry
        return bool(registry.portal.run(self._blockon_target.__aexit__(exc_type, exc, tb)))
    return bool(bridge.__exit__(exc_type, exc, tb))


def _twin_iter(self: _TwinBase) -> Generator[Any, Any, None]:
    registry = type(self)._blockon_registry
    bridge = _blockon.IterBridge(registry.portal, self._blockon_target, 0)
    return _drive(bridge, None, registry.adopt)


def _twin_sync_iter(self: _TwinBase) -> Generator[Any, Any, None]:
    adopt = type(self)._blockon_registry.adopt
    return (adopt(item) for item in iter(self._blockon_target))


def _twin_call(self: _TwinBase, *args: Any, **kwargs: Any) -> Any:
    __tracebackhide__ = True
    registry = type(self)._blockon_registry
    return registry.adopt_attr(self._blockon_target.__call__)(*args, **kwargs)


#: Operators a twin forwards to its object in the caller's thread; True: adopt the result.
_DATA_DUNDERS = {
    "__len__": False,
    "__length_hint__": False,
    "__bool__": False,
    "__contains__": False,
    "__getitem__": True,
    "__setitem__": False,
    "__delitem__": False,
    "__str__": False,
    "__bytes__": False,
    "__format__": False,
    "__int__": False,
    "__float__": False,
    "__complex__": False,
    "__index__": False,
    "__lt__": False,
    "__le__": False,
    "__gt__": False,
    "__ge__": False,
    "__fspath__": False,
    "__reversed__": True,
}


def _forwarder(name: str, adopt: bool) -> Callable[..., Any]:
    def forward(self: _TwinBase, *args: Any) -> Any:
        result = getattr(self._blockon_target, name)(*_unwrap_args(args))
        return type(self)._blockon_registry.adopt(result) if adopt else result

    forward.__name__ = forward.__qualname__ = name
    return forward


# ------------------------------------------------------------------------------ modules


class _ModuleTwin:
    """Twin of a module: attributes twinned lazily, on first read (and again if the module
    attribute was replaced since)."""

    __slots__ = ("__weakref__", "_blockon_cache", "_blockon_registry", "_blockon_target")

    _blockon_target: types.ModuleType
    _blockon_registry: _Registry
    _blockon_cache: dict[str, tuple[Any, Any]]

    __wrapped__ = property(lambda self: self._blockon_target)
    __doc__ = property(lambda self: self._blockon_target.__doc__)

    def __init__(self, module: types.ModuleType, registry: _Registry) -> None:
        object.__setattr__(self, "_blockon_target", module)
        object.__setattr__(self, "_blockon_registry", registry)
        object.__setattr__(self, "_blockon_cache", {})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_blockon_"):
            raise AttributeError(name)
        raw = getattr(self._blockon_target, name)
        cached = self._blockon_cache.get(name)
        if cached is not None and cached[0] is raw:
            return cached[1]
        twin = self._blockon_registry.adopt_attr(raw)
        if twin is not raw:
            self._blockon_cache[name] = (raw, twin)
        return twin

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._blockon_target, name, _unwrap(value))

    def __delattr__(self, name: str) -> None:
        delattr(self._blockon_target, name)

    def __dir__(self) -> list[str]:
        return dir(self._blockon_target)

    def __repr__(self) -> str:
        return f"<blockon.sync twin of {self._blockon_target!r}>"

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            f"a blockon.sync twin cannot be pickled or copied; use its __wrapped__ ({self!r})"
        )


_TWINS = (_TwinBase, _ModuleTwin)


# ------------------------------------------------------------------------------ sync()

_registries_lock = threading.Lock()


def _registry(portal: _blockon.LoopThreadBase) -> _Registry:
    registry: _Registry | None = getattr(portal, "_blockon_sync_registry", None)
    if registry is None:
        with _registries_lock:
            registry = getattr(portal, "_blockon_sync_registry", None)
            if registry is None:
                registry = _Registry(portal)
                # Kept on the loop thread object itself, so that the twins (which hold
                # their loop thread) and their loop thread are collected together.
                portal._blockon_sync_registry = registry  # type: ignore[attr-defined]
    return registry


if TYPE_CHECKING:

    @overload
    def sync(portal: _blockon.LoopThreadBase, obj: type[Any], /) -> type[Any]: ...
    @overload
    def sync(portal: _blockon.LoopThreadBase, obj: types.ModuleType, /) -> Any: ...
    @overload
    def sync(
        portal: _blockon.LoopThreadBase, obj: Callable[P, AsyncGenerator[T, S]], /
    ) -> Callable[P, Generator[T, S, None]]: ...
    @overload
    def sync(
        portal: _blockon.LoopThreadBase, obj: Callable[P, AsyncIterator[T]], /
    ) -> Callable[P, Generator[T, Any, None]]: ...
    @overload
    def sync(
        portal: _blockon.LoopThreadBase, obj: Callable[P, Awaitable[T]], /
    ) -> Callable[P, T]: ...
    @overload
    def sync(portal: _blockon.LoopThreadBase, obj: Callable[P, T], /) -> Callable[P, T]: ...
    @overload
    def sync(portal: _blockon.LoopThreadBase, obj: Any, /) -> Any: ...


def sync(portal: _blockon.LoopThreadBase, obj: Any, /) -> Any:
    """The sync twin of ``obj``, bound to the loop thread ``portal`` (as ``LoopThread.sync``:
    to that ``LoopThread``); usable as a decorator. Twins always run on that loop thread.

    - async function -> function (bound and unbound methods, classmethods, staticmethods,
      ``functools.partial`` objects and ``classmethod``/``staticmethod`` objects alike); its
      result is the awaited value, as it is;
    - async generator function -> generator function (``send``/``throw``/``close`` map to
      ``asend``/``athrow``/``aclose``, lockstep, in one task on the loop);
    - class with async methods (or an async context manager or iterable class) -> twin
      class; instance of one -> its twin; module -> module twin: attributes twinned by the
      same rules, call results awaited, bridged or twinned (see the module docstring);
    - an async generator object -> a generator over it, lockstep;
    - sync callables, twins, and plain data -> returned unchanged.

    Raised when ``obj`` is a lone awaitable (a coroutine, task or future): ``TypeError``;
    run it with ``run()`` instead.
    """
    if isinstance(obj, (_TwinBase, _ModuleTwin, _TwinFunction, _TwinMeta)):
        return obj
    registry = _registry(portal)
    if isinstance(obj, type):
        return registry.twin_class(obj) if _is_async_type(obj) else obj
    if isinstance(obj, types.ModuleType):
        return registry.module_twin(obj)
    if isinstance(obj, (classmethod, staticmethod)):
        return type(obj)(sync(portal, obj.__func__))
    if inspect.isasyncgenfunction(obj):
        return _GenTwin(obj, portal, None)
    if inspect.iscoroutinefunction(obj):
        return _CoroTwin(obj, portal, None)
    if type(obj) is types.AsyncGeneratorType:
        return _drive(_blockon.IterBridge(portal, obj, 0), obj, None)
    if _is_async_type(type(obj)):
        return registry.twin_of(obj)
    if inspect.isawaitable(obj):
        hint = " (call it first? then run it)" if inspect.iscoroutine(obj) else ""
        raise TypeError(
            f"blockon.sync() makes twins of async functions, classes, instances and modules; "
            f"got a lone awaitable ({type(obj).__name__!r}){hint}: run it with "
            "blockon.run(aw) instead"
        )
    return obj


if TYPE_CHECKING:

    @overload
    def sync_default(obj: type[Any], /) -> type[Any]: ...
    @overload
    def sync_default(obj: types.ModuleType, /) -> Any: ...
    @overload
    def sync_default(
        obj: Callable[P, AsyncGenerator[T, S]], /
    ) -> Callable[P, Generator[T, S, None]]: ...
    @overload
    def sync_default(
        obj: Callable[P, AsyncIterator[T]], /
    ) -> Callable[P, Generator[T, Any, None]]: ...
    @overload
    def sync_default(obj: Callable[P, Awaitable[T]], /) -> Callable[P, T]: ...
    @overload
    def sync_default(obj: Callable[P, T], /) -> Callable[P, T]: ...
    @overload
    def sync_default(obj: Any, /) -> Any: ...


def sync_default(obj: Any, /) -> Any:
    """``blockon.sync(obj)``: the sync twin of ``obj`` on the default loop thread; usable
    as a decorator. See :meth:`LoopThread.sync` for the rules."""
    return sync(_blockon._default_loop_thread(), obj)


# Published as ``blockon.sync``.
sync_default.__name__ = sync_default.__qualname__ = "sync"
