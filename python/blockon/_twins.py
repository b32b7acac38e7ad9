"""The twin classes of ``sync()``: twins of functions, of async classes and their
instances, and of modules, and the generator that steps a lockstep ``IterBridge``.

What becomes a twin, and what a call result becomes, is decided in ``_sync`` (the rules);
this module is the machinery those rules build with. A twin class reaches its rules at run
time through its ``_blockon_registry`` attribute, so this module does not import them.

Where the work runs: every call a twin makes into the wrapped library (async methods, sync
methods, constructors, module functions) runs on the loop thread; attribute reads, property
gets and sets, and the operators Python calls implicitly (``len``, ``==``, ``hash``,
``str``, ``[]``) run in the caller's thread.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import types
from collections.abc import Callable, Generator

from . import _blockon
from ._callsite import ITER, WITH, result_use

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Rules(Protocol):
        """What twins need of the rules that made them (``_sync.Registry``)."""

        loop_thread: _blockon.LoopThreadBase
        lock: threading.RLock

        def adopt(self, value: Any) -> Any: ...
        def adopt_attr(self, value: Any) -> Any: ...
        def twin_of(self, target: Any, cls: type | None = None) -> Any: ...
        def routine(self, fn: Any) -> TwinFunction: ...


#: Types whose values are plain data: returned as they are without looking further.
PLAIN: frozenset[type] = frozenset(
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


#: Async protocol methods a twin never forwards: a twin is sync, and must not look async.
_ASYNC_DUNDERS = frozenset({"__aenter__", "__aexit__", "__aiter__", "__anext__", "__await__"})


def unwrap(value: Any) -> Any:
    return value._blockon_target if isinstance(value, TWINS) else value


def _unwrap_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    for arg in args:
        if isinstance(arg, TWINS):
            return tuple([unwrap(a) for a in args])
    return args


def _unwrap_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    for value in kwargs.values():
        if isinstance(value, TWINS):
            return {k: unwrap(v) for k, v in kwargs.items()}
    return kwargs


def _caller() -> types.FrameType | None:
    """The frame whose call reached the twin that calls this (the twins' own frames, such
    as an object's ``__call__``, do not count)."""
    try:
        frame: types.FrameType | None = sys._getframe(2)
    except ValueError:  # called from C code with no Python frame above (a new thread)
        return None
    while frame is not None and frame.f_globals is _GLOBALS:
        frame = frame.f_back
    return frame


async def _call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], use: str | None
) -> Any:
    """Run on the loop: call ``fn``, and await its result if it is awaitable, except when
    the caller will enter it with ``with`` (``use`` is ``WITH``) and it is an async context
    manager, or iterate it (``ITER``) and it is an async iterable: then it is returned as it
    is, so that ``with`` and ``for`` on its twin are ``async with`` and ``async for`` on it,
    with no await before them."""
    __tracebackhide__ = True
    result = fn(*args, **kwargs)
    kind = type(result)
    if kind in PLAIN or not inspect.isawaitable(result):
        return result
    if use == WITH and hasattr(kind, "__aenter__") and hasattr(kind, "__aexit__"):
        return result
    if use == ITER and hasattr(kind, "__aiter__"):
        return result
    return await result


def _ended(agen: Any) -> bool:
    """Whether an async generator has finished (its frame is gone)."""
    return agen is not None and getattr(agen, "ag_frame", True) is None


def drive(bridge: Any, agen: Any, adopt: Callable[[Any], Any] | None) -> Generator[Any, Any, None]:
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


class _TwinSignature:
    """A twin function's ``__signature__``: the wrapped callable's, returning what the twin
    returns (``_sync_types``, loaded on first use); made once, then kept on the twin."""

    def __get__(self, instance: Any, owner: type | None = None) -> inspect.Signature | None:
        if instance is None:
            return None
        from ._sync_types import twin_signature

        try:
            signature = twin_signature(instance)
        except Exception:  # an annotation that cannot be read: the wrapped one, unmapped
            signature = inspect.signature(instance._fn)
        instance.__dict__["__signature__"] = signature
        return signature


class TwinFunction:
    """A sync twin of a callable: keeps the wrapped callable's ``__name__``,
    ``__qualname__``, ``__module__``, ``__doc__``, ``__wrapped__`` (so
    ``inspect.signature`` is the wrapped one) and binds as a method like a function does."""

    __defaults__ = None
    __kwdefaults__ = None

    #: Each kind of twin defines how a call runs.
    __call__: Callable[..., Any]

    def __init__(
        self, fn: Any, loop_thread: _blockon.LoopThreadBase, adopt: Callable[..., Any] | None
    ) -> None:
        self._fn = fn
        self._loop_thread = loop_thread
        self._run = loop_thread.run
        self._adopt = adopt
        functools.update_wrapper(self, fn)
        # A twin is sync: never let a copied marker make it look like a coroutine function,
        # nor a copied signature hide the twin's own (below).
        for marker in ("_is_coroutine_marker", "_is_coroutine", "__signature__"):
            self.__dict__.pop(marker, None)

    __signature__ = _TwinSignature()

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


class CoroTwin(TwinFunction):
    """Twin of a coroutine function: ``run(fn(...))`` on the twin's loop thread."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        args, kwargs = _unwrap_args(args), _unwrap_kwargs(kwargs)
        if self._adopt is None:
            return self._run(self._fn(*args, **kwargs))
        return self._adopt(self._run(self._fn(*args, **kwargs)))


CoroTwin._code = CoroTwin.__call__.__code__


class GenTwin(TwinFunction):
    """Twin of an async generator function: a generator function, lockstep. The async
    generator object is made at call time (so wrong arguments fail there, as they do for the
    async generator function); nothing runs before the first ``next()``."""

    _code = drive.__code__

    def __call__(self, *args: Any, **kwargs: Any) -> Generator[Any, Any, None]:
        __tracebackhide__ = True
        args, kwargs = _unwrap_args(args), _unwrap_kwargs(kwargs)
        agen = self._fn(*args, **kwargs)
        return drive(_blockon.IterBridge(self._loop_thread, agen, 0), agen, self._adopt)


class CallTwin(TwinFunction):
    """Twin of a sync callable reached through a class, instance or module twin: called
    on the loop thread, its result awaited there if awaitable (unless the caller enters or
    iterates it, see ``_call``), then adopted."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        args, kwargs = _unwrap_args(args), _unwrap_kwargs(kwargs)
        use = result_use(_caller(), self._is_me, getattr(self, "__name__", None))
        value = self._run(_call(self._fn, args, kwargs, use))
        assert self._adopt is not None
        return self._adopt(value)

    def _is_me(self, value: Any) -> bool:
        """Whether ``value``, what a caller's callee expression finds, is this twin: itself,
        a method bound to it, the twin class's descriptor that makes those methods, or the
        wrapped callable (found in a twinned module or class: its function, also inside a
        classmethod or staticmethod)."""
        if isinstance(value, (classmethod, staticmethod)):
            value = value.__func__
        fn = self._fn
        return (
            value is self
            or value is fn
            or value is getattr(fn, "__func__", None)
            or getattr(value, "__func__", None) is self
            or (isinstance(value, _Method) and value.twin is self)
        )


CallTwin._code = CallTwin.__call__.__code__


# ------------------------------------------------------------------------------ descriptors


class _Method:
    """A method of a twinned class. On an instance it is the twin of what the wrapped
    object's attribute is now (normally the class's function, whose twin is made once; an
    attribute set on the object itself, such as a mock, wins as it does on the object)."""

    __slots__ = ("name", "raw", "twin")

    def __init__(self, name: str, raw: Any, twin: TwinFunction) -> None:
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


class _ClassMethod(classmethod):  # type: ignore[type-arg]
    """A class method of a twinned class: read through like ``_Forward`` (bound to the
    wrapped class, so it makes wrapped objects), and a ``classmethod`` to anything that
    inspects the class, as it is on the wrapped class."""

    # classmethod's own __new__ takes the function alone from Python 3.15 on.
    def __new__(cls, name: str, fn: Callable[..., Any]) -> _ClassMethod:
        return super().__new__(cls, fn)  # type: ignore[call-arg]  # typeshed: object's

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        super().__init__(fn)
        self._blockon_forward = _Forward(name)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self._blockon_forward.__get__(instance, owner)


class _Wrapped:
    """``__wrapped__``: the wrapped class on a twin class, the wrapped object on a twin."""

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return owner._blockon_wrapped
        return instance._blockon_target


# ------------------------------------------------------------------------------ twin classes


class TwinMeta(type):
    """The metaclass of twin classes: a repr that says so, and class attributes read
    through to the wrapped class."""

    _blockon_wrapped: type
    _blockon_registry: Rules

    def __repr__(cls) -> str:
        wrapped = cls.__dict__.get("_blockon_wrapped")
        if wrapped is None:
            return super().__repr__()
        return f"<blockon.sync twin class of {wrapped!r}>"

    @property
    def __signature__(cls) -> inspect.Signature | None:
        # The wrapped class's, also for a subclass of a twin class (class Weather(twin)),
        # unless the subclass defines its own __init__: TwinBase.__new__ would otherwise make
        # it (*args, **kwargs). On the metaclass, so twin instances do not inherit it.
        for klass in cls.__mro__:
            wrapped = klass.__dict__.get("_blockon_wrapped")
            if wrapped is not None:
                break
            init = klass.__dict__.get("__init__")
            if init is not None and klass is not TwinBase:
                signature = inspect.signature(init)
                return signature.replace(parameters=list(signature.parameters.values())[1:])
        else:
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


class TwinBase(metaclass=TwinMeta):
    """Base of every twin class. A twin holds its wrapped object (``__wrapped__``)."""

    __slots__ = ("__weakref__", "_blockon_exits", "_blockon_target")

    _blockon_target: Any
    _blockon_exits: dict[int, list[Any]] | None

    __wrapped__ = _Wrapped()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        registry = cls._blockon_registry
        wrapped = cls._blockon_wrapped
        use = result_use(_caller(), lambda value: value is cls or value is wrapped, cls.__name__)
        value = registry.loop_thread.run(
            _call(wrapped, _unwrap_args(args), _unwrap_kwargs(kwargs), use)
        )
        if type(value) is wrapped:
            return registry.twin_of(value, cls)
        return registry.adopt(value)

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
            setattr(self._blockon_target, name, unwrap(value))

    def __delattr__(self, name: str) -> None:
        delattr(self._blockon_target, name)

    def __eq__(self, other: object) -> bool:
        return bool(self._blockon_target == unwrap(other))

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


def _exits(twin: TwinBase) -> dict[int, list[Any]]:
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


def _twin_enter(self: TwinBase) -> Any:
    __tracebackhide__ = True
    registry = type(self)._blockon_registry
    bridge: _blockon.ContextBridge[Any] = _blockon.ContextBridge(
        registry.loop_thread, self._blockon_target
    )
    value = bridge.__enter__()
    try:
        entered = registry.adopt(value)
        _exits(self).setdefault(threading.get_ident(), []).append(bridge)
    except BaseException as exc:
        # What __aenter__ acquired cannot be handed over: release it now, through __aexit__.
        bridge.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return entered


def _twin_exit(self: TwinBase, exc_type: Any, exc: Any, tb: Any) -> bool:
    __tracebackhide__ = True
    exits, thread = _exits(self), threading.get_ident()
    stack = exits.get(thread)
    if not stack:
        raise RuntimeError(
            f"{self!r} is not in a `with` block in this thread: exit a twin in the thread "
            "that entered it (blockon.wrap_context() gives a manager any thread may exit)"
        )
    bridge: _blockon.ContextBridge[Any] = stack.pop()
    if not stack:
        del exits[thread]  # threads come and go: keep no empty stacks
    return bool(bridge.__exit__(exc_type, exc, tb))


def _twin_iter(self: TwinBase) -> Generator[Any, Any, None]:
    registry = type(self)._blockon_registry
    bridge = _blockon.IterBridge(registry.loop_thread, self._blockon_target, 0)
    return drive(bridge, None, registry.adopt)


def _twin_sync_iter(self: TwinBase) -> Generator[Any, Any, None]:
    adopt = type(self)._blockon_registry.adopt
    return (adopt(item) for item in iter(self._blockon_target))


def _twin_call(self: TwinBase, *args: Any, **kwargs: Any) -> Any:
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


def _forwarder(name: str, adopt: bool, raw: Any) -> Callable[..., Any]:
    def forward(self: TwinBase, *args: Any) -> Any:
        result = getattr(self._blockon_target, name)(*_unwrap_args(args))
        return type(self)._blockon_registry.adopt(result) if adopt else result

    forward.__name__ = forward.__qualname__ = name
    if isinstance(raw, types.FunctionType):
        forward.__wrapped__ = raw  # type: ignore[attr-defined]  # its signature is raw's
    return forward


# ------------------------------------------------------------------------------ modules


class ModuleTwin:
    """Twin of a module: attributes twinned lazily, on first read (and again if the module
    attribute was replaced since)."""

    __slots__ = ("__weakref__", "_blockon_cache", "_blockon_registry", "_blockon_target")

    _blockon_target: types.ModuleType
    _blockon_registry: Rules
    _blockon_cache: dict[str, tuple[Any, Any]]

    __wrapped__ = property(lambda self: self._blockon_target)
    __doc__ = property(lambda self: self._blockon_target.__doc__)

    def __init__(self, module: types.ModuleType, registry: Rules) -> None:
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
        setattr(self._blockon_target, name, unwrap(value))

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


TWINS = (TwinBase, ModuleTwin)

#: This module's globals: how ``_caller`` knows the twins' own frames.
_GLOBALS = globals()
