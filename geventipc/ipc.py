"""The node-ipc-shaped facade: ``IPC`` and its ``config``, ``of``, ``server``, ``log``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from .client import Client
from .config import Config, canonical_name
from .errors import ConfigError, NotReadyError, UnknownClientError
from .log import Log
from .server import Server

if TYPE_CHECKING:  # UDP is imported only when a UDP server is made
    from .udp import UDPServer

Callback = Callable[[], Any]


class ClientMap:
    """``ipc.of``: clients by server id, by item (``ipc.of["world"]``) or attribute
    (``ipc.of.world``).

    As node-ipc's ``ipc.of`` is a plain object, this one has no methods of its own that a
    server id could collide with: ``ipc.of.items``, ``ipc.of.keys`` or ``ipc.of.get`` are
    the clients of servers with those ids. ``ipc.of[id]`` works for every id;
    ``ipc.of.<id>`` for every id that is a Python identifier and not a ``__dunder__``
    name. ``id in ipc.of``, ``len(ipc.of)`` and ``for id in ipc.of`` work as on a dict.
    """

    __slots__ = ("__clients",)

    def __init__(self) -> None:
        self.__clients: dict[str, Client] = {}

    def __getitem__(self, key: str) -> Client:
        try:
            return self.__clients[key]
        except KeyError:
            raise UnknownClientError(_no_client(key)) from None

    def __getattr__(self, key: str) -> Client:
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)   # copy, pickle and friends probe for these
        try:
            return self.__clients[key]
        except KeyError:
            raise NotReadyError(_no_client(key)) from None

    def __setitem__(self, key: str, client: Client) -> None:
        self.__clients[key] = client

    def __delitem__(self, key: str) -> None:
        del self.__clients[key]

    def __contains__(self, key: object) -> bool:
        return key in self.__clients

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.__clients))

    def __len__(self) -> int:
        return len(self.__clients)

    def __bool__(self) -> bool:
        return bool(self.__clients)

    def __repr__(self) -> str:
        return f"<ipc.of {sorted(self.__clients)}>"


def _no_client(key: str) -> str:
    return (f"no client for server id {key!r}: call ipc.connect_to({key!r}, ...) or "
            f"ipc.connect_to_net({key!r}, ...) first")


def _client(of: ClientMap, server_id: str) -> Client | None:
    """``of``'s client for ``server_id``, or None."""
    return of[server_id] if server_id in of else None


class NoServer:
    """``ipc.server`` before ``serve``/``serve_net``: every use says what to call first.

    It is falsy, ``started`` is False and ``stop()`` does nothing, so shutdown code that
    runs whether or not a server was made keeps working.
    """

    __slots__ = ()

    started = False

    def stop(self, timeout: float = 2.0) -> None:
        """Nothing to stop."""

    def __bool__(self) -> bool:
        return False

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)
        raise NotReadyError(f"ipc.server.{key}: there is no server yet; call ipc.serve(...) "
                            f"or ipc.serve_net(...) first (ipc.server is the server they "
                            f"make)")

    def __repr__(self) -> str:
        return "<no server yet: call ipc.serve() or ipc.serve_net()>"


NO_SERVER = NoServer()


def _sort_args(args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...],
               kinds: dict[str, Callable[[Any], bool]], where: str) -> dict[str, Any]:
    """node-ipc's rule: optional arguments may be left out so long as they stay in order.

    Each positional argument goes to the first remaining name (in ``names`` order) whose
    kind test accepts it; keyword arguments are taken as they are.
    """
    out: dict[str, Any] = {name: None for name in names}
    remaining = list(names)
    for arg in args:
        for name in remaining:
            if kinds[name](arg):
                out[name] = arg
                remaining = remaining[remaining.index(name) + 1:]
                break
        else:
            raise TypeError(f"{where}: cannot place argument {arg!r} (expected, in order: "
                            f"{', '.join(names)})")
    for key, value in kwargs.items():
        if key not in out:
            raise TypeError(f"{where}: unexpected keyword argument {key!r}")
        out[key] = value
    return out


def _take_server_id(args: tuple[Any, ...], kwargs: dict[str, Any],
                    where: str) -> tuple[str, tuple[Any, ...]]:
    """A connect call's server id (first positional, or ``id=``, taken out of ``kwargs``)
    and the positional arguments after it."""
    if not args and "id" not in kwargs:
        raise TypeError(f"{where} needs the server id")
    server_id, rest = (args[0], args[1:]) if args else (kwargs.pop("id"), ())
    # checked before it is used to build a path, so the error names the real mistake
    if not isinstance(server_id, str) or not server_id:
        raise TypeError(f"server id must be a non-empty string, not {server_id!r}")
    return server_id, rest


def _is_config_key(key: str) -> bool:
    try:
        canonical_name(key)
    except ConfigError:
        return False
    return True


def _check_port(port: Any) -> None:
    # the socket layer takes ports modulo 65536: 70000 would quietly mean 4464
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be 0-65535, not {port!r}")


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_UDP_TYPES = ("udp4", "udp6")


def _is_udp_type(value: Any) -> bool:
    return value in _UDP_TYPES


def _is_host(value: Any) -> bool:
    return isinstance(value, str) and value not in _UDP_TYPES


class IPC:
    """One independent IPC endpoint: its own config, clients, server and log.

    ``geventipc.ipc`` is a ready-made instance; make more with ``IPC()``.
    """

    def __init__(self, **config: Any) -> None:
        self.config = Config(**config)
        self.log = Log(self.config)
        self.of = ClientMap()
        #: the server made by serve / serve_net (a UDPServer for udp4/udp6); before
        #: that, a placeholder whose every use says to call serve first
        self.server: Server | UDPServer | NoServer = NO_SERVER

    # --- server --------------------------------------------------------------------------

    def serve(self, *args: Any, **kwargs: Any) -> Server:
        """``serve(path=None, callback=None)``: a Unix socket server (not started yet).

        ``path`` defaults to ``config.socket_root + config.appspace + config.id``;
        ``callback`` runs on ``start``. Call ``ipc.server.start()`` to listen. Config keys
        given as keyword arguments apply to this server only (``wire="node-ipc"``).
        """
        config = self._call_config(kwargs, ("path", "callback"))
        opts = _sort_args(args, kwargs, ("path", "callback"),
                          {"path": _is_str, "callback": callable}, "serve")
        path = opts["path"] or config.socket_path(config.id)
        return self._new_server(opts["callback"], config, path=path)

    def serve_net(self, *args: Any, **kwargs: Any) -> Server:
        """``serve_net(host=None, port=None, udp_type=None, callback=None)``: a TCP server
        (``udp4``/``udp6``: a UDP one). Arguments may be left out in order; config keys
        given as keyword arguments apply to this server only."""
        config = self._call_config(kwargs, ("host", "port", "udp_type", "callback"))
        opts = _sort_args(args, kwargs, ("host", "port", "udp_type", "callback"),
                          {"host": _is_host, "port": _is_port, "udp_type": _is_udp_type,
                           "callback": callable}, "serve_net")
        host = opts["host"] or config.network_host
        port = opts["port"] if opts["port"] is not None else config.network_port
        _check_port(port)
        if opts["udp_type"] is not None:
            return self._new_udp_server(opts["callback"], host, port, opts["udp_type"],
                                        config)
        return self._new_server(opts["callback"], config, host=host, port=port,
                                ssl_context=self._tls("server", config))

    def _call_config(self, kwargs: dict[str, Any], names: tuple[str, ...]) -> Config:
        """The config of one serve/connect call: ``ipc.config`` with the config keys among
        ``kwargs`` (taken out of it) applied, e.g. ``connect_to("world", wire="node-ipc")``.
        """
        overrides = {key: kwargs.pop(key) for key in list(kwargs)
                     if key not in names and _is_config_key(key)}
        return self.config.copy(**overrides) if overrides else self.config

    def _new_server(self, callback: Callback | None, config: Config, **where: Any) -> Server:
        # the class is the one choice made here; the server itself joins config.cluster
        # and refuses what it cannot do (docs/cluster.md)
        cls: Any = Server
        if config.workers > 1:
            from .cluster.workers import WorkersServer  # noqa: PLC0415 - only with workers
            cls = WorkersServer
        return self._install(cls, callback, config, **where)

    def _new_udp_server(self, callback: Callback | None, host: str, port: int,
                        udp_type: str, config: Config) -> Any:
        from .udp import UDPServer  # noqa: PLC0415 - optional transport
        # UDPServer refuses config.cluster and config.workers itself
        return self._install(UDPServer, callback, config, host=host, port=port,
                             udp_type=udp_type)

    def _install(self, cls: Any, callback: Callback | None, config: Config,
                 **where: Any) -> Any:
        """Make ``cls`` (a stream or UDP server) on its own copy of ``config`` and make it
        ``ipc.server``, unless this IPC already runs one."""
        if self.server.started:
            raise ConfigError("this IPC instance already has a running server; stop it first")
        # its log lines carry the server id as a field (JSON logs: docs/operations.md)
        server = cls(config.copy(), self.log.bind(server=config.id), **where)
        if callback is not None:
            server.on("start", callback)
        self.server = server
        return server

    def _tls(self, side: str, config: Config) -> Any:
        if not config.tls:
            return None
        from .transports.tls import make_context  # noqa: PLC0415 - only with TLS on
        return make_context(config.tls, side, self.log)

    # --- clients -------------------------------------------------------------------------

    def connect_to(self, *args: Any, **kwargs: Any) -> Client:
        """``connect_to(id, path=None, callback=None)``: connect to a Unix socket server.

        The client is ``ipc.of[id]``; ``callback`` runs at once (register handlers in it);
        the connection is made in a greenlet. Config keys given as keyword arguments apply
        to this client only (``connect_to("world", wire="node-ipc")``).
        """
        server_id, rest = _take_server_id(args, kwargs, "connect_to")
        config = self._call_config(kwargs, ("id", "path", "callback"))
        opts = _sort_args(rest, kwargs, ("path", "callback"),
                          {"path": _is_str, "callback": callable}, "connect_to")
        path = opts["path"] or config.socket_path(server_id)
        return self._new_client(server_id, opts["callback"], config, path=path)

    def connect_to_net(self, *args: Any, **kwargs: Any) -> Client:
        """``connect_to_net(id, host=None, port=None, callback=None)``: connect over TCP
        (TLS when ``config.tls`` is set). Arguments may be left out in order; config keys
        given as keyword arguments apply to this client only."""
        server_id, rest = _take_server_id(args, kwargs, "connect_to_net")
        config = self._call_config(kwargs, ("id", "host", "port", "callback"))
        opts = _sort_args(rest, kwargs, ("host", "port", "callback"),
                          {"host": _is_str, "port": _is_port, "callback": callable},
                          "connect_to_net")
        host = opts["host"] or config.network_host
        port = opts["port"] if opts["port"] is not None else config.network_port
        _check_port(port)
        return self._new_client(server_id, opts["callback"], config, host=host, port=port,
                                ssl_context=self._tls("client", config))

    def _new_client(self, server_id: str, callback: Callback | None, config: Config,
                    **where: Any) -> Client:
        existing = _client(self.of, server_id)
        if existing is not None and not existing.destroyed:
            self.log("<notice>geventipc: already connected to</notice>", server_id)
            if callback is not None:
                callback()
            return existing
        client = Client(server_id, config.copy(), self.log.bind(server=server_id),
                        live_config=self.config, **where)
        self.of[server_id] = client
        if callback is not None:
            try:
                callback()
            except BaseException:
                # a client that never starts must not stay in ipc.of, where connect_to
                # would hand it back instead of making one that connects
                del self.of[server_id]
                raise
        client.start()
        return client

    def disconnect(self, server_id: str) -> None:
        """Close the connection to ``server_id`` for good and forget it."""
        client = _client(self.of, server_id)
        if client is not None:
            del self.of[server_id]
            client.disconnect()

    # --- node-ipc's camelCase names ------------------------------------------------------

    connectTo = connect_to
    connectToNet = connect_to_net
    serveNet = serve_net


__all__ = ["IPC", "ClientMap", "NoServer"]
