"""node-ipc's ``config.sync``: a client sends its next event only after the server has
answered the previous one (node-ipc releases one queued event per batch of events it
receives). Real Unix sockets; the server runs handlers in a pool so that, without sync
mode, it would take every event at once."""
from __future__ import annotations

import os
import shutil
import subprocess

import gevent
import pytest
from conftest import ROOT, python_process, read_line, stop_process, wait_until

from geventipc.errors import QueueFullError, Timeout


def job_server(make_ipc, log, answer=True, **config):
    world = make_ipc("world", handler_pool_size=20, **config)
    world.serve()
    server = world.server
    received = []

    @server.on("job")
    def job(n, socket):
        received.append(n)
        log.append(("recv", n, len(received)))
        gevent.sleep(0.03)
        if answer:
            server.emit(socket, "done", n)
            log.append(("answer", n))

    server.start()
    return server, received


def notes_and_requests(make_ipc, request, answer):
    """A server recording every "note" and every ``request`` (answered ``answer(data)``)
    in arrival order, and a sync client connected to it: (server, client, record)."""
    world = make_ipc("world")
    world.serve()
    server = world.server
    record = []
    server.on("note", lambda data, socket: record.append(("note", data)))
    server.handle(request, lambda data, socket: record.append((request, data)) or answer(data))
    server.start()
    client = make_ipc("hello", sync=True).connect_to("world")
    client.wait_connected(5)
    return server, client, record


def test_sync_client_waits_for_each_answer(make_ipc):
    log: list = []
    job_server(make_ipc, log)
    client = make_ipc("hello", sync=True).connect_to("world")
    done = []
    client.on("done", done.append)
    for n in range(5):
        client.emit("job", n)          # never blocks; the client holds them back
    assert client.queued == 5
    wait_until(lambda: len(done) == 5, message="five answers")
    assert done == [0, 1, 2, 3, 4]
    expected = []
    for n in range(5):
        # when job n arrived, the server had received exactly n + 1 events: the next one
        # came only after the answer to this one
        expected += [("recv", n, n + 1), ("answer", n)]
    assert log == expected


def test_without_sync_the_same_events_arrive_all_at_once(make_ipc):
    log: list = []
    job_server(make_ipc, log)
    client = make_ipc("hello").connect_to("world")
    done = []
    client.on("done", done.append)
    client.wait_connected(5)
    for n in range(5):
        client.emit("job", n)
    wait_until(lambda: len(done) == 5, message="five answers")
    assert [entry for entry in log[:5]] == [("recv", n, n + 1) for n in range(5)]


def test_sync_holds_events_until_the_server_sends_something(make_ipc):
    log: list = []
    server, received = job_server(make_ipc, log, answer=False)
    client = make_ipc("hello", sync=True).connect_to("world")
    got = []
    client.on("nudge", got.append)
    for n in range(3):
        client.emit("job", n)
    wait_until(lambda: received == [0], message="the first event")
    gevent.sleep(0.2)
    assert received == [0] and client.queued == 2
    # one batch from the server releases exactly one queued event, as in node-ipc (two
    # emits in one handler turn are written, and read, as one batch)
    sock = server.sockets[0]
    sock.emit("nudge", 1)
    sock.emit("nudge", 2)
    wait_until(lambda: received == [0, 1], message="the second event")
    gevent.sleep(0.2)
    assert received == [0, 1] and got == [1, 2]
    server.broadcast("nudge", 3)     # a broadcast is an answer too
    wait_until(lambda: received == [0, 1, 2], message="the third event")
    assert client.queued == 0


def test_requests_take_their_turn_and_their_reply_is_the_answer(make_ipc):
    server, client, order = notes_and_requests(make_ipc, "sum", sum)
    client.emit("note", "a")                  # the server never answers notes
    result = client.request_async("sum", [1, 2], timeout=5)
    client.emit("note", "b")
    wait_until(lambda: order == [("note", "a")], message="the first note")
    gevent.sleep(0.1)
    assert order == [("note", "a")] and not result.ready()
    server.broadcast("go")                    # answers the first note
    assert result.get(timeout=5) == 3         # the reply answers the request ...
    wait_until(lambda: len(order) == 3, message="the second note")  # ... releasing "b"
    assert order == [("note", "a"), ("sum", [1, 2]), ("note", "b")]


def test_sync_queue_survives_a_server_restart(make_ipc, sock_dir):
    code = f"""
        import gevent, sys
        from geventipc import IPC
        ipc = IPC(id="world", socket_root={sock_dir!r}, silent=True)
        ipc.serve()
        answer = sys.argv[1] == "answer"

        @ipc.server.on("job")
        def job(n, socket):
            print("got", n, flush=True)
            if answer:
                ipc.server.emit(socket, "done", n)

        ipc.server.start()
        print("ready", flush=True)
        gevent.sleep(60)
    """
    first = python_process(code, "silent")
    second = None
    try:
        assert read_line(first) == "ready"
        client = make_ipc("hello", sync=True, retry=20).connect_to("world")
        done = []
        client.on("done", done.append)
        for n in range(4):
            client.emit("job", n)
        assert read_line(first) == "got 0"     # sent, never answered
        wait_until(lambda: client.queued == 3, message="three held back")
        stop_process(first)
        wait_until(lambda: not client.connected, message="the disconnect")
        second = python_process(code, "answer")
        assert read_line(second) == "ready"
        # the unanswered event was delivered once; the held ones follow, one at a time
        assert [read_line(second) for _ in range(3)] == ["got 1", "got 2", "got 3"]
        wait_until(lambda: done == [1, 2, 3], message="the answers")
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)


NODE_IPC = os.path.join(ROOT, "tests", "node", "node_modules", "node-ipc")
NODE = shutil.which("node")

NODE_SYNC_CLIENT = """
const ipc = require(process.argv[1]);
ipc.config.id = 'nodesync';
ipc.config.silent = true;
ipc.config.sync = true;
ipc.config.maxRetries = 0;
ipc.connectTo('world', process.argv[2], () => {
    ipc.of.world.on('connect', () => {
        for (let n = 0; n < 5; n++) ipc.of.world.emit('job', n);
    });
    ipc.of.world.on('done', (n) => {
        console.log(n);
        if (n === 4) process.exit(0);
    });
});
"""


@pytest.mark.skipif(not NODE or not os.path.isdir(NODE_IPC),
                    reason="node-ipc not installed: run `make node-deps`")
def test_same_order_as_node_ipcs_own_sync_client(make_ipc, sock_dir):
    """The reference: node-ipc's client with sync = true, against a geventipc server on
    the node-ipc wire; then geventipc's sync client against the same server."""
    log: list = []
    server, received = job_server(make_ipc, log, wire="node-ipc")
    node = subprocess.Popen([NODE, "-e", NODE_SYNC_CLIENT, NODE_IPC,
                             server.path], stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: node.poll() is not None, timeout=20, message="the node client")
        assert node.returncode == 0
        assert node.stdout is not None and node.stdout.read().split() == list("01234")
    finally:
        stop_process(node)
    expected = []
    for n in range(5):
        expected += [("recv", n, n + 1), ("answer", n)]
    assert log == expected
    log.clear()
    received.clear()
    client = make_ipc("hello", sync=True, wire="node-ipc").connect_to("world")
    done = []
    client.on("done", done.append)
    for n in range(5):
        client.emit("job", n)
    wait_until(lambda: len(done) == 5, message="five answers")
    assert log == expected


def test_sync_queue_is_bounded_by_max_queued_events(make_ipc):
    log: list = []
    server, received = job_server(make_ipc, log, answer=False)
    client = make_ipc("hello", sync=True, max_queued_events=1).connect_to("world")
    client.wait_connected(5)
    client.emit("job", 0)            # sent at once: nothing in flight
    client.emit("job", 1)            # held back: the one queue slot
    with pytest.raises(QueueFullError):
        client.emit("job", 2)
    wait_until(lambda: received == [0], message="the first job")
    server.broadcast("nudge")
    wait_until(lambda: received == [0, 1], message="the held job")
    client.emit("job", 2)            # room again
    assert client.queued == 1


def test_a_request_that_times_out_behind_sync_is_never_sent(make_ipc):
    server, client, seen = notes_and_requests(make_ipc, "ask", lambda data: data)
    client.emit("note", 1)                       # unanswered: holds what follows
    asked = client.request_async("ask", "too late", timeout=0.1)
    client.emit("note", 2)
    with pytest.raises(Timeout):
        asked.get(timeout=5)
    server.broadcast("go")                       # releases the next: note 2, not the ask
    wait_until(lambda: len(seen) == 2, message="the second note")
    gevent.sleep(0.1)
    assert seen == [("note", 1), ("note", 2)]
