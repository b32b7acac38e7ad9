"""The classes of a stub (``_stubgen``): twin classes, subclasses of twin classes, plain
classes a module defines, the classes of module twins, and the classes of call results that
are awaited at the call and also entered by ``with`` or iterated by ``for`` (``Entered``).

A twin class is what ``_twin_classes.make_class`` makes of an async class, typed: its methods,
class methods and static methods twins (whose results follow ``sync()``'s rules, as
``_sync_types`` writes them), its other attributes read through and adopted, ``__enter__``
and ``__iter__`` for ``__aenter__`` and ``__aiter__``, the operators it forwards, and as bases
the twins of its async bases only.
"""

from __future__ import annotations

import ast
import collections.abc
import functools
import inspect
import textwrap
import types
import typing
from typing import Any

from . import _annotations as A
from ._sync_types import Rules, is_twinned_class
from ._twins import _DATA_DUNDERS, TwinFunction


class StubNamer(A.Namer, typing.Protocol):
    """How classes name things in their stub (``_stubgen.Namer``)."""

    scope: frozenset[str]
    context: str


class StubWriter(typing.Protocol):
    """What classes need of the stub they are written into (``_stubgen.Writer``)."""

    @property
    def namer(self) -> StubNamer: ...
    @property
    def rules(self) -> Rules: ...

    def fallback(self, why: str) -> None: ...
    def function(
        self,
        name: str,
        fn: Any,
        *,
        deep: bool,
        twin: bool,
        bound: bool = False,
        owner: type | None = None,
        decorators: tuple[str, ...] = (),
        self_param: bool = False,
    ) -> list[str]: ...
    def parameters(
        self, parameters: list[inspect.Parameter], fn: Any, *, twin: bool, self_param: bool
    ) -> str: ...
    def module_twin(self, module: types.ModuleType) -> str: ...
    def twin_root(self) -> str: ...
    def data_type(self, owner: Any, name: str, value: Any) -> A.Node: ...


_EXIT_PARAMETERS = "exc_type: {type}[{base}] | None, exc: {base} | None, tb: {tb} | None"


class ClassWriter:
    def __init__(self, writer: StubWriter) -> None:
        self.writer = writer
        self.namer = writer.namer
        self.rules = writer.rules

    def write(self, node: A.Node) -> str:
        return A.write(node, self.namer)

    # --- twin classes

    def twin_class(self, cls: type, name: str) -> list[str]:
        namer, rules = self.namer, self.rules
        twin_bases = [base for base in cls.__bases__ if is_twinned_class(base)]
        inherited: set[type] = set()
        for base in twin_bases:
            inherited.update(base.__mro__)
        members: dict[str, tuple[Any, type]] = {}
        dunders: dict[str, Any] = {}
        for klass in cls.__mro__:
            if klass is object:
                continue
            for member, raw in list(vars(klass).items()):
                if member.startswith("__") and member.endswith("__"):
                    dunders.setdefault(member, raw)
                else:
                    members.setdefault(member, (raw, klass))
        own = {
            member: raw
            for member, (raw, klass) in members.items()
            if not member.startswith("_") and klass not in inherited
        }
        attributes = self.attributes(cls, inherited, set(members))
        namer.scope = frozenset({*members, *attributes, *dunders})
        bases = [self.twin_base(cls, base) for base in twin_bases]
        if not bases and not getattr(cls, "_is_protocol", False):
            bases.append(f"{self.writer.twin_root()}[{namer.ref(cls)}]")
        bases.extend(self.generic_bases(cls))
        body: list[str] = []
        namer.context = f"{name}.__init__"
        body.extend(self.constructor(cls))
        for member, raw in own.items():
            namer.context = f"{name}.{member}"
            body.extend(self.member(cls, member, raw, twin=True))
        for member, node in attributes.items():
            namer.context = f"{name}.{member}"
            body.append(f"{member}: {self.write(rules.adopted(node, cls))}")
        namer.context = name
        body.extend(self.protocols(cls, dunders))
        namer.scope = frozenset()
        head = f"class {name}({', '.join(bases)}):" if bases else f"class {name}:"
        return with_doc(head, cls.__doc__, body)

    def twin_base(self, cls: type, base: type) -> str:
        for orig in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(orig) is base:
                scope = self.rules.scope(cls, cls)
                args = [A.read(arg, scope) for arg in typing.get_args(orig)]
                return self.write(A.Sub(A.TwinRef(base), args))
        return self.namer.twin(base)

    def generic_bases(self, cls: type) -> list[str]:
        params = getattr(cls, "__parameters__", ())
        if getattr(cls, "_is_protocol", False):
            kind: Any = typing.Protocol
        elif params:
            kind = typing.Generic
        else:
            return []
        base = self.namer.ref(kind)
        if not params:
            return [base]
        return [f"{base}[{', '.join(self.write(A.Var(p)) for p in params)}]"]

    def constructor(self, cls: type) -> list[str]:
        try:
            signature = inspect.signature(cls)
        except (TypeError, ValueError):
            self.writer.fallback("its signature cannot be read")
            return [
                f"def __init__(self, *args: {self.namer.ref(Any)}, **kwargs: "
                f"{self.namer.ref(Any)}) -> None: ..."
            ]
        init = getattr(cls, "__init__", None)
        source = init if isinstance(init, types.FunctionType) else cls
        text = self.writer.parameters(
            list(signature.parameters.values()), source, twin=True, self_param=True
        )
        return [f"def __init__({text}) -> None: ..."]

    def member(self, cls: type | None, member: str, raw: Any, *, twin: bool) -> list[str]:
        writer, namer = self.writer, self.namer
        if isinstance(raw, TwinFunction):
            return writer.function(member, raw._fn, deep=raw._adopt is not None, twin=True)
        if isinstance(raw, staticmethod) and callable(raw.__func__):
            fn = raw.__func__
            if isinstance(fn, TwinFunction):
                fn, twin = fn._fn, True
            return writer.function(
                member,
                fn,
                deep=twin,
                twin=twin,
                owner=cls,
                decorators=(namer.ref(staticmethod),),
            )
        if isinstance(raw, classmethod):
            return writer.function(
                member,
                raw.__func__,
                deep=twin,
                twin=twin,
                owner=cls,
                decorators=(namer.ref(classmethod),),
            )
        if isinstance(raw, types.FunctionType):
            return writer.function(member, raw, deep=twin, twin=twin, owner=cls)
        if isinstance(raw, property):
            return self.property(cls, member, raw, twin=twin)
        if isinstance(raw, functools.cached_property):
            return self.property(cls, member, property(raw.func, doc=raw.__doc__), twin=twin)
        if isinstance(raw, type):
            ref = namer.twin(raw) if twin and is_twinned_class(raw) else namer.ref(raw)
            return [f"{member}: {namer.ref(typing.ClassVar)}[{namer.ref(type)}[{ref}]]"]
        if callable(raw) or hasattr(type(raw), "__get__"):
            node: A.Node = A.Unknown("...", f"a {type(raw).__name__} the stub cannot describe")
        else:
            node = A.read(type(raw), A.Scope({}))
        if twin:
            node = self.rules.adopted(node, cls)
        return [f"{member}: {self.write(node)}"]

    def property(self, cls: type | None, member: str, prop: property, *, twin: bool) -> list[str]:
        namer, rules = self.namer, self.rules
        node = rules.returns(prop.fget) if prop.fget is not None else A.Unknown("...", "no getter")
        if twin:
            node = rules.adopted(node, cls)
        lines = [
            f"@{namer.ref(property)}",
            *with_doc(f"def {member}(self) -> {self.write(node)}:", prop.__doc__),
        ]
        if prop.fset is not None:
            value = self.writer.parameters(
                list(inspect.signature(prop.fset).parameters.values())[1:2],
                prop.fset,
                twin=twin,
                self_param=True,
            )
            lines.extend([f"@{member}.setter", f"def {member}({value}) -> None: ..."])
        if prop.fdel is not None:
            lines.extend([f"@{member}.deleter", f"def {member}(self) -> None: ..."])
        return lines

    def attributes(self, cls: type, inherited: set[type], members: set[str]) -> dict[str, A.Node]:
        """Public attributes declared in class bodies (annotations) or set in ``__init__``,
        that no member stands for."""
        found: dict[str, A.Node] = {}
        for klass in cls.__mro__:
            if klass is object or klass in inherited:
                continue
            scope = self.rules.scope(klass, klass)
            for attr, annotation in vars(klass).get("__annotations__", {}).items():
                if not attr.startswith("_") and attr not in found:
                    found[attr] = _unwrap_classvar(A.read(annotation, scope))
        for klass in cls.__mro__:
            if klass is object or klass in inherited:
                continue
            init = vars(klass).get("__init__")
            if isinstance(init, types.FunctionType):
                for attr, node in self.init_attributes(init).items():
                    found.setdefault(attr, node)
        return {attr: node for attr, node in found.items() if attr not in members}

    def init_attributes(self, init: types.FunctionType) -> dict[str, A.Node]:
        """``self.name = value`` in ``__init__``: typed by its annotation, the annotation
        of the parameter it is set from, or its literal value."""
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        except (OSError, TypeError, SyntaxError):
            return {}
        function = tree.body[0]
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return {}
        if not function.args.args:
            return {}
        me = function.args.args[0].arg
        scope = self.rules.scope(init)
        declared = {
            arg.arg: arg.annotation
            for arg in [*function.args.args, *function.args.kwonlyargs]
            if arg.annotation is not None
        }
        found: dict[str, A.Node] = {}
        for node in ast.walk(function):
            target, annotation, value = None, None, None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign):
                target, annotation, value = node.target, node.annotation, node.value
            if not (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == me
                and not target.attr.startswith("_")
            ):
                continue
            if target.attr in found:
                continue
            if annotation is not None:
                found[target.attr] = A.read(ast.unparse(annotation), scope)
            elif isinstance(value, ast.Name) and value.id in declared:
                found[target.attr] = A.read(ast.unparse(declared[value.id]), scope)
            elif isinstance(value, ast.Constant) and value.value is not None:
                found[target.attr] = A.Ref(type(value.value))
            else:
                found[target.attr] = A.Unknown(
                    "...", f"attribute {target.attr} is set in __init__ without a type"
                )
        return found

    def protocols(self, cls: type, dunders: dict[str, Any]) -> list[str]:
        """``with``, ``for``, calls and the operators a twin forwards."""
        namer, rules = self.namer, self.rules
        lines: list[str] = []
        exit_parameters = _EXIT_PARAMETERS.format(
            type=namer.ref(type), base=namer.ref(BaseException), tb=namer.ref(types.TracebackType)
        )
        if "__aenter__" in dunders and "__aexit__" in dunders:
            entered = rules.entered_type(cls, keep_self=True) or A.Unknown("...", "no __aenter__")
            lines.append(f"def __enter__(self) -> {self.write(entered)}: ...")
            lines.append(f"def __exit__(self, {exit_parameters}) -> {namer.ref(bool)}: ...")
        elif "__enter__" in dunders and "__exit__" in dunders:
            entered = rules.member_returns(cls, "__enter__") or A.Unknown("...", "no __enter__")
            if not (isinstance(entered, A.Ref) and entered.obj is typing.Self):
                entered = rules.adopted(entered, cls)
            lines.append(f"def __enter__(self) -> {self.write(entered)}: ...")
            lines.append(
                f"def __exit__(self, {exit_parameters}, /) -> {namer.ref(bool)} | None: ..."
            )
        iterator = namer.ref(collections.abc.Iterator)
        if "__aiter__" in dunders:
            items = rules.item_type(cls) or A.Unknown("...", "no __aiter__")
            lines.append(f"def __iter__(self) -> {iterator}[{self.write(items)}]: ...")
        elif "__iter__" in dunders:
            declared = rules.member_returns(cls, "__iter__")
            if isinstance(declared, A.Sub) and declared.args:
                items = rules.adopted(declared.args[0], cls)
            else:
                items = A.Unknown("...", "__iter__ does not declare an Iterator type")
            lines.append(f"def __iter__(self) -> {iterator}[{self.write(items)}]: ...")
        call = dunders.get("__call__")
        if isinstance(call, types.FunctionType):
            lines.extend(self.writer.function("__call__", call, deep=True, twin=True, owner=cls))
        elif call is not None:
            self.writer.fallback("__call__ is not a Python function")
            any_ = namer.ref(Any)
            lines.append(f"def __call__(self, *args: {any_}, **kwargs: {any_}) -> {any_}: ...")
        for dunder, adopt in _DATA_DUNDERS.items():
            raw = dunders.get(dunder)
            if raw is not None:
                lines.extend(self.operator(cls, dunder, raw, adopt))
        return lines

    def operator(self, cls: type, dunder: str, raw: Any, adopt: bool) -> list[str]:
        """A forwarded operator, with its declared signature (the forwarder's)."""
        if not isinstance(raw, types.FunctionType):
            any_ = self.namer.ref(Any)
            return [f"def {dunder}(self, *args: {any_}) -> {any_}: ..."]
        parameters = list(inspect.signature(raw).parameters.values())[1:]
        text = self.writer.parameters(parameters, raw, twin=False, self_param=True)
        node = self.rules.returns(raw)
        if adopt:
            node = self.rules.adopted(node, cls)
        return [f"def {dunder}({text}) -> {self.write(node)}: ..."]

    # --- subclasses of twin classes, and plain classes

    def subclass(self, cls: type, name: str) -> list[str]:
        bases = []
        for base in cls.__bases__:
            if "_blockon_wrapped" in vars(base):
                bases.append(self.namer.twin(vars(base)["_blockon_wrapped"]))
            else:
                bases.append(self.namer.ref(base))
        return self.own_members(cls, name, bases)

    def plain_class(self, cls: type, name: str) -> list[str]:
        scope = self.rules.scope(cls, cls)
        bases = [
            self.write(A.read(base, scope))
            for base in getattr(cls, "__orig_bases__", cls.__bases__)
            if base is not object
        ]
        return self.own_members(cls, name, bases)

    def own_members(self, cls: type, name: str, bases: list[str]) -> list[str]:
        """A class with the members its own body defines, as they are (twins in it as
        twins)."""
        namer = self.namer
        own = {
            member: raw
            for member, raw in vars(cls).items()
            if not member.startswith("_") or member in ("__init__", "__call__")
        }
        scope = self.rules.scope(cls, cls)
        annotated = {
            attr: _unwrap_classvar(A.read(annotation, scope))
            for attr, annotation in vars(cls).get("__annotations__", {}).items()
            if not attr.startswith("_") and attr not in own
        }
        namer.scope = frozenset({*own, *annotated})
        body: list[str] = []
        for member, raw in own.items():
            namer.context = f"{name}.{member}"
            body.extend(self.member(cls, member, raw, twin=False))
        for attr, node in annotated.items():
            namer.context = f"{name}.{attr}"
            body.append(f"{attr}: {self.write(node)}")
        namer.scope = frozenset()
        namer.context = name
        head = f"class {name}({', '.join(bases)}):" if bases else f"class {name}:"
        return with_doc(head, cls.__doc__, body)

    # --- module twins and Entered

    def module_attribute(self, module: types.ModuleType, attr: str, value: Any) -> list[str]:
        """One attribute of a module twin: twinned as ``ModuleTwin`` does on first read."""
        namer, writer = self.namer, self.writer
        if isinstance(value, (typing.TypeVar, typing.ParamSpec, typing.TypeVarTuple)):
            return []
        if isinstance(value, type):
            ref = namer.twin(value) if is_twinned_class(value) else namer.ref(value)
            return [f"{attr}: {namer.ref(typing.ClassVar)}[{namer.ref(type)}[{ref}]]"]
        if isinstance(value, types.ModuleType):
            return [f"{attr}: {writer.module_twin(value)}"]
        if isinstance(value, TwinFunction):
            fn, deep = value._fn, value._adopt is not None
            return writer.function(attr, fn, deep=deep, twin=True, self_param=True)
        if inspect.isroutine(value) or isinstance(value, functools.partial):
            return writer.function(attr, value, deep=True, twin=True, self_param=True)
        if is_twinned_class(type(value)):
            return [f"{attr}: {namer.twin(type(value))}"]
        node = writer.data_type(module, attr, value)
        return [f"{attr}: {self.write(self.rules.adopted(node))}"]

    def entered_class(self, node: A.Entered, name: str) -> list[str]:
        body: list[str] = []
        namer = self.namer
        if node.entered is not None:
            exit_parameters = _EXIT_PARAMETERS.format(
                type=namer.ref(type),
                base=namer.ref(BaseException),
                tb=namer.ref(types.TracebackType),
            )
            body.append(f"def __enter__(self) -> {self.write(node.entered)}: ...")
            body.append(f"def __exit__(self, {exit_parameters}) -> {namer.ref(bool)}: ...")
        if node.items is not None:
            iterator = namer.ref(collections.abc.Iterator)
            body.append(f"def __iter__(self) -> {iterator}[{self.write(node.items)}]: ...")
        doc = (
            f"What a call returning {node.source.__qualname__} gives: its awaited value, "
            "entered by `with` and iterated by `for` as `async with` and `async for` would."
        )
        return with_doc(f"class {name}({self.write(node.awaited)}):", doc, body)


def docstring(doc: str) -> list[str]:
    """The lines of a docstring literal."""
    text = inspect.cleandoc(doc).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text += " "
    first, *rest = text.split("\n")
    if not rest:
        return [f'"""{first}"""']
    return [f'"""{first}', *rest, '"""']


def with_doc(head: str, doc: str | None, body: list[str] | None = None) -> list[str]:
    """``head`` (a ``def`` or ``class`` line) with its docstring and indented body, or
    ``...`` when it has neither."""
    inner = [*(docstring(doc) if doc and inspect.cleandoc(doc) else []), *(body or [])]
    lines = [head, *(f"    {line}" if line else "" for line in inner)]
    if len(lines) == 1:
        return [f"{head} ..."]
    return lines


def _unwrap_classvar(node: A.Node) -> A.Node:
    if (
        isinstance(node, A.Sub)
        and isinstance(node.origin, A.Ref)
        and node.origin.obj in (typing.ClassVar, typing.Final)
        and node.args
    ):
        return node.args[0]
    return node
