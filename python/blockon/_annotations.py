"""Type annotations as small trees: read from what a function or class declares, evaluated in
its module's namespace (a name that cannot be found stays a named hole, so one unknown name
spoils only its own place), and written back out as stub text or as annotation objects.

``_sync_types`` maps these trees by ``sync()``'s rules; ``_stubgen`` writes them into stubs
and twins' ``inspect.signature`` into annotations. Neither is loaded by ``import blockon``.
"""

from __future__ import annotations

import ast
import builtins
import collections.abc
import functools
import operator
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

#: Special forms and the like, which have no ``__qualname__``, by their name in ``typing``.
_TYPING_NAMES = {
    id(getattr(typing, name)): name
    for name in (
        "Any",
        "Union",
        "Optional",
        "ClassVar",
        "Final",
        "Literal",
        "Self",
        "Never",
        "NoReturn",
        "LiteralString",
        "Concatenate",
        "TypeAlias",
        "TypeGuard",
        "Required",
        "NotRequired",
        "Unpack",
        "Generic",
        "Protocol",
        "ReadOnly",
        "TypeIs",
    )
    if hasattr(typing, name)
}


class Node:
    """A type expression."""

    __slots__ = ()


class Ref(Node):
    """A named thing: a class, a special form, a ``NewType``, a type alias; or ``None``."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


class Var(Node):
    """A ``TypeVar``, ``ParamSpec`` or ``TypeVarTuple``; with ``attr``, ``P.args`` or
    ``P.kwargs``."""

    __slots__ = ("attr", "var")

    def __init__(self, var: Any, attr: str = "") -> None:
        self.var = var
        self.attr = attr


class Sub(Node):
    """``origin[args]``. A ``Callable``'s first argument is a ``Params``, ``ELLIPSIS``, a
    ``Var`` (a ``ParamSpec``) or a ``Concatenate``."""

    __slots__ = ("args", "origin")

    def __init__(self, origin: Node, args: list[Node]) -> None:
        self.origin = origin
        self.args = args


class Params(Node):
    """A ``Callable``'s list of parameter types."""

    __slots__ = ("items",)

    def __init__(self, items: list[Node]) -> None:
        self.items = items


class Union(Node):
    __slots__ = ("arms",)

    def __init__(self, arms: list[Node]) -> None:
        self.arms = arms


class Literal(Node):
    __slots__ = ("values",)

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values


class Unknown(Node):
    """What cannot be typed: ``text`` is what the annotation said (for the reader), ``why``
    the reason (for the report); written ``Any`` in stubs."""

    __slots__ = ("text", "why")

    def __init__(self, text: str, why: str) -> None:
        self.text = text
        self.why = why


class TwinRef(Node):
    """The twin class of the async class ``cls``."""

    __slots__ = ("cls",)

    def __init__(self, cls: type) -> None:
        self.cls = cls


class Entered(Node):
    """A call result that is awaitable and an async context manager or async iterable,
    used as the async syntax would be: ``awaited`` at the call, ``entered`` by ``with``,
    ``items`` when iterated (either may be None: not that kind)."""

    __slots__ = ("awaited", "entered", "items", "source")

    def __init__(self, source: type, awaited: Node, entered: Node | None, items: Node | None):
        self.source = source
        self.awaited = awaited
        self.entered = entered
        self.items = items


class _Ellipsis(Node):
    __slots__ = ()


NONE = Ref(None)
ELLIPSIS = _Ellipsis()


def any_node(text: str, why: str) -> Unknown:
    return Unknown(text, why)


def walk(node: Node) -> collections.abc.Iterator[Node]:
    """``node`` and every node inside it."""
    yield node
    inner: list[Node] = []
    if isinstance(node, Sub):
        inner = [node.origin, *node.args]
    elif isinstance(node, Params):
        inner = node.items
    elif isinstance(node, Union):
        inner = node.arms
    elif isinstance(node, Entered):
        inner = [n for n in (node.awaited, node.entered, node.items) if n is not None]
    for child in inner:
        yield from walk(child)


# ------------------------------------------------------------------------------ reading


class Scope:
    """Where an annotation's names are looked up: a class's namespace (``first``), then the
    module's globals, then ``extra`` (names a stub generator finds by other means, such as
    imports made only for type checkers), then builtins."""

    __slots__ = ("extra", "first", "globalns")

    def __init__(
        self,
        globalns: Mapping[str, Any],
        first: Mapping[str, Any] | None = None,
        extra: Callable[[str], Any] | None = None,
    ) -> None:
        self.globalns = globalns
        self.first = first
        self.extra = extra


MISSING = object()


class _Hole:
    """A name the scope does not have, and what the annotation did with it (subscripted it,
    took an attribute, joined it in a union): read as ``Unknown``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __getattr__(self, name: str) -> _Hole:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Hole(f"{self.text}.{name}")

    def __getitem__(self, item: Any) -> _Hole:
        return _Hole(f"{self.text}[...]")

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Holes are callable only so that ``typing`` takes them as types."""

    def __or__(self, other: Any) -> Any:
        return typing.Union[self, other]  # noqa: UP007  (a hole is no type for `|`)

    def __ror__(self, other: Any) -> Any:
        return typing.Union[other, self]  # noqa: UP007


class _Names(Mapping[str, Any]):
    """The mapping ``eval`` looks names up in: every name is answered, a missing one with a
    hole (it lists no names: ``eval`` only looks them up)."""

    __slots__ = ("scope",)

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def __getitem__(self, name: str) -> Any:
        scope = self.scope
        if name == _UNION:
            return typing.Union
        for space in (scope.first, scope.globalns):
            if space is not None and name in space:
                return space[name]
        if scope.extra is not None:
            found = scope.extra(name)
            if found is not MISSING:
                return found
        return getattr(builtins, name, None) if hasattr(builtins, name) else _Hole(name)

    def __iter__(self) -> collections.abc.Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def read(annotation: Any, scope: Scope, reading: tuple[str, ...] = ()) -> Node:
    """The tree of an annotation (an object, or a string to evaluate in ``scope``);
    ``reading``: the strings being read around it (a type alias that names itself)."""
    if isinstance(annotation, str):
        if annotation in reading:
            return Unknown(annotation, f"{annotation} is a recursive type alias")
        reading = (*reading, annotation)
        try:
            value = eval(_unions(annotation), {}, _Names(scope))
        except Exception as exc:
            return Unknown(annotation, f"{annotation!r} cannot be evaluated ({exc})")
        return _from_object(value, scope, reading)
    return _from_object(annotation, scope, reading)


class _Unions(ast.NodeTransformer):
    """``a | b`` as ``typing.Union[a, b]``: names may hold values ``|`` cannot join (a
    string, or an optional dependency set to ``None``)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.op, ast.BitOr):
            return node
        union = ast.Name(_UNION, ast.Load())
        return ast.Subscript(union, ast.Tuple([node.left, node.right], ast.Load()), ast.Load())


_UNION = "__blockon_union__"


def _unions(text: str) -> types.CodeType:
    tree = ast.fix_missing_locations(_Unions().visit(ast.parse(text.strip(), mode="eval")))
    return compile(tree, "<annotation>", "eval")


def _from_object(obj: Any, scope: Scope, reading: tuple[str, ...] = ()) -> Node:
    if obj is None or obj is type(None):
        return NONE
    if isinstance(obj, str):
        return read(obj, scope, reading)
    if isinstance(obj, typing.ForwardRef):
        return read(obj.__forward_arg__, scope, reading)
    if isinstance(obj, _Hole):
        return Unknown(obj.text, f"name {obj.text.split('.')[0].split('[')[0]!r} is not defined")
    if isinstance(obj, (typing.TypeVar, typing.ParamSpec, typing.TypeVarTuple)):
        return Var(obj)
    if isinstance(obj, typing.ParamSpecArgs):
        return Var(obj.__origin__, "args")
    if isinstance(obj, typing.ParamSpecKwargs):
        return Var(obj.__origin__, "kwargs")
    if obj is Ellipsis:
        return ELLIPSIS
    if isinstance(obj, list):
        return Params([_from_object(item, scope, reading) for item in obj])
    origin = typing.get_origin(obj)
    if origin is not None and not getattr(obj, "_special", False):
        args = typing.get_args(obj)
        if origin is typing.Union or origin is types.UnionType:
            return Union([_from_object(arm, scope, reading) for arm in args])
        if origin is typing.Literal:
            return Literal(args)
        if origin is typing.Annotated:
            return _from_object(args[0], scope, reading)
        if origin is typing.Concatenate:
            return Sub(Ref(typing.Concatenate), [_from_object(a, scope, reading) for a in args])
        if origin is collections.abc.Callable and len(args) == 2:
            return Sub(
                Ref(origin),
                [_from_object(args[0], scope, reading), _from_object(args[1], scope, reading)],
            )
        if not args:  # tuple[()], or a bare generic alias such as typing.Callable
            return Sub(Ref(tuple), []) if origin is tuple else bare(origin)
        return Sub(Ref(origin), [_from_object(arg, scope, reading) for arg in args])
    if origin is not None:  # a bare typing alias (typing.List): its class
        return bare(origin)
    if isinstance(obj, type):
        return bare(obj)
    if id(obj) in _TYPING_NAMES or _named(obj):
        return Ref(obj)
    return Unknown(repr(obj), f"{obj!r} is not a type")


#: How many type arguments the generic classes of the standard library take.
_GENERIC_ARITY = {
    alias.__origin__: alias._nparams
    for alias in vars(typing).values()
    if isinstance(getattr(alias, "_nparams", None), int) and isinstance(alias.__origin__, type)
}


_CALLABLE: Any = collections.abc.Callable


def bare(cls: type) -> Node:
    """A class written without type arguments: a generic one with ``Any`` for each, as type
    checkers read it (``list`` is ``list[Any]``)."""
    if cls is tuple:
        return Sub(Ref(tuple), [Ref(Any), ELLIPSIS])
    if cls is _CALLABLE:
        return Sub(Ref(cls), [ELLIPSIS, Ref(Any)])
    arity = _GENERIC_ARITY.get(cls)
    if arity is None:
        params = getattr(cls, "__parameters__", ())
        arity = len(params) if isinstance(params, tuple) else 0
    if arity <= 0:
        return Ref(cls)
    return Sub(Ref(cls), [Ref(Any)] * arity)


def _named(obj: Any) -> bool:
    """A ``NewType``, a ``type`` alias (3.12) or another named typing object."""
    return isinstance(getattr(obj, "__module__", None), str) and isinstance(
        getattr(obj, "__name__", None), str
    )


# ------------------------------------------------------------------------------ writing


class Namer(typing.Protocol):
    """How a writer names what a tree refers to."""

    def ref(self, obj: Any) -> str: ...
    def twin(self, cls: type) -> str: ...
    def var(self, var: Any) -> str: ...
    def unknown(self, node: Unknown) -> str: ...
    def entered(self, node: Entered) -> str: ...


def qualified_name(obj: Any) -> tuple[str, str]:
    """``(module, qualified name)`` of a named object."""
    name = _TYPING_NAMES.get(id(obj))
    if name is not None:
        return "typing", name
    module = getattr(obj, "__module__", None) or "builtins"
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    if module == "builtins" and getattr(builtins, qualname, None) is not obj:
        # the types of functions, tracebacks, code and the like: named in `types`
        for name, value in vars(types).items():
            if value is obj:
                return "types", name
    return module, qualname


def public_module(
    module: str, qualname: str, obj: Any, skip: collections.abc.Container[str] = ()
) -> str:
    """The shortest already-imported module (not one in ``skip``) that has ``obj`` under the
    same name: a class defined in ``pkg._impl`` and re-exported by ``pkg`` is ``pkg``'s."""
    top = qualname.split(".")[0]
    parts = module.split(".")
    for end in range(1, len(parts)):
        candidate = ".".join(parts[:end])
        if candidate in skip:
            continue
        found = sys.modules.get(candidate)
        if (
            found is not None
            and top in getattr(found, "__all__", ())  # exported, as type checkers see it
            and getattr(found, top, None) is _top_object(obj, qualname)
        ):
            return candidate
    return module


def _top_object(obj: Any, qualname: str) -> Any:
    if "." not in qualname:
        return obj
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    return getattr(module, qualname.split(".")[0], MISSING)


def write(node: Node, namer: Namer) -> str:
    """Stub text of a tree."""
    if isinstance(node, Ref):
        return "None" if node.obj is None else namer.ref(node.obj)
    if isinstance(node, Var):
        name = namer.var(node.var)
        return f"{name}.{node.attr}" if node.attr else name
    if isinstance(node, Sub):
        origin = write(node.origin, namer)
        if isinstance(node.origin, Unknown):
            return origin
        if not node.args:
            return (
                f"{origin}[()]"
                if isinstance(node.origin, Ref) and node.origin.obj is tuple
                else origin
            )
        if isinstance(node.origin, Ref) and node.origin.obj is typing.Unpack:
            return f"*{write(node.args[0], namer)}"
        return f"{origin}[{', '.join(write(arg, namer) for arg in node.args)}]"
    if isinstance(node, Params):
        return f"[{', '.join(write(item, namer) for item in node.items)}]"
    if isinstance(node, Union):
        arms: list[str] = []
        for arm in node.arms:
            text = write(arm, namer)
            if text not in arms:
                arms.append(text)
        return " | ".join(arms)
    if isinstance(node, Literal):
        values = ", ".join(_literal(value, namer) for value in node.values)
        return f"{namer.ref(typing.Literal)}[{values}]"
    if isinstance(node, Unknown):
        return namer.unknown(node)
    if isinstance(node, TwinRef):
        return namer.twin(node.cls)
    if isinstance(node, Entered):
        return namer.entered(node)
    return "..."


def _literal(value: Any, namer: Namer) -> str:
    if isinstance(value, (str, bytes, int, bool)) or value is None:
        return repr(value)
    # an enum member
    return f"{namer.ref(type(value))}.{value.name}"


class ShortNames:
    """Names for annotations shown at run time (``inspect.signature``): as written, short."""

    def ref(self, obj: Any) -> str:
        if obj is typing.Any:
            return "Any"
        return qualified_name(obj)[1]

    def twin(self, cls: type) -> str:
        return cls.__qualname__

    def var(self, var: Any) -> str:
        return str(var.__name__)

    def unknown(self, node: Unknown) -> str:
        return node.text

    def entered(self, node: Entered) -> str:
        return write(node.awaited, self)


def to_object(node: Node, twin_class: Callable[[type], type] | None) -> Any:
    """An annotation object for a tree (twin classes made by ``twin_class``)."""
    if isinstance(node, Ref):
        return node.obj
    if isinstance(node, Var):
        return getattr(node.var, node.attr) if node.attr else node.var
    if isinstance(node, Sub):
        origin = to_object(node.origin, twin_class)
        if isinstance(node.origin, Unknown):
            return origin
        if not node.args:
            return origin[()] if origin is tuple else origin
        args = [to_object(arg, twin_class) for arg in node.args]
        try:
            return origin[tuple(args) if len(args) > 1 else args[0]]
        except TypeError:
            return write(node, ShortNames())
    if isinstance(node, Params):
        return [to_object(item, twin_class) for item in node.items]
    if isinstance(node, Union):
        arms = [to_object(arm, twin_class) for arm in node.arms]
        try:
            return functools.reduce(operator.or_, arms)
        except TypeError:  # an arm kept as text
            return typing.Union[tuple(arms)]  # noqa: UP007
    if isinstance(node, Literal):
        return typing.Literal[node.values]
    if isinstance(node, TwinRef):
        return twin_class(node.cls) if twin_class is not None else node.cls.__qualname__
    if isinstance(node, Entered):
        return to_object(node.awaited, twin_class)
    if isinstance(node, Unknown):
        return node.text
    return Ellipsis
