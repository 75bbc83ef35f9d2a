"""``ipc.of[id]``: queueing before and between connections, the queue bound, reconnect
with ``retry``/``max_retries``/``stop_retrying``, and ``disconnect``."""
import os
import time

import gevent
import gevent.event
import pytest

from conftest import ipv6_port, serve, wait_until
from geventipc.errors import ConnectError, NotConnectedError, QueueFullError, Timeout


def test_emit_before_the_server_exists_is_queued_and_delivered_in_order(make_ipc):
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    for i in range(100):
        client.emit("n", i)
    assert not client.connected and client.queued == 100
    got = []
    world = make_ipc("world")
    world.serve(lambda: world.server.on("n", lambda d, s: got.append(d)))
    world.server.start()
    wait_until(lambda: len(got) == 100, message="the queued events")
    assert got == list(range(100)) and client.queued == 0


def test_emit_right_after_connect_to_is_queued_in_order_with_later_emits(make_ipc):
    world = serve(make_ipc)
    got = []
    world.server.on("n", lambda d, s: got.append(d))
    client = make_ipc("hello").connect_to("world")
    client.emit("n", 0)                          # before the greenlet even dialled
    client.wait_connected(5)
    client.emit("n", 1)
    wait_until(lambda: len(got) == 2, message="both events")
    assert got == [0, 1]


def test_queue_bound_raises_queue_full(make_ipc):
    client = make_ipc("hello", max_queued_events=3).connect_to("world")
    for i in range(3):
        client.emit("n", i)
    with pytest.raises(QueueFullError, match="max_queued_events"):
        client.emit("n", 3)
    assert client.queued == 3
    got = []
    world = make_ipc("world")
    world.serve(lambda: world.server.on("n", lambda d, s: got.append(d)))
    world.server.start()
    wait_until(lambda: len(got) == 3, message="the three queued events")
    assert got == [0, 1, 2]


def test_connect_and_error_events_while_the_server_is_missing(make_ipc):
    client = make_ipc("hello").connect_to("world")
    errors, connects = [], []
    client.on("error", errors.append)
    client.on("connect", lambda: connects.append(1))
    wait_until(lambda: len(errors) >= 2, message="failed dials reported")
    assert all(isinstance(e, ConnectError) for e in errors)
    assert "does not exist" in str(errors[0])
    serve(make_ipc)
    wait_until(lambda: connects, message="the connect once the server is up")
    assert client.connected


def test_reconnect_after_an_in_process_server_restart(make_ipc):
    world = serve(make_ipc)
    client = make_ipc("hello").connect_to("world")
    events = []
    client.on("connect", lambda: events.append("connect"))
    client.on("disconnect", lambda: events.append("disconnect"))
    client.wait_connected(5)
    wait_until(lambda: events == ["connect"], message="connect")
    world.server.stop()
    wait_until(lambda: not client.connected, message="the disconnect")
    for i in range(10):
        client.emit("n", i)                      # queued while the server is down
    got = []
    world2 = make_ipc("world")
    world2.serve(lambda: world2.server.on("n", lambda d, s: got.append(d)))
    world2.server.start()
    wait_until(lambda: len(got) == 10, message="the queued events after reconnecting")
    gevent.sleep(0.1)
    assert got == list(range(10))
    assert events == ["connect", "disconnect", "connect"]


def test_retry_waits_the_configured_milliseconds(make_ipc):
    client = make_ipc("hello", retry=200).connect_to("world")
    times = []
    client.on("error", lambda e: times.append(time.monotonic()))
    wait_until(lambda: len(times) >= 3, message="three failed dials")
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= 0.19 for g in gaps), gaps


def test_max_retries_then_destroy(make_ipc):
    client = make_ipc("hello", max_retries=2, retry=10).connect_to("world")
    errors, destroyed = [], []
    client.on("error", errors.append)
    client.on("destroy", lambda: destroyed.append(1))
    wait_until(lambda: destroyed, message="destroy")
    assert len(errors) == 3                      # the first try and two retries
    assert client.destroyed and not client.connected
    with pytest.raises(NotConnectedError):
        client.emit("late", 1)
    with pytest.raises(NotConnectedError):
        client.wait_connected(1)


def test_max_retries_counts_failures_in_a_row(make_ipc):
    """A successful connection resets the count: a server that comes and goes is
    followed for as long as each outage is shorter than max_retries retries."""
    from geventipc.errors import ConnectError
    world = serve(make_ipc)
    client = make_ipc("hello", max_retries=3, retry=50).connect_to("world")
    destroyed, failures = [], []
    client.on("destroy", lambda: destroyed.append(1))
    client.on("error", lambda exc: failures.append(exc) if isinstance(exc, ConnectError)
              else None)
    for outage in range(1, 4):
        client.wait_connected(5)
        world.server.stop()
        # two failed dials in this outage (six in all, more than max_retries)...
        wait_until(lambda: len(failures) >= 2 * outage, message="two failed dials")
        world = serve(make_ipc)                  # ...then the server is back
    client.wait_connected(5)
    assert len(failures) >= 6 and not destroyed


def test_stop_retrying(make_ipc):
    world = serve(make_ipc)
    client = make_ipc("hello", stop_retrying=True).connect_to("world")
    destroyed, disconnected = [], []
    client.on("destroy", lambda: destroyed.append(1))
    client.on("disconnect", lambda: disconnected.append(1))
    client.wait_connected(5)
    world.server.stop()
    wait_until(lambda: destroyed, message="destroy without retrying")
    assert disconnected == [1]
    serve(make_ipc)
    gevent.sleep(0.2)
    assert not client.connected


def test_stop_retrying_alias_set_while_running(make_ipc):
    client = make_ipc("hello", retry=20).connect_to("world")
    destroyed = []
    client.on("destroy", lambda: destroyed.append(1))
    client.config.stopRetrying = True
    wait_until(lambda: destroyed, message="destroy after the next failure")


def test_disconnect_by_id(make_ipc):
    world = serve(make_ipc)
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    events = []
    client.on("disconnect", lambda: events.append("disconnect"))
    client.on("destroy", lambda: events.append("destroy"))
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets, message="connected")
    gone = []
    world.server.on("socket.disconnected", lambda s, i: gone.append(i))
    hello.disconnect("world")
    assert "world" not in hello.of
    wait_until(lambda: events == ["disconnect", "destroy"] and gone == ["hello"],
               message="disconnect then destroy")
    gevent.sleep(0.2)                           # and it does not come back
    assert world.server.sockets == []
    hello.disconnect("world")                   # unknown id: nothing to do


def test_disconnect_while_retrying(make_ipc):
    hello = make_ipc("hello", retry=20)
    client = hello.connect_to("world")
    destroyed = []
    client.on("destroy", lambda: destroyed.append(1))
    gevent.sleep(0.05)
    hello.disconnect("world")
    wait_until(lambda: destroyed, message="destroy")
    serve(make_ipc)
    gevent.sleep(0.2)
    assert not client.connected and destroyed == [1]


def test_disconnect_sends_what_was_already_emitted(make_ipc):
    world = serve(make_ipc)
    got = []
    world.server.on("n", lambda d, s: got.append(d))
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(5)
    for i in range(500):
        client.emit("n", i)
    hello.disconnect("world")
    wait_until(lambda: len(got) == 500, message="everything emitted before disconnect")
    assert got == list(range(500))


def test_connect_to_again_after_disconnect_makes_a_new_client(make_ipc):
    serve(make_ipc)
    hello = make_ipc("hello")
    first = hello.connect_to("world")
    first.wait_connected(5)
    hello.disconnect("world")
    second = hello.connect_to("world")
    assert second is not first
    second.wait_connected(5)


def test_wait_connected(make_ipc):
    client = make_ipc("hello").connect_to("world")
    with pytest.raises(Timeout):
        client.wait_connected(timeout=0.1)
    gevent.spawn_later(0.1, serve, make_ipc)
    client.wait_connected(timeout=5)
    assert client.connected
    client.wait_connected(timeout=0)             # already connected: returns at once


def test_client_over_tcp_reconnects_to_a_restarted_server(make_ipc, port):
    world = make_ipc("world", network_host="127.0.0.1")
    world.serve_net(port)
    world.server.start()
    client = make_ipc("hello").connect_to_net("world", "127.0.0.1", port)
    client.wait_connected(5)
    world.server.stop()
    wait_until(lambda: not client.connected, message="the drop")
    client.emit("n", "queued")
    got = []
    world2 = make_ipc("world", network_host="127.0.0.1")
    world2.serve_net(port, lambda: world2.server.on("n", lambda d, s: got.append(d)))
    world2.server.start()
    wait_until(lambda: got == ["queued"], message="the queued event over TCP")


def test_client_socket_path_is_checked_at_dial_time(make_ipc, sock_dir):
    os.mkdir(sock_dir + "app.world")             # a directory where the socket should be
    client = make_ipc("hello", max_retries=0).connect_to("world")
    errors = []
    client.on("error", errors.append)
    wait_until(lambda: client.destroyed, message="destroy")
    assert errors and isinstance(errors[0], ConnectError)
    os.rmdir(sock_dir + "app.world")


def test_emit_after_disconnect_raises(make_ipc):
    serve(make_ipc)
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(5)
    hello.disconnect("world")
    with pytest.raises(NotConnectedError):
        client.emit("late", 1)                   # never queued for a client that stopped


def test_events_still_queued_when_the_client_gives_up_are_reported(make_ipc):
    client = make_ipc("hello", max_retries=1, retry=10).connect_to("world")
    errors = []
    client.on("error", errors.append)
    client.emit("n", 1)
    client.emit("n", 2)
    wait_until(lambda: client.destroyed, message="destroy")
    unsent = [e for e in errors if "never sent" in str(e)]
    assert len(unsent) == 1 and "2 queued events" in str(unsent[0])
    assert client.queued == 0


def test_stop_retrying_set_on_ipc_config_at_run_time(make_ipc):
    """node-ipc: "if set to true in real time it will immediately stop trying"; code
    ported from it sets ipc.config.stopRetrying after connectTo."""
    hello = make_ipc("hello", retry=20)
    client = hello.connect_to("world")
    destroyed = []
    client.on("destroy", lambda: destroyed.append(1))
    gevent.sleep(0.05)
    assert not destroyed
    hello.config.stopRetrying = True
    wait_until(lambda: destroyed, message="destroy after the next failed dial")


def test_server_lost_while_a_long_offline_queue_is_being_sent(make_ipc):
    """More is queued than the connection buffers (max_pending_bytes), so sending the
    queue waits; if the server goes away meanwhile the client keeps what was never sent
    and reconnects (it does not die): the rest arrives at the next server, in order."""
    from geventipc.errors import ConnectionLostError
    client = make_ipc("hello", max_pending_bytes=64 * 1024).connect_to("world")
    errors, events = [], []
    client.on("error", errors.append)
    client.on("destroy", lambda: events.append("destroy"))
    pad = b"x" * 4096
    for i in range(2000):                        # 8 MiB queued while offline
        client.emit("n", [i, pad])
    first = make_ipc("world")
    stalled = gevent.event.Event()

    def stall(data, sock):                       # the first server stops reading
        stalled.set()
        gevent.sleep(2)

    first.serve(lambda: first.server.on("n", stall))
    first.server.start()
    stalled.wait(5)
    first.server.stop(timeout=0.1)
    wait_until(lambda: any(isinstance(e, ConnectionLostError) for e in errors),
               message="the lost connection reported")
    got = []
    second = make_ipc("world")
    second.serve(lambda: second.server.on("n", lambda d, s: got.append(d[0])))
    second.server.start()
    wait_until(lambda: got and got[-1] == 1999, timeout=10, message="the rest of the queue")
    assert got == list(range(got[0], 2000))      # in order, no gaps, none twice
    assert events == [] and client.connected


def test_tcp_over_ipv6_loopback(make_ipc):
    port = ipv6_port()
    world = make_ipc("world")
    got = []
    world.serve_net("::1", port, lambda: world.server.on("m", lambda d, s: s.emit("m", d)))
    world.server.start()
    client = make_ipc("hello").connect_to_net("world", "::1", port)
    client.on("m", got.append)
    client.wait_connected(5)
    client.emit("m", "over ::1")
    wait_until(lambda: got == ["over ::1"], message="the IPv6 echo")
    assert world.server.sockets[0].address[0] == "::1"


def test_wait_connected_from_the_clients_own_handler_raises(make_ipc):
    from geventipc.errors import DeadlockError
    world = serve(make_ipc)
    client = make_ipc("hello").connect_to("world")
    caught = []

    def on_disconnect():
        try:
            client.wait_connected(timeout=None)  # would block the greenlet that reconnects
        except DeadlockError as exc:
            caught.append(exc)

    client.on("disconnect", on_disconnect)
    client.wait_connected(5)
    world.server.stop()
    wait_until(lambda: caught, message="the DeadlockError")
    serve(make_ipc)
    client.wait_connected(5)                     # and the client reconnected as usual


def test_per_call_stop_retrying_false_wins_over_the_instance_setting(make_ipc):
    hello = make_ipc("hello", stop_retrying=True, retry=20)
    client = hello.connect_to("world", stop_retrying=False)
    errors = []
    client.on("error", errors.append)
    wait_until(lambda: len(errors) >= 3, message="three failed dials, still retrying")
    assert not client.destroyed


def test_unsent_hello_is_not_queued_again_after_a_drop(make_ipc):
    """A connection that drops before its hello left gives back only the user's events:
    the next connection sends its own hello, so the old one is not queued a second time."""
    world = make_ipc("world")
    hello = make_ipc("hello", retry=2000)
    got = []
    world.serve(lambda: world.server.on("m", lambda data, socket: got.append(data)))
    world.server.start()
    client = hello.connect_to("world")
    queued_at_drop = []
    first = [True]

    def on_connect():
        if first[0]:
            first[0] = False
            client.emit("m", 1)
            client.conn.abort()      # dropped before the hub flushed hello and event

    client.on("connect", on_connect)
    client.on("disconnect", lambda: queued_at_drop.append(client.queued))
    wait_until(lambda: queued_at_drop, message="the drop")
    assert queued_at_drop[0] == 1
    wait_until(lambda: got == [1], timeout=5, message="the event after reconnecting")
    wait_until(lambda: [s.id for s in world.server.sockets] == ["hello"], message="hello id")
