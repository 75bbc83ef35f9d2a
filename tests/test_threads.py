"""Issue 15 item 6: emit/broadcast/request from OS threads are handed to the owning hub.

Plain ``threading.Thread``s (this test process is not monkey-patched) and gevent's
threadpool emit concurrently with greenlets; every event arrives exactly once, each
sender's events in its order, and every wait is bounded. Without the hand-off these
runs lose, duplicate or wedge (issue 15: QueueFullError while connected, hangs).
"""
import threading

import gevent
from gevent.monkey import get_original

from conftest import (free_port, python_process, run_example, serve, stop_process,
                      wait_until)
from geventipc import threads
from geventipc.errors import EventNameError, RemoteError, ThreadHandoffError

THREADS = 4
PER_SENDER = 2000
PAD = "x" * 1000  # big enough that the socket buffer fills and writes must wait

real_sleep = get_original("time", "sleep")


def start_threads(target, count):
    """``count`` plain OS threads running ``target(n)``, started at once."""
    started = [threading.Thread(target=target, args=(n,), daemon=True) for n in range(count)]
    for thread in started:
        thread.start()
    return started


def join_cooperatively(started, timeout=30.0):
    """Wait for the threads while the hub keeps running (an unpatched join() would block
    the very hub their calls are handed to)."""
    wait_until(lambda: not any(t.is_alive() for t in started), timeout=timeout,
               message="the OS threads to finish")


def catching(exc_type, call):
    """A thread target running ``call()`` that keeps the ``exc_type`` it raises, and the
    list it keeps them in."""
    caught = []

    def from_thread(n):
        try:
            call()
        except exc_type as exc:
            caught.append(exc)

    return from_thread, caught


def assert_each_once_in_order(got, senders, per_sender):
    by_sender = {}
    for sender, seq, *_pad in got:
        by_sender.setdefault(sender, []).append(seq)
    assert sorted(by_sender) == sorted(senders)
    for sender in senders:
        assert by_sender[sender] == list(range(per_sender)), sender


def test_threads_and_greenlets_emit_on_one_client_each_event_once_in_order(make_ipc):
    world = serve(make_ipc)
    got = []
    world.server.on("n", lambda d, s: got.append(tuple(d)))
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    errors = []

    def from_thread(n):
        try:
            for i in range(PER_SENDER):
                client.emit("n", (f"t{n}", i, PAD))
        except BaseException as exc:  # reported to the test, never lost in the thread
            errors.append(exc)

    def from_greenlet(n):
        for i in range(PER_SENDER):
            client.emit("n", (f"g{n}", i, PAD))
            if i % 50 == 0:
                gevent.sleep(0)   # interleave with the threads' hand-offs

    started = start_threads(from_thread, THREADS)
    greenlets = [gevent.spawn(from_greenlet, n) for n in range(2)]
    join_cooperatively(started)
    gevent.joinall(greenlets, timeout=30, raise_error=True)
    total = (THREADS + 2) * PER_SENDER
    wait_until(lambda: len(got) >= total, timeout=30, message="every event")
    gevent.sleep(0.05)
    assert errors == []
    assert len(got) == total
    assert_each_once_in_order(got, [f"t{n}" for n in range(THREADS)] + ["g0", "g1"],
                              PER_SENDER)


def test_server_broadcast_and_socket_emit_from_threads(make_ipc):
    world = serve(make_ipc)
    clients, got = [], {}
    for name in ("a", "b"):
        client = make_ipc(name).connect_to("world")
        got[name] = []
        client.on("b", lambda d, name=name: got[name].append(tuple(d)))
        client.wait_connected(5)
        clients.append(client)
    wait_until(lambda: len(world.server.sockets) == 2, message="both clients accepted")
    socket = world.server.sockets[0]
    errors = []
    per = 500

    def from_thread(n):
        try:
            for i in range(per):
                if n == 0:
                    world.server.broadcast("b", ("t0", i, PAD))
                elif n == 1:
                    socket.emit("b", ("t1", i, PAD))      # ServerSocket.emit
                else:
                    world.server.emit(socket, "b", ("t2", i, PAD))
        except BaseException as exc:
            errors.append(exc)

    def from_greenlet():
        for i in range(per):
            world.server.broadcast("b", ("g", i, PAD))
            if i % 50 == 0:
                gevent.sleep(0)

    started = start_threads(from_thread, 3)
    greenlet = gevent.spawn(from_greenlet)
    join_cooperatively(started)
    greenlet.get(timeout=30)
    # the socket emitted to directly is one of the two; it gets 4 streams, the other 2
    wait_until(lambda: len(got["a"]) + len(got["b"]) >= 6 * per, timeout=30,
               message="every event at the clients")
    gevent.sleep(0.05)
    assert errors == []
    streams = sorted(sorted({s[0] for s in got[name]}) for name in ("a", "b"))
    assert streams == [["g", "t0"], ["g", "t0", "t1", "t2"]]
    for name in ("a", "b"):
        assert_each_once_in_order(got[name], sorted({s[0] for s in got[name]}), per)


def test_request_from_a_thread_blocks_the_thread_not_the_hub(make_ipc):
    world = serve(make_ipc)
    world.server.handle("add", lambda d, s: d[0] + d[1])

    def refuse(data, socket):
        raise ValueError("no thanks")
    world.server.handle("refuse", refuse)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    answers, errors, ticks = [], [], []

    def from_thread(n):
        try:
            for i in range(50):
                answers.append((n, client.request("add", [n, i], timeout=10)))
            answers.append((n, client.request_async("add", [n, 100], timeout=10).get(10)))
            client.request("refuse", None, timeout=10)
        except RemoteError as exc:
            errors.append(exc.remote_type)

    def ticker():       # the hub stays free while threads wait for replies
        while True:
            ticks.append(1)
            gevent.sleep(0.001)

    tick = gevent.spawn(ticker)
    started = start_threads(from_thread, 3)
    join_cooperatively(started)
    tick.kill()
    assert errors == ["ValueError"] * 3
    for n in range(3):
        assert [a for m, a in answers if m == n] == [n + i for i in range(50)] + [n + 100]
    assert len(ticks) > 3


def test_through_gevents_threadpool(make_ipc):
    world = serve(make_ipc)
    got = []
    world.server.on("n", lambda d, s: got.append(tuple(d)))
    world.server.handle("echo", lambda d, s: d)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    pool = gevent.get_hub().threadpool

    def work(n):
        for i in range(PER_SENDER):
            client.emit("n", (f"p{n}", i, PAD))
        return client.request("echo", n, timeout=10)

    results = [pool.spawn(work, n) for n in range(3)]
    assert [r.get(timeout=30) for r in results] == [0, 1, 2]
    wait_until(lambda: len(got) >= 3 * PER_SENDER, timeout=30, message="every event")
    assert_each_once_in_order(got, ["p0", "p1", "p2"], PER_SENDER)


def test_errors_are_raised_in_the_calling_thread(make_ipc):
    client = make_ipc("hello").connect_to("world")
    from_thread, caught = catching(EventNameError, lambda: client.emit("$ipc.mine", 1))
    join_cooperatively(start_threads(from_thread, 1))
    assert len(caught) == 1


def test_udp_emit_from_a_thread(make_ipc):
    a, b = make_ipc("a"), make_ipc("b")
    port_a, port_b = free_port(kind=2), free_port(kind=2)
    a.serve_net("127.0.0.1", port_a, "udp4")
    b.serve_net("127.0.0.1", port_b, "udp4")
    a.server.start()
    b.server.start()
    got = []
    b.server.on("u", lambda d, s: got.append(d))

    def from_thread(n):
        for i in range(20):
            a.server.emit({"address": "127.0.0.1", "port": port_b}, "u", i)
            real_sleep(0.001)  # loopback UDP: do not outrun the receive buffer

    join_cooperatively(start_threads(from_thread, 1))
    wait_until(lambda: len(got) == 20, message="the datagrams")
    assert got == list(range(20))


def test_a_hub_that_never_runs_gives_a_named_error_and_nothing_is_sent(make_ipc, monkeypatch):
    monkeypatch.setattr(threads, "HANDOFF_TIMEOUT", 0.2)
    world = serve(make_ipc)
    got = []
    world.server.on("n", lambda d, s: got.append(d))
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    from_thread, caught = catching(ThreadHandoffError, lambda: client.emit("n", 1))
    started = start_threads(from_thread, 1)
    real_sleep(1.0)          # this thread (and its hub) blocked outside gevent
    started[0].join(5)
    assert not started[0].is_alive()
    assert len(caught) == 1 and "did not take the call" in str(caught[0])
    client.emit("n", 2)      # the hub goes on; the withdrawn call never runs
    wait_until(lambda: got, message="the greenlet's event")
    gevent.sleep(0.05)
    assert got == [2]


def test_the_owning_threads_own_calls_take_no_hand_off(make_ipc):
    client = make_ipc("hello").connect_to("world")
    assert client._tid == threads.get_ident()
    client.emit("n", 1)  # queued offline, directly: nothing was handed over
    assert client.queued == 1
    assert not threads._handoffs[client._tid].calls



PATCHED_THREADS = '''
from gevent import monkey
monkey.patch_all()
import sys, threading, time
from geventipc import IPC, threads

world = IPC(id="world", socket_root=sys.argv[1], silent=True)
hello = IPC(id="hello", socket_root=sys.argv[1], silent=True, retry=50)
got = []
world.serve(lambda: world.server.on("n", lambda d, s: got.append(tuple(d))))
world.server.start()
client = hello.connect_to("world")
client.wait_connected(5)
handoff = threads._handoffs[client._tid]
def send(n):
    for i in range(500):
        client.emit("n", (n, i))
started = [threading.Thread(target=send, args=(n,)) for n in range(3)]
for t in started: t.start()
for t in started: t.join(10)          # patched: a greenlet join, the hub runs
deadline = time.time() + 10
while len(got) < 1500 and time.time() < deadline:
    time.sleep(0.01)
for n in range(3):
    assert [i for m, i in got if m == n] == list(range(500)), n
# patched threads are greenlets of the owning OS thread: nothing was handed over
assert not handoff.scheduled and not handoff.calls
print("ok", len(got))
'''


def test_monkey_patched_threads_are_greenlets_and_need_no_hand_off(sock_dir):
    proc = python_process(PATCHED_THREADS, sock_dir)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, err
    assert out.strip() == "ok 1500"


def test_disconnect_and_stop_from_a_thread(make_ipc):
    world = serve(make_ipc)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    dialling = make_ipc("other").connect_to("nobody")   # no server: it keeps retrying
    got = []
    world.server.on("n", lambda d, s: got.append(d[0]))
    ends = []
    client.on("destroy", lambda: ends.append("destroy"))
    dialling.on("destroy", lambda: ends.append("destroy dialling"))

    def from_thread(n):
        for i in range(500):
            client.emit("n", (i, PAD))
        client.disconnect()          # after the thread's emits: they are sent first
        dialling.disconnect()
        ends.append("disconnected")
        world.server.stop(timeout=1)
        ends.append("stopped")

    join_cooperatively(start_threads(from_thread, 1))
    wait_until(lambda: "destroy" in ends and "destroy dialling" in ends,
               message="both clients' destroy")
    assert ends.index("disconnected") < ends.index("stopped")
    assert got == list(range(500))   # every one sent before the disconnect, in order
    assert client.destroyed and dialling.destroyed and not world.server.started


def test_the_threads_example_runs():
    done = run_example(["examples/threads.py"], {}, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "all 300 readings arrived, each once and in order" in done.stdout
