"""server.stats(), client.stats(), the UDP server's and socket.stats() (issue 14): the
numbers against what was really sent over real sockets."""
import json

import gevent
import pytest
from gevent import socket as gsocket

from geventipc.counters import LATENCY_BUCKETS
from geventipc.errors import NoHandlerError, RemoteError, Timeout
from geventipc.reply import Deferred
from conftest import serve, wait_until


def connect(make_ipc, id="hello", **config):
    inst = make_ipc(id, **config)
    client = inst.connect_to("world")
    client.wait_connected(5)
    return inst, client


def test_events_and_bytes_in_and_out_match_on_both_sides(make_ipc):
    world = serve(make_ipc)
    got = []
    world.server.on("m", lambda data, socket: got.append(data))
    _hello, client = connect(make_ipc)
    for i in range(100):
        client.emit("m", {"i": i, "pad": "x" * i})
    wait_until(lambda: len(got) == 100)
    s, c = world.server.stats(), client.stats()
    # every frame counts, the client's $ipc.hello included
    assert s["events_in"] == 101 and c["events_out"] == 101
    assert s["bytes_in"] == c["bytes_out"] > 100 * 10
    assert s["connections"]["now"] == 1 and s["connections"]["accepted"] == 1
    assert s["connections"]["peak"] == 1 and s["connections"]["refused"] == 0
    assert s["transport"] == "unix" and c["transport"] == "unix"
    assert s["sockets"][0]["events_in"] == 101 and s["sockets"][0]["id"] == "hello"
    json.dumps(s), json.dumps(c)   # plain data: JSON-able as it is


def test_broadcasts_count_once_and_per_client_out(make_ipc):
    world = serve(make_ipc)
    clients = [connect(make_ipc, f"c{i}")[1] for i in range(3)]
    received = []
    for client in clients:
        client.on("b", lambda data: received.append(data))
    wait_until(lambda: world.server.stats()["connections"]["now"] == 3)
    for i in range(50):
        world.server.broadcast("b", i)
    wait_until(lambda: len(received) == 150)
    s = world.server.stats()
    # every frame counts, the server's $ipc.welcome to each client included
    assert s["broadcasts"] == 50 and s["events_out"] == 153
    assert [c.stats()["events_in"] for c in clients] == [51, 51, 51]
    assert s["bytes_out"] == sum(c.stats()["bytes_in"] for c in clients)
    assert s["connections"]["peak"] == 3


def test_totals_survive_closed_connections_and_reconnects_count(make_ipc, sock_dir):
    world = serve(make_ipc)
    got = []
    world.server.on("m", lambda data, socket: got.append(data))
    _hello, client = connect(make_ipc)
    client.emit("m", 1)
    wait_until(lambda: len(got) == 1)
    world.server.stop()
    wait_until(lambda: not client.connected)
    world.serve()
    world.server.on("m", lambda data, socket: got.append(data))
    world.server.start()
    wait_until(lambda: client.connected)
    client.emit("m", 2)
    wait_until(lambda: len(got) == 2)
    c = client.stats()
    assert c["connects"] == 2 and c["reconnects"] == 1
    assert c["events_out"] == 4      # two hellos, two events, over two connections


def test_requests_answered_failed_timed_out_and_latency(make_ipc):
    world = serve(make_ipc)
    never = Deferred()
    world.server.handle("add", lambda data, socket: data + 1)
    world.server.handle("boom", lambda data, socket: 1 / 0)
    world.server.handle("never", lambda data, socket: never)
    _hello, client = connect(make_ipc)
    assert [client.request("add", i, timeout=5) for i in range(3)] == [1, 2, 3]
    with pytest.raises(RemoteError):
        client.request("boom", timeout=5)
    with pytest.raises(NoHandlerError):
        client.request("nobody", timeout=5)
    with pytest.raises(Timeout):
        client.request("never", timeout=0.05)
    s, c = world.server.stats()["requests"], client.stats()["requests"]
    assert (s["answered"], s["failed"]) == (3, 2)
    assert (c["answered"], c["failed"], c["timed_out"]) == (3, 2, 1)
    for hist in (s["latency_seconds"], c["latency_seconds"]):
        assert hist["count"] == 5 and hist["sum"] >= 0
        assert [b[0] for b in hist["buckets"]] == [*LATENCY_BUCKETS, "+Inf"]
        assert hist["buckets"][-1][1] == 5
        counts = [b[1] for b in hist["buckets"]]
        assert counts == sorted(counts)           # cumulative
    never.set(None)


def test_refused_by_max_connections_and_handler_errors(make_ipc):
    world = serve(make_ipc, max_connections=1)
    world.server.on("m", lambda data, socket: 1 / 0)
    _a, first = connect(make_ipc, "a")
    first.emit("m", 1)
    wait_until(lambda: world.server.stats()["handler_errors"] == 1)
    second = make_ipc("b", stop_retrying=True).connect_to("world")
    wait_until(lambda: world.server.stats()["connections"]["refused"] >= 1)
    s = world.server.stats()
    assert s["connections"]["refused_by_reason"].get("max_connections", 0) >= 1
    assert s["connections"]["now"] == 1
    second.disconnect()


def test_protocol_errors_by_kind(make_ipc, sock_dir):
    world = serve(make_ipc)
    raw = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    raw.connect(world.server.path)
    raw.sendall(b"\xc1" * 16)        # 0xc1: never a valid msgpack byte
    wait_until(lambda: world.server.stats()["protocol_errors"])
    raw.close()
    s = world.server.stats()
    (kind, count), = s["protocol_errors"].items()
    assert count == 1 and "Error" in kind
    assert s["connections"]["closed_by_error"] == {kind: 1}


def _stalled(server):
    raw = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    raw.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_RCVBUF, 4096)
    raw.connect(server.path)
    return raw


def test_slow_consumer_cut_and_dropped_and_backlog(make_ipc):
    cut = serve(make_ipc, "cut", max_pending_bytes=64 * 1024)
    raw = _stalled(cut.server)
    wait_until(lambda: cut.server.stats()["connections"]["now"] == 1)
    with gevent.Timeout(10):
        while cut.server.stats()["connections"]["now"]:
            cut.server.broadcast("b", b"x" * 16384)
            gevent.sleep(0.001)
    s = cut.server.stats()
    assert s["slow_consumer_cuts"] == 1
    assert s["connections"]["closed_by_error"] == {"SlowConsumerError": 1}
    raw.close()

    drop = serve(make_ipc, "drop", max_pending_bytes=64 * 1024, overflow_policy="drop")
    raw = _stalled(drop.server)
    wait_until(lambda: drop.server.stats()["connections"]["now"] == 1)
    with gevent.Timeout(10):
        while not drop.server.stats()["dropped"]:
            drop.server.broadcast("b", b"x" * 16384)
            gevent.sleep(0.001)
    s = drop.server.stats()
    assert s["dropped"] >= 1 and s["slow_consumer_cuts"] == 0
    assert s["pending_bytes"] > 0
    assert s["largest_backlog"]["bytes"] == s["pending_bytes"]
    (sock,) = drop.server.sockets
    assert sock.stats()["pending_bytes"] == s["pending_bytes"]
    assert sock.stats()["dropped"] == s["dropped"]
    raw.close()


def test_stats_requests_are_off_by_default_and_answered_when_on(make_ipc):
    world = serve(make_ipc)
    _hello, client = connect(make_ipc)
    with pytest.raises(NoHandlerError, match="stats_requests"):
        client.remote_stats(timeout=5)
    world.server.config.stats_requests = True
    remote = client.remote_stats(timeout=5)
    assert remote["kind"] == "server" and remote["connections"]["now"] == 1
    assert remote["sockets"][0]["id"] == "hello"


def test_udp_server_stats(make_ipc):
    a = make_ipc("a")
    b = make_ipc("b")
    got = []
    a.serve_net("127.0.0.1", 0, "udp4")
    b.serve_net("127.0.0.1", 0, "udp4")
    a.server.on("m", lambda data, socket: got.append(data))
    a.server.handle("echo", lambda data, socket: data)
    a.server.start()
    b.server.start()
    dest = ("127.0.0.1", a.server.port)
    for i in range(10):
        b.server.emit(dest, "m", i)
    wait_until(lambda: len(got) == 10)
    assert b.server.request(dest, "echo", 1, timeout=5) == 1
    sa, sb = a.server.stats(), b.server.stats()
    assert sa["events_in"] == 11 and sb["events_out"] == 11
    assert sa["bytes_in"] == sb["bytes_out"] and sa["events_out"] == 1
    assert sa["peers"] == 1 and sa["requests"]["answered"] == 1
    assert sa["requests"]["latency_seconds"]["count"] == 1
    assert sb["requests_sent"]["answered"] == 1 and sa["transport"] == "udp4"
    with pytest.raises(NoHandlerError, match="stats_requests"):
        b.server.remote_stats(dest, timeout=5)
    a.server.config.stats_requests = True
    assert b.server.remote_stats(dest, timeout=5)["kind"] == "udp"


def test_a_layer_on_top_adds_its_own_section(make_ipc):
    from geventipc import stats
    world = serve(make_ipc)
    stats.add_section("cluster_test", lambda endpoint: {"nodes": 3}
                      if endpoint is world.server else None)
    try:
        _hello, client = connect(make_ipc)
        assert world.server.stats()["cluster_test"] == {"nodes": 3}
        assert "cluster_test" not in client.stats()
        with pytest.raises(ValueError):
            stats.add_section("connections", lambda endpoint: {})
    finally:
        del stats.SECTIONS["cluster_test"]
