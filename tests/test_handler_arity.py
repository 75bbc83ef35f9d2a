"""Handlers are called with as many arguments as they take (JavaScript ignores extra
arguments, and node-ipc code is written that way), decided once at registration; a
handler that cannot take the event's arguments is refused at registration, naming the
expected signature. A failing handler is logged once, with its traceback."""
from __future__ import annotations

import pytest

from conftest import serve, wait_until
from geventipc.errors import HandlerError


def test_server_handlers_may_take_fewer_arguments(make_ipc):
    world = serve(make_ipc)
    got = []
    world.server.on("m", lambda data: got.append(("data", data)))
    world.server.on("m", lambda: got.append(("none",)))
    world.server.on("m", lambda data, socket: got.append(("both", data)))
    world.server.on("m", lambda *args: got.append(("star", len(args))))
    world.server.on("m", lambda data, socket, extra=7: got.append(("default", extra)))
    world.server.on("*", lambda type: got.append(("wild", type)))
    world.server.on("*", lambda type, data: got.append(("wild2", type, data)))
    world.server.on("m", lambda data: got.append(("pooled", data)), pool=True)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(15)
    client.emit("m", 1)
    wait_until(lambda: len(got) == 8, message="every handler")
    assert sorted(got, key=repr) == sorted([
        ("data", 1), ("none",), ("both", 1), ("star", 2), ("default", 7), ("wild", "m"),
        ("wild2", "m", 1), ("pooled", 1)], key=repr)


def test_lifecycle_handlers_with_or_without_arguments(make_ipc):
    world = make_ipc("world")
    world.serve()
    seen = []
    world.server.on("start", lambda: seen.append("start"))
    world.server.on("connect", lambda: seen.append("server connect"))
    world.server.on("connect", lambda socket: seen.append("server connect socket"))
    world.server.on("socket.disconnected", lambda socket: seen.append("gone"))
    world.server.start()
    client = make_ipc("hello").connect_to("world")
    client.on("connect", lambda: seen.append("client connect"))
    client.on("connect", lambda arg: seen.append(("client connect arg", arg)))
    client.on("disconnect", lambda arg: seen.append(("client disconnect", arg)))
    client.on("m", lambda: seen.append("client m"))
    client.on("*", lambda type: seen.append(("client wild", type)))
    client.wait_connected(15)
    wait_until(lambda: world.server.sockets, message="the server side")
    world.server.broadcast("m", 1)
    wait_until(lambda: "client m" in seen and ("client wild", "m") in seen, message="m")
    client.disconnect()
    wait_until(lambda: "gone" in seen and ("client disconnect", None) in seen,
               message="disconnects")
    for item in ("start", "server connect", "server connect socket", "client connect",
                 ("client connect arg", None)):
        assert item in seen


def test_once_and_off_find_the_handler_as_given(make_ipc):
    world = serve(make_ipc)
    got = []

    def short(data):
        got.append(("short", data))

    def gone(data):
        got.append(("gone", data))

    world.server.once("m", short)
    world.server.on("m", gone)
    world.server.off("m", gone)
    world.server.on("n", gone, pool=True)
    world.server.off("n", gone)
    assert "n" not in world.server.handlers
    client = make_ipc("hello").connect_to("world")
    client.on("x", gone)
    client.off("x", gone)
    assert "x" not in client.handlers
    client.wait_connected(15)
    client.emit("m", 1)
    client.emit("m", 2)
    client.emit("n", 3)
    wait_until(lambda: world.server.sockets and world.server.sockets[0].events_in >= 4,
               message="the events (and the hello)")
    assert got == [("short", 1)]


@pytest.mark.parametrize("handler, needs", [
    (lambda a, b, c: None, "3 arguments"),
    (lambda data, *, key: None, "keyword-only"),
])
def test_a_handler_that_cannot_take_the_arguments_is_refused_at_registration(
        make_ipc, handler, needs):
    world = serve(make_ipc)
    with pytest.raises(TypeError, match=r"handler\(data, socket\)") as info:
        world.server.on("m", handler)
    assert needs in str(info.value)
    client = make_ipc("hello").connect_to("world")
    with pytest.raises(TypeError, match=r"handler\(data\)"):
        client.on("m", lambda a, b: None)
    with pytest.raises(TypeError, match=r"handler\(type, data\)"):
        client.once("*", lambda a, b, c: None)
    with pytest.raises(TypeError, match=r"handler\(\)"):
        client.on("connect", lambda a, b: None)
    assert "m" not in world.server.handlers and "m" not in client.handlers


def test_a_failing_handler_is_logged_once_with_its_traceback(make_ipc):
    lines = []
    world = serve(make_ipc, silent=False, logger=lines.append, log_in_color=False)
    errors = []

    def boom(data, socket):
        raise RuntimeError("handler bug")

    world.server.on("boom", boom)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(15)
    client.emit("boom")
    wait_until(lambda: any("handler bug" in line for line in lines), message="the log")
    world.server.on("error", errors.append)
    client.emit("boom")
    wait_until(lambda: errors, message="the error event")
    assert isinstance(errors[0], HandlerError) and errors[0].event == "boom"
    failures = [line for line in lines if "handler bug" in line]
    assert len(failures) == 2, lines   # one line per failure, not two
    assert all("Traceback" in line and "in boom" in line for line in failures), failures


def test_request_handlers_may_take_fewer_arguments(make_ipc):
    world = serve(make_ipc)
    world.server.handle("double", lambda data: data * 2)
    world.server.handle("hello", lambda: "hi")
    with pytest.raises(TypeError, match=r"handler\(data, socket\)"):
        world.server.handle("bad", lambda a, b, c: None)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(15)
    assert client.request("double", 21, timeout=5) == 42
    assert client.request("hello", None, timeout=5) == "hi"


def test_a_failing_request_handler_is_logged_with_its_traceback(make_ipc):
    lines = []
    world = serve(make_ipc, silent=False, logger=lines.append, log_in_color=False)

    def broken(data, socket):
        raise ValueError("request bug")

    world.server.handle("q", broken)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(15)
    with pytest.raises(Exception, match="request bug"):
        client.request("q", None, timeout=10)
    failures = [line for line in lines if "request bug" in line]
    assert len(failures) == 1 and "Traceback" in failures[0] and "in broken" in failures[0]


def test_a_failing_udp_request_handler_is_logged_with_its_traceback(make_ipc):
    from conftest import free_port
    lines = []
    port = free_port(kind=2)
    world = make_ipc("world", silent=False, logger=lines.append, log_in_color=False)
    server = world.serve_net("127.0.0.1", port, "udp4")

    def broken(data):   # fewer arguments than (data, socket): fitted too
        raise ValueError("udp request bug")

    server.handle("q", broken)
    server.start()
    asker = make_ipc("hello").serve_net("127.0.0.1", free_port(kind=2), "udp4")
    asker.start()
    with pytest.raises(Exception, match="udp request bug"):
        asker.request(("127.0.0.1", port), "q", None, timeout=10)
    failures = [line for line in lines if "udp request bug" in line]
    assert len(failures) == 1 and "Traceback" in failures[0] and "in broken" in failures[0]
