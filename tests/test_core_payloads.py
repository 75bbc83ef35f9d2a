"""What travels: exact msgpack round-trips of every payload type, 10,000 pipelined events
complete and in order (both directions), an 8 MiB bytes payload, and clear errors for
data the wire cannot carry."""
import math

import pytest

from conftest import wait_until
from geventipc.errors import EncodeError

PAYLOADS = [
    None, True, False, 0, -1, 2**31, -(2**31) - 1, 2**32, 2**53 + 1, 2**63 - 1, -(2**63),
    2**64 - 1, 1.5, -0.0, 1e308, 5e-324, math.inf, -math.inf,
    "", "text", "ünïcødé ✓ 𝄞", "\x00nul", b"", b"\x00\xffbytes", bytes(range(256)),
    [], [1, "a", b"b", None], {"k": "v"}, {"nested": {"list": [1, [2, [3, {"d": b"x"}]]]}},
    {1: "int key", b"b": "bytes key"}, "x" * 70000, list(range(1000)),
]


@pytest.fixture
def echo(make_ipc):
    """A world server echoing every ``echo`` event, and a connected client."""
    world = make_ipc("world")
    world.serve(lambda: world.server.on("echo", lambda data, sock: sock.emit("echo", data)))
    world.server.start()
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    return world.server, client


def exact(a, b):
    """Equal, and of the same types all the way down (1 != True, b"x" != "x")."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(exact(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (len(a) == len(b) and all(exact(k1, k2) and exact(a[k1], b[k2])
                                         for k1, k2 in zip(a, b)))
    if isinstance(a, float) and a == 0:
        return math.copysign(1, a) == math.copysign(1, b)
    return a == b


def test_payload_types_round_trip_exactly(echo):
    server, client = echo
    got = []
    client.on("echo", got.append)
    for payload in PAYLOADS:
        client.emit("echo", payload)
    wait_until(lambda: len(got) == len(PAYLOADS), message="every echo")
    for sent, back in zip(PAYLOADS, got):
        assert exact(sent, back), (sent, back)


def test_nan_round_trips(echo):
    server, client = echo
    got = []
    client.on("echo", got.append)
    client.emit("echo", math.nan)
    wait_until(lambda: got, message="the echo")
    assert isinstance(got[0], float) and math.isnan(got[0])


def test_tuples_arrive_as_lists(echo):
    server, client = echo
    got = []
    client.on("echo", got.append)
    client.emit("echo", (1, (2, 3)))
    wait_until(lambda: got, message="the echo")
    assert got == [[1, [2, 3]]]


@pytest.mark.parametrize("bad", [2**64, -(2**63) - 1, {1, 2}, object(), 1j,
                                 {"nested": [object()]}])
def test_data_msgpack_cannot_carry_raises_and_sends_nothing(echo, bad):
    server, client = echo
    got = []
    client.on("echo", got.append)
    with pytest.raises(EncodeError):
        client.emit("echo", bad)
    with pytest.raises(EncodeError):
        server.broadcast("echo", bad)
    client.emit("echo", "after")                 # the connection is intact
    wait_until(lambda: got, message="the next echo")
    assert got == ["after"]


def test_10000_pipelined_events_arrive_complete_and_in_order(make_ipc):
    world = make_ipc("world")
    got = []
    world.serve(lambda: world.server.on("n", lambda data, sock: got.append(data)))
    world.server.start()
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    for i in range(10000):
        client.emit("n", i)                      # no yielding between emits
    wait_until(lambda: len(got) >= 10000, timeout=10, message="10,000 events")
    assert got == list(range(10000))


def test_10000_events_server_to_client_emit_and_broadcast(make_ipc):
    world = make_ipc("world")
    world.serve()
    world.server.start()
    client = make_ipc("hello").connect_to("world")
    got = []
    client.on("n", got.append)
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets, message="connected")
    sock = world.server.sockets[0]
    for i in range(10000):
        if i % 2:
            world.server.broadcast("n", i)
        else:
            world.server.emit(sock, "n", i)
    wait_until(lambda: len(got) >= 10000, timeout=10, message="10,000 events")
    assert got == list(range(10000))


def test_10000_events_over_tcp(make_ipc, port):
    world = make_ipc("world", network_host="127.0.0.1")
    got = []
    world.serve_net(port, lambda: world.server.on("n", lambda d, s: got.append(d)))
    world.server.start()
    client = make_ipc("hello").connect_to_net("world", "127.0.0.1", port)
    for i in range(10000):                       # the first ones queue before connecting
        client.emit("n", {"i": i, "pad": "x" * (i % 50)})
    wait_until(lambda: len(got) >= 10000, timeout=10, message="10,000 events")
    assert [d["i"] for d in got] == list(range(10000))


def test_8_mib_bytes_payload_both_ways(echo):
    server, client = echo
    blob = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    assert len(blob) == 8 * 1024 * 1024
    got = []
    client.on("echo", got.append)
    client.emit("echo", blob)
    client.emit("echo", "after")
    wait_until(lambda: len(got) == 2, timeout=10, message="the 8 MiB echo")
    assert type(got[0]) is bytes and got[0] == blob and got[1] == "after"


def test_big_payloads_interleaved_with_small_ones_keep_order(echo):
    server, client = echo
    got = []
    client.on("echo", got.append)
    sent = []
    for i in range(20):
        item = (b"%d" % i) * (300_000 if i % 3 == 0 else 1)
        sent.append(item)
        client.emit("echo", item)
    wait_until(lambda: len(got) == 20, timeout=10, message="all echoes")
    assert got == sent
