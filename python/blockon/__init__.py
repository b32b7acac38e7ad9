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

# `map` is public as `blockon.map`, but not in __all__: `from blockon import *` must not
# shadow the builtin.
__all__ = (
    "LoopThread",
    "call",
    "default_loop_thread",
    "enter_context",
    "gather",
    "run",
    "submit",
    "sync",
    "to_thread",
    "wrap_context",
    "wrap_iter",
)

__version__ = "0.1.0"

# Public objects report the public module, so help(), reprs and tracebacks never show
# private module names (bound methods report their function's).
for _obj in (LoopThread, default_loop_thread, to_thread, run, submit):
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
