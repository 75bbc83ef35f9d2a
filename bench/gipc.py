"""The workloads through geventipc's public API: ``IPC``, ``serve``/``serve_net``,
``connect_to``/``connect_to_net``, ``on``, ``emit``, ``broadcast``.

Default config (msgpack wire, every limit on) except ``max_connections``, raised to fit
W3's 1,000 clients and the idle check's 10,000, and ``silent`` (no log lines). Handlers are
written as users write them: W1's counts (and checks the order) in a closure, W2's client
sends the next request from its reply handler. Transport ``tls`` is TCP with
``config.tls`` from ``params["tls"]`` (certificates the runner made with trustme).
"""
from __future__ import annotations

import gc
import os
import tempfile
from typing import Any

import gevent
from gevent.event import Event

from geventipc import IPC

from .common import (TEXT, cpu_seconds, now, parse_address, raise_fd_limit, ready, result,
                     rss_bytes, w3_handler)
from . import floor


def _ipc(name: str, addr: str, transport: str, clients: int = 1,
         wire: str = "msgpack", tls: dict[str, Any] | None = None) -> IPC:
    root = os.path.dirname(addr) if transport == "unix" else tempfile.gettempdir()
    ipc = IPC(id=name, socket_root=root, silent=True, max_connections=max(100, clients + 16),
              wire=wire)
    if transport == "tls":
        assert tls is not None, "transport tls needs params['tls'] (bench.run makes them)"
        if name == "world":
            ipc.config.tls = {"public": tls["cert"], "private": tls["key"]}
        else:
            ipc.config.tls = {"trustedConnections": [tls["ca"]]}
    return ipc


def _serve(ipc: IPC, transport: str, addr: str) -> Any:
    if transport == "unix":
        return ipc.serve(addr)
    host, port = parse_address(transport, addr)
    return ipc.serve_net(host, port)


def _connect(ipc: IPC, name: str, transport: str, addr: str) -> Any:
    if transport == "unix":
        return ipc.connect_to(name, addr)
    host, port = parse_address(transport, addr)
    return ipc.connect_to_net(name, host, port)


def _text(params: dict[str, Any]) -> str:
    """The ``"p"`` string of the payload: 32 characters, or ``params["psize"]``."""
    size = params.get("psize")
    return TEXT if size is None else "x" * size


def _gc_collections() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


# --- servers -----------------------------------------------------------------------------


def server(workload: str, transport: str, addr: str, params: dict[str, Any]) -> None:
    """Run the server side of ``workload`` and print its result."""
    clients = params.get("c", 1)
    if workload == "idle":
        raise_fd_limit(clients + 256)
    ipc = _ipc("world", addr, transport, clients, params.get("wire", "msgpack"),
               params.get("tls"))
    server = _serve(ipc, transport, addr)
    gone = Event()
    server.on("socket.disconnected", lambda socket, id: gone.set() if not server.sockets
              else None)
    if workload == "w1" or workload == "w4":
        _server_stream(server, params, gone)
    elif workload == "w2":
        server.on("m", lambda data, socket: socket.emit("r", data))
        server.start()
        ready()
        gone.wait(300)
        result()
    elif workload == "w3":
        _server_w3(server, params, gone)
    elif workload == "idle":
        _server_idle(server, params)
    server.stop()


def _server_stream(server: Any, params: dict[str, Any], gone: Event) -> None:
    n = params["n"]
    size = params.get("size")
    state = {"expected": 0, "bad": 0, "end": 0.0}
    done = Event()

    if size is None:
        # a counting handler, as a user writes one (and as the floor's loop does): count,
        # check the order, nothing else
        expected = bad = 0

        def on_m(data: Any, socket: Any) -> None:
            nonlocal expected, bad
            if data["i"] != expected:
                bad += 1
            expected += 1
            if expected == n:
                state["end"] = now()
                state["expected"], state["bad"] = expected, bad
                socket.emit("done")
                done.set()
    else:
        def on_m(data: Any, socket: Any) -> None:
            if len(data) != size:
                state["bad"] += 1
            state["expected"] += 1
            if state["expected"] == n:
                state["end"] = now()
                socket.emit("done")
                done.set()

    server.on("m", on_m)
    server.start()
    ready()
    done.wait(300)
    gone.wait(10)
    if size is None and not done.is_set():   # incomplete: report what the closure counted
        state["expected"], state["bad"] = expected, bad
    result(end=state["end"], received=state["expected"], bad=state["bad"])


def _server_w3(server: Any, params: dict[str, Any], gone: Event) -> None:
    clients, n = params["c"], params["n"]
    all_in = Event()
    server.on("connect", lambda socket: all_in.set() if len(server.sockets) >= clients
              else None)
    server.start()
    ready()
    all_in.wait(120)
    start = now()
    broadcast = server.broadcast
    for i in range(n):
        broadcast("m", {"i": i, "p": TEXT})
    gone.wait(300)
    result(start=start, connected=clients)


def _server_idle(server: Any, params: dict[str, Any]) -> None:
    clients = params["c"]
    server.start()
    gc.collect()
    base = rss_bytes()
    ready()
    deadline = now() + 120
    # every connection held and named by its hello (socket.id), or give up at the deadline
    while sum(1 for socket in server.sockets if socket.id) < clients and now() < deadline:
        gevent.sleep(0.05)
    gc.collect()
    gevent.sleep(0.2)
    held = rss_bytes()
    ids = sum(1 for socket in server.sockets if socket.id)
    result(base=base, held=held, connections=len(server.sockets), hellos=ids)


# --- clients -----------------------------------------------------------------------------


def client(workload: str, transport: str, addr: str, params: dict[str, Any]) -> None:
    """Run the client side of ``workload`` and print its result."""
    if workload == "idle":
        floor.client(workload, transport, addr, params)   # plain sockets saying hello
        return
    if workload == "w3":
        _client_w3(transport, addr, params)
        return
    ipc = _ipc("hello", addr, transport, wire=params.get("wire", "msgpack"),
               tls=params.get("tls"))
    client = _connect(ipc, "world", transport, addr)
    client.wait_connected(30)
    if workload == "w2":
        _client_w2(client, params)
    else:
        _client_stream(client, params)
    ipc.disconnect("world")


def _client_stream(client: Any, params: dict[str, Any]) -> None:
    n = params["n"]
    size = params.get("size")
    done = Event()
    client.on("done", lambda data: done.set())
    emit = client.emit
    text = _text(params)
    start = now()
    if size is None:
        for i in range(n):
            emit("m", {"i": i, "p": text})
    else:
        # the node-ipc JSON wire carries no bytes: a 1 MiB string there
        blob = b"\x00" * size if params.get("wire", "msgpack") == "msgpack" else "x" * size
        for _ in range(n):
            emit("m", blob)
    done.wait(300)
    result(start=start, sent=n, done=done.is_set())


def _client_w2(client: Any, params: dict[str, Any]) -> None:
    # as users write a request loop on events: the reply handler sends the next request
    warm, n = params["warm"], params["n"]
    total = warm + n
    done = Event()
    times: list[float] = []
    state = {"i": 0, "bad": 0, "begin": 0.0}
    emit = client.emit

    def on_r(data: Any) -> None:
        end = now()
        i = state["i"]
        if data["i"] != i:
            state["bad"] += 1
        if i >= warm:
            times.append(end - state["begin"])
        state["i"] = i = i + 1
        if i == total:
            done.set()
            return
        state["begin"] = now()
        emit("m", {"i": i, "p": TEXT})

    client.on("r", on_r)
    state["begin"] = now()
    emit("m", {"i": 0, "p": TEXT})
    done.wait(300)
    result(times=times, bad=state["bad"] + total - state["i"])


def _client_w3(transport: str, addr: str, params: dict[str, Any]) -> None:
    clients, n = params["c"], params["n"]
    raise_fd_limit(clients + 256)
    ipc = _ipc("hello", addr, transport, wire=params.get("wire", "msgpack"),
               tls=params.get("tls"))
    state = [0, 0, 0.0]   # clients done, events out of order, end time
    done = Event()

    def listener() -> Any:
        return w3_handler(n, clients, state, done)[0]

    names = [f"w{k}" for k in range(clients)]
    made = [_connect(ipc, name, transport, addr) for name in names]
    for client in made:
        client.on("m", listener())
    for client in made:   # then the server starts broadcasting: GC counted from here
        client.wait_connected(120)
    gc_start, counted_from, cpu_from = _gc_collections(), now(), cpu_seconds()
    done.wait(300)
    result(end=state[2], complete=state[0], bad=state[1], counted_from=counted_from,
           cpu_receiving=cpu_seconds() - cpu_from,
           gc_collections=_gc_collections() - gc_start)
    for name in names:
        ipc.disconnect(name)
    gevent.sleep(0.1)
