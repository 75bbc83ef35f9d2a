"""Request/reply over real Unix sockets (and one real server process): replies matched by
id, remote errors, missing handlers, timeouts with late replies, deferred replies,
fan-out/fan-in, and the wires that cannot carry requests."""
from __future__ import annotations

import random

import gevent
import pytest
from gevent.event import AsyncResult
from conftest import python_process, read_line, run_example, stop_process, wait_until

from geventipc import errors
from geventipc.errors import (
    AlreadyAnsweredError, ConnectionLostError, DeadlockError, NoHandlerError,
    NotConnectedError, RemoteError, Timeout, UnsupportedError,
)
from geventipc.reply import Deferred


def serve(make_ipc, id="world", **config):
    """A started server IPC and a connected client of it."""
    server_ipc = make_ipc(id, **config)
    server_ipc.serve()
    return server_ipc, server_ipc.server


def client_of(make_ipc, server_id="world", me="hello", **config):
    client_ipc = make_ipc(me, **config)
    client = client_ipc.connect_to(server_id)
    client.wait_connected(5)
    return client


def test_issue_example_sum(make_ipc):
    world, server = serve(make_ipc)

    @world.server.handle("sum")
    def total(numbers, socket):
        return sum(numbers)

    server.start()
    hello = make_ipc("hello")
    hello.connect_to("world")
    hello.of.world.wait_connected(5)
    assert hello.of.world.request("sum", [1, 2, 3], timeout=2.0) == 6
    assert hello.of.world.in_flight == 0


def test_handler_sees_the_client_socket_and_data_types_round_trip(make_ipc):
    _, server = serve(make_ipc)
    seen = []

    @server.handle("echo")
    def echo(data, socket):
        seen.append(socket.id)
        return data

    server.start()
    client = client_of(make_ipc)
    value = {"a": [1, 2.5, None, True], "b": b"\x00\xff", "c": "\u00e9"}
    assert client.request("echo", value) == value
    assert client.request("echo") is None
    assert seen == ["hello", "hello"]


def test_remote_error_carries_type_name_and_message(make_ipc):
    _, server = serve(make_ipc)

    class QuotaExceeded(Exception):
        pass

    @server.handle("divide")
    def divide(data, socket):
        return data[0] / data[1]

    @server.handle("quota")
    def quota(data, socket):
        raise QuotaExceeded(f"user {data} is over quota")

    server.start()
    client = client_of(make_ipc)
    assert client.request("divide", [6, 3]) == 2.0
    with pytest.raises(RemoteError) as info:
        client.request("divide", [1, 0])
    assert info.value.remote_type == "ZeroDivisionError"
    assert info.value.remote_message == "division by zero"
    assert str(info.value) == "ZeroDivisionError: division by zero"
    with pytest.raises(RemoteError) as info:
        client.request("quota", "ann")
    assert (info.value.remote_type, info.value.remote_message) == \
        ("QuotaExceeded", "user ann is over quota")
    # the connection survives handler errors
    assert client.request("divide", [9, 3]) == 3.0


def test_missing_handler_gives_no_handler_error(make_ipc):
    _, server = serve(make_ipc)
    server.on("only-an-event", lambda data, socket: None)  # events are not requests
    server.start()
    client = client_of(make_ipc)
    with pytest.raises(NoHandlerError) as info:
        client.request("only-an-event", 1)
    assert isinstance(info.value, RemoteError)
    assert info.value.remote_type == "NoHandlerError"
    assert "only-an-event" in info.value.remote_message
    server.handle("late-comer", lambda data, socket: "here now")
    assert client.request("late-comer") == "here now"
    server.unhandle("late-comer")
    with pytest.raises(NoHandlerError):
        client.request("late-comer")


def test_timeout_is_geventipcs_own_and_late_reply_is_discarded_and_counted(make_ipc):
    _, server = serve(make_ipc)

    @server.handle("slow")
    def slow(data, socket):
        gevent.sleep(0.3)
        return ("slow", data)

    @server.handle("fast")
    def fast(data, socket):
        return ("fast", data)

    server.start()
    client = client_of(make_ipc)
    with pytest.raises(Timeout) as info:
        client.request("slow", 1, timeout=0.05)
    assert isinstance(info.value, errors.IPCError)
    assert isinstance(info.value, TimeoutError)
    assert not isinstance(info.value, gevent.Timeout)
    assert client.late_replies == 0
    # handlers run inline, in order: this request is answered right after the late reply
    # to the timed-out one comes in, on the same connection
    assert client.request("fast", 2, timeout=5) == ["fast", 2]
    assert client.late_replies == 1
    assert client.in_flight == 0


def test_late_replies_never_reach_the_wrong_request(make_ipc):
    _, server = serve(make_ipc, handler_pool_size=50)

    @server.handle("echo")
    def echo(data, socket):
        gevent.sleep(data["delay"])
        return data["n"]

    server.start()
    client = client_of(make_ipc)
    rng = random.Random(8)
    results = []
    for n in range(40):
        delay = rng.choice([0.0, 0.0, 0.5])
        results.append((n, delay, client.request_async("echo", {"n": n, "delay": delay},
                                                       timeout=0.25)))
    gevent.wait([r for _, _, r in results], timeout=5)
    timed_out = answered = 0
    for n, delay, result in results:
        assert result.ready()
        if result.successful():
            assert result.get() == n        # never another request's reply
            answered += 1
        else:
            assert isinstance(result.exception, Timeout)
            timed_out += 1
        if delay:
            assert not result.successful()
    assert answered and timed_out
    # every reply to a timed-out request comes late, and is counted, never delivered
    wait_until(lambda: client.late_replies == timed_out, message="the late replies")
    gevent.sleep(0.1)
    assert client.late_replies == timed_out and client.in_flight == 0


def test_many_in_flight_from_many_greenlets_matched_by_id(make_ipc):
    _, server = serve(make_ipc, handler_pool_size=200)
    rng = random.Random(1)

    @server.handle("square")
    def square(data, socket):
        gevent.sleep(rng.random() * 0.02)  # replies come back out of order
        return data * data

    server.start()
    client = client_of(make_ipc)
    bad = []

    def worker(base):
        for i in range(25):
            n = base * 1000 + i
            if client.request("square", n, timeout=10) != n * n:
                bad.append(n)

    workers = [gevent.spawn(worker, b) for b in range(20)]
    gevent.joinall(workers, timeout=20, raise_error=True)
    assert all(w.dead for w in workers)
    assert bad == []
    assert client.in_flight == 0


def test_request_async_fan_out_fan_in_across_servers(make_ipc):
    names = ["alpha", "beta", "gamma"]
    for name in names:
        ipc, server = serve(make_ipc, name)
        server.handle("whoami", lambda data, socket, name=name: f"{name}:{data}")
        server.start()
    hub = make_ipc("hub")
    for name in names:
        hub.connect_to(name)
    for name in names:
        hub.of[name].wait_connected(5)
    results = [hub.of[name].request_async("whoami", i, timeout=5)
               for i, name in enumerate(names)]
    assert all(isinstance(r, AsyncResult) for r in results)
    done = gevent.wait(results, timeout=5)
    assert len(done) == 3
    assert [r.get() for r in results] == ["alpha:0", "beta:1", "gamma:2"]


def test_deferred_reply_from_another_greenlet(make_ipc):
    _, server = serve(make_ipc)
    waiting: list[Deferred] = []

    @server.handle("ticket")
    def ticket(data, socket):
        reply = Deferred()
        waiting.append(reply)
        return reply                       # answered later, by whoever holds `reply`

    @server.handle("compute")
    def compute(data, socket):
        return gevent.spawn(lambda: gevent.sleep(0.01) or data * 10)  # a Greenlet works too

    @server.handle("broken")
    def broken(data, socket):
        return gevent.spawn(lambda: 1 / 0)

    server.start()
    client = client_of(make_ipc)
    first = client.request_async("ticket", 1, timeout=5)
    second = client.request_async("ticket", 2, timeout=5)
    wait_until(lambda: len(waiting) == 2, message="both tickets")
    # the connection is not held up by unanswered deferred replies
    assert client.request("compute", 4) == 40
    gevent.spawn(waiting[1].send, "second answered first").join()
    assert second.get(timeout=5) == "second answered first"
    assert not first.ready()
    waiting[0].fail(PermissionError("no tickets left"))
    with pytest.raises(RemoteError) as info:
        first.get(timeout=5)
    assert (info.value.remote_type, info.value.remote_message) == \
        ("PermissionError", "no tickets left")
    with pytest.raises(AlreadyAnsweredError):
        waiting[0].send("again")
    with pytest.raises(RemoteError) as info:
        client.request("broken")
    assert info.value.remote_type == "ZeroDivisionError"


def test_deferred_answered_after_the_client_left_is_dropped_quietly(make_ipc):
    world, server = serve(make_ipc)
    errors_seen = []
    server.on("error", errors_seen.append)
    pending: list[Deferred] = []
    server.handle("hold", lambda data, socket: pending.append(Deferred()) or pending[-1])
    server.start()
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(5)
    result = client.request_async("hold", None)
    wait_until(lambda: pending, message="the held request")
    hello.disconnect("world")
    with pytest.raises(ConnectionLostError):
        result.get(timeout=5)
    wait_until(lambda: not server.sockets, message="the server to see the client go")
    pending[0].send("too late")
    gevent.sleep(0.05)
    assert errors_seen == []


def test_unencodable_reply_becomes_a_remote_error(make_ipc):
    _, server = serve(make_ipc)
    server.handle("bad", lambda data, socket: object())
    server.start()
    client = client_of(make_ipc)
    with pytest.raises(RemoteError) as info:
        client.request("bad")
    assert info.value.remote_type == "EncodeError"


def test_request_made_offline_is_sent_on_connect(make_ipc):
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    result = client.request_async("sum", [2, 3], timeout=10)
    gevent.sleep(0.1)
    assert not result.ready() and not client.connected
    _, server = serve(make_ipc)
    server.handle("sum", lambda data, socket: sum(data))
    server.start()
    assert result.get(timeout=5) == 5


def test_blocking_request_inside_a_client_handler_is_a_deadlock_error(make_ipc):
    _, server = serve(make_ipc)
    server.handle("sum", lambda data, socket: sum(data))
    server.on("poke", lambda data, socket: server.emit(socket, "poked", data))
    server.start()
    client = client_of(make_ipc)
    outcome = AsyncResult()

    @client.on("poked")
    def poked(data):
        try:
            client.request("sum", [1])
        except DeadlockError as exc:
            refused = exc
            # the non-blocking form works from here
            client.request_async("sum", [data, 1]).rawlink(
                lambda r: outcome.set((refused, r.get())))

    client.emit("poke", 41)
    exc, value = outcome.get(timeout=5)
    assert isinstance(exc, DeadlockError) and "request_async" in str(exc)
    assert value == 42


def test_requests_fail_with_connection_lost_when_the_server_process_dies(make_ipc, sock_dir):
    proc = python_process(f"""
        import gevent
        from geventipc import IPC
        ipc = IPC(id="world", socket_root={sock_dir!r}, silent=True)
        ipc.serve()
        ipc.server.handle("sum", lambda data, socket: sum(data))
        ipc.server.handle("never", lambda data, socket: gevent.sleep(60))

        class Odd(Exception):
            pass

        @ipc.server.handle("odd")
        def odd(data, socket):
            raise Odd(f"{{data}} is odd")

        ipc.server.start()
        print("ready", flush=True)
        gevent.sleep(60)
    """)
    try:
        assert read_line(proc) == "ready"
        client = client_of(make_ipc, stop_retrying=True)
        assert client.request("sum", list(range(10))) == 45
        with pytest.raises(RemoteError) as info:
            client.request("odd", 3)
        assert (info.value.remote_type, info.value.remote_message) == ("Odd", "3 is odd")
        stuck = [client.request_async("never", i) for i in range(3)]
        gevent.sleep(0.1)
        proc.kill()
        for result in stuck:
            with pytest.raises(ConnectionLostError):
                result.get(timeout=5)
        wait_until(lambda: client.destroyed, message="the client to give up")
        with pytest.raises(NotConnectedError):
            client.request("sum", [1])
    finally:
        stop_process(proc)


def test_pending_offline_requests_fail_when_the_client_gives_up(make_ipc):
    hello = make_ipc("hello", max_retries=2)
    client = hello.connect_to("nobody")
    result = client.request_async("sum", [1])
    with pytest.raises(NotConnectedError):
        result.get(timeout=5)


@pytest.mark.parametrize("config", [{"wire": "node-ipc"}, {"raw_buffer": True}])
def test_wires_without_requests_say_so_clearly(make_ipc, config):
    world = make_ipc("world", **config)
    world.serve()
    with pytest.raises(UnsupportedError) as info:
        world.server.handle("sum", lambda data, socket: 0)
    assert "msgpack" in str(info.value)
    world.server.start()
    hello = make_ipc("hello", **config)
    client = hello.connect_to("world")
    client.wait_connected(5)
    with pytest.raises(UnsupportedError) as info:
        client.request("sum", [1])
    assert "msgpack" in str(info.value)
    with pytest.raises(UnsupportedError):
        client.request_async("sum", [1])
    with pytest.raises(UnsupportedError):
        client.describe()


def test_protocol_doc_request_example_is_what_the_codec_writes():
    import os
    from geventipc.wire import EventNames, MsgpackCodec
    doc = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "docs", "protocol.md"), encoding="utf-8").read()
    codec = MsgpackCodec(EventNames())
    assert codec.encode_request("sum", [1, 2, 3], 1).hex(" ") in doc
    assert codec.encode_reply(1, 0, 6).hex(" ") in doc


def test_killed_greenlet_reply_is_a_remote_error(make_ipc):
    _, server = serve(make_ipc)
    workers = []

    @server.handle("work")
    def work(data, socket):
        workers.append(gevent.spawn(gevent.sleep, 60))
        return workers[-1]

    server.start()
    client = client_of(make_ipc)
    result = client.request_async("work", timeout=5)
    wait_until(lambda: workers, message="the worker")
    workers[0].kill()
    with pytest.raises(RemoteError) as info:
        result.get(timeout=5)
    assert info.value.remote_type == "GreenletExit"


def test_requests_never_sent_before_a_server_died_are_sent_on_reconnect(make_ipc, sock_dir):
    code = f"""
        import gevent
        from geventipc import IPC
        ipc = IPC(id="world", socket_root={sock_dir!r}, silent=True)
        ipc.serve()
        ipc.server.handle("echo", lambda data, socket: data)
        ipc.server.start()
        print("ready", flush=True)
        gevent.sleep(60)
    """
    first = python_process(code)
    second = None
    try:
        assert read_line(first) == "ready"
        client = client_of(make_ipc, retry=20)
        assert client.request("echo", "warm-up") == "warm-up"
        first.kill()
        first.wait(5)  # blocks the hub: the client cannot notice the close before we write
        results = [client.request_async("echo", n, timeout=20) for n in range(5)]
        second = python_process(code)
        assert read_line(second) == "ready"
        # written to a dead peer (EPIPE) or still queued at the close: either way never
        # handed to the kernel, so sent again, once, on the next connection
        assert [r.get(timeout=10) for r in results] == [0, 1, 2, 3, 4]
        assert client.late_replies == 0
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)


def test_the_example_runs_and_exits_by_itself():
    done = run_example(["examples/request_reply.py"], {}, timeout=30)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "sum([1, 2, 3])              -> 6" in out
    assert "RemoteError: ZeroDivisionError / division by zero" in out
    assert "late_replies=1" in out
    assert "sync: answers, one at a time: [0, 1, 2, 3, 4]" in out


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_request_reply_over_tcp(make_ipc, host):
    from conftest import free_port
    import socket as _socket
    port = free_port(_socket.AF_INET6 if ":" in host else _socket.AF_INET)
    world = make_ipc("world", handler_pool_size=10)
    world.serve_net(host, port)
    world.server.handle("sum", lambda data, socket: sum(data))
    world.server.define.listen.sum = "numbers"
    world.server.start()
    hello = make_ipc("hello")
    client = hello.connect_to_net("world", host, port)
    client.wait_connected(5)
    results = [client.request_async("sum", [n, n], timeout=5) for n in range(50)]
    assert [r.get(timeout=5) for r in results] == [2 * n for n in range(50)]
    assert client.describe()["listen"] == {"sum": "numbers"}


def test_a_request_that_times_out_while_queued_is_never_sent(make_ipc):
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    expired = client.request_async("count", "expired", timeout=0.1)
    kept = client.request_async("count", "kept", timeout=10)
    with pytest.raises(Timeout):
        expired.get(timeout=5)
    assert client.queued == 1
    _, server = serve(make_ipc)
    calls = []
    server.handle("count", lambda data, socket: calls.append(data) or len(calls))
    server.start()
    assert kept.get(timeout=5) == 1
    gevent.sleep(0.1)
    assert calls == ["kept"] and client.late_replies == 0
