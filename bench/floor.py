"""The floor: a minimal hand-written gevent + msgpack loop for each workload.

No API, no dispatch table, no limits, no backpressure policy: pack into a list, join and
``sendall`` every 128 KiB; ``recv_into`` one preallocated buffer and feed a streaming
``msgpack.Unpacker``. It checks what the geventipc workloads check (counts and order), so
the ratio measures what the library costs on top of the same work.
"""
from __future__ import annotations

from typing import Any

import gevent
import msgpack
from gevent import socket
from gevent.event import Event

from .common import (TEXT, cpu_seconds, now, parse_address, raise_fd_limit, ready, result,
                     rss_bytes, w3_handler)

FLUSH_AT = 128 * 1024
READ_SIZE = 256 * 1024
_buf = bytearray(READ_SIZE)
_view = memoryview(_buf)
_pack = msgpack.Packer(use_bin_type=True).pack
DONE = _pack(["done", None])
#: what a geventipc server answers a client's hello with (a geventipc client sends only
#: after it: a floor server takes one when sides are mixed, see bench.run.run_once)
WELCOME = _pack(["$ipc.welcome", {}])


def _unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, max_buffer_size=64 * 1024 * 1024)


def _listen(transport: str, addr: str) -> socket.socket:
    where = parse_address(transport, addr)
    family = socket.AF_UNIX if transport == "unix" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if transport != "unix":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(where)
    sock.listen(4096)
    return sock


def _dial(transport: str, addr: str, params: dict[str, Any] | None = None) -> socket.socket:
    where = parse_address(transport, addr)
    family = socket.AF_UNIX if transport == "unix" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.connect(where)
    _tune(sock, transport)
    if transport == "tls":
        assert params is not None
        sock = _tls_context(params, server=False).wrap_socket(sock, server_hostname=where[0])
    return sock


def _tune(sock: socket.socket, transport: str) -> None:
    if transport != "unix":
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _tls_context(params: dict[str, Any], server: bool) -> Any:
    """Transport ``tls`` (W1, W4): gevent's SSLContext with the runner's certificates,
    defaults otherwise, as geventipc's own (TLS 1.2 and up, the server's certificate
    verified by the client)."""
    import ssl  # noqa: PLC0415 - only the tls rows need it

    from gevent.ssl import SSLContext  # noqa: PLC0415
    files = params["tls"]
    if server:
        ctx = SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(files["cert"], files["key"])
    else:
        ctx = SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(files["ca"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# --- servers -----------------------------------------------------------------------------


def server(workload: str, transport: str, addr: str, params: dict[str, Any]) -> None:
    """Run the server side of ``workload`` and print its result."""
    listener = _listen(transport, addr)
    ready()
    if workload == "w3":
        _server_w3(listener, transport, params)
        return
    if workload == "idle":
        _server_idle(listener, params)
        return
    sock, _ = listener.accept()
    _tune(sock, transport)
    if transport == "tls":
        sock = _tls_context(params, server=True).wrap_socket(sock, server_side=True)
    if workload == "w2":
        _server_w2(sock)
        result()
        return
    if params.get("handler"):
        _server_w1_handler(sock, params)
        return
    n = params["n"]
    size = params.get("size")
    unpacker = _unpacker()
    expected = bad = 0
    end = 0.0
    while expected < n:
        got = sock.recv_into(_buf, READ_SIZE)
        if not got:
            break
        unpacker.feed(_view[:got])
        for frame in unpacker:
            data = frame[1]
            if frame[0] != "m":
                if frame[0] == "$ipc.hello":   # a geventipc client (mixed sides, see run_once)
                    sock.sendall(WELCOME)
                continue
            if size is None:
                if data["i"] != expected:
                    bad += 1
            elif len(data) != size:
                bad += 1
            expected += 1
    end = now()
    sock.sendall(DONE)
    sock.recv(1)   # the client closes once it has the answer
    result(end=end, received=expected, bad=bad)


def _server_w1_handler(sock: socket.socket, params: dict[str, Any]) -> None:
    """W1 with ``params["handler"]``: the loop calls a counting handler per event (the
    issue's "hand-written loop with a counting handler"), the same function geventipc's
    W1 server registers, instead of counting inline."""
    n = params["n"]
    unpacker = _unpacker()
    expected = bad = 0

    def on_m(data: Any) -> None:
        nonlocal expected, bad
        if data["i"] != expected:
            bad += 1
        expected += 1

    while expected < n:
        got = sock.recv_into(_buf, READ_SIZE)
        if not got:
            break
        unpacker.feed(_view[:got])
        for frame in unpacker:
            if frame[0] == "m":
                on_m(frame[1])
            elif frame[0] == "$ipc.hello":   # a geventipc client (mixed sides)
                sock.sendall(WELCOME)
    end = now()
    sock.sendall(DONE)
    sock.recv(1)
    result(end=end, received=expected, bad=bad)


def _server_w2(sock: socket.socket) -> None:
    unpacker = _unpacker()
    while True:
        got = sock.recv_into(_buf, READ_SIZE)
        if not got:
            return
        unpacker.feed(_view[:got])
        out = [_pack(["r", frame[1]]) for frame in unpacker]
        if out:
            sock.sendall(out[0] if len(out) == 1 else b"".join(out))


def _server_w3(listener: socket.socket, transport: str, params: dict[str, Any]) -> None:
    clients = params["c"]
    socks = []
    for _ in range(clients):
        sock, _ = listener.accept()
        _tune(sock, transport)
        socks.append(sock)
    start = now()
    # encode once, send the same bytes to every client
    chunk = b"".join([_pack(["m", {"i": i, "p": TEXT}]) for i in range(params["n"])])
    for sock in socks:
        sock.sendall(chunk)
    for sock in socks:   # the clients process closes when all have everything
        sock.recv(1)
    result(start=start)


def _server_idle(listener: socket.socket, params: dict[str, Any]) -> None:
    clients = params["c"]
    raise_fd_limit(clients + 256)
    socks: list[socket.socket] = []
    hellos = [0]
    connected = Event()

    def serve(sock: socket.socket) -> None:
        # an idle connection still has a reader waiting on it, as in any server
        unpacker = _unpacker()
        while True:
            got = sock.recv_into(_buf, READ_SIZE)
            if not got:
                return
            unpacker.feed(_view[:got])
            for _frame in unpacker:
                hellos[0] += 1
                if hellos[0] == clients:
                    connected.set()

    import gc  # noqa: PLC0415
    gc.collect()
    base = rss_bytes()
    for _ in range(clients):
        sock, _ = listener.accept()
        socks.append(sock)
        gevent.spawn(serve, sock)
    connected.wait(60)
    gc.collect()
    gevent.sleep(0.2)
    held = rss_bytes()
    result(base=base, held=held, connections=len(socks), hellos=hellos[0])
    for sock in socks:
        sock.close()


# --- clients -----------------------------------------------------------------------------


def client(workload: str, transport: str, addr: str, params: dict[str, Any]) -> None:
    """Run the client side of ``workload`` and print its result."""
    if workload == "w3":
        _client_w3(transport, addr, params)
        return
    if workload == "idle":
        _client_idle(transport, addr, params)
        return
    sock = _dial(transport, addr, params)
    if workload == "w2":
        _client_w2(sock, params)
        return
    n = params["n"]
    size = params.get("size")
    blob = b"\x00" * size if size else None
    text = TEXT if params.get("psize") is None else "x" * params["psize"]
    parts: list[bytes] = []
    queued = 0
    start = now()
    for i in range(n):
        frame = _pack(["m", {"i": i, "p": text} if blob is None else blob])
        parts.append(frame)
        queued += len(frame)
        if queued >= FLUSH_AT:
            sock.sendall(parts[0] if len(parts) == 1 else b"".join(parts))
            parts, queued = [], 0
    if parts:
        sock.sendall(b"".join(parts))
    sock.recv(64)   # "done"
    sock.close()
    result(start=start, sent=n)


def _client_w2(sock: socket.socket, params: dict[str, Any]) -> None:
    unpacker = _unpacker()
    warm, n = params["warm"], params["n"]
    times: list[float] = []
    bad = 0
    for i in range(warm + n):
        begin = now()
        sock.sendall(_pack(["m", {"i": i, "p": TEXT}]))
        frame = None
        while frame is None:
            got = sock.recv_into(_buf, READ_SIZE)
            if not got:
                raise ConnectionError("server closed")
            unpacker.feed(_view[:got])
            for frame in unpacker:
                break
        if frame[0] != "r" or frame[1]["i"] != i:
            bad += 1
        if i >= warm:
            times.append(now() - begin)
    sock.close()
    result(times=times, bad=bad)


def _client_w3(transport: str, addr: str, params: dict[str, Any]) -> None:
    clients, n = params["c"], params["n"]
    raise_fd_limit(clients + 256)
    socks = [_dial(transport, addr) for _ in range(clients)]
    state = [0, 0, 0.0]   # clients done, events out of order, end time (w3_handler's)
    done = Event()

    def read(sock: socket.socket) -> None:
        unpacker = _unpacker()
        expected = 0
        while expected < n:
            got = sock.recv_into(_buf, READ_SIZE)
            if not got:
                return
            unpacker.feed(_view[:got])
            for frame in unpacker:
                if frame[1]["i"] != expected:
                    state[1] += 1
                expected += 1
        state[0] += 1
        if state[0] == clients:
            state[2] = now()
            done.set()

    def read_with_handler(sock: socket.socket) -> None:
        # params["handler"]: the loop calls a counting handler per event, the same
        # function geventipc's W3 clients register (bench.common.w3_handler)
        on_m, expected = w3_handler(n, clients, state, done)
        unpacker = _unpacker()
        while expected[0] < n:
            got = sock.recv_into(_buf, READ_SIZE)
            if not got:
                return
            unpacker.feed(_view[:got])
            for frame in unpacker:
                on_m(frame[1])

    reader = read_with_handler if params.get("handler") else read
    readers = [gevent.spawn(reader, sock) for sock in socks]
    import gc  # noqa: PLC0415
    gc_start, counted_from, cpu_from = _gc_collections(gc), now(), cpu_seconds()
    done.wait(120)
    cpu_end = cpu_seconds()
    gc_end = _gc_collections(gc)
    for sock in socks:
        sock.close()
    gevent.killall(readers)
    result(end=state[2], complete=state[0], bad=state[1], counted_from=counted_from,
           cpu_receiving=cpu_end - cpu_from,
           gc_collections=gc_end - gc_start)


def _gc_collections(gc: Any) -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


def _client_idle(transport: str, addr: str, params: dict[str, Any]) -> None:
    clients = params["c"]
    raise_fd_limit(clients + 256)
    socks = []
    for k in range(clients):
        sock = _dial(transport, addr)
        sock.sendall(_pack(["$ipc.hello", {"id": f"idle{k}"}]))
        socks.append(sock)
    # stay connected until the server has measured (it closes first)
    for sock in socks:
        while sock.recv(4096):   # the server's $ipc.welcome, then its close
            pass
    result(connections=len(socks))
