"""Issue 15: the hello/welcome handshake, refusal by a full server, the heartbeat and TCP
keepalive, over real sockets (the vanishing-peer tests with network namespaces are in
tests/test_liveness_netns.py)."""
from __future__ import annotations

import socket as stdsocket
from contextlib import contextmanager

import gevent
import msgpack
import pytest
from gevent import socket as gsocket

from conftest import serve, wait_until
from geventipc.errors import ConnectError, PeerTimeoutError, ServerFullError
from geventipc.transports.stream import keepalive_timings


def collect(target, event="error"):
    seen = []
    target.on(event, lambda *a: seen.append(a[0] if a else None))
    return seen


# --- a full server (issue 15 item 3) --------------------------------------------------


def test_full_server_refuses_and_the_queue_arrives_once_a_slot_frees(make_ipc):
    """The issue's case: before, the refused client saw connect/disconnect in a tight
    loop, the server logged every refusal, and 0 of 50 queued events arrived after a
    slot freed. Now: no connect until the server takes it, ServerFullError on both
    sides, a rate-limited log, and the 50 arrive once, in order."""
    lines = []
    world = serve(make_ipc, max_connections=1, silent=False, logger=lines.append,
                  log_in_color=False)
    got = []
    world.server.on("n", lambda data, sock: got.append(data))
    occupant = make_ipc("occupant").connect_to("world")
    occupant.wait_connected(5)
    late_ipc = make_ipc("late", retry=20)
    late = late_ipc.connect_to("world")
    connects, errors = collect(late, "connect"), collect(late)
    for i in range(50):
        late.emit("n", i)
    gevent.sleep(2.0)
    assert connects == [] and not late.connected
    assert late.queued == 50
    refusals = [e for e in errors if isinstance(e, ServerFullError)]
    assert refusals and all(isinstance(e, ServerFullError) for e in errors), errors
    assert "max_connections=1" in str(refusals[0]) and "50 queued events kept" in str(refusals[0])
    # backing off: at a fixed 20 ms retry there would be ~100 refusals in 2 s
    assert len(refusals) < 30, len(refusals)
    logged = [line for line in lines if "ServerFullError" in line]
    assert 1 <= len(logged) <= 4, logged      # one line a second at most
    assert got == []
    occupant.disconnect()
    wait_until(lambda: len(got) >= 50, timeout=20, message="the queued events")
    gevent.sleep(0.2)
    assert got == list(range(50))
    assert connects == [None] and late.connected and late.queued == 0


def test_server_reports_each_refusal_as_an_error_event(make_ipc):
    world = serve(make_ipc, max_connections=1)
    server_errors = collect(world.server)
    make_ipc("a").connect_to("world").wait_connected(5)
    b = make_ipc("b", retry=20).connect_to("world")
    wait_until(lambda: server_errors, message="the refusal on the server")
    exc = server_errors[0]
    assert isinstance(exc, ServerFullError) and exc.address == world.server.path
    assert not b.connected


def test_retry_delay_grows_and_is_capped(make_ipc):
    client = make_ipc("x", retry=100).connect_to("nobody")
    delays = []
    for refusals in range(9):
        delays.append(client._retry_delay(refusals))
    assert delays == [0.1, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 3.2, 3.2]
    big = make_ipc("y", retry=2000).connect_to("nobody")
    assert big._retry_delay(20) == 10.0


# --- the handshake --------------------------------------------------------------------


def test_no_connect_before_the_server_has_taken_the_connection(make_ipc, sock_dir):
    """A listener that never accepts (a full backlog, a server out of file descriptors):
    the kernel completes the dial, but the client never fires connect and keeps its
    queue; the missing welcome is a failed dial with a clear error."""
    path = sock_dir + "app.world"
    listener = stdsocket.socket(stdsocket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)
    try:
        client = make_ipc("hello", connect_timeout=300, retry=20).connect_to("world")
        connects, errors = collect(client, "connect"), collect(client)
        for i in range(5):
            client.emit("n", i)
        wait_until(lambda: len(errors) >= 2, message="two failed dials")
        assert connects == [] and client.queued == 5
        assert isinstance(errors[0], ConnectError)
        assert "no welcome" in str(errors[0]) and "connect_timeout" in str(errors[0])
    finally:
        listener.close()


def test_welcome_comes_before_anything_the_connect_handler_sends(make_ipc):
    world = serve(make_ipc)
    world.server.on("connect", lambda sock: sock.emit("hi", 1))
    client = make_ipc("hello").connect_to("world")
    order = []
    client.on("connect", lambda: order.append("connect"))
    client.on("hi", lambda data: order.append("hi"))
    wait_until(lambda: len(order) == 2, message="connect and hi")
    assert order == ["connect", "hi"]


def test_node_ipc_wire_has_no_handshake(make_ipc):
    world = serve(make_ipc, wire="node-ipc")
    got = []
    world.server.on("n", lambda data, sock: got.append(data))
    client = make_ipc("hello", wire="node-ipc").connect_to("world")
    client.wait_connected(5)
    client.emit("n", 1)
    wait_until(lambda: got == [1], message="the event")


# --- the heartbeat --------------------------------------------------------------------


@contextmanager
def welcoming_peer(path, welcome):
    """A hand-written msgpack server: welcomes with ``welcome`` and then never reads nor
    writes again (a peer that vanished, as far as the application can tell). Yields the
    list of connections it holds; closes everything afterwards."""
    listener = gsocket.socket(gsocket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)
    held = []

    def accept():
        while True:
            conn, _ = listener.accept()
            conn.sendall(msgpack.packb(["$ipc.welcome", welcome]))
            held.append(conn)

    acceptor = gevent.spawn(accept)
    try:
        yield held
    finally:
        acceptor.kill()
        listener.close()
        for conn in held:
            conn.close()


def test_client_finds_a_silent_server_and_requeues(make_ipc, sock_dir):
    with welcoming_peer(sock_dir + "app.world", {"ping": True}):
        client = make_ipc("hello", heartbeat_interval=100, heartbeat_timeout=300,
                          retry=20).connect_to("world")
        errors, gone = collect(client), collect(client, "disconnect")
        client.wait_connected(5)
        wait_until(lambda: any(isinstance(e, PeerTimeoutError) for e in errors),
                   message="the heartbeat timeout")
        assert gone
        exc = next(e for e in errors if isinstance(e, PeerTimeoutError))
        assert "heartbeat_timeout=300 ms" in str(exc)
        # named as every connection message names a peer (StreamConnection.who)
        assert str(exc).startswith(f"an unnamed peer on {sock_dir + 'app.world'!r} sent")
        client.emit("after", 1)          # reconnecting: queued, not lost
        assert client.queued >= 1 or client.connected


def test_a_peer_that_did_not_announce_pings_is_never_timed_out(make_ipc, sock_dir):
    with welcoming_peer(sock_dir + "app.world", {}) as held:
        client = make_ipc("hello", heartbeat_interval=50, heartbeat_timeout=100
                          ).connect_to("world")
        errors = collect(client)
        client.wait_connected(5)
        gevent.sleep(1.0)                # ten timeouts
        assert client.connected and errors == [] and len(held) == 1


def raw_client(path, hello):
    sock = gsocket.socket(gsocket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(msgpack.packb(["$ipc.hello", hello]))
    return sock


def test_server_finds_a_silent_client_that_announced_pings(make_ipc):
    world = serve(make_ipc, heartbeat_interval=100, heartbeat_timeout=300)
    errors = collect(world.server)
    quiet = raw_client(world.server.path, {"id": "quiet", "ping": True})
    legacy = raw_client(world.server.path, {"id": "legacy"})
    try:
        wait_until(lambda: errors, message="the heartbeat timeout")
        assert isinstance(errors[0], PeerTimeoutError) and errors[0].socket.id == "quiet"
        assert str(errors[0]).startswith("peer 'quiet' sent nothing")
        gevent.sleep(0.8)
        assert [s.id for s in world.server.sockets] == ["legacy"] and len(errors) == 1
        # the quiet one was pinged before it was closed
        unpacker = msgpack.Unpacker(raw=False)
        quiet.settimeout(2)
        while True:
            chunk = quiet.recv(65536)
            if not chunk:
                break
            unpacker.feed(chunk)
        assert [f[0] for f in unpacker][:2] == ["$ipc.welcome", "$ipc.ping"]
    finally:
        quiet.close()
        legacy.close()


def test_a_raw_client_ping_is_answered(make_ipc):
    world = serve(make_ipc, heartbeat_interval=0)
    peer = raw_client(world.server.path, {"id": "p"})
    peer.sendall(msgpack.packb(["$ipc.ping", None]))
    unpacker = msgpack.Unpacker(raw=False)
    frames = []
    with gevent.Timeout(5):
        while len(frames) < 2:
            unpacker.feed(peer.recv(65536))
            frames.extend(unpacker)
    assert frames[0][0] == "$ipc.welcome" and frames[1] == ["$ipc.pong", None]
    peer.close()


def test_idle_geventipc_pair_stays_connected_with_a_fast_heartbeat(make_ipc):
    world = serve(make_ipc, heartbeat_interval=50, heartbeat_timeout=150)
    server_errors = collect(world.server)
    client = make_ipc("hello", heartbeat_interval=50, heartbeat_timeout=150
                      ).connect_to("world")
    errors, gone = collect(client), collect(client, "disconnect")
    client.wait_connected(5)
    gevent.sleep(1.5)                    # ten timeouts of silence from the application
    assert client.connected and errors == [] and gone == [] and server_errors == []
    got = []
    world.server.on("n", lambda data, sock: got.append(data))
    client.emit("n", 1)
    wait_until(lambda: got == [1], message="the event after the idle time")


def test_heartbeat_frames_never_reach_user_handlers_and_cannot_be_sent(make_ipc):
    from geventipc.errors import EventNameError
    world = serve(make_ipc, heartbeat_interval=30, heartbeat_timeout=200)
    seen = []
    world.server.on("*", lambda *a: seen.append(a[0]))
    client = make_ipc("hello", heartbeat_interval=30, heartbeat_timeout=200
                      ).connect_to("world")
    client.on("*", lambda *a: seen.append(a[0]))
    client.wait_connected(5)
    gevent.sleep(0.3)
    assert seen == []
    for name in ("$ipc.ping", "$ipc.pong", "$ipc.welcome", "$ipc.refused"):
        with pytest.raises(EventNameError):
            client.emit(name, None)
        with pytest.raises(EventNameError):
            world.server.broadcast(name, None)


# --- TCP keepalive --------------------------------------------------------------------


def test_keepalive_timings():
    assert keepalive_timings(30000) == (10, 5, 4)
    assert keepalive_timings(3000) == (1, 1, 4)


def tcp_pair(make_ipc, port, **config):
    """A TCP server "world" and a connected client "hello", both given ``config``."""
    world = make_ipc("world", **config)
    world.serve_net("127.0.0.1", port)
    world.server.start()
    client = make_ipc("hello", **config).connect_to_net("world", "127.0.0.1", port)
    client.wait_connected(5)
    return world, client


def test_tcp_sockets_get_keepalive_and_user_timeout(make_ipc, port):
    world, client = tcp_pair(make_ipc, port, keepalive=12000)
    wait_until(lambda: world.server.sockets, message="the server side")
    for sock in (client.conn.sock, world.server.sockets[0].sock):
        assert sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_KEEPALIVE) == 1
        if hasattr(stdsocket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_KEEPIDLE) == 4
            assert sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_KEEPINTVL) == 2
            assert sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_KEEPCNT) == 4
        if hasattr(stdsocket, "TCP_USER_TIMEOUT"):
            assert sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_USER_TIMEOUT) == 12000


def test_keepalive_off(make_ipc, port):
    _world, client = tcp_pair(make_ipc, port, keepalive=0)
    assert client.conn.sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_KEEPALIVE) == 0


def test_liveness_example():
    from conftest import run_example
    run = run_example(["examples/liveness.py"], {})
    assert run.returncode == 0, run.stderr
    assert "PeerTimeoutError" in run.stdout
    assert "the new server got: 'sent while the server was gone'" in run.stdout


# --- accept errors (issue 15, "smaller, same spirit") ---------------------------------

EMFILE_SERVER = '''
import resource, sys
from geventipc import IPC
resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
ipc = IPC(id="world", log_in_color=False, heartbeat_interval=0)
ipc.serve(sys.argv[1])
ipc.server.handle("ping", lambda data, sock: "pong")
ipc.server.start()
print("READY", flush=True)
ipc.server.serve_forever()
'''


def test_accept_errors_are_logged_rate_limited_and_the_server_recovers(make_ipc, sock_dir):
    """Out of file descriptors (EMFILE on accept): before, gevent printed a raw traceback
    on stderr for every failed accept; now one rate-limited ipc.log line, and once
    descriptors are free again the server accepts and answers as before."""
    from conftest import python_process, read_line, stop_process
    path = sock_dir + "app.world"
    server = python_process(EMFILE_SERVER, path)
    crowd = []
    try:
        assert read_line(server) == "READY"
        for _ in range(80):                    # more than the 48 descriptors it may hold
            sock = gsocket.socket(gsocket.AF_UNIX)
            sock.settimeout(5)
            sock.connect(path)                 # the kernel's backlog takes them all
            crowd.append(sock)
        gevent.sleep(2.0)                      # accepts fail and back off meanwhile
        for sock in crowd:
            sock.close()
        crowd.clear()
        client = make_ipc("hello", retry=50).connect_to("world")
        client.wait_connected(15)
        assert client.request("ping", None, timeout=10) == "pong"
    finally:
        for sock in crowd:
            sock.close()
        stop_process(server)
    err = server.stderr.read()
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if "AcceptError" in line]
    assert lines and "Too many open files" in lines[0], err[-2000:]
    assert len(lines) <= 6, lines              # one a second at most


def test_handlers_for_internal_names_cannot_be_registered_or_removed(make_ipc):
    world = serve(make_ipc)
    client = make_ipc("hello").connect_to("world")
    for target in (world.server, client):
        for name in ("$ipc.welcome", "$ipc.ping", "$ipc.hello"):
            with pytest.raises(ValueError, match="reserved prefix"):
                target.on(name, lambda *a: None)
            target.off(name)              # a no-op: the library's own handling stays
    client.wait_connected(5)              # the welcome is still handled
