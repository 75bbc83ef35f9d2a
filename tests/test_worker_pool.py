"""Greenlet worker pools: handlers inline (in order, per connection) by default; with
``handler_pool_size`` or ``pool=`` they run in a bounded gevent Pool; a full pool pauses
reading from the connection that needs it (nothing dropped). Real sockets, real
processes, and a monkey-patched process running blocking code in its handlers.

Concurrency is proven by counting handlers running at once (deterministic), not by
timing; the elapsed-time checks are loose bounds far from the serial figure.
"""
from __future__ import annotations

import json
import time

import gevent
import pytest
from gevent.event import Event
from gevent.pool import Pool
from conftest import (
    connected_clients, python_process, read_line, run_example, stop_process, wait_until,
)

from geventipc.errors import ConnectionLostError, HandlerError

SLOW = 0.5


class Gauge:
    """Handlers running now, and the most seen at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        self.now -= 1


def test_pool_of_100_serves_100_slow_requests_from_10_clients_at_once(make_ipc):
    world = make_ipc("world", handler_pool_size=100)
    world.serve()
    gauge = Gauge()

    @world.server.handle("slow")
    def slow(n, socket):
        with gauge:
            gevent.sleep(SLOW)
        return [socket.id, n]

    world.server.start()
    conns = connected_clients(make_ipc, 10)
    started = time.monotonic()
    results = [(c.id, n, c.request_async("slow", n, timeout=10))
               for c in conns for n in range(10)]
    # c.id is the server id on the client side; the server sees the client's own id
    assert len(gevent.wait([r for _, _, r in results], timeout=10)) == 100
    elapsed = time.monotonic() - started
    for index, (_, n, result) in enumerate(results):
        assert result.get() == [f"c{index // 10}", n]
    assert gauge.peak == 100          # all hundred were in their handlers at once
    assert elapsed < 4 * SLOW, f"100 requests took {elapsed:.2f} s; one takes {SLOW} s"


def test_without_a_pool_each_connection_is_served_in_order(make_ipc):
    world = make_ipc("world")
    world.serve()
    gauge = Gauge()
    per_conn: dict[str, list[int]] = {}
    running: dict[str, int] = {}

    @world.server.handle("slow")
    def slow(n, socket):
        running[socket.id] = running.get(socket.id, 0) + 1
        assert running[socket.id] == 1     # never two at once on one connection
        per_conn.setdefault(socket.id, []).append(n)
        with gauge:
            gevent.sleep(0.03)
        running[socket.id] -= 1
        return n

    world.server.start()
    conns = connected_clients(make_ipc, 10)
    results = [c.request_async("slow", n, timeout=20) for c in conns for n in range(10)]
    assert len(gevent.wait(results, timeout=20)) == 100
    assert [r.get() for r in results] == [n for _ in range(10) for n in range(10)]
    assert sorted(per_conn) == [f"c{i}" for i in range(10)]
    assert all(order == list(range(10)) for order in per_conn.values())
    # connections still run side by side, one handler each
    assert 1 < gauge.peak <= 10


SERVER = """
    import gevent
    from geventipc import IPC
    ipc = IPC(id="world", socket_root={sock_dir!r}, silent=True, handler_pool_size=100)
    ipc.serve()
    server = ipc.server
    state = {{"now": 0, "peak": 0, "ready": 0}}

    @server.handle("slow")
    def slow(n, socket):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        gevent.sleep({slow})
        state["now"] -= 1
        return [socket.id, n]

    @server.handle("stats", pool=False)
    def stats(data, socket):
        return state

    @server.on("ready", pool=False)
    def ready(data, socket):
        state["ready"] += 1
        if state["ready"] == 10:
            server.broadcast("go")

    server.start()
    print("ready", flush=True)
    gevent.sleep(60)
"""

CLIENT = """
    import json, sys, time
    import gevent
    from gevent.event import Event
    from geventipc import IPC
    me = sys.argv[1]
    ipc = IPC(id=me, socket_root={sock_dir!r}, silent=True)
    client = ipc.connect_to("world")
    go = Event()
    client.on("go", lambda data: go.set())
    client.wait_connected(10)
    client.emit("ready")
    go.wait(30)
    started = time.monotonic()
    results = [client.request_async("slow", n, timeout=20) for n in range(10)]
    gevent.wait(results, timeout=20)
    print(json.dumps({{"elapsed": time.monotonic() - started,
                      "replies": [r.get() for r in results]}}), flush=True)
"""


def test_separate_processes_10_clients_100_requests_pool_of_100(make_ipc, sock_dir):
    server = python_process(SERVER.format(sock_dir=sock_dir, slow=1.0))
    procs = []
    try:
        assert read_line(server) == "ready"
        procs = [python_process(CLIENT.format(sock_dir=sock_dir), f"p{i}") for i in range(10)]
        reports = [json.loads(read_line(p, timeout=40)) for p in procs]
        for i, report in enumerate(reports):
            assert report["replies"] == [[f"p{i}", n] for n in range(10)]
            # the serial figure would be 10 s per client
            assert report["elapsed"] < 4.0, report["elapsed"]
        me = make_ipc("probe").connect_to("world")
        me.wait_connected(5)
        stats = me.request("stats")
        assert stats["peak"] == 100 and stats["now"] == 0
    finally:
        for proc in procs:
            stop_process(proc)
        stop_process(server)


def test_full_pool_pauses_reading_that_connection_and_drops_nothing(make_ipc):
    world = make_ipc("world", handler_pool_size=5)
    world.serve()
    server = world.server
    gate = Event()
    started = []

    @server.handle("job")
    def job(n, socket):
        started.append(n)
        gate.wait(20)   # bounded: a failed test must not leave handlers parked for good
        return n

    server.handle("ping", lambda data, socket: "pong", pool=False)
    server.start()
    busy, other = connected_clients(make_ipc, 2)
    jobs = [busy.request_async("job", n, timeout=20) for n in range(30)]
    stuck_ping = busy.request_async("ping", timeout=20)
    # one connection holds at most all but one slot (handler_pool_per_connection)
    wait_until(lambda: len(started) == 4, message="four jobs in the pool")
    gevent.sleep(0.2)
    # the fifth job waits for a slot, and with it everything after it on that connection
    assert started == [0, 1, 2, 3]
    assert len(server.pool) == 4 and server.pool.free_count() == 1
    assert not stuck_ping.ready()
    # other connections go on: inline handlers, and pooled ones in the slot left free
    assert other.request("ping", timeout=5) == "pong"
    other_job = other.request_async("job", 100, timeout=20)
    wait_until(lambda: 100 in started, message="the other connection's job")
    gate.set()
    assert len(gevent.wait(jobs + [stuck_ping, other_job], timeout=10)) == 32
    assert [r.get() for r in jobs] == list(range(30))
    # pooled handlers of one connection start in arrival order
    assert [n for n in started if n != 100] == list(range(30))
    assert stuck_ping.get() == "pong"


def test_pooled_events_do_not_hold_up_the_connection(make_ipc):
    world = make_ipc("world")
    world.serve()
    server = world.server
    log = []

    @server.on("report", pool=True)
    def report(n, socket):
        log.append(("start", n))
        gevent.sleep(0.3 if n == 0 else 0.01)
        log.append(("end", n))

    server.on("ping", lambda data, socket: log.append(("ping", data)))
    server.start()
    (client,) = connected_clients(make_ipc, 1)
    for n in range(5):
        client.emit("report", n)
    client.emit("ping", "x")
    wait_until(lambda: ("end", 0) in log, message="the slow report")
    starts = [n for kind, n in log if kind == "start"]
    assert starts == [0, 1, 2, 3, 4]                  # started in the order sent
    assert log.index(("ping", "x")) < log.index(("end", 0))   # not held up
    assert [n for kind, n in log if kind == "end"][-1] == 0   # finished out of order


def test_pool_options_per_event(make_ipc):
    world = make_ipc("world", handler_pool_size=50)
    world.serve()
    server = world.server
    two, shared = Gauge(), Gauge()
    order = []
    own_pool = Pool(3)

    @server.handle("two", pool=2)               # a dedicated pool of two
    def handle_two(n, socket):
        with two:
            gevent.sleep(0.05)
        return n

    def shared_handler(n, socket):
        with shared:
            gevent.sleep(0.05)
        return n

    server.handle("s1", shared_handler, pool=own_pool)   # one pool for two events
    server.handle("s2", shared_handler, pool=own_pool)

    @server.handle("inline", pool=False)         # inline despite handler_pool_size
    def inline(n, socket):
        order.append(n)
        gevent.sleep(0.005)
        return n

    server.start()
    (client,) = connected_clients(make_ipc, 1)
    results = [client.request_async(kind, n, timeout=10)
               for n in range(8) for kind in ("two", "s1", "s2", "inline")]
    assert len(gevent.wait(results, timeout=10)) == len(results)
    assert [r.get() for r in results] == [n for n in range(8) for _ in range(4)]
    assert two.peak == 2 and shared.peak == 3
    assert order == list(range(8))


def test_pool_argument_checks_and_off_once(make_ipc):
    world = make_ipc("world")
    world.serve()
    server = world.server
    with pytest.raises(ValueError):
        server.on("connect", lambda socket: None, pool=True)
    with pytest.raises(ValueError):
        server.handle("x", lambda data, socket: None, pool=0)
    with pytest.raises(TypeError):
        server.on("x", lambda data, socket: None, pool="big")
    got = []

    def collect(data, socket):
        got.append(data)

    server.on("many", collect, pool=4)
    server.once("one", collect, pool=True)
    gauge = Gauge()

    @server.handle("plain")           # pool=True elsewhere leaves the default inline
    def plain(n, socket):
        with gauge:
            gevent.sleep(0.01)
        return n

    server.start()
    (client,) = connected_clients(make_ipc, 1)
    plain_results = [client.request_async("plain", n, timeout=5) for n in range(5)]
    gevent.wait(plain_results, timeout=5)
    assert [r.get() for r in plain_results] == list(range(5)) and gauge.peak == 1
    for n in range(3):
        client.emit("one", n)
        client.emit("many", n)
    wait_until(lambda: len(got) == 4, message="one + three")
    server.off("many", collect)
    assert server.listeners("many") == () and server.listeners("one") == ()
    client.emit("many", 99)
    gevent.sleep(0.1)
    assert sorted(got) == [0, 0, 1, 2]


def test_on_returns_the_handler_given_with_or_without_a_pool(make_ipc):
    """As Emitter.on, once and the decorator form do: never the internal pool wrapper."""
    world = make_ipc("world")
    server = world.serve()

    def handler(data, socket):
        pass

    assert server.on("a", handler, pool=2) is handler
    assert server.on("b", handler, pool=True) is handler
    assert server.on("c", handler) is handler
    assert server.once("d", handler, pool=2) is handler
    assert server.on("e", pool=2)(handler) is handler


def test_pooled_handler_errors_are_reported(make_ipc):
    world = make_ipc("world", handler_pool_size=4)
    world.serve()
    server = world.server
    reported = []
    server.on("error", reported.append)
    server.on("explode", lambda data, socket: 1 / 0)
    server.start()
    (client,) = connected_clients(make_ipc, 1)
    client.emit("explode", None)
    wait_until(lambda: reported, message="the error event")
    assert isinstance(reported[0], HandlerError) and reported[0].event == "explode"
    assert isinstance(reported[0].__cause__, ZeroDivisionError)


def test_stop_with_a_busy_pool_is_bounded(make_ipc):
    world = make_ipc("world", handler_pool_size=4)
    world.serve()
    server = world.server
    server.handle("forever", lambda data, socket: gevent.sleep(60))
    server.start()
    (client,) = connected_clients(make_ipc, 1)
    results = [client.request_async("forever", n) for n in range(6)]
    # one connection holds all but one slot (handler_pool_per_connection)
    wait_until(lambda: len(server.pool) == 3, message="the connection's full share")
    started = time.monotonic()
    server.stop(timeout=0.3)
    assert time.monotonic() - started < 3
    assert len(server.pool) == 0
    for result in results:
        with pytest.raises(ConnectionLostError):
            result.get(timeout=5)


MONKEY_SERVER = """
    from gevent import monkey
    monkey.patch_all()

    import socket
    import threading
    import time

    from geventipc import IPC

    # a plain blocking TCP echo service, in a (patched) thread
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    echo_port = listener.getsockname()[1]

    def echo_one(conn):
        with conn:
            conn.sendall(conn.recv(1024).upper())

    def echo_forever():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=echo_one, args=(conn,), daemon=True).start()

    threading.Thread(target=echo_forever, daemon=True).start()

    ipc = IPC(id="world", socket_root={sock_dir!r}, silent=True, handler_pool_size=20)
    ipc.serve()
    state = {{"now": 0, "peak": 0}}

    @ipc.server.handle("fetch")
    def fetch(word, sock):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        time.sleep({slow})                      # blocking call, cooperative once patched
        with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as s:
            s.sendall(word.encode())
            answer = s.recv(1024).decode()
        state["now"] -= 1
        return answer

    ipc.server.handle("stats", lambda data, sock: state, pool=False)
    ipc.server.start()
    print("ready", flush=True)
    time.sleep(60)
"""


def test_monkey_patched_process_with_blocking_handlers(make_ipc, sock_dir):
    proc = python_process(MONKEY_SERVER.format(sock_dir=sock_dir, slow=SLOW))
    try:
        assert read_line(proc) == "ready"
        (client,) = connected_clients(make_ipc, 1)
        words = [f"word{n}" for n in range(20)]
        started = time.monotonic()
        results = [client.request_async("fetch", w, timeout=20) for w in words]
        assert len(gevent.wait(results, timeout=20)) == 20
        elapsed = time.monotonic() - started
        assert [r.get() for r in results] == [w.upper() for w in words]
        # one connection: all of the pool of 20 but the slot kept for other connections
        assert client.request("stats")["peak"] == 19
        # twenty blocking half-second sleeps, serially, would take 10 s
        assert elapsed < 4 * SLOW, elapsed
    finally:
        stop_process(proc)


def test_the_example_runs_and_exits_by_itself():
    done = run_example(["examples/worker_pool.py"], {}, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.endswith("all replies right: True") for line in lines)
    assert "at most 100 handlers at once" in lines[1]
    assert "at most   5 handlers at once" in lines[2]
