"""Slow consumers: 50 healthy clients and 5 that never read, against a server in its own
process (so its RSS is its own).

The server broadcasts a stream of events, and emits to the stalled peers directly too;
with ``drain_timeout = 0`` neither call may ever block (yield to the hub). Every healthy
client must get the whole stream, in order; the stalled peers are dropped per
``overflow_policy`` (``disconnect``:
closed with a SlowConsumerError; ``drop``: kept, their newest events dropped and counted,
and what they eventually read plus what was dropped is exactly the stream). The server's
RSS must stay bounded by its queue limits, far below what the stalled peers were offered.
"""
from __future__ import annotations

import json

import gevent
import msgpack
from gevent import socket as gsocket

from conftest import python_process, read_line, stop_process

HEALTHY = 50
STALLED = 5
EVENTS = 1500
SIZE = 2048          # bytes of payload per event: the stream is ~3 MB per client
MAX_PENDING = 128 * 1024
WINDOW = 20          # healthy clients ack every WINDOW events; the server paces on acks

SERVER = """
    import json, os, resource, sys
    import gevent
    from geventipc import IPC
    path, policy, events, size, max_pending, window, healthy = sys.argv[1:]
    events, size, max_pending, window, healthy = map(
        int, (events, size, max_pending, window, healthy))
    # drain_timeout=0: the mode in which emit and broadcast never wait for a peer
    # (tests/test_flow_control.py covers the default, bounded waiting)
    ipc = IPC(id="world", silent=True, max_pending_bytes=max_pending, overflow_policy=policy,
              drain_timeout=0)
    ipc.serve(path)
    server = ipc.server
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    acks = {}
    errors = []
    gone = []
    server.on("ack", lambda n, sock: acks.__setitem__(sock.id, n))
    server.on("error", lambda exc: errors.append(type(exc).__name__ + ": " + str(exc)))
    server.on("socket.disconnected", lambda sock, sid: gone.append(sid))

    def stream(total, _sock):
        gevent.spawn(run, total)

    def run(total):
        with gevent.Timeout(10):   # every connection accepted, healthy and stalled
            while len(server.sockets) < total:
                gevent.sleep(0.005)
        stalled = [s for s in server.sockets if s.id is None]
        payload = b"p" * size
        base = rss()
        peak = base
        blocked = 0
        for start in range(0, events, window):
            # pace on the slowest healthy client: at most two windows in flight
            with gevent.Timeout(15):
                while len(acks) < healthy or min(acks.values()) < start - 2 * window:
                    gevent.sleep(0.001)
            ran = []
            gevent.spawn(ran.append, 1)   # runs at the first yield to the hub
            for n in range(start, min(start + window, events)):
                server.broadcast("tick", [n, payload])
                for sock in stalled:
                    if not sock.closed:
                        server.emit(sock, "direct", n)
            if ran:
                blocked += 1
            peak = max(peak, rss())
        with gevent.Timeout(15):
            while min(acks.values()) < events - 1:
                gevent.sleep(0.005)
        peak = max(peak, rss())
        print(json.dumps({
            "base": base, "peak": peak, "blocked": blocked, "errors": errors,
            "gone": gone, "dropped": [s.dropped for s in stalled],
            "offered": events * (size + 20) * len(stalled),
        }), flush=True)

    server.on("stream", stream)
    server.on("start", lambda: print("ready", flush=True))
    server.serve_forever()
"""


def run_stream(make_ipc, sock_dir, policy, check):
    """Run the stream, check what every side saw; then ``check(summary, stalled)`` while
    the server still runs (so a stalled peer that starts reading gets its queue)."""
    path = sock_dir + "app.world"
    proc = python_process(SERVER, path, policy, str(EVENTS), str(SIZE), str(MAX_PENDING),
                          str(WINDOW), str(HEALTHY))
    try:
        assert read_line(proc) == "ready"
        got = [[] for _ in range(HEALTHY)]
        bad = []
        clients = []
        for i in range(HEALTHY):
            client = make_ipc(f"healthy-{i}").connect_to("world", path)

            def on_tick(data, seen=got[i], client=client):
                n, payload = data
                if len(payload) != SIZE:
                    bad.append(n)
                seen.append(n)
                if (n + 1) % WINDOW == 0 or n == EVENTS - 1:
                    client.emit("ack", n)

            client.on("tick", on_tick)
            client.on("error", bad.append)
            client.on("disconnect", lambda: bad.append("disconnect"))
            clients.append(client)
        for client in clients:
            client.wait_connected(5)
            client.emit("ack", -1)
        stalled = []
        for _ in range(STALLED):
            sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
            sock.connect(path)
            stalled.append(sock)
        clients[0].emit("stream", HEALTHY + STALLED)
        try:
            summary = json.loads(read_line(proc, timeout=40))
        except AssertionError:
            stop_process(proc)
            raise AssertionError("no summary; server stderr:\n" + proc.stderr.read())
        for i, seen in enumerate(got):
            assert seen == list(range(EVENTS)), f"healthy client {i} got {len(seen)}"
        assert bad == []
        assert summary["blocked"] == 0, "broadcast or emit yielded to the hub"
        growth = summary["peak"] - summary["base"]
        # the queues are bounded: the stalled peers hold at most max_pending_bytes each in
        # the server; allow the allocator its slack, far below what they were offered
        assert growth < 8 * 1024 * 1024, summary
        assert summary["offered"] > 5 * growth
        print("summary", {k: v for k, v in summary.items() if k != "errors"})
        check(summary, stalled)
    finally:
        stop_process(proc)


def drain(sock) -> list[tuple[str, int]]:
    """Read what the server queued for a stalled peer, now that it finally reads, until
    the server closes it or nothing more comes for half a second."""
    unpacker = msgpack.Unpacker(raw=False)
    events = []
    sock.settimeout(0.5)
    with gevent.Timeout(20, AssertionError("stalled peer's queue never drained")):
        while True:
            try:
                data = sock.recv(1 << 20)
            except (ConnectionResetError, gsocket.timeout):
                break
            if not data:
                break
            unpacker.feed(data)
            for name, payload in unpacker:
                if name.startswith("$ipc."):
                    continue  # the library's own frames (the server's welcome)
                events.append((name, payload[0] if name == "tick" else payload))
    return events


def test_stalled_peers_are_disconnected(make_ipc, sock_dir):
    def check(summary, stalled):
        slow = [e for e in summary["errors"] if e.startswith("SlowConsumerError")]
        assert len(slow) == STALLED, summary["errors"]
        assert all(f"max_pending_bytes={MAX_PENDING}" in e for e in slow)
        assert summary["errors"] == slow   # nothing else went wrong
        assert summary["gone"] == [None] * STALLED   # only the stalled peers were dropped
        for sock in stalled:
            events = drain(sock)   # what the kernel already held, then the close
            ticks = [n for name, n in events if name == "tick"]
            assert ticks == list(range(len(ticks))) and len(ticks) < EVENTS
            sock.close()

    run_stream(make_ipc, sock_dir, "disconnect", check)


def test_stalled_peers_have_their_newest_events_dropped_and_counted(make_ipc, sock_dir):
    def check(summary, stalled):
        assert summary["errors"] == [] and summary["gone"] == []
        for sock, dropped in zip(stalled, summary["dropped"]):
            events = drain(sock)
            assert dropped > 0
            # every event offered was either delivered (in order) or counted as dropped
            assert len(events) + dropped == 2 * EVENTS
            ticks = [n for name, n in events if name == "tick"]
            assert ticks == sorted(set(ticks))
            sock.close()

    run_stream(make_ipc, sock_dir, "drop", check)
