"""Names used before their time, and server ids that collide with the library's own
names (issue 13, "node-ipc code ports without run-time surprises")."""
from __future__ import annotations

import gevent
import pytest

from conftest import serve, wait_until
from geventipc import IPC
from geventipc.errors import NotReadyError, UnknownClientError


def test_ipc_server_before_serve_says_to_call_serve_first():
    inst = IPC(silent=True)
    for use in (lambda: inst.server.on("message", print), lambda: inst.server.start(),
                lambda: inst.server.broadcast("x"), lambda: inst.server.define):
        with pytest.raises(NotReadyError, match=r"call ipc\.serve\(\.\.\.\) or "
                                               r"ipc\.serve_net\(\.\.\.\) first"):
            use()
    # an AttributeError too, and shutdown code that runs either way keeps working
    assert not hasattr(inst.server, "on")
    assert not inst.server and not inst.server.started
    inst.server.stop()


def test_ipc_of_before_connect_to_says_to_call_connect_to_first():
    inst = IPC(silent=True)
    with pytest.raises(NotReadyError, match=r"call ipc\.connect_to\('world', \.\.\.\)"):
        inst.of.world
    with pytest.raises(UnknownClientError, match=r"call ipc\.connect_to\('world', \.\.\.\)"):
        inst.of["world"]
    with pytest.raises(KeyError):    # still a KeyError for code that catches one
        inst.of["world"]


@pytest.mark.parametrize("server_id", ["items", "keys", "get", "pop", "values", "update",
                                       "clear", "copy"])
def test_a_server_id_that_is_a_mapping_method_name_is_the_client(make_ipc, server_id):
    world = serve(make_ipc, server_id)
    got = []
    world.server.on("ping", lambda data, socket: got.append(data))
    hello = make_ipc("hello")
    hello.connect_to(server_id)
    client = hello.of[server_id]
    assert getattr(hello.of, server_id) is client    # ipc.of.<id>, not a dict method
    assert server_id in hello.of and list(hello.of) == [server_id] and len(hello.of) == 1
    client.wait_connected(5)
    getattr(hello.of, server_id).emit("ping", 1)
    wait_until(lambda: got == [1], message="the event")
    hello.disconnect(server_id)
    assert server_id not in hello.of and not hello.of


def test_a_stopped_server_does_not_start_again_silently(make_ipc):
    world = serve(make_ipc)
    world.server.stop()
    with pytest.raises(NotReadyError, match=r"make a new one with ipc\.serve"):
        world.server.start()
    with gevent.Timeout(5):
        world.server.serve_forever()   # stopped already (a signal, a handler): returns at once


def test_a_stopped_udp_server_does_not_start_again_silently(make_ipc):
    peer = make_ipc("peer")
    peer.serve_net("127.0.0.1", 0, "udp4").start()
    peer.server.stop()
    with pytest.raises(NotReadyError):
        peer.server.start()
