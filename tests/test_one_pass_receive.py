"""One-pass receive: frames are dispatched as they are decoded, nothing decoded stays
referenced by an idle connection, the incomplete-frame timeout holds (and does not fire
on the peer) while a handler yields mid-batch, and the read counters count."""
from __future__ import annotations

import gc
import time

import gevent
import msgpack
from gevent import socket as gsocket

from conftest import serve, wait_until
from geventipc.errors import IncompleteMessageTimeoutError

_pack = msgpack.Packer(use_bin_type=True).pack


def event(name, data):
    return _pack([name, data])


def raw_peer(path):
    sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    sock.connect(path)
    return sock


def _alive_markers(marker):
    # no gc.collect(): a batch kept by a live frame is not garbage, and would be found
    return [o for o in gc.get_objects()
            if type(o) is dict and o.get("marker") == marker]


def test_an_idle_connection_keeps_nothing_decoded(make_ipc):
    world = serve(make_ipc)
    seen = []
    world.server.on("m", lambda data, socket: seen.append(data["i"]))
    client = make_ipc("hello").connect_to("world")
    client.on("r", lambda data: seen.append(("r", data["i"])))
    client.wait_connected(15)
    wait_until(lambda: world.server.sockets, message="the server side")
    marker = f"recv-{time.monotonic()}"
    for i in range(50):
        client.emit("m", {"i": i, "marker": marker, "tracked": [i]})
        world.server.broadcast("r", {"i": i, "marker": marker, "tracked": [i]})
    wait_until(lambda: len(seen) == 100, message="every event")
    gevent.sleep(0.05)   # both sides idle now, blocked in their next read
    assert _alive_markers(marker) == []


def test_message_timeout_does_not_fire_on_the_peer_while_a_handler_yields(make_ipc):
    world = serve(make_ipc, message_timeout=200)
    got, errors = [], []
    world.server.on("error", errors.append)

    def slow(data, socket):
        got.append(("slow", data))
        gevent.sleep(0.4)   # longer than message_timeout, mid-batch

    world.server.on("slow", slow)
    world.server.on("m", lambda data, socket: got.append(("m", data)))
    peer = raw_peer(world.server.path)
    first, tail = event("m", 1), event("m", 3)
    peer.sendall(first[:3])                       # a frame begins: the timer runs
    gevent.sleep(0.1)
    # it ends, a slow handler's frame and a new partial frame follow in one write
    peer.sendall(first[3:] + event("slow", 2) + tail[:3])
    gevent.sleep(0.45)   # the handler sleeps through the timer; the tail began 0.45 s ago
    peer.sendall(tail[3:])
    wait_until(lambda: len(got) == 3, message="every event")
    assert got == [("m", 1), ("slow", 2), ("m", 3)]
    assert errors == [] and len(world.server.sockets) == 1
    peer.close()


def test_message_timeout_still_holds_after_a_yielding_batch(make_ipc):
    world = serve(make_ipc, message_timeout=200)
    errors = []
    world.server.on("error", errors.append)
    world.server.on("slow", lambda data, socket: gevent.sleep(0.3))
    peer = raw_peer(world.server.path)
    peer.sendall(event("slow", 1) + event("m", 2)[:3])   # the tail never completes
    with gevent.Timeout(5, AssertionError("never cut off")):
        while peer.recv(4096):   # the server's own frames (a welcome), then the end
            pass
    wait_until(lambda: errors, message="the error event")
    assert isinstance(errors[0], IncompleteMessageTimeoutError)


def test_read_counters(make_ipc):
    world = serve(make_ipc)
    got = []
    world.server.on("m", lambda data, socket: got.append(data))
    peer = raw_peer(world.server.path)
    frames = [event("m", i) for i in range(100)]
    data = b"".join(frames)
    peer.sendall(data[:7])
    gevent.sleep(0.02)
    peer.sendall(data[7:])
    wait_until(lambda: len(got) == 100, message="every event")
    (sock,) = world.server.sockets
    assert sock.bytes_in == len(data) and sock.events_in == 100
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(15)
    wait_until(lambda: len(world.server.sockets) == 2, message="the client")
    conn = client.conn
    gevent.sleep(0.05)   # the server's own frames (a welcome), if any, are in
    events, size = conn.events_in, conn.bytes_in
    world.server.broadcast("x", "y")
    wait_until(lambda: conn.events_in == events + 1, message="the broadcast")
    assert conn.bytes_in == size + len(event("x", "y"))


def test_every_handler_of_an_event_runs_in_order_when_one_fails(make_ipc):
    """An event's table entry is one callable; with several handlers (and the wildcard)
    each still runs, in registration order, a failing one reported on its own."""
    world = serve(make_ipc)
    seen, errors = [], []
    server = world.server

    def boom(data, socket):
        seen.append(("boom", data))
        raise RuntimeError("handler says no")

    server.on("m", boom)
    server.on("m", lambda data, socket: seen.append(("second", data)))
    server.on("*", lambda type, data, socket: seen.append(("any", type, data)))
    server.on("error", errors.append)
    server.on("quiet", lambda data, socket: seen.append(("quiet", data)))
    server.off("quiet")   # no handler left: the wildcard alone sees it
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(15)
    got = []
    client.on("r", lambda data: got.append(("first", data)))

    def client_boom(data):
        got.append(("boom", data))
        raise ValueError("client handler says no")

    client.on("r", client_boom)
    client.on("r", lambda data: got.append(("third", data)))
    client_errors = []
    client.on("error", client_errors.append)
    for i in range(3):
        client.emit("m", i)
    client.emit("quiet", 9)
    wait_until(lambda: len(seen) == 10, message="every server handler")
    assert seen == [x for i in range(3) for x in
                    (("boom", i), ("second", i), ("any", "m", i))] + [("any", "quiet", 9)]
    assert [type(e.__cause__ or e).__name__ for e in errors] == ["RuntimeError"] * 3
    assert all("'m'" in str(e) for e in errors)
    server.broadcast("r", 1)
    server.broadcast("r", 2)
    wait_until(lambda: len(got) == 6, message="every client handler")
    assert got == [(name, i) for i in (1, 2) for name in ("first", "boom", "third")]
    assert len(client_errors) == 2 and all("'r'" in str(e) for e in client_errors)


def test_a_streaming_peer_is_read_in_bigger_pieces(make_ipc):
    """After a read that came back full, the next one is STREAM_READ bytes, not
    BATCH_READ: a peer that keeps the kernel buffer full shares the per-read cost among
    more frames. Every frame still arrives, in order."""
    from geventipc.transports.stream import BATCH_READ, STREAM_READ

    world = serve(make_ipc)
    server = world.server
    got, per_pass = [], []
    dispatch = server.dispatch_to

    def counting(socket, frames):   # the server hands each read's frames here
        count = dispatch(socket, frames)
        per_pass.append(count)
        return count

    server.dispatch_to = counting   # before the peer connects: its connection takes it
    server.on("m", lambda data, socket: got.append(data[0]))
    peer = raw_peer(server.path)
    frame_size = len(event("m", [0, "x" * 1000]))
    count = 4 * STREAM_READ // frame_size
    data = b"".join(event("m", [i, "x" * 1000]) for i in range(count))
    gevent.spawn(peer.sendall, data)
    wait_until(lambda: len(got) == count, timeout=10, message="every event")
    assert got == list(range(count))
    assert max(per_pass) > BATCH_READ // frame_size + 1, per_pass
    peer.close()
