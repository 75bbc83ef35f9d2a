"""A wire or transport mismatch is recognised from the first bytes and said, on both sides,
with what to set (``config.wire``, ``tls``), as WireMismatchError ``error`` events.

Before: a msgpack client to a node-ipc-wire server saw ``connect`` then silence; a
node-ipc-wire client to a msgpack server got ``frame is not an event array: int``; a plain
client to a TLS server looped connect/disconnect with no ``error`` event.
"""
from __future__ import annotations

import gevent
import pytest
from gevent import socket as gsocket

from conftest import free_port, wait_until
from geventipc.errors import TLSError, TLSMismatchError, WireMismatchError
from geventipc.wire.mismatch import mismatch, peer_wire
from test_tls import PKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(str(tmp_path_factory.mktemp("pki")))


def _pair(make_ipc, server_config, client_config, tcp_port=None):
    server_ipc = make_ipc("world", **server_config)
    server = (server_ipc.serve_net("127.0.0.1", tcp_port) if tcp_port is not None
              else server_ipc.serve())
    server_errors, client_errors, connects = [], [], []
    server.on("error", server_errors.append)
    server.start()
    client_ipc = make_ipc("hello", **client_config)
    client = (client_ipc.connect_to_net("world", "127.0.0.1", tcp_port)
              if tcp_port is not None else client_ipc.connect_to("world"))
    client.on("error", client_errors.append)
    client.on("connect", lambda: connects.append(1))
    return server, client, server_errors, client_errors, connects


def test_the_sans_io_helper():
    assert peer_wire(b"\x16\x03\x01\x02\x00") == "tls"
    assert peer_wire(b'{"type":"m","data":1}\f') == "node-ipc"
    assert peer_wire(b"\x92\xaa$ipc.hello\x81") == "msgpack"
    assert mismatch(b"\x92\xa1m\x01", "msgpack") is None
    assert mismatch(b'{"type":"m"}\f', "node-ipc") is None
    assert "config.wire = 'node-ipc'" in str(mismatch(b'{"type":"m"}', "msgpack"))


def test_msgpack_client_to_node_ipc_wire_server(make_ipc):
    server, client, server_errors, client_errors, _ = _pair(
        make_ipc, {"wire": "node-ipc"}, {"max_retries": 0})
    wait_until(lambda: server_errors and client_errors, message="both sides' errors")
    assert isinstance(server_errors[0], WireMismatchError)
    assert "msgpack" in str(server_errors[0]) and "config.wire" in str(server_errors[0])
    assert isinstance(client_errors[0], WireMismatchError)
    assert "config.wire = 'node-ipc' on this side" in str(client_errors[0])


def test_node_ipc_wire_client_to_msgpack_server(make_ipc):
    server, client, server_errors, client_errors, _ = _pair(
        make_ipc, {}, {"wire": "node-ipc", "max_retries": 0})
    client.wait_connected(15)
    client.emit("m", {"id": "hello"})
    wait_until(lambda: server_errors and client_errors, message="both sides' errors")
    assert isinstance(server_errors[0], WireMismatchError)
    assert "this looks like" not in str(server_errors[0])
    assert "node-ipc's JSON wire" in str(server_errors[0])
    assert "config.wire = 'node-ipc' on this side" in str(server_errors[0])
    assert isinstance(client_errors[0], WireMismatchError)
    assert "config.wire = 'msgpack'" in str(client_errors[0])


def test_plain_client_to_tls_server(make_ipc, pki):
    port = free_port()
    server, client, server_errors, client_errors, _ = _pair(
        make_ipc, {"tls": pki.server_tls()}, {"max_retries": 0}, port)
    wait_until(lambda: server_errors and client_errors, message="both sides' errors")
    assert isinstance(server_errors[0], TLSMismatchError)
    assert isinstance(server_errors[0], TLSError)   # what a TLS server reported before
    assert "set tls on the peer" in str(server_errors[0])
    assert isinstance(client_errors[0], WireMismatchError)
    assert "speaks TLS" in str(client_errors[0]) and "set tls" in str(client_errors[0])


def test_tls_client_to_plain_server(make_ipc, pki):
    port = free_port()
    server, client, server_errors, client_errors, _ = _pair(
        make_ipc, {}, {"tls": pki.client_tls(), "max_retries": 0}, port)
    wait_until(lambda: server_errors and client_errors, message="both sides' errors")
    assert isinstance(server_errors[0], WireMismatchError)
    assert "speaks TLS" in str(server_errors[0])
    assert isinstance(client_errors[0], TLSError)
    assert "plain, non-TLS server" in str(client_errors[0])


def test_plain_client_reading_tls_bytes_says_so(make_ipc, sock_dir):
    # a server that answers in TLS (here: an alert record) to a plain client
    path = f"{sock_dir}/tlsish.sock"
    listener = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(10)   # accept() is bounded too

    def serve_one():
        conn, _ = listener.accept()
        conn.sendall(b"\x15\x03\x03\x00\x02\x02\x46")
        gevent.sleep(0.5)
        conn.close()

    greenlet = gevent.spawn(serve_one)
    errors = []
    client = make_ipc("hello", max_retries=0).connect_to("tlsish", path)
    client.on("error", errors.append)
    wait_until(lambda: errors, message="the client's error")
    assert isinstance(errors[0], WireMismatchError) and "speaks TLS" in str(errors[0])
    greenlet.kill()
    listener.close()


def test_the_ported_handlers_example_runs():
    from conftest import run_example
    done = run_example(["examples/ported_handlers.py"], {}, timeout=30)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "server got" in out and "hello from a ported handler" in out
    assert "config.wire = 'msgpack' (the default) on this side" in out
    assert "config.wire = 'node-ipc' on this side" in out


# --- against the real node-ipc ---------------------------------------------------------

import test_nodeipc_interop as interop  # noqa: E402

LIB_PARAMS = interop.LIB_PARAMS
node_peer = interop.node_peer   # the interop tests' fixture: node-ipc processes


@pytest.mark.parametrize("lib", LIB_PARAMS)
def test_real_node_ipc_client_to_msgpack_server(lib, make_ipc, sock_dir, node_peer):
    where = {"transport": "unix", "path": sock_dir + "srv"}
    ipc = make_ipc("pyserver")   # the default msgpack wire
    server = ipc.serve(where["path"])
    errors = []
    server.on("error", errors.append)
    server.start()
    peer = interop._node_client(node_peer, lib, where)
    peer.send(cmd="emit", type="hello", data={"id": "nodeclient"})
    wait_until(lambda: errors, message="the server's error")
    assert isinstance(errors[0], WireMismatchError)
    assert "node-ipc's JSON wire" in str(errors[0])
    assert "config.wire = 'node-ipc' on this side" in str(errors[0])


@pytest.mark.parametrize("lib", LIB_PARAMS)
def test_msgpack_client_to_real_node_ipc_server(lib, make_ipc, sock_dir, node_peer):
    where = {"transport": "unix", "path": sock_dir + "srv"}
    peer = interop._node_server(node_peer, lib, where)
    errors = []
    client = make_ipc("pyclient", max_retries=0).connect_to("nodesrv", where["path"])
    client.on("error", errors.append)
    gevent.sleep(0.3)   # connected (node-ipc sends no welcome); now the server speaks
    peer.send(cmd="broadcast", type="news", data="hi")
    wait_until(lambda: errors, message="the client's error")
    assert isinstance(errors[0], WireMismatchError)
    assert "config.wire = 'node-ipc' on this side" in str(errors[0])
