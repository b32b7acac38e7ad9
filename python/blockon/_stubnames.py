"""Names in a stub (``_stubgen``): what a module's source imports (also only for type
checkers), and how a stub names what its types refer to: imports made as needed, short where
nothing shadows them, twin classes, type variables and ``Entered`` classes allocated and
queued for writing."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from . import _annotations as A


class StubModule(typing.Protocol):
    """What names need of the stub they are made for (``_stubgen.Writer``)."""

    module: types.ModuleType
    names: list[str]
    queue: list[tuple[str, Any, str]]

    def fallback(self, why: str) -> None: ...
    def exposed(self, cls: type) -> tuple[str, str] | None: ...
    def unexported(self) -> frozenset[str]: ...


# ------------------------------------------------------------------------------ source


class Source:
    """What a module's source says that its objects do not: the imports it makes only for
    type checkers (``if TYPE_CHECKING:``), and the names it imports from other modules."""

    def __init__(self) -> None:
        self._imports: dict[str, dict[str, tuple[str, str | None]]] = {}

    def imports(self, module_name: str) -> dict[str, tuple[str, str | None]]:
        """Local name -> (module, attribute or None for ``import m``), every import at
        module level, including those under ``if``/``try``."""
        found = self._imports.get(module_name)
        if found is not None:
            return found
        found = {}
        module = sys.modules.get(module_name)
        try:
            tree = ast.parse(inspect.getsource(module)) if module is not None else None
        except (OSError, TypeError, SyntaxError):
            tree = None
        package = getattr(module, "__package__", None) or ""
        for node in _module_level(tree.body if tree is not None else []):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        found[alias.asname] = (alias.name, None)
                    else:
                        top = alias.name.split(".")[0]
                        found[top] = (top, None)
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                for alias in node.names:
                    found[alias.asname or alias.name] = (base, alias.name)
        self._imports[module_name] = found
        return found

    def lookup(self, module_name: str) -> Callable[[str], Any]:
        """Names of ``module_name``'s imports, imported on first use."""

        def find(name: str) -> Any:
            where = self.imports(module_name).get(name)
            if where is None:
                return A.MISSING
            try:
                module = importlib.import_module(where[0])
            except Exception:
                return A.MISSING
            return module if where[1] is None else getattr(module, where[1], A.MISSING)

        return find


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody):
                yield from _module_level(part)
            for handler in node.handlers:
                yield from _module_level(handler.body)


# ------------------------------------------------------------------------------ names


class Namer:
    """Names in one stub: imports made as needed, short where nothing shadows them; twin
    classes, type variables and ``Entered`` classes allocated and queued for writing."""

    def __init__(self, writer: StubModule) -> None:
        self.writer = writer
        self.module = writer.module.__name__
        self.taken: set[str] = set(vars(writer.module)) | set(writer.names)
        self.froms: dict[str, set[str]] = {}
        self.reexports: dict[str, list[str]] = {}
        self.aliases: dict[str, str] = {}  # import alias -> module
        self.short: dict[str, tuple[str, str]] = {}
        self.twins: dict[type, str] = {}
        self.vars: dict[int, str] = {}
        self.var_defs: list[tuple[str, Any]] = []
        self.entered_names: dict[type, str] = {}
        self.scope: frozenset[str] = frozenset()  # member names of the class being written
        self.context = ""

    def private(self, base: str) -> str:
        name = f"_{base}"
        n = 2
        while name in self.taken:
            name = f"_{base}{n}"
            n += 1
        self.taken.add(name)
        return name

    def import_name(self, module: str, name: str) -> str:
        """``name`` from ``module``, short if free, else through a module alias."""
        top = name.split(".")[0]
        owner = self.short.get(top)
        if owner == (module, top) and top not in self.scope:
            return name
        if owner is None and top not in self.taken and top not in self.scope:
            self.short[top] = (module, top)
            self.froms.setdefault(module, set()).add(top)
            return name
        alias = "_" + module.replace(".", "_")
        self.aliases[alias] = module
        return f"{alias}.{name}"

    # --- the Namer protocol of _annotations.write

    def ref(self, obj: Any) -> str:
        module, qualname = A.qualified_name(obj)
        if module == "builtins":
            top = qualname.split(".")[0]
            if top in self.scope or top in self.writer.names:
                self.aliases["_builtins"] = "builtins"
                return f"_builtins.{qualname}"
            return qualname
        if module == self.module and getattr(self.writer.module, qualname.split(".")[0], None):
            return qualname
        module = A.public_module(module, qualname, obj, skip=self.writer.unexported())
        return self.import_name(module, qualname)

    def twin(self, cls: type) -> str:
        name = self.twins.get(cls)
        if name is not None:
            return name
        home = self.writer.exposed(cls)
        if home is not None and home[0] != self.module:
            return self.import_name(*home)
        name = self.private(cls.__name__)
        self.twins[cls] = name
        self.writer.queue.append(("twin", cls, name))
        return name

    def var(self, var: Any) -> str:
        name = self.vars.get(id(var))
        if name is not None:
            return name
        name = self.private(var.__name__.lstrip("_"))
        self.vars[id(var)] = name
        self.var_defs.append((name, var))
        return name

    def unknown(self, node: A.Unknown) -> str:
        self.writer.fallback(node.why)
        return self.ref(Any)

    def entered(self, node: A.Entered) -> str:
        awaited = node.awaited
        if not _subclassable(awaited):
            self.writer.fallback(
                f"the result of {node.source.__qualname__} is typed as the awaited value: with "
                "and for on the call are not typed"
            )
            return A.write(awaited, self)
        name = self.entered_names.get(node.source)
        if name is None:
            name = self.private(f"{node.source.__name__}Call")
            self.entered_names[node.source] = name
            self.writer.queue.append(("entered", node, name))
        return name


def _subclassable(node: A.Node) -> bool:
    if isinstance(node, A.TwinRef):
        return True
    cls = node.origin.obj if isinstance(node, A.Sub) and isinstance(node.origin, A.Ref) else None
    if isinstance(node, A.Ref):
        cls = node.obj
    return (
        isinstance(cls, type)
        and cls not in (bool, type(None), type)
        and not getattr(cls, "__final__", False)
    )
