"""Cluster: one server id across many processes and machines, joined through Redis/Valkey
pub/sub. See docs/cluster.md.

``ipc.config.cluster = "redis://host:6379/0"`` is all most users need: ``ipc.serve`` and
``ipc.serve_net`` then call :func:`attach` themselves. The server module never imports
this package; it only calls the object ``attach`` leaves in ``server.cluster``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .envelope import VERSION, wire_name
from .url import EngineAddress, parse_url

if TYPE_CHECKING:
    from .node import Cluster, attach

__all__ = ["Cluster", "EngineAddress", "VERSION", "attach", "parse_url", "wire_name"]


def __getattr__(name: str) -> Any:
    # the engine client (hiredis, the 'cluster' extra) loads only when a cluster is
    # made, so config.cluster can check a URL without it
    if name in ("Cluster", "attach"):
        from . import node
        return getattr(node, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
