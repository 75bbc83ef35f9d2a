"""A server on node-ipc's JSON wire names a client's socket after the first ``id`` in the
data it sends (as node-ipc servers do), before that frame's handlers run; the codec
reports it as frames decode (no generator around the dispatch loop)."""
from __future__ import annotations

import json
from typing import Any, Callable

from gevent import socket

from geventipc import IPC

from conftest import serve, wait_until


def _frame(type: str, data: Any) -> bytes:
    return json.dumps({"type": type, "data": data}, separators=(",", ":")).encode() + b"\f"


def test_first_id_in_data_names_the_socket_before_its_handlers(
        make_ipc: Callable[..., IPC]) -> None:
    server = serve(make_ipc, wire="node-ipc").server
    seen: list[tuple[Any, Any]] = []
    server.on("m", lambda data, sock: seen.append((data, sock.id)))
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.settimeout(5)   # every connect/send of the raw peer bounded
    try:
        peer.connect(server.path)
        # one read holding all four: unnamed, not a name (empty, not a string), the name,
        # then another id that must not rename it
        peer.sendall(_frame("m", {"i": 0}) + _frame("m", {"id": ""}) + _frame("m", {"id": 7})
                     + _frame("m", {"id": "first", "i": 1}) + _frame("m", {"id": "second"}))
        wait_until(lambda: len(seen) == 5, message="five events")
        assert [name for _, name in seen] == [None, None, None, "first", "first"]
        assert seen[3][0] == {"id": "first", "i": 1}
        # across reads, and with data that is no dict, nothing changes either
        peer.sendall(_frame("m", ["id", "x"]) + _frame("m", {"id": "third"}))
        wait_until(lambda: len(seen) == 7, message="seven events")
        assert [name for _, name in seen[5:]] == ["first", "first"]
    finally:
        peer.close()


def test_a_name_the_application_gave_is_kept(make_ipc: Callable[..., IPC]) -> None:
    server = serve(make_ipc, wire="node-ipc").server
    seen: list[Any] = []

    def on_connect(sock: Any) -> None:
        sock.id = "given"

    server.on("connect", on_connect)
    server.on("m", lambda data, sock: seen.append(sock.id))
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.settimeout(5)   # every connect/send of the raw peer bounded
    try:
        peer.connect(server.path)
        peer.sendall(_frame("m", {"id": "from-data"}) + _frame("m", {"i": 1}))
        wait_until(lambda: len(seen) == 2, message="two events")
        assert seen == ["given", "given"]
    finally:
        peer.close()


def test_a_closed_socket_is_not_kept_alive_by_its_codec(make_ipc: Callable[..., IPC]) -> None:
    server = serve(make_ipc, wire="node-ipc").server
    conns: list[Any] = []
    server.on("connect", conns.append)
    gone: list[Any] = []
    server.on("socket.disconnected", lambda sock, id: gone.append(sock))
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.settimeout(5)   # every connect/send of the raw peer bounded
    peer.connect(server.path)
    wait_until(lambda: conns, message="the connection")
    peer.close()
    wait_until(lambda: gone, message="socket.disconnected")
    # the codec's hook back to the socket is dropped on close: no reference cycle left
    assert conns[0].codec.namer is None
