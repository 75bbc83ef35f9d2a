"""Cluster: one server id across many processes and machines, joined through Redis/Valkey
pub/sub. See docs/cluster.md.

``ipc.config.cluster = "redis://host:6379/0"`` is all most users need: every stream
server made with it set (by ``ipc.serve``/``ipc.serve_net`` or by hand) calls
:func:`attach` on itself. The server module never imports this package: importing it
installs that call in the server module (setting ``config.cluster`` imports it, to check
the URL), and the server only calls the object ``attach`` leaves in ``server.cluster``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..server import install_cluster_join
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


def _join(server: Any) -> None:
    """What a server made with ``config.cluster`` set calls on itself (see above)."""
    from .node import attach  # the engine client (hiredis) only when a node is made
    attach(server)


install_cluster_join(_join)
