"""How a twin class is made from an async class: its methods become twins, its other
attributes are read through, and its protocols become their sync counterparts.

Used by the rules (``_sync.Registry.twin_class``), once per wrapped class; the classes and
protocol methods it assembles are in ``_twins``.
"""

from __future__ import annotations

import types
from collections.abc import Callable

from ._twins import (
    _DATA_DUNDERS,
    TwinBase,
    TwinMeta,
    _ClassMethod,
    _Forward,
    _forwarder,
    _Method,
    _twin_call,
    _twin_enter,
    _twin_exit,
    _twin_iter,
    _twin_sync_iter,
)

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._twins import Rules


def make_class(registry: Rules, cls: type, bases: tuple[type, ...]) -> type[TwinBase]:
    """The twin class of ``cls`` for ``registry`` (a ``_sync.Registry``), over the twin
    classes ``bases`` of its async bases: methods become twins, other attributes are read
    through, and the protocols become their sync counterparts."""
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": cls.__module__,
        "__qualname__": getattr(cls, "__qualname__", cls.__name__),
        "__doc__": cls.__doc__,
        "_blockon_wrapped": cls,
        "_blockon_registry": registry,
        "__init__": _init(cls),
    }
    dunders: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, raw in list(vars(klass).items()):
            if name.startswith("__") and name.endswith("__"):
                dunders.setdefault(name, raw)
            elif name not in namespace and not name.startswith("_blockon_"):
                namespace[name] = _member(registry, name, raw)
    _add_dunders(registry, namespace, dunders)
    try:
        twin_cls = TwinMeta(cls.__name__, bases or (TwinBase,), namespace)
    except TypeError:  # bases whose twins cannot be combined: flat twin, no mirroring
        twin_cls = TwinMeta(cls.__name__, (TwinBase,), namespace)
    made: type[TwinBase] = twin_cls  # type: ignore[assignment]  # a TwinBase subclass
    return made


def _member(registry: Rules, name: str, raw: Any) -> Any:
    if isinstance(raw, staticmethod) and callable(raw.__func__):
        return staticmethod(registry.routine(raw.__func__))
    if isinstance(raw, types.FunctionType):
        return _Method(name, raw, registry.routine(raw))
    if isinstance(raw, classmethod) and callable(raw.__func__):
        return _ClassMethod(name, raw.__func__)
    return _Forward(name)


def _init(cls: type) -> Callable[..., None]:
    """The twin class's ``__init__``: nothing to do (``TwinBase.__new__`` constructed the
    wrapped object), with the wrapped class's signature."""

    def __init__(self: TwinBase, *args: Any, **kwargs: Any) -> None:
        pass

    init = vars(cls).get("__init__") or getattr(cls, "__init__", None)
    if isinstance(init, types.FunctionType):
        __init__.__wrapped__ = init  # type: ignore[attr-defined]  # its signature is init's
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _add_dunders(registry: Rules, namespace: dict[str, Any], dunders: dict[str, Any]) -> None:
    if "__aenter__" in dunders and "__aexit__" in dunders:
        namespace["__enter__"] = _twin_enter
        namespace["__exit__"] = _twin_exit
    elif "__enter__" in dunders and "__exit__" in dunders:
        namespace["__enter__"] = _forwarder("__enter__", True, dunders["__enter__"])
        namespace["__exit__"] = _forwarder("__exit__", False, dunders["__exit__"])
    if "__aiter__" in dunders:
        namespace["__iter__"] = _twin_iter
    elif "__iter__" in dunders:
        namespace["__iter__"] = _twin_sync_iter
    call = dunders.get("__call__")
    if isinstance(call, types.FunctionType):
        namespace["__call__"] = registry.routine(call)
    elif call is not None:
        namespace["__call__"] = _twin_call
    for name, adopt in _DATA_DUNDERS.items():
        if name in dunders and dunders[name] is not None:
            namespace[name] = _forwarder(name, adopt, dunders[name])
