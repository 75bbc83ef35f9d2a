"""Flow control (issue 15.4) and pacing (issue 16.1): a burst to healthy peers is
delivered whole; a peer that never reads is cut after ``drain_timeout`` without holding
the others up; pacing keeps the queue short and loses or reorders nothing.
"""
from __future__ import annotations

import json

import gevent
from gevent import socket as gsocket

from conftest import python_process, read_line, run_example, stop_process, wait_until

BURST = 200
SIZE = 100_000

# The server: 200 broadcasts of 100 KB, yielding between them.
SERVER = """
    import json, sys, time
    import gevent
    from geventipc import IPC
    path, clients, drain_timeout = sys.argv[1:]
    clients = int(clients)
    ipc = IPC(id="world", silent=True, drain_timeout=int(drain_timeout))
    ipc.serve(path)
    server = ipc.server
    errors = []
    server.on("error", lambda exc: errors.append(type(exc).__name__ + ": " + str(exc)))

    def burst():
        with gevent.Timeout(10):
            while len(server.sockets) < clients:
                gevent.sleep(0.005)
        start = time.monotonic()
        for _ in range(200):
            server.broadcast("b", b"x" * 100_000)
            gevent.sleep(0)
        took = time.monotonic() - start
        drained = server.drain(30)
        print(json.dumps({"errors": errors, "took": took, "drained": drained,
                          "left": len(server.sockets)}), flush=True)

    server.on("start", lambda: (print("ready", flush=True), gevent.spawn(burst)))
    server.serve_forever()
"""


def run_burst(make_ipc, sock_dir, stalled: int, drain_timeout: int):
    path = sock_dir + "app.world"
    proc = python_process(SERVER, path, str(3 + stalled), str(drain_timeout))
    try:
        assert read_line(proc) == "ready"
        counts = [0, 0, 0]
        bad = []
        for i in range(3):
            client = make_ipc(f"healthy-{i}").connect_to("world", path)

            def on_b(data, i=i):
                if len(data) != SIZE:
                    bad.append(len(data))
                counts[i] += 1

            client.on("b", on_b)
            client.on("error", bad.append)
            client.on("disconnect", lambda: bad.append("disconnect"))
        socks = []
        for _ in range(stalled):   # connects and never reads
            sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
            sock.connect(path)
            socks.append(sock)
        wait_until(lambda: min(counts) == BURST or bad, timeout=40,
                   message=f"every healthy client to get the burst (got {counts})")
        summary = json.loads(read_line(proc, timeout=40))
        assert bad == [] and counts == [BURST] * 3, (counts, bad, summary)
        for sock in socks:
            sock.close()
        print(summary)
        return summary
    finally:
        stop_process(proc)


def test_a_burst_to_healthy_clients_in_another_process_is_delivered_whole(make_ipc, sock_dir):
    summary = run_burst(make_ipc, sock_dir, stalled=0, drain_timeout=5000)
    assert summary["errors"] == [] and summary["drained"] and summary["left"] == 3


def test_a_peer_that_never_reads_is_cut_after_drain_timeout_and_holds_nobody_up(
        make_ipc, sock_dir):
    summary = run_burst(make_ipc, sock_dir, stalled=1, drain_timeout=2000)
    slow = [e for e in summary["errors"] if e.startswith("SlowConsumerError")]
    assert len(slow) == 1 and "drain_timeout=2" in slow[0], summary["errors"]
    assert summary["errors"] == slow
    assert summary["left"] == 3 and summary["drained"]


def test_pacing_keeps_a_fast_sender_in_order_and_bounded(make_ipc):
    """A client emitting far faster than the server reads waits for its writer: the
    queue never grows much past the pacing mark, and every event arrives once, in order."""
    world = make_ipc("world")
    world.serve()
    world.server.start()
    got = []
    world.server.on("seq", lambda n, sock: got.append(n))
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    peak = 0
    total = 60_000
    for n in range(total):
        client.emit("seq", n)
        pending = client.conn.pending_bytes
        if pending > peak:
            peak = pending
    assert client.drain(20)
    wait_until(lambda: len(got) == total, timeout=20, message="every event")
    assert got == list(range(total))
    # the pacing mark (256 KiB) plus one frame: never megabytes
    assert peak <= 256 * 1024 + 64, peak
    assert client.conn.events_out >= total and client.conn.bytes_out > total


def test_drain_waits_until_the_kernel_has_everything(make_ipc):
    world = make_ipc("world")
    world.serve()
    world.server.start()
    got = []
    world.server.on("blob", lambda data, sock: got.append(len(data)))
    client = make_ipc("hello", drain_timeout=0).connect_to("world")
    client.wait_connected(5)
    for _ in range(20):
        client.emit("blob", b"b" * 200_000)
    assert client.conn.pending_bytes > 0
    assert client.drain(20)
    assert client.conn.pending_bytes == 0
    wait_until(lambda: len(got) == 20, timeout=20, message="every blob")
    sock = world.server.sockets[0]
    for _ in range(20):
        sock.emit("blob", b"c" * 200_000)
    assert world.server.drain(20) and sock.pending_bytes == 0
    assert sock.drain(0.01)
    gevent.sleep(0)


def test_the_flow_control_example_runs():
    run = run_example(["examples/flow_control.py"], {}, timeout=40)
    assert run.returncode == 0, run.stderr
    assert "received: {'alpha': 200, 'beta': 200, 'gamma': 200}" in run.stdout
    assert "clients left: 3" in run.stdout and "SlowConsumerError" in run.stdout
