"""``%load_ext blockon`` in IPython and Jupyter: ``patch_asyncio()`` in the kernel, so that
libraries calling ``asyncio.run()`` from a cell work; ``%unload_ext blockon`` undoes it.

IPython finds these two functions on the ``blockon`` package; IPython itself is never
imported (it is no dependency of blockon).
"""

from __future__ import annotations

from ._patch import patch_asyncio, unpatch_asyncio


def load_ipython_extension(ipython: object) -> None:
    """Called by ``%load_ext blockon``: ``blockon.patch_asyncio()``."""
    patch_asyncio()


def unload_ipython_extension(ipython: object) -> None:
    """Called by ``%unload_ext blockon``: ``blockon.unpatch_asyncio()``."""
    unpatch_asyncio()
