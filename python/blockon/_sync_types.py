"""``sync()``'s rules (``_sync``) written as types: what a twin's call returns, given what the
wrapped callable declares. The stub generator types twins with these, and a twin's
``inspect.signature`` shows their return type (loaded on first use, not by ``import blockon``).

- an async function's twin returns the awaited type, as it is (``T``); through a class,
  instance or module twin, the awaited value is adopted;
- an async generator function's twin returns ``Generator[Y, S, None]`` for
  ``AsyncGenerator[Y, S]``, ``Iterator[Y]`` for ``AsyncIterator[Y]``/``AsyncIterable[Y]``;
- a sync callable reached through a twin returns its result awaited if awaitable, then
  adopted; an awaitable class that is also an async context manager or async iterable is
  ``Entered``: the awaited type, entered by ``with`` as ``__aenter__`` gives, iterated as
  ``__aiter__`` does; an ``@asynccontextmanager`` method is a context manager;
- adopted: a class with async methods is its twin (``TwinRef``), ``AsyncGenerator`` a
  ``Generator``, ``AsyncIterator``/``AsyncIterable`` an ``Iterable`` (an async generator
  becomes a generator, any other async iterable a twin that ``for`` iterates), an async
  context manager a context manager; anything else as it is;
- an argument that is a twin is unwrapped, so a parameter that takes an async class takes
  its twin as well.
"""

from __future__ import annotations

import ast
import collections.abc
import contextlib
import functools
import inspect
import sys
import textwrap
import types
import typing
from collections.abc import Callable
from typing import Any

from . import _annotations as A
from ._sync import _is_async_type
from ._twins import PLAIN

#: Abstract async protocols: mapped by what they promise, never twinned as classes.
_ASYNC_ITERABLES = frozenset({collections.abc.AsyncIterator, collections.abc.AsyncIterable})
_ASYNC_CMS = frozenset(
    {contextlib.AbstractAsyncContextManager, contextlib._AsyncGeneratorContextManager}
)
_ABSTRACT = frozenset(
    {
        *_ASYNC_ITERABLES,
        *_ASYNC_CMS,
        collections.abc.AsyncGenerator,
        collections.abc.Awaitable,
        collections.abc.Coroutine,
    }
)


@contextlib.asynccontextmanager
async def _an_async_context_manager() -> collections.abc.AsyncIterator[None]:
    yield


#: The code of every function that ``@contextlib.asynccontextmanager`` returns.
_ACM_HELPER = _an_async_context_manager.__code__


def is_twinned_class(cls: Any) -> bool:
    """Whether values of class ``cls`` come back from a twin as twins."""
    return (
        isinstance(cls, type)
        and cls not in PLAIN
        and cls not in _ABSTRACT
        and cls is not types.AsyncGeneratorType
        and _is_async_type(cls)
    )


def function_of(fn: Any) -> Any:
    """The plain function behind a bound method, ``functools.partial`` or wrapper."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, (types.MethodType, classmethod, staticmethod)):
            fn = fn.__func__
        else:
            try:
                inner = inspect.unwrap(fn)
            except ValueError:
                return fn
            if inner is fn:
                return fn
            fn = inner


def is_acm_helper(fn: Any) -> bool:
    """Whether ``fn`` is a function made by ``@contextlib.asynccontextmanager``."""
    return getattr(function_of_shallow(fn), "__code__", None) is _ACM_HELPER


def function_of_shallow(fn: Any) -> Any:
    while isinstance(fn, (types.MethodType, classmethod, staticmethod, functools.partial)):
        fn = fn.func if isinstance(fn, functools.partial) else fn.__func__
    return fn


class Rules:
    """The rules, reading annotations in each function's module; ``extra(module)`` may give
    a lookup for names that module's globals lack (imports made only for type checkers)."""

    def __init__(self, extra: Callable[[str], Callable[[str], Any] | None] | None = None) -> None:
        self.extra = extra

    # --- reading what is declared

    def scope(self, obj: Any, cls: type | None = None) -> A.Scope:
        fn = function_of(obj)
        module = getattr(fn, "__module__", None) or getattr(cls, "__module__", None)
        globalns = getattr(fn, "__globals__", None)
        if globalns is None:
            globalns = getattr(sys.modules.get(module or ""), "__dict__", {})
        extra = self.extra(module) if self.extra is not None and module else None
        first = dict(vars(cls)) if cls is not None and not callable(obj) else None
        return A.Scope(globalns, first, extra)

    def returns(self, fn: Any) -> A.Node:
        """What ``fn`` declares it returns (``Unknown`` where it does not say)."""
        try:
            annotation = inspect.signature(fn).return_annotation
        except (TypeError, ValueError):
            return A.Unknown("...", "its signature cannot be read")
        if annotation is inspect.Signature.empty:
            return A.Unknown("...", "its return type is not annotated")
        return A.read(annotation, self.scope(fn))

    def member_returns(self, cls: type, name: str) -> A.Node | None:
        """What ``cls.name`` (a method) declares it returns (``Self`` for an undeclared
        ``return self``, or ``__await__``'s ``return self.start().__await__()`` where
        ``start`` returns the type of ``self``); None when there is no such method."""
        fn = inspect.getattr_static(cls, name, None)
        if fn is None:
            return None
        node = self.returns(fn)
        if isinstance(node, A.Unknown):
            node = self.undeclared(cls, fn, node)
        elif _types_self(self, fn, node):
            node = A.Ref(typing.Self)  # def f(self: T) -> T
        if isinstance(node, A.Unknown):
            node.why = f"{cls.__qualname__}.{name}: {node.why}"
        return node

    def undeclared(self, cls: type, fn: Any, node: A.Unknown) -> A.Node:
        returned = _returns(fn)
        if not returned:
            return node
        me = returned[0]
        values = returned[1:]
        if all(isinstance(v, ast.Name) and v.id == me for v in values):
            return A.Ref(typing.Self)
        if all(_awaits_own(v, me) for v in values):
            names = {v.func.value.func.attr for v in values}
            if len(names) == 1:
                starter = inspect.getattr_static(cls, names.pop(), None)
                if starter is not None:
                    started = self.returns(starter)
                    if _class_of(started) is typing.Self or _types_self(self, starter, started):
                        return A.Sub(
                            A.Ref(collections.abc.Generator),
                            [A.Ref(Any), A.NONE, A.Ref(typing.Self)],
                        )
        return node

    # --- the rules

    def adopted(self, node: A.Node, owner: type | None = None) -> A.Node:
        """What a value of this type becomes through a twin (``Registry.adopt``; attribute
        reads too, whose callables are twins whose calls follow ``call_result``)."""
        if isinstance(node, A.Union):
            return A.Union([self.adopted(arm, owner) for arm in node.arms])
        if isinstance(node, A.Ref):
            obj = node.obj
            if obj is typing.Self and owner is not None:
                return self.adopted(A.Ref(owner))
            if obj in _ASYNC_ITERABLES or obj is collections.abc.AsyncGenerator:
                return A.Sub(A.Ref(collections.abc.Iterable), [A.Ref(Any)])
            if is_twinned_class(obj):
                return A.TwinRef(obj)
            return node
        if isinstance(node, A.Sub) and isinstance(node.origin, A.Ref):
            origin, args = node.origin.obj, node.args
            if origin is collections.abc.AsyncGenerator and len(args) == 2:
                item = self.adopted(args[0], owner)
                return A.Sub(A.Ref(collections.abc.Generator), [item, args[1], A.NONE])
            if origin in _ASYNC_ITERABLES and len(args) == 1:
                return A.Sub(A.Ref(collections.abc.Iterable), [self.adopted(args[0], owner)])
            if origin in _ASYNC_CMS and args:
                entered = self.adopted(args[0], owner)
                return A.Sub(A.Ref(contextlib.AbstractContextManager), [entered])
            if origin is type and len(args) == 1 and is_twinned_class(_class_of(args[0])):
                return A.Sub(A.Ref(type), [A.TwinRef(_class_of(args[0]))])
            if origin is collections.abc.Callable and len(args) == 2:
                return A.Sub(node.origin, [args[0], self.call_result(args[1], owner)])
            if is_twinned_class(origin):
                return A.Sub(A.TwinRef(origin), args)
        return node

    def call_result(self, node: A.Node, owner: type | None = None) -> A.Node:
        """What a sync callable's result of this type becomes through a twin: awaited if
        awaitable (an awaitable async context manager or async iterable: ``Entered``), then
        adopted."""
        if isinstance(node, A.Union):
            return A.Union([self.call_result(arm, owner) for arm in node.arms])
        if isinstance(node, A.Sub) and isinstance(node.origin, A.Ref):
            origin, args = node.origin.obj, node.args
            if origin is collections.abc.Awaitable and len(args) == 1:
                return self.adopted(args[0], owner)
            if origin is collections.abc.Coroutine and len(args) == 3:
                return self.adopted(args[2], owner)
        cls = _class_of(node)
        if cls is typing.Self and owner is not None:
            cls = owner
        if (
            isinstance(cls, type)
            and cls not in PLAIN
            and cls not in _ABSTRACT
            and hasattr(cls, "__await__")
        ):
            return self.awaited_class(cls, node, owner)
        return self.adopted(node, owner)

    def awaited_class(self, cls: type, node: A.Node, owner: type | None) -> A.Node:
        awaited = self.await_type(cls)
        if _is_class(awaited, cls):
            return self.adopted(A.Ref(cls) if _class_of(node) is typing.Self else node, owner)
        entered = self.entered_type(cls, keep_self=False)
        items = self.item_type(cls)
        if entered is None and items is None:
            return self.adopted(awaited, cls)
        return A.Entered(cls, self.adopted(awaited, cls), entered, items)

    def await_type(self, cls: type) -> A.Node:
        """What awaiting an instance of ``cls`` gives (``__await__`` returns a generator)."""
        node = self.member_returns(cls, "__await__")
        if node is None or isinstance(node, A.Unknown):
            return node or A.Unknown("...", f"{cls.__qualname__} has no __await__")
        if isinstance(node, A.Sub) and len(node.args) == 3:
            result = node.args[2]
            return A.Ref(cls) if _class_of(result) is typing.Self else result
        return A.Unknown("...", f"{cls.__qualname__}.__await__ does not return a Generator")

    def entered_type(self, cls: type, *, keep_self: bool) -> A.Node | None:
        """What ``with`` on the twin of an instance of ``cls`` gives (``__aenter__``'s value,
        adopted; ``Self`` is the same twin), or None when ``cls`` is no async context
        manager."""
        if not (hasattr(cls, "__aenter__") and hasattr(cls, "__aexit__")):
            return None
        node = self.member_returns(cls, "__aenter__")
        if node is None:
            return None
        if keep_self and isinstance(node, A.Ref) and node.obj is typing.Self:
            return node
        return self.adopted(node, cls)

    def item_type(self, cls: type) -> A.Node | None:
        """The items ``for`` over the twin of an instance of ``cls`` gives, adopted, or None
        when ``cls`` is not async iterable."""
        if not hasattr(cls, "__aiter__"):
            return None
        node = self.member_returns(cls, "__aiter__")
        if node is None:
            return None
        origin = _class_of(node) if isinstance(node, A.Sub) else None
        if origin in _ASYNC_ITERABLES or origin is collections.abc.AsyncGenerator:
            assert isinstance(node, A.Sub)
            return self.adopted(node.args[0], cls) if node.args else A.Ref(Any)
        if _is_class(node, cls) or _class_of(node) is typing.Self:
            item = self.member_returns(cls, "__anext__")
            if item is not None:
                return self.adopted(item, cls)
        if isinstance(node, A.Unknown):
            return node
        return A.Unknown("...", f"{cls.__qualname__}.__aiter__ returns no async iterator type")

    def generator(self, node: A.Node, deep: bool, owner: type | None = None) -> A.Node:
        """The twin's type of an async generator function declared to return ``node``."""
        if isinstance(node, A.Sub) and isinstance(node.origin, A.Ref) and node.args:
            origin, args = node.origin.obj, node.args
            item = self.adopted(args[0], owner) if deep else args[0]
            if origin is collections.abc.AsyncGenerator and len(args) == 2:
                return A.Sub(A.Ref(collections.abc.Generator), [item, args[1], A.NONE])
            if origin in _ASYNC_ITERABLES:
                return A.Sub(A.Ref(collections.abc.Iterator), [item])
        if not isinstance(node, A.Unknown):
            node = A.Unknown(
                "...",
                "an async generator function not declared to return an "
                "AsyncIterator, AsyncIterable or AsyncGenerator",
            )
        return A.Sub(A.Ref(collections.abc.Iterator), [node])

    def routine_result(self, fn: Any, deep: bool, owner: type | None = None) -> A.Node:
        """What the twin of ``fn`` returns: directly twinned (``deep`` False) or reached
        through a class, instance or module twin (``deep``)."""
        node = self.returns(fn)
        if owner is not None and _types_self(self, fn, node):
            node = A.Ref(typing.Self)  # def f(self: T) -> T
        if inspect.isasyncgenfunction(fn):
            return self.generator(node, deep, owner)
        if inspect.iscoroutinefunction(fn):
            return self.adopted(node, owner) if deep else node
        if is_acm_helper(fn):
            if isinstance(node, A.Sub) and node.args:
                entered = self.adopted(node.args[0], owner)
            else:
                entered = node
            return A.Sub(A.Ref(contextlib.AbstractContextManager), [entered])
        inner = function_of(fn)
        if inspect.iscoroutinefunction(inner):
            return self.adopted(node, owner)
        if inspect.isasyncgenfunction(inner):
            return self.generator(node, True, owner)
        return self.call_result(node, owner)

    def parameter(self, node: A.Node) -> A.Node:
        """A twin's parameter type: an async class also takes its twin (unwrapped)."""
        if isinstance(node, A.Union):
            arms: list[A.Node] = []
            for arm in node.arms:
                widened = self.parameter(arm)
                arms.extend(widened.arms if isinstance(widened, A.Union) else [widened])
            return A.Union(arms)
        cls = _class_of(node)
        if is_twinned_class(cls):
            assert cls is not None
            twin: A.Node = A.TwinRef(cls)
            if isinstance(node, A.Sub):
                twin = A.Sub(twin, node.args)
            return A.Union([node, twin])
        return node


def _returns(fn: Any) -> list[Any]:
    """The name of ``fn``'s first parameter, then the values of its ``return`` statements
    (empty when its source cannot be read)."""
    fn = function_of_shallow(fn)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return []
    function = tree.body[0] if tree.body else None
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or not function.args.args:
        return []
    values: list[Any] = [function.args.args[0].arg]
    for node in ast.walk(function):
        if isinstance(node, ast.Return):
            values.append(node.value)
    return values if len(values) > 1 else []


def _awaits_own(value: Any, me: str) -> bool:
    """``self.start(...).__await__()``."""
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "__await__"
        and isinstance(value.func.value, ast.Call)
        and isinstance(value.func.value.func, ast.Attribute)
        and isinstance(value.func.value.func.value, ast.Name)
        and value.func.value.func.value.id == me
    )


def _types_self(rules: Rules, fn: Any, returned: A.Node) -> bool:
    """Whether ``fn`` returns the type variable its ``self`` is annotated with."""
    if not isinstance(returned, A.Var):
        return False
    try:
        first = next(iter(inspect.signature(fn).parameters.values()))
    except (StopIteration, TypeError, ValueError):
        return False
    if first.annotation is first.empty:
        return False
    declared = A.read(first.annotation, rules.scope(fn))
    return isinstance(declared, A.Var) and declared.var is returned.var


def _class_of(node: A.Node) -> Any:
    if isinstance(node, A.Ref):
        return node.obj
    if isinstance(node, A.Sub) and isinstance(node.origin, A.Ref):
        return node.origin.obj
    return None


def _is_class(node: A.Node, cls: type) -> bool:
    found = _class_of(node)
    return found is cls or found is typing.Self


# ------------------------------------------------------------------------------ at run time


def twin_signature(twin: Any) -> inspect.Signature:
    """The signature of a twin function: its wrapped callable's, returning what the twin
    returns. An annotation written as text stays text; objects stay objects."""
    fn = twin._fn
    signature = inspect.signature(fn)
    annotation = signature.return_annotation
    deep = twin._adopt is not None
    if annotation is inspect.Signature.empty or (not deep and inspect.iscoroutinefunction(fn)):
        return signature
    node = Rules().routine_result(fn, deep)
    if isinstance(annotation, str):
        return signature.replace(return_annotation=A.write(node, A.ShortNames()))
    registry = getattr(twin._adopt, "__self__", None)
    twin_class = registry.twin_class if registry is not None else None
    return signature.replace(return_annotation=A.to_object(node, twin_class))
