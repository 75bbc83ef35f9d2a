"""geventipc: node-ipc's event API (serve, connect_to, on, emit, broadcast) on gevent.

    from geventipc import ipc
    ipc.config.id = "world"
    ipc.serve(lambda: ipc.server.on("message", lambda data, socket: ...))
    ipc.server.serve_forever()
"""
from __future__ import annotations

from . import errors
from .client import Client
from .config import Config
from .errors import IPCError
from .ipc import IPC
from .reply import Deferred
from .server import Server
from .transports.stream import StreamConnection

__version__ = "0.1.0"

#: the module-level default instance, as node-ipc's ``require('node-ipc')``
ipc = IPC()

__all__ = ["IPC", "ipc", "Config", "Client", "Server", "StreamConnection", "IPCError",
           "Deferred", "errors", "__version__"]
