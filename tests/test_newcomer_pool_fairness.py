"""A shared handler pool is shared fairly between connections (issue 13: "one
connection's slow handlers hold up another connection's fast ones"). Counts and states
only: slow handlers wait on gates the test opens, never on the clock."""
from __future__ import annotations

import gevent
import pytest
from gevent.event import Event

from conftest import connected_clients, wait_until
from geventipc.config import Config
from geventipc.errors import ConfigError


def test_a_connection_filling_the_pool_leaves_a_slot_for_another(make_ipc):
    world = make_ipc("world", handler_pool_size=4)
    world.serve()
    server = world.server
    gate = Event()
    running: list = []

    @server.handle("slow")
    def slow(n, socket):
        running.append(n)
        gate.wait(20)
        return n

    server.handle("fast", lambda n, socket: n * 2)
    got_event = Event()
    server.on("note", lambda data, socket: got_event.set())   # a pooled event handler
    server.start()
    busy, other = connected_clients(make_ipc, 2)
    slow_ones = [busy.request_async("slow", n, timeout=30) for n in range(20)]
    wait_until(lambda: len(running) == 3, message="the busy connection's share")
    try:
        # the busy connection's slow handlers are all still running (gate closed), and
        # the other connection's pooled request and event are served anyway
        assert other.request("fast", 21, timeout=10) == 42
        other.emit("note", 1)
        assert got_event.wait(10)
        assert len(running) == 3 and not any(r.ready() for r in slow_ones)
    finally:
        gate.set()
    assert len(gevent.wait(slow_ones, timeout=20)) == 20
    assert [r.get() for r in slow_ones] == list(range(20))


def test_a_freed_slot_goes_to_the_waiting_connection_holding_the_fewest(make_ipc):
    world = make_ipc("world", handler_pool_size=4, handler_pool_per_connection=2)
    world.serve()
    server = world.server
    gates: dict = {}
    running: list = []

    @server.handle("job")
    def job(name, socket):
        running.append(name)
        gates.setdefault(name, Event()).wait(20)
        return name

    server.start()
    a, b, c = connected_clients(make_ipc, 3)
    results = [a.request_async("job", f"a{n}", timeout=30) for n in range(4)]
    wait_until(lambda: running == ["a0", "a1"], message="a's share")
    results += [b.request_async("job", f"b{n}", timeout=30) for n in range(2)]
    wait_until(lambda: len(running) == 4, message="b's share: the pool is full")
    results.append(c.request_async("job", "c0", timeout=30))
    # a's reading waits for a2's turn, c's for c0's: the pool is full
    wait_until(lambda: server.pool.waiting == 2, message="a and c waiting for a turn")
    assert len(running) == 4
    assert [server.pool.held(s) for s in server.sockets] == [2, 2, 0]   # a, b, c
    gates.setdefault("a0", Event()).set()          # a slot frees, a's: c holds none
    wait_until(lambda: len(running) == 5, message="the freed slot taken")
    assert running[4] == "c0"                      # not a2, though a asked first
    for name in ("a1", "a2", "a3", "b0", "b1", "c0"):
        gates.setdefault(name, Event()).set()
    assert len(gevent.wait(results, timeout=20)) == len(results)
    assert sorted(running) == ["a0", "a1", "a2", "a3", "b0", "b1", "c0"]


def test_handler_pool_per_connection_is_checked_when_set():
    config = Config()
    with pytest.raises(ConfigError, match="handler_pool_per_connection"):
        config.handler_pool_per_connection = 0
    config.handlerPoolPerConnection = 3
    assert config.handler_pool_per_connection == 3
