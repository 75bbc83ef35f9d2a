"""``ipc.server`` over real Unix sockets (and TCP where it matters): lifecycle events,
failing handlers, hostile frames, socket-file handling, limits and broadcast."""
import os
import socket as stdsocket
import stat

import gevent
import gevent.event
import msgpack
import pytest
from gevent import socket as gsocket

from conftest import failing_handler_log, free_port, serve, wait_until
from geventipc.errors import ForbiddenEventError, HandlerError, ServeError


def raw_peer(path):
    """A plain (non-geventipc) socket connected to ``path``: a hostile or foreign peer."""
    sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def read_frames(sock, count, timeout=5.0):
    unpacker = msgpack.Unpacker(raw=False)
    frames = []
    with gevent.Timeout(timeout):
        while len(frames) < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            unpacker.feed(chunk)
            frames.extend(unpacker)
    return frames


# --- lifecycle events ----------------------------------------------------------------


def test_start_connect_disconnected_events(make_ipc):
    world = make_ipc("world")
    events = []
    world.serve(lambda: events.append(("start",)))
    world.server.on("connect", lambda sock: events.append(("connect", sock)))
    world.server.on("socket.disconnected",
                    lambda sock, destroyed_id: events.append(("gone", sock, destroyed_id)))
    assert world.server.start() is world.server
    assert events == [("start",)] and world.server.started
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    wait_until(lambda: len(events) == 2, message="connect")
    sock = events[1][1]
    assert sock in world.server.sockets
    wait_until(lambda: sock.id == "hello", message="the client's id")
    assert sock.address == world.server.path
    make_ipc("hello")  # unrelated; the fixture cleans both up
    client.disconnect()
    wait_until(lambda: len(events) == 3, message="socket.disconnected")
    assert events[2] == ("gone", sock, "hello")
    assert world.server.sockets == []


def test_connect_event_socket_has_peer_address_over_tcp(make_ipc):
    port = free_port()
    world = make_ipc("world", network_host="127.0.0.1")
    world.serve_net(port)
    world.server.start()
    seen = []
    world.server.on("connect", seen.append)
    make_ipc("hello").connect_to_net("world", "127.0.0.1", port).wait_connected(5)
    wait_until(lambda: seen, message="connect")
    host, peer_port = seen[0].address[:2]
    assert host == "127.0.0.1" and isinstance(peer_port, int) and peer_port != port


def test_socket_emit_and_close_from_a_handler(make_ipc):
    world = serve(make_ipc)
    client = make_ipc("hello").connect_to("world")
    got, gone = [], []
    client.on("bye", got.append)
    client.on("disconnect", lambda: gone.append(1))

    @world.server.on("leave")
    def leave(data, socket):
        socket.emit("bye", data)
        socket.close()            # after sending what was queued

    client.wait_connected(5)
    client.emit("leave", "see you")
    wait_until(lambda: got and gone, message="bye, then the close")
    assert got == ["see you"]


def test_raising_handler_is_logged_reported_and_the_connection_lives(make_ipc):
    lines = []
    world = serve(make_ipc, silent=False, logger=lines.append, log_in_color=False)
    errors = []
    world.server.on("error", errors.append)

    @world.server.on("boom")
    def boom(data, socket):
        raise RuntimeError("handler bug " + data)

    echoed = []
    world.server.on("echo", lambda data, sock: sock.emit("echo", data))
    client = make_ipc("hello").connect_to("world")
    client.on("echo", echoed.append)
    client.wait_connected(5)
    client.emit("boom", "one")
    client.emit("echo", 1)
    client.emit("boom", "two")
    client.emit("echo", 2)
    wait_until(lambda: echoed == [1, 2] and len(errors) == 2, message="both errors, echoes")
    assert all(isinstance(e, HandlerError) and e.event == "boom" for e in errors)
    assert [str(e.__cause__) for e in errors] == ["handler bug one", "handler bug two"]
    assert any("boom" in line and "RuntimeError: handler bug one" in line for line in lines)
    assert client.connected and len(world.server.sockets) == 1


def test_raising_handler_without_error_listener_is_logged(make_ipc):
    lines = failing_handler_log(make_ipc)   # waits (bounded) for the line
    assert any("ZeroDivisionError" in line for line in lines)


def test_raising_client_handler_reported_on_the_client(make_ipc):
    world = serve(make_ipc)
    client = make_ipc("hello").connect_to("world")
    errors, later = [], []
    client.on("error", errors.append)
    client.on("x", lambda d: {}["missing"])
    client.on("y", later.append)
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets, message="the server side")
    world.server.broadcast("x", 1)
    world.server.broadcast("y", 2)
    wait_until(lambda: later == [2] and errors, message="the error, then the next event")
    assert isinstance(errors[0], HandlerError) and isinstance(errors[0].__cause__, KeyError)
    assert client.connected


@pytest.mark.parametrize("name", ["connect", "disconnect", "error", "start", "destroy",
                                  "socket.disconnected", "data", "*"])
def test_peer_cannot_trigger_lifecycle_events(make_ipc, name):
    world = serve(make_ipc)
    fired, errors, gone = [], [], []
    world.server.on(name, lambda *a: fired.append(a))
    world.server.on("error", errors.append)
    world.server.on("socket.disconnected", lambda s, i: gone.append(s))
    before = list(fired)       # "start" already fired when name == "start"
    peer = raw_peer(world.server.path)
    wait_until(lambda: world.server.sockets, message="the raw peer")
    connects = list(fired)
    peer.sendall(msgpack.packb([name, {"forged": True}]))
    wait_until(lambda: errors, message="the error event")
    assert isinstance(errors[0], ForbiddenEventError)
    assert name in str(errors[0])
    assert errors[0].socket is not None
    # the forged frame fired nothing: only the real connect/disconnect happened
    if name == "connect":
        assert fired == connects
    elif name == "socket.disconnected":
        wait_until(lambda: gone, message="the real close")
        assert all(args[1] is None for args in fired)  # only the real one, id None
    elif name == "error":
        assert all(isinstance(a[0], ForbiddenEventError) for a in fired)
    elif name == "*":
        assert fired == []
    else:
        assert fired == before
    peer.close()


def test_unknown_library_internal_names_are_ignored(make_ipc):
    """An unknown ``$ipc.`` frame (a newer peer's feature) reaches no user handler, not
    even ``*``, and does not cost the connection."""
    world = serve(make_ipc)
    errors, seen, pings = [], [], []
    world.server.on("error", errors.append)
    world.server.on("*", lambda *a: seen.append(a[0]))
    world.server.on("ping", lambda d, s: pings.append(d))
    peer = raw_peer(world.server.path)
    peer.sendall(msgpack.packb(["$ipc.bogus", 1]) + msgpack.packb(["ping", 2]))
    wait_until(lambda: pings == [2], message="the ping after the unknown frame")
    assert seen == ["ping"] and errors == []
    peer.close()


def test_raw_msgpack_peer_speaks_the_documented_wire(make_ipc):
    """A client written from docs/protocol.md alone: plain socket, msgpack arrays."""
    world = serve(make_ipc)
    world.server.on("message", lambda data, sock: sock.emit("message", data + " world!"))
    peer = raw_peer(world.server.path)
    peer.sendall(msgpack.packb(["$ipc.hello", {"id": "raw"}]) +
                 msgpack.packb(["message", "hello"]))
    # the server's first frame is its welcome (docs/protocol.md), then the answer
    welcome, answer = read_frames(peer, 2)
    assert welcome[0] == "$ipc.welcome" and welcome[1]["ping"] is True
    assert answer == ["message", "hello world!"]
    assert world.server.sockets[0].id == "raw"
    peer.close()


# --- the socket file -----------------------------------------------------------------


def test_stale_socket_file_is_unlinked(make_ipc, sock_dir):
    path = sock_dir + "app.world"
    stale = stdsocket.socket(stdsocket.AF_UNIX)
    stale.bind(path)
    stale.close()                                # file left behind, nobody listening
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    world = serve(make_ipc)
    assert world.server.started
    make_ipc("hello").connect_to("world").wait_connected(5)


def test_stale_socket_file_with_unlink_false_is_refused(make_ipc, sock_dir):
    path = sock_dir + "app.world"
    stale = stdsocket.socket(stdsocket.AF_UNIX)
    stale.bind(path)
    stale.close()
    world = make_ipc("world", unlink=False)
    with pytest.raises(ServeError, match="unlink"):
        world.serve().start()
    assert os.path.exists(path)


def test_live_server_at_the_same_path_is_not_stolen(make_ipc):
    first = serve(make_ipc)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    second = make_ipc("world")
    with pytest.raises(ServeError, match="another server is listening"):
        second.serve().start()
    # the first server is untouched and still serving
    got = []
    first.server.on("still", lambda d, s: got.append(d))
    client.emit("still", "here")
    wait_until(lambda: got == ["here"], message="the first server still serving")
    assert os.path.exists(first.server.path)


def test_a_regular_file_at_the_path_is_never_replaced(make_ipc, sock_dir):
    path = sock_dir + "app.world"
    with open(path, "w") as f:
        f.write("precious")
    with pytest.raises(ServeError, match="not a socket"):
        make_ipc("world").serve().start()
    assert open(path).read() == "precious"


def test_stop_closes_clients_and_removes_the_socket_file(make_ipc):
    world = serve(make_ipc)
    path = world.server.path
    clients = [make_ipc(f"c{i}", stop_retrying=True).connect_to("world") for i in range(3)]
    lost = []
    for c in clients:
        c.wait_connected(5)
        c.on("disconnect", lambda: lost.append(1))
    wait_until(lambda: len(world.server.sockets) == 3, message="three clients")
    gone = []
    world.server.on("socket.disconnected", lambda s, i: gone.append(i))
    world.server.stop()
    assert not os.path.exists(path)
    assert not world.server.started and world.server.sockets == []
    wait_until(lambda: len(lost) == 3, message="every client to see the close")
    assert sorted(gone) == ["c0", "c1", "c2"]
    world.server.stop()                          # a second stop is harmless


def test_stop_flushes_queued_events_first(make_ipc):
    world = serve(make_ipc)
    client = make_ipc("hello", stop_retrying=True).connect_to("world")
    got = []
    client.on("n", got.append)
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets, message="connected")
    for i in range(1000):
        world.server.broadcast("n", i)
    world.server.stop()
    wait_until(lambda: len(got) == 1000, message="everything sent before stop")
    assert got == list(range(1000))


def test_serve_forever_returns_on_stop(make_ipc):
    world = make_ipc("world")
    world.serve()
    runner = gevent.spawn(world.server.serve_forever)
    wait_until(lambda: world.server.started, message="started")
    gevent.spawn_later(0.05, world.server.stop)
    runner.join(timeout=5)
    assert runner.dead and runner.successful()


def test_stop_does_not_remove_another_servers_file(make_ipc):
    world = serve(make_ipc)
    path = world.server.path
    os.unlink(path)                              # someone removed it and a new server...
    replacement = serve(make_ipc, "world")
    world.server.stop()
    assert os.path.exists(path) and replacement.server.started


@pytest.mark.parametrize("readable, writable, mode", [
    (False, False, 0o600), (True, False, 0o644), (False, True, 0o622), (True, True, 0o666),
])
def test_socket_file_modes(make_ipc, readable, writable, mode):
    world = serve(make_ipc, readable_all=readable, writable_all=writable)
    assert stat.S_IMODE(os.stat(world.server.path).st_mode) == mode


# --- limits and fan-out --------------------------------------------------------------


def test_max_connections(make_ipc):
    lines = []
    world = serve(make_ipc, max_connections=2, silent=False, logger=lines.append,
                  log_in_color=False)
    ok = [make_ipc(f"ok{i}").connect_to("world") for i in range(2)]
    for c in ok:
        c.wait_connected(5)
    wait_until(lambda: len(world.server.sockets) == 2, message="two clients")
    extra = raw_peer(world.server.path)
    # told why, then closed at once (test_liveness.py has the client's side)
    assert read_frames(extra, 2) == [["$ipc.refused", {"reason": "server full",
                                                       "max_connections": 2}]]
    wait_until(lambda: any("max_connections" in line for line in lines), message="the log")
    assert len(world.server.sockets) == 2 and world.server.started
    got = []
    world.server.on("m", lambda d, s: got.append(d))
    ok[0].emit("m", 1)
    wait_until(lambda: got == [1], message="the server still serving")
    # a slot frees up: a new client gets in
    ok[1].disconnect()
    wait_until(lambda: len(world.server.sockets) == 1, message="a free slot")
    make_ipc("late").connect_to("world").wait_connected(5)


def test_two_clients_and_broadcast(make_ipc):
    world = serve(make_ipc)
    got = {"a": [], "b": []}
    clients = {}
    for name in got:
        c = make_ipc(name).connect_to("world")
        c.on("news", got[name].append)
        c.wait_connected(5)
        clients[name] = c
    wait_until(lambda: sorted(s.id for s in world.server.sockets) == ["a", "b"],
               message="both ids")
    for i in range(5):
        world.server.broadcast("news", i)
    by_id = {s.id: s for s in world.server.sockets}
    world.server.emit(by_id["a"], "news", "only a")
    world.server.broadcast("news", "end")
    wait_until(lambda: got["a"][-1:] == ["end"] and got["b"][-1:] == ["end"],
               message="the broadcasts")
    assert got["a"] == [0, 1, 2, 3, 4, "only a", "end"]
    assert got["b"] == [0, 1, 2, 3, 4, "end"]


def test_emit_to_a_closed_socket_raises(make_ipc):
    from geventipc.errors import NotConnectedError
    world = serve(make_ipc)
    client = make_ipc("hello", stop_retrying=True).connect_to("world")
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets, message="connected")
    sock = world.server.sockets[0]
    client.disconnect()
    wait_until(lambda: not world.server.sockets, message="gone")
    with pytest.raises(NotConnectedError):
        world.server.emit(sock, "late", 1)
    with pytest.raises(NotConnectedError):
        world.server.emit("not a socket", "x")


def test_tcp_server_on_port_zero_reports_its_port(make_ipc):
    world = make_ipc("world", network_host="127.0.0.1")
    world.serve_net(0)
    world.server.start()
    assert world.server.port > 0
    make_ipc("hello").connect_to_net("world", "127.0.0.1", world.server.port) \
        .wait_connected(5)


def test_tcp_port_in_use_is_a_serve_error(make_ipc):
    first = make_ipc("world", network_host="127.0.0.1")
    first.serve_net(0)
    first.server.start()
    second = make_ipc("world2", network_host="127.0.0.1")
    with pytest.raises(ServeError):
        second.serve_net(first.server.port).start()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_stop_right_after_clients_dial_leaves_none_hanging(make_ipc, transport):
    """Clients whose connection was accepted while stop() ran are closed too, so every
    one of them sees ``disconnect`` (a stopped server never goes on serving them)."""
    world = make_ipc("world", network_host="127.0.0.1")
    world.serve() if transport == "unix" else world.serve_net(0)
    world.server.start()
    clients = []
    for i in range(5):
        inst = make_ipc(f"c{i}", stop_retrying=True)
        clients.append(inst.connect_to("world") if transport == "unix" else
                       inst.connect_to_net("world", "127.0.0.1", world.server.port))
    for c in clients:
        c.wait_connected(5)
    world.server.stop()                          # some are not accepted by the server yet
    wait_until(lambda: all(c.destroyed for c in clients), message="every client dropped")
    assert world.server.sockets == []


def test_an_ipc_instance_can_serve_again_after_stop(make_ipc):
    world = serve(make_ipc)
    first = world.server
    with pytest.raises(Exception, match="already has a running server"):
        world.serve()
    first.stop()
    world.serve()
    world.server.start()
    assert world.server is not first and world.server.started
    make_ipc("hello").connect_to("world").wait_connected(5)


def test_raw_buffer_mode_data_events(make_ipc):
    """Raw mode: no framing, no event names; the ``data`` event carries the bytes."""
    world = make_ipc("world", raw_buffer=True)
    got = []
    world.serve(lambda: world.server.on("data", lambda data, sock: (got.append(data),
                                                                     sock.emit(data.upper()))))
    world.server.start()
    client = make_ipc("hello", raw_buffer=True).connect_to("world")
    back = []
    client.on("data", back.append)
    client.wait_connected(5)
    client.emit(b"hello")
    wait_until(lambda: b"".join(back) == b"HELLO", message="the raw echo")
    assert b"".join(got) == b"hello" and all(type(b) is bytes for b in got + back)
    client.emit("text")                         # str is encoded with config.encoding
    wait_until(lambda: b"".join(back) == b"HELLOTEXT", message="the second echo")


def test_unusable_socket_paths_give_clear_serve_errors(make_ipc, sock_dir):
    too_long = sock_dir + "x" * 120
    os.mkdir(too_long, 0o700)
    with pytest.raises(ServeError, match="path too long"):
        make_ipc("world", socket_root=too_long).serve().start()
    with pytest.raises(ServeError, match="No such file or directory"):
        make_ipc("world").serve(sock_dir + "missing/dir/app.world").start()
    os.rmdir(too_long)


@pytest.mark.parametrize("pool_size", [None, 4])
def test_stop_from_a_handler_finishes_at_once(make_ipc, pool_size):
    """A handler may stop its own server: stop() does not wait for the handler's own
    connection (or pool slot), and serve_forever returns only once stop() has finished,
    so a script that exits right after it leaves no socket file behind."""
    world = make_ipc("world", handler_pool_size=pool_size)
    # a 30 s grace: waiting for its own connection would outlast the 5 s join below
    world.serve(lambda: world.server.on("quit",
                                        lambda data, sock: world.server.stop(timeout=30)))
    runner = gevent.spawn(world.server.serve_forever)
    wait_until(lambda: world.server.started, message="started")
    other = make_ipc("other", stop_retrying=True).connect_to("world")
    client = make_ipc("hello", stop_retrying=True).connect_to("world")
    other.wait_connected(5)
    client.wait_connected(5)
    client.emit("quit")
    runner.join(timeout=5)
    assert runner.dead
    assert not os.path.exists(world.server.path)
    wait_until(lambda: other.destroyed and client.destroyed, message="clients closed")


def test_one_greenlet_per_connection(make_ipc):
    """A handler that blocks holds up only its own connection's later events."""
    world = serve(make_ipc)
    order = []
    release = gevent.event.Event()

    @world.server.on("slow")
    def slow(data, sock):
        order.append(("slow start", sock.id))
        release.wait(5)
        order.append(("slow end", sock.id))

    world.server.on("fast", lambda data, sock: order.append(("fast", sock.id)))
    a = make_ipc("a").connect_to("world")
    b = make_ipc("b").connect_to("world")
    a.wait_connected(5)
    b.wait_connected(5)
    a.emit("slow")
    a.emit("fast")                               # behind a's slow handler
    wait_until(lambda: order == [("slow start", "a")], message="a's slow handler")
    b.emit("fast")
    wait_until(lambda: ("fast", "b") in order, message="b served meanwhile")
    assert ("fast", "a") not in order
    release.set()
    wait_until(lambda: len(order) == 4, message="a's events after release")
    assert order == [("slow start", "a"), ("fast", "b"), ("slow end", "a"), ("fast", "a")]


def test_a_socket_file_removed_by_a_sibling_during_stop_is_no_error(make_ipc, monkeypatch):
    """Pre-forked workers share one socket file, and each removes it when it stops: one
    may unlink it between another's check and its unlink (seen in make bench as a
    FileNotFoundError traceback from a worker). The sibling is played here by removing
    the file right after the server has looked at it."""
    import geventipc.server as server_module

    world = serve(make_ipc)
    path = world.server.path
    real_stat = os.stat

    def stat_then_sibling_unlinks(target, *args, **kwargs):
        info = real_stat(target, *args, **kwargs)   # (os is the one module: no exists())
        if target == path:
            os.unlink(path)
        return info

    monkeypatch.setattr(server_module.os, "stat", stat_then_sibling_unlinks)
    world.server.stop()   # raised FileNotFoundError before
    monkeypatch.undo()
    assert not os.path.exists(path)
