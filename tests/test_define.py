"""Self-describing servers: ``server.define.listen`` / ``.broadcast`` tables (attribute
and item access) and ``client.describe()`` over the reserved ``$ipc.describe`` request."""
from __future__ import annotations

import pytest
from conftest import python_process, read_line, stop_process

from geventipc.errors import EventNameError, RemoteError, UnsupportedError
from geventipc.server import DESCRIBE


def test_tables_take_attribute_and_item_access(make_ipc):
    world = make_ipc("world")
    world.serve()
    define = world.server.define
    define.listen.message = "This event type listens for message strings as value of data key."
    define["listen"]["app.status"] = "dotted names need item access"
    define.broadcast["tick"] = {"data": "int", "every": "1 s"}
    assert define.listen["message"].startswith("This event type")
    assert define["broadcast"].tick == {"data": "int", "every": "1 s"}
    assert define.as_dict() == {
        "listen": {
            "message": "This event type listens for message strings as value of data key.",
            "app.status": "dotted names need item access",
        },
        "broadcast": {"tick": {"data": "int", "every": "1 s"}},
    }
    del define.listen["app.status"]
    del define.broadcast.tick
    assert define.as_dict() == {"listen": {"message": define.listen.message}, "broadcast": {}}
    with pytest.raises(AttributeError):
        define.listen.missing
    with pytest.raises(KeyError):
        define["other"]


def test_describe_returns_the_tables(make_ipc):
    world = make_ipc("world")
    world.serve()
    server = world.server
    server.start()
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    assert client.describe() == {"listen": {}, "broadcast": {}}
    server.define.listen.message = "a message string"
    server.define.broadcast.message = "the message echoed back"
    assert client.describe(timeout=5) == {
        "listen": {"message": "a message string"},
        "broadcast": {"message": "the message echoed back"},
    }


def test_describe_a_server_in_another_process_set_up_like_the_seed(make_ipc, sock_dir):
    proc = python_process(f"""
        import gevent
        from geventipc import IPC
        ipc = IPC(id="world", socket_root={sock_dir!r}, silent=True)

        def started():
            ipc.server.on("message", lambda data, socket: None)
            ipc.server.define.listen.message = (
                "This event type listens for message strings as value of data key.")
            ipc.server.define.broadcast.message = (
                "This event type sends message strings as value of data key.")

        ipc.serve(started)
        ipc.server.start()
        print("ready", flush=True)
        gevent.sleep(60)
    """)
    try:
        assert read_line(proc) == "ready"
        client = make_ipc("hello").connect_to("world")
        client.wait_connected(5)
        described = client.describe()
        assert described["listen"]["message"].startswith("This event type listens")
        assert described["broadcast"]["message"].startswith("This event type sends")
    finally:
        stop_process(proc)


def test_the_describe_event_is_reserved(make_ipc):
    world = make_ipc("world")
    world.serve()
    server = world.server
    with pytest.raises(EventNameError):
        server.handle(DESCRIBE, lambda data, socket: "mine")
    server.start()
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    with pytest.raises(EventNameError):
        client.emit(DESCRIBE)
    with pytest.raises(EventNameError):
        client.request("$ipc.anything-else")
    # requesting it by name is what describe() does
    assert client.request(DESCRIBE) == client.describe() == {"listen": {}, "broadcast": {}}


def test_undescribable_definitions_give_a_remote_error(make_ipc):
    world = make_ipc("world")
    world.serve()
    world.server.define.listen.bad = {1, 2}      # a set does not travel as msgpack
    world.server.start()
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    with pytest.raises(RemoteError) as info:
        client.describe()
    assert info.value.remote_type == "EncodeError"


def test_describe_needs_the_msgpack_wire(make_ipc):
    client = make_ipc("hello", wire="node-ipc").connect_to("world")
    with pytest.raises(UnsupportedError):
        client.describe()
