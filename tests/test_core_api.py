"""The facade's call shapes: node-ipc's "omit optional arguments, keep the order" rule,
keywords, camelCase aliases, ``ipc.of``, independent ``IPC()`` instances, and the
emitter API (``on`` as decorator, ``once``, ``off``, the ``*`` wildcard)."""
import os

import pytest

import geventipc
from conftest import free_port, wait_until
from geventipc import IPC, ipc as default_ipc
from geventipc.errors import Timeout


# --- argument placement, checked on the objects the calls build (no sockets needed) ---


def cb():
    pass


@pytest.mark.parametrize("args, kwargs, path, callback", [
    ((), {}, "DEFAULT", None),
    (("/x/p.sock",), {}, "/x/p.sock", None),
    ((cb,), {}, "DEFAULT", cb),
    (("/x/p.sock", cb), {}, "/x/p.sock", cb),
    ((), {"path": "/x/p.sock", "callback": cb}, "/x/p.sock", cb),
    (("/x/p.sock",), {"callback": cb}, "/x/p.sock", cb),
])
def test_serve_arguments_in_order(make_ipc, sock_dir, args, kwargs, path, callback):
    inst = make_ipc("world")
    server = inst.serve(*args, **kwargs)
    assert inst.server is server
    assert server.path == (sock_dir + "app.world" if path == "DEFAULT" else path)
    assert server.listeners("start") == ((callback,) if callback else ())


@pytest.mark.parametrize("args, kwargs, host, port, callback", [
    ((), {}, "localhost", 8000, None),
    (("127.0.0.1",), {}, "127.0.0.1", 8000, None),
    ((3435,), {}, "localhost", 3435, None),
    ((3435, cb), {}, "localhost", 3435, cb),
    (("::1", 3435), {}, "::1", 3435, None),
    (("127.0.0.1", 3435, cb), {}, "127.0.0.1", 3435, cb),
    ((cb,), {}, "localhost", 8000, cb),
    ((), {"host": "127.0.0.1", "port": 3435, "callback": cb}, "127.0.0.1", 3435, cb),
    ((3435,), {"callback": cb}, "localhost", 3435, cb),
])
def test_serve_net_arguments_in_order(make_ipc, args, kwargs, host, port, callback):
    inst = make_ipc("world")
    server = inst.serve_net(*args, **kwargs)
    assert (server.host, server.port) == (host, port)
    assert server.listeners("start") == ((callback,) if callback else ())


@pytest.mark.parametrize("args, kwargs, path, callback", [
    (("world",), {}, "DEFAULT", None),
    (("world", cb), {}, "DEFAULT", cb),
    (("world", "/x/w.sock"), {}, "/x/w.sock", None),
    (("world", "/x/w.sock", cb), {}, "/x/w.sock", cb),
    ((), {"id": "world", "path": "/x/w.sock", "callback": cb}, "/x/w.sock", cb),
    (("world",), {"callback": cb}, "DEFAULT", cb),
])
def test_connect_to_arguments_in_order(make_ipc, sock_dir, args, kwargs, path, callback):
    inst = make_ipc("hello", stop_retrying=True)
    calls = []
    marker = lambda: calls.append(1)  # noqa: E731
    args = tuple(marker if a is cb else a for a in args)
    kwargs = {k: marker if v is cb else v for k, v in kwargs.items()}
    client = inst.connect_to(*args, **kwargs)
    assert inst.of["world"] is client and inst.of.world is client
    assert client.path == (sock_dir + "app.world" if path == "DEFAULT" else path)
    assert calls == ([1] if callback else [])


@pytest.mark.parametrize("args, kwargs, host, port, callback", [
    (("world",), {}, "localhost", 8000, False),
    (("world", 3435, cb), {}, "localhost", 3435, True),      # the issue's own example
    (("world", "127.0.0.1"), {}, "127.0.0.1", 8000, False),
    (("world", "127.0.0.1", cb), {}, "127.0.0.1", 8000, True),
    (("world", 3435), {}, "localhost", 3435, False),
    (("world", cb), {}, "localhost", 8000, True),
    (("world", "127.0.0.1", 3435, cb), {}, "127.0.0.1", 3435, True),
    (("world",), {"port": 3435, "callback": cb}, "localhost", 3435, True),
    ((), {"id": "world", "host": "::1", "port": 3435}, "::1", 3435, False),
])
def test_connect_to_net_arguments_in_order(make_ipc, args, kwargs, host, port, callback):
    inst = make_ipc("hello", stop_retrying=True)
    calls = []
    marker = lambda: calls.append(1)  # noqa: E731
    args = tuple(marker if a is cb else a for a in args)
    kwargs = {k: marker if v is cb else v for k, v in kwargs.items()}
    client = inst.connect_to_net(*args, **kwargs)
    assert (client.host, client.port) == (host, port)
    assert calls == ([1] if callback else [])


def test_arguments_out_of_order_are_refused(make_ipc):
    inst = make_ipc("hello", stop_retrying=True)
    with pytest.raises(TypeError, match="cannot place"):
        inst.connect_to_net("world", cb, 3435)          # callback before port
    with pytest.raises(TypeError, match="cannot place"):
        inst.serve(cb, "/x/p.sock")
    with pytest.raises(TypeError, match="unexpected keyword"):
        inst.connect_to("world", socket="/x")
    with pytest.raises(TypeError, match="server id"):
        inst.connect_to()
    with pytest.raises(TypeError, match="server id"):
        inst.connect_to_net(3435)
    with pytest.raises(TypeError, match="server id"):
        inst.connect_to(cb)


def test_camel_case_method_aliases():
    assert IPC.connectTo is IPC.connect_to
    assert IPC.connectToNet is IPC.connect_to_net
    assert IPC.serveNet is IPC.serve_net


def test_camel_case_aliases_really_connect(make_ipc):
    world, hello = make_ipc("world", network_host="127.0.0.1"), make_ipc("hello")
    port = free_port()
    got = []
    world.serveNet(port, lambda: world.server.on("ping", lambda d, s: got.append(d)))
    world.server.start()
    client = hello.connectToNet("world", "127.0.0.1", port)
    client.wait_connected(timeout=5)
    client.emit("ping", 1)
    wait_until(lambda: got == [1], message="ping over the camelCase API")


def test_module_level_instance_and_independent_instances(make_ipc):
    assert isinstance(default_ipc, IPC) and geventipc.ipc is default_ipc
    a, b = IPC(), IPC()
    assert a.config is not b.config and a.of is not b.of and a.log is not b.log
    a.config.id = "only-a"
    assert b.config.id != "only-a" and default_ipc.config.id != "only-a"


def test_two_independent_instances_serving_and_connecting_in_one_process(make_ipc, sock_dir):
    one, two = make_ipc("one"), make_ipc("two")
    seen = {"one": [], "two": []}
    for inst, name in ((one, "one"), (two, "two")):
        inst.serve(lambda inst=inst, name=name: inst.server.on(
            "who", lambda data, sock, name=name: seen[name].append((data, sock.id))))
        inst.server.start()
    # each instance connects to the other one
    one.connect_to("two").wait_connected(timeout=5)
    two.connect_to("one").wait_connected(timeout=5)
    one.of.two.emit("who", "from one")
    two.of.one.emit("who", "from two")
    wait_until(lambda: seen["one"] and seen["two"], message="both servers hear")
    assert seen == {"one": [("from two", "two")], "two": [("from one", "one")]}
    assert sorted(os.listdir(sock_dir)) == ["app.one", "app.two"]


def test_of_unknown_id(make_ipc):
    inst = make_ipc("hello")
    with pytest.raises(AttributeError, match="connect_to"):
        inst.of.nobody
    with pytest.raises(KeyError):
        inst.of["nobody"]


def test_connect_to_same_id_twice_returns_the_live_client(make_ipc):
    inst = make_ipc("hello", stop_retrying=False)
    first = inst.connect_to("world")
    calls = []
    second = inst.connect_to("world", lambda: calls.append(1))
    assert second is first and calls == [1]


def test_wait_connected_times_out_with_a_named_error(make_ipc):
    inst = make_ipc("hello")
    client = inst.connect_to("nobody-here")
    with pytest.raises(Timeout):
        client.wait_connected(timeout=0.2)
    assert not client.connected


# --- on / once / off / wildcard over a real connection ------------------------------


@pytest.fixture
def pair(make_ipc):
    """A started world server and a connected hello client."""
    world, hello = make_ipc("world"), make_ipc("hello")
    world.serve()
    world.server.start()
    client = hello.connect_to("world")
    client.wait_connected(timeout=5)
    wait_until(lambda: world.server.sockets and world.server.sockets[0].id == "hello",
               message="the server to know the client")
    return world.server, client


def test_on_as_decorator_and_handler_arguments(pair):
    server, client = pair
    got = []

    @server.on("message")
    def on_message(data, socket):
        got.append(data)
        socket.emit("reply", data * 2)

    @client.on("reply")
    def on_reply(data):
        got.append(data)

    assert callable(on_message) and callable(on_reply)  # decorators return the function
    client.emit("message", 21)
    wait_until(lambda: len(got) == 2, message="request and reply")
    assert got == [21, 42]


def test_once_fires_once_and_off_removes(pair):
    server, client = pair
    once, always = [], []
    server.once("tick", lambda data, sock: once.append(data))
    handler = server.on("tick", lambda data, sock: always.append(data))
    for i in range(3):
        client.emit("tick", i)
    wait_until(lambda: len(always) == 3, message="three ticks")
    assert once == [0] and always == [0, 1, 2]
    server.off("tick", handler)
    client.emit("tick", 3)
    client.emit("sync", None)
    synced = []
    server.on("sync", lambda d, s: synced.append(1))
    wait_until(lambda: synced, message="the sync event after the tick")
    assert always == [0, 1, 2]


def test_once_as_decorator_and_off_of_a_once_handler(pair):
    server, client = pair
    got = []

    @client.once("note")
    def on_note(data):
        got.append(data)

    client.off("note", on_note)                     # removing before it ever fired
    client.once("note", got.append)
    server.emit(server.sockets[0], "note", "a")
    server.emit(server.sockets[0], "note", "b")
    server.emit(server.sockets[0], "done")
    done = []
    client.on("done", lambda data: done.append(1))
    wait_until(lambda: done, message="done")
    assert got == ["a"]


def test_off_without_handler_removes_all(pair):
    server, client = pair
    got = []
    client.on("x", got.append)
    client.on("x", got.append)
    client.off("x")
    assert client.listeners("x") == ()


def test_wildcard_receives_type_data_socket(pair):
    server, client = pair
    server_seen, client_seen = [], []
    server.on("*", lambda type, data, socket: server_seen.append((type, data, socket.id)))
    client.on("*", lambda type, data: client_seen.append((type, data)))
    client.emit("alpha", 1)
    client.emit("beta", {"k": [1, 2]})
    server.broadcast("gamma", b"\x00")
    wait_until(lambda: len(server_seen) == 2 and client_seen, message="wildcards")
    assert server_seen == [("alpha", 1, "hello"), ("beta", {"k": [1, 2]}, "hello")]
    assert client_seen == [("gamma", b"\x00")]       # the library's $ipc.* frames stay out


def test_emit_refuses_reserved_and_bad_names(pair):
    from geventipc.errors import EventNameError
    server, client = pair
    for bad in ("connect", "error", "disconnect", "destroy", "start", "data",
                "socket.disconnected", "*", "$ipc.hello", "", 5):
        with pytest.raises(EventNameError):
            client.emit(bad, None)
        with pytest.raises(EventNameError):
            server.broadcast(bad)


def test_a_raising_connect_callback_leaves_no_dead_client(make_ipc):
    world = make_ipc("world")
    world.serve()
    world.server.start()
    hello = make_ipc("hello")

    def broken():
        raise RuntimeError("bug in the callback")

    with pytest.raises(RuntimeError, match="bug in the callback"):
        hello.connect_to("world", broken)
    assert "world" not in hello.of
    hello.connect_to("world").wait_connected(timeout=5)    # a fresh, working client
