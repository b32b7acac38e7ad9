"""blockon: call asyncio code from synchronous Python.

One call that works in scripts, notebooks, async web servers, tests and many threads at
once::

    import blockon

    data = blockon.run(client.fetch(url))

See the README and docs/ for the rules of where the work runs.
"""

from ._api import enter_context, gather, map, wrap_context, wrap_iter
from ._blockon import run, submit
from ._loopthread import LoopThread, default_loop_thread
from ._sync import sync_default as sync
from ._to_thread import to_thread

__all__ = (
    "LoopThread",
    "default_loop_thread",
    "enter_context",
    "gather",
    "map",
    "run",
    "submit",
    "sync",
    "to_thread",
    "wrap_context",
    "wrap_iter",
)

__version__ = "0.1.0"
