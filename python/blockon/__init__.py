"""blockon: call asyncio code from synchronous Python.

One call that works in scripts, notebooks, async web servers, tests and many threads at
once::

    import blockon

    data = blockon.run(client.fetch(url))

docs/reference.md is the reference of every public name.
"""

from ._api import call, enter_context, gather, run, submit, sync, wrap_context, wrap_iter
from ._api import map as map
from ._loopthread import LoopThread, default_loop_thread
from ._to_thread import to_thread

# patch_asyncio, unpatch_asyncio and the hooks `%load_ext blockon` and `%unload_ext blockon`
# call in IPython are loaded on first use (`__getattr__` below): most programs never use
# them, and `import blockon` stays under 5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._ipython import load_ipython_extension as load_ipython_extension
    from ._ipython import unload_ipython_extension as unload_ipython_extension
    from ._patch import patch_asyncio as patch_asyncio
    from ._patch import unpatch_asyncio as unpatch_asyncio

# `map` is public as `blockon.map`, but not in __all__: `from blockon import *` must not
# shadow the builtin.
__all__ = (
    "LoopThread",
    "call",
    "default_loop_thread",
    "enter_context",
    "gather",
    "patch_asyncio",
    "run",
    "submit",
    "sync",
    "to_thread",
    "unpatch_asyncio",
    "wrap_context",
    "wrap_iter",
)

__version__ = "0.1.0"

# Public objects report the public module, so help(), reprs and tracebacks never show
# private module names (bound methods report their function's).
for _obj in (
    LoopThread,
    default_loop_thread,
    to_thread,
    run,
    submit,
):
    _obj.__module__ = __name__
for _name in (
    "call",
    "sync",
    "wrap_context",
    "enter_context",
    "wrap_iter",
    "gather",
    "map",
    "close",
):
    getattr(LoopThread, _name).__module__ = __name__
del _obj, _name


_PATCH = ("patch_asyncio", "unpatch_asyncio")
_IPYTHON = ("load_ipython_extension", "unload_ipython_extension")


def __getattr__(name: str) -> object:
    if name in _PATCH:
        from . import _patch

        found: object = getattr(_patch, name)
        found.__module__ = __name__
    elif name in _IPYTHON:
        from . import _ipython

        found = getattr(_ipython, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = found
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *_PATCH, *_IPYTHON})
