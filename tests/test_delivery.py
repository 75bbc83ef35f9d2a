"""What survives a dying connection, and what a client does while it reconnects.

Issue 15 items 1, 2, 7 and 8: a connection killed mid-write gives back every frame the
kernel did not take whole (delivered once, in order, to the next server; only what the
kernel buffers held may be lost); ``emit`` while reconnecting queues instead of raising;
after ``ipc.disconnect(id)`` nothing more is dispatched and the client reads disconnected
at once; the offline queue is bounded in bytes too.
"""
from __future__ import annotations

import signal
import socket

import gevent
import pytest
from gevent import socket as gsocket
from gevent.event import Event

from conftest import free_port, python_process, read_line, stop_process, wait_until
from geventipc.errors import NotConnectedError, QueueFullError
from geventipc.transports.stream import StreamConnection
from geventipc.wire import EventNames, MsgpackCodec
from test_tls import PKI

SIZE = 1000      # payload bytes per event
EVENTS = 6000    # ~6 MB: far more than the kernel buffers of one connection hold

# A server that reads slowly (each event blocks it 2 ms) and prints the number of every
# event it handled; or, with "fast", one that prints them all at the end.
SERVER = """
    import sys, time
    from geventipc import IPC
    kind, where, mode, total = sys.argv[1:]
    total = int(total)
    ipc = IPC(id="world", silent=True)
    if kind == "unix":
        ipc.serve(where)
    else:
        ipc.serve_net("127.0.0.1", int(where))
    seen = []

    def on_seq(data, sock):
        n = data[0]
        if mode == "slow":
            print(n, flush=True)
            time.sleep(0.002)   # blocks this whole server: it reads slowly
        else:
            seen.append(n)
            if n == total - 1:
                print(" ".join(map(str, seen)), flush=True)

    ipc.server.on("seq", on_seq)
    ipc.server.on("start", lambda: print("ready", flush=True))
    ipc.server.serve_forever()
"""


def start(kind, where, mode):
    proc = python_process(SERVER, kind, where, mode, str(EVENTS))
    assert read_line(proc) == "ready"
    return proc


def kernel_buffers(kind, sock) -> int:
    """The most the kernel can hold of one connection's data: over Unix the sender's
    send buffer (the receiver's queue counts against it) and the receiver's; over TCP
    the largest send and receive buffers autotuning may grow to."""
    if kind == "unix":
        return 2 * sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) + \
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    with open("/proc/sys/net/ipv4/tcp_wmem") as wmem, open("/proc/sys/net/ipv4/tcp_rmem") as rmem:
        return int(wmem.read().split()[2]) + int(rmem.read().split()[2])


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> PKI:
    """TLS certificates (as tests/test_tls.py makes them), once for this module."""
    return PKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(params=["unix", "tcp"])
def where(request, sock_dir):
    if request.param == "unix":
        return "unix", sock_dir + "app.world"
    return "tcp", str(free_port())


def test_frames_the_kernel_never_took_reach_the_next_server_once_in_order(make_ipc, where):
    """Issue 15.1: the client holds megabytes the slow server never read; the server is
    killed; every frame the kernel did not take reaches the restarted server, once, in
    order. What the old server handled plus what the new one got leaves a gap only of
    what the kernel buffers held.
    """
    kind, addr = where
    first = start(kind, addr, "slow")
    procs = [first]
    try:
        # drain_timeout=0: queue everything at once (no pacing), as a burst would
        hello = make_ipc("hello", drain_timeout=0, retry=50)
        client = (hello.connect_to("world", addr) if kind == "unix"
                  else hello.connect_to_net("world", "127.0.0.1", int(addr)))
        client.wait_connected(5)
        payload = b"x" * SIZE
        for n in range(EVENTS):
            client.emit("seq", [n, payload])
        gevent.sleep(0)
        # past the first chunks: the writer is deep in the queue when the server dies
        handled = [int(read_line(first)) for _ in range(500)]
        assert handled == list(range(500))
        assert client.conn.pending_bytes > 1024 * 1024   # megabytes not yet taken
        allowance = kernel_buffers(kind, client.conn.sock)
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        # everything the old server handled before it died
        handled += [int(line) for line in first.stdout.read().split()]
        last = handled[-1]
        assert handled == list(range(last + 1))
        second = start(kind, addr, "fast")
        procs.append(second)
        got = [int(n) for n in read_line(second, timeout=30).split()]
        assert got, "the new server got nothing"
        # once and in order, up to the very last event
        assert got == list(range(got[0], EVENTS)), (got[:5], len(got))
        assert got[0] > last   # nothing the old server decoded came again
        lost = got[0] - last - 1
        # only what the kernel had accepted: its socket buffers
        assert lost * (SIZE + 20) <= allowance, (lost, allowance)
        print(f"{kind}: old server handled {last + 1}, lost in the kernel {lost} "
              f"(allowance {allowance // (SIZE + 20)}), new server got {len(got)}")
    finally:
        for proc in procs:
            stop_process(proc)


def test_a_partly_sent_frame_comes_back_whole_with_everything_after_it():
    """Over a real socket whose peer goes away without reading: take_unsent gives back,
    as the same objects, the frame the kernel took only part of and every frame after
    it; the frames the kernel took whole are not given back."""
    names = EventNames()
    mine, peer = gsocket.socketpair()
    conn = StreamConnection(mine, MsgpackCodec(names), names,
                            on_frames=lambda c, f: None, on_close=lambda c, r: None)
    # ~1 MB in odd-sized frames: more than the kernel holds, so sends end mid-frame
    frames = [bytes([i % 256]) * 10_001 for i in range(100)]
    for frame in frames:
        conn.write(frame)
    gevent.sleep(0.05)   # the kernel takes what it can
    peer.close()         # gone, without reading: the next send fails (EPIPE)
    wait_until(lambda: conn.closed, message="the write to fail")
    taken = 100 * 10_001 - conn.pending_bytes   # bytes the kernel accepted
    unsent = conn.take_unsent()
    first = len(frames) - len(unsent)
    assert 0 < first < len(frames)
    assert all(a is b for a, b in zip(unsent, frames[first:]))
    # the first frame given back is the one the kernel's share ended in (or right after)
    assert first * 10_001 <= taken < (first + 1) * 10_001, (first, taken)


def test_emit_while_reconnecting_queues_instead_of_raising(make_ipc):
    """Issue 15.2: an emit waiting on a full queue (the server does not read) when the
    connection drops is queued for the next connection, not refused; everything after
    what the dead connection's kernel buffers held arrives once, in order."""
    world = make_ipc("world")
    world.serve()
    world.server.start()
    conns = []
    got = []
    release = Event()

    def on_seq(data, sock):
        if sock is conns[0]:
            release.wait(10)   # the first connection is not read: its client waits
            return
        got.append(data[0])

    world.server.on("connect", conns.append)
    world.server.on("seq", on_seq)
    client = make_ipc("hello", max_pending_bytes=64 * 1024, retry=50).connect_to("world")
    client.wait_connected(5)
    errors = []
    total = 400

    def emit_all():
        try:
            for n in range(total):
                client.emit("seq", [n, b"y" * 2000])
        except Exception as exc:   # noqa: BLE001 - the test asserts there is none
            errors.append(exc)

    emitter = gevent.spawn(emit_all)
    wait_until(lambda: client.conn is not None and client.conn.pending_bytes > 20_000,
               message="the client's queue to fill")
    assert not emitter.dead    # waiting: overflow policy "wait"
    conns[0].abort()           # the connection drops under the waiting emit
    wait_until(lambda: emitter.dead, timeout=15, message="the emitter to finish")
    release.set()
    assert errors == []
    wait_until(lambda: got and got[-1] == total - 1, timeout=15,
               message="the last event on the next connection")
    assert got == list(range(got[0], total))


def test_disconnect_stops_dispatch_and_reads_disconnected_at_once(make_ipc):
    """Issue 15.7: after ipc.disconnect(id), a reference to the client reads
    disconnected at once and events still arriving (during the graceful close's
    linger) are not dispatched."""
    world = make_ipc("world")
    world.serve()
    world.server.start()
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(5)
    got = []
    client.on("tick", got.append)
    wait_until(lambda: world.server.sockets, message="the server to see the client")
    sock = world.server.sockets[0]
    world.server.emit(sock, "tick", 1)
    wait_until(lambda: got == [1], message="the first tick")
    hello.disconnect("world")
    assert client.connected is False
    for n in range(2, 50):   # the server goes on emitting while the client lingers
        if sock.closed:
            break
        world.server.emit(sock, "tick", n)
        gevent.sleep(0.01)
    gevent.sleep(0.1)
    assert got == [1]
    with pytest.raises(NotConnectedError):
        client.emit("x", 1)


def test_offline_queue_is_bounded_in_bytes(make_ipc):
    """Issue 15.8: max_queued_bytes bounds the offline queue; the same QueueFullError."""
    client = make_ipc("hello", max_queued_bytes=100_000).connect_to("nobody-here")
    big = b"z" * 30_000
    for _ in range(3):
        client.emit("blob", big)
    assert client.queued == 3 and 90_000 < client.queued_bytes <= 100_000
    with pytest.raises(QueueFullError, match="max_queued_bytes=100000"):
        client.emit("blob", big)
    assert client.queued == 3
    client.emit("small", 1)   # what fits still goes in
    assert client.queued == 4


def test_a_single_event_larger_than_max_queued_bytes_is_queued_alone(make_ipc):
    client = make_ipc("hello", max_queued_bytes=1000).connect_to("nobody-here")
    client.emit("blob", b"z" * 5000)
    assert client.queued == 1
    with pytest.raises(QueueFullError):
        client.emit("small", 1)


def test_over_tls_frames_the_kernel_never_took_reach_the_next_connection(make_ipc, port,
                                                                       certificates):
    """TLS writes from the writer greenlet: a connection dropped under megabytes of
    queued events gives back every frame the kernel did not take whole; the next
    connection gets them once, in order, up to the last."""
    world = make_ipc("world", tls=certificates.server_tls())
    world.serve_net("127.0.0.1", port)
    conns, got = [], []
    release = Event()

    def on_seq(data, sock):
        if sock is conns[0]:
            release.wait(10)   # the first connection is not read any further
            return
        got.append(data[0])

    world.server.on("connect", conns.append)
    world.server.on("seq", on_seq)
    world.server.start()
    hello = make_ipc("hello", tls=certificates.client_tls(), drain_timeout=0, retry=50)
    client = hello.connect_to_net("world", "127.0.0.1", port)
    client.wait_connected(5)
    total = 3000
    for n in range(total):
        client.emit("seq", [n, b"t" * 1000])
    wait_until(lambda: client.conn.pending_bytes < total * 1000 - 100_000,
               message="the kernel to take some")
    conns[0].abort()     # dropped with megabytes still queued at the client
    release.set()
    wait_until(lambda: got and got[-1] == total - 1, timeout=20,
               message="the last event on the next connection")
    assert got == list(range(got[0], total))
    assert got[0] >= 1   # event 0 was handled by the first connection
