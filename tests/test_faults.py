"""Faults a client must ride through: no server, no permission, no such host, a server
that dies and comes back. Each dial failure is an ``error`` event carrying a ConnectError
with a readable message, then a retry as the config says; events emitted while the server
is away reach the next server once, in order.
"""
from __future__ import annotations

import os
import signal
import socket

import gevent
import pytest

from conftest import free_port, python_process, read_line, stop_process, wait_until
from geventipc.errors import ConnectError


def dead_unix_socket(path: str) -> None:
    """Leave a socket file at ``path`` with nobody listening (connect gets ECONNREFUSED)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()


def watch(client) -> tuple[list[BaseException], list[str]]:
    errors: list[BaseException] = []
    events: list[str] = []
    client.on("error", errors.append)
    for name in ("connect", "disconnect", "destroy"):
        client.on(name, lambda name=name: events.append(name))
    return errors, events


def assert_connect_errors(errors, *words) -> None:
    assert errors, "no error event"
    for exc in errors:
        assert isinstance(exc, ConnectError), repr(exc)
        assert isinstance(exc, OSError)   # generic handlers keep working
        for word in words:
            assert word in str(exc), (word, str(exc))


# --- dial failures: a clear error each time, then retry --------------------------------


def test_connection_refused_unix_then_server_appears(make_ipc, sock_dir):
    path = sock_dir + "app.world"
    dead_unix_socket(path)
    hello = make_ipc("hello")
    client = hello.connect_to("world", path)
    errors, events = watch(client)
    wait_until(lambda: len(errors) >= 3, message="three refused dials (retrying)")
    assert_connect_errors(errors, "refused", path)
    assert "connect" not in events
    world = make_ipc("world")
    world.serve(path)
    world.server.start()
    client.wait_connected(5)
    seen = len(errors)
    got = []
    world.server.on("note", lambda data, sock: got.append(data))
    client.emit("note", "after")
    wait_until(lambda: got == ["after"], message="an event once connected")
    assert len(errors) == seen   # no more errors once the server is up


def test_connection_refused_tcp(make_ipc):
    port = free_port()
    hello = make_ipc("hello")
    client = hello.connect_to_net("world", "127.0.0.1", port)
    errors, _ = watch(client)
    wait_until(lambda: len(errors) >= 2, message="two refused dials")
    assert_connect_errors(errors, "refused", f"127.0.0.1:{port}")


def test_socket_path_missing(make_ipc, sock_dir):
    path = sock_dir + "nobody-here"
    hello = make_ipc("hello")
    client = hello.connect_to("world", path)
    errors, _ = watch(client)
    wait_until(lambda: len(errors) >= 2, message="two failed dials")
    assert_connect_errors(errors, "does not exist", path)


def test_dns_failure(make_ipc):
    hello = make_ipc("hello")
    client = hello.connect_to_net("world", "nonexistent.invalid", 8000)
    errors, _ = watch(client)
    wait_until(lambda: len(errors) >= 2, timeout=20, message="two failed lookups")
    assert_connect_errors(errors, "resolve", "nonexistent.invalid")


def test_max_retries_then_destroy(make_ipc, sock_dir):
    hello = make_ipc("hello", max_retries=2)
    client = hello.connect_to("world", sock_dir + "missing")
    errors, events = watch(client)
    wait_until(lambda: "destroy" in events, message="destroy after the retries")
    gevent.sleep(0.2)   # no dial after destroy
    assert len(errors) == 3   # the first dial and two retries
    assert_connect_errors(errors, "does not exist")
    assert events == ["destroy"] and client.destroyed


def test_stop_retrying_gives_up_after_the_first_failure(make_ipc, sock_dir):
    hello = make_ipc("hello", stop_retrying=True)
    client = hello.connect_to("world", sock_dir + "missing")
    errors, events = watch(client)
    wait_until(lambda: "destroy" in events, message="destroy")
    gevent.sleep(0.2)
    assert len(errors) == 1


PERMISSION_CLIENT = """
    import os, sys
    import gevent
    from geventipc import IPC
    path = sys.argv[1]
    ipc = IPC(id="hello", silent=True, retry=50, max_retries=2, socket_root=os.path.dirname(path))
    if os.geteuid() == 0:
        # root ignores file modes: drop to an ordinary user after importing everything
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    client = ipc.connect_to("world", path)
    client.on("error", lambda exc: print("error", type(exc).__name__, exc, flush=True))
    client.on("connect", lambda: print("connect", flush=True))
    client.on("destroy", lambda: print("destroy", flush=True))
    gevent.wait([gevent.spawn(lambda: client._ended.wait(10))])
"""


def test_permission_denied(make_ipc, sock_dir):
    """A server in a directory the client may not enter (mode 000); the client runs as
    an ordinary user in its own process, since root is never denied."""
    locked = sock_dir + "locked"
    os.mkdir(locked, 0o700)
    world = make_ipc("world", socket_root=locked)
    world.serve(locked + "/app.world")
    world.server.start()
    os.chmod(locked, 0)
    try:
        proc = python_process(PERMISSION_CLIENT, locked + "/app.world")
        try:
            lines = [read_line(proc) for _ in range(4)]
        finally:
            stop_process(proc)
    finally:
        os.chmod(locked, 0o700)
    world.server.stop()
    os.rmdir(locked)
    errors, last = lines[:3], lines[3]
    for line in errors:
        assert line.startswith("error ConnectError permission denied"), line
        assert locked in line
    assert last == "destroy"


# --- server restarts ---------------------------------------------------------------------

SERVER = """
    import sys
    from geventipc import IPC
    ipc = IPC(id="world", silent=True)
    kind, where = sys.argv[1], sys.argv[2]
    if kind == "unix":
        ipc.serve(where)
    else:
        ipc.serve_net("127.0.0.1", int(where))
    ipc.server.on("seq", lambda n, sock: print(n, flush=True))
    ipc.server.on("start", lambda: print("ready", flush=True))
    ipc.server.serve_forever()
"""


def start_server(kind: str, where: str):
    proc = python_process(SERVER, kind, where)
    assert read_line(proc) == "ready"
    return proc


def received(proc, count: int) -> list[int]:
    return [int(read_line(proc)) for _ in range(count)]


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)


@pytest.fixture(params=["unix", "tcp"])
def where(request, sock_dir):
    if request.param == "unix":
        return "unix", sock_dir + "app.world"
    return "tcp", str(free_port())


def connect(make_ipc, kind, where):
    hello = make_ipc("hello")
    if kind == "unix":
        client = hello.connect_to("world", where)
    else:
        client = hello.connect_to_net("world", "127.0.0.1", int(where))
    client.wait_connected(5)
    return client


def test_events_emitted_while_the_server_is_away_arrive_once_in_order(make_ipc, where):
    kind, addr = where
    first = start_server(kind, addr)
    procs = [first]
    try:
        client = connect(make_ipc, kind, addr)
        errors, events = watch(client)
        for n in range(50):
            client.emit("seq", n)
        assert received(first, 50) == list(range(50))
        kill(first)
        wait_until(lambda: "disconnect" in events, message="the client to notice")
        for n in range(50, 150):
            client.emit("seq", n)
        assert client.queued == 100
        gevent.sleep(0.2)   # a few failed dials while the server is down
        assert_connect_errors(errors)
        second = start_server(kind, addr)
        procs.append(second)
        client.wait_connected(5)
        assert received(second, 100) == list(range(50, 150))
        client.emit("seq", 150)
        assert received(second, 1) == [150]   # nothing else came before it: no duplicates
    finally:
        for proc in procs:
            stop_process(proc)


def test_events_emitted_just_after_the_server_died_are_not_lost_on_unix(make_ipc, sock_dir):
    """The server is dead before the client has noticed: the kernel refuses the writes
    (EPIPE), so those events were never taken and must be resent after reconnecting."""
    path = sock_dir + "app.world"
    first = start_server("unix", path)
    procs = [first]
    try:
        client = connect(make_ipc, "unix", path)
        client.emit("seq", 0)
        assert received(first, 1) == [0]
        kill(first)
        for n in range(1, 101):
            client.emit("seq", n)
            if n % 10 == 0:
                gevent.sleep(0)   # let the writes fail while we keep emitting
        second = start_server("unix", path)
        procs.append(second)
        assert received(second, 100) == list(range(1, 101))
        client.emit("seq", 101)
        assert received(second, 1) == [101]
    finally:
        for proc in procs:
            stop_process(proc)


def test_server_stop_and_restart_in_process(make_ipc, sock_dir):
    """A clean stop (what ipc.server.stop() sends is flushed first), then a new server:
    nothing lost, nothing doubled."""
    world = make_ipc("world")
    got = []
    world.serve()
    world.server.on("seq", lambda n, sock: got.append(n))
    world.server.start()
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(5)
    for n in range(100):
        client.emit("seq", n)
    wait_until(lambda: len(got) == 100, message="the first hundred")
    world.server.stop()
    wait_until(lambda: not client.connected, message="the client to notice")
    for n in range(100, 200):
        client.emit("seq", n)
    world.serve()
    world.server.on("seq", lambda n, sock: got.append(n))
    world.server.start()
    wait_until(lambda: len(got) == 200, message="the events queued while away")
    gevent.sleep(0.1)
    assert got == list(range(200))


SLOW_ACKING_SERVER = """
    import sys, gevent
    from geventipc import IPC
    tls = {"public": sys.argv[2], "private": sys.argv[2]} if len(sys.argv) > 2 else False
    ipc = IPC(id="world", silent=True, tls=tls)
    ipc.serve_net("127.0.0.1", int(sys.argv[1]))
    count = [0]
    def blob(data, sock):
        count[0] += 1
        sock.emit("ack", data[0])
        if count[0] % 20 == 0:
            gevent.sleep(0.002)   # a server slower than its client
    ipc.server.on("blob", blob)
    ipc.server.on("socket.disconnected", lambda sock, sid: print(count[0], flush=True))
    ipc.server.on("start", lambda: print("ready", flush=True))
    ipc.server.serve_forever()
"""


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_disconnect_over_tcp_delivers_what_was_queued_despite_unread_input(
        make_ipc, sock_dir, tls):
    """disconnect() closes after sending what is queued. Over TCP a plain close() with
    unread input (the server's acks) makes the kernel reset the connection and throw away
    what it had not sent yet; the close must wait for the server's side instead."""
    port = free_port()
    args = [str(port)]
    config = {}
    if tls:
        import trustme
        ca = trustme.CA()
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            sock_dir + "server.pem")
        ca.cert_pem.write_to_path(sock_dir + "ca.pem")
        args.append(sock_dir + "server.pem")
        config["tls"] = {"trustedConnections": [sock_dir + "ca.pem"]}
    proc = python_process(SLOW_ACKING_SERVER, *args)
    try:
        assert read_line(proc) == "ready"
        hello = make_ipc("hello", **config)
        client = hello.connect_to_net("world", "127.0.0.1", port)
        errors: list[BaseException] = []
        client.on("error", errors.append)
        client.wait_connected(5)
        for n in range(2000):
            client.emit("blob", [n, b"x" * 10000])
            if n % 100 == 0:
                gevent.sleep(0)
        hello.disconnect("world")
        assert int(read_line(proc, timeout=20)) == 2000
        assert errors == []   # ending the session we closed is no error
    finally:
        stop_process(proc)
