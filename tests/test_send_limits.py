"""An event too large for the peer's max_message_size is refused at emit, not sent to be
refused by the peer (which would close the connection and lose the event)."""
import pytest

from conftest import wait_until
from geventipc.errors import EncodeError, EventTooLargeError


@pytest.mark.parametrize("wire", ["msgpack", "node-ipc"])
def test_oversize_emit_raises_and_connection_keeps_working(make_ipc, wire):
    world = make_ipc("world", max_message_size=4096, wire=wire)
    hello = make_ipc("hello", max_message_size=4096, wire=wire)
    got = []
    world.serve(lambda: world.server.on("m", lambda data, socket: got.append(data)))
    world.server.start()
    client = hello.connect_to("world")
    client.wait_connected(5)
    with pytest.raises(EventTooLargeError, match="max_message_size=4096") as info:
        client.emit("m", "x" * 5000)
    assert isinstance(info.value, EncodeError)
    with pytest.raises(EventTooLargeError):
        world.server.broadcast("m", "y" * 5000)
    client.emit("m", "small")
    wait_until(lambda: got, message="the small event")
    assert got == ["small"]
    assert client.connected and len(world.server.sockets) == 1


def test_oversize_request_raises(make_ipc):
    world = make_ipc("world", max_message_size=1024)
    hello = make_ipc("hello", max_message_size=1024)
    world.serve(lambda: world.server.handle("echo", lambda data, socket: data))
    world.server.start()
    client = hello.connect_to("world")
    client.wait_connected(5)
    with pytest.raises(EventTooLargeError):
        client.request("echo", b"z" * 2048, timeout=2)
    assert client.request("echo", b"ok", timeout=2) == b"ok"


def test_oversize_reply_becomes_a_remote_error(make_ipc):
    """A handler whose answer is too large for one frame: the caller gets RemoteError
    naming EventTooLargeError, and the connection stays up (the reply was never sent)."""
    from geventipc.errors import RemoteError

    world = make_ipc("world", max_message_size=1024)
    hello = make_ipc("hello", max_message_size=1024)
    world.serve(lambda: world.server.handle("big", lambda data, socket: b"z" * 2048))
    world.server.start()
    client = hello.connect_to("world")
    client.wait_connected(5)
    with pytest.raises(RemoteError) as info:
        client.request("big", None, timeout=2)
    assert info.value.remote_type == "EventTooLargeError"
    assert client.connected
    assert client.describe(timeout=2) == {"listen": {}, "broadcast": {}}
