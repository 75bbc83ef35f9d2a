"""UDP transport (issue 6): real datagrams on 127.0.0.1 and ::1, real processes."""
from __future__ import annotations

import socket

import gevent
import pytest
from conftest import free_port, python_process, read_line, stop_process, wait_until

from geventipc.config import Config
from geventipc.errors import (
    AddressError, DatagramTooLargeError, EncodeError, EventNameError, ForbiddenEventError,
    HandlerError, MessageTooLargeError, NoHandlerError, NotConnectedError, ProtocolError,
    RemoteError, SendError, ServeError, Timeout, UnsupportedError,
)
from geventipc.transports.datagram import MAX_PAYLOAD
from geventipc.udp import UDPServer, UDPSocket
from geventipc.wire import make_codec

HOSTS = {"udp4": "127.0.0.1", "udp6": "::1"}
FAMILY = {"udp4": socket.AF_INET, "udp6": socket.AF_INET6}
BOTH = pytest.mark.parametrize("udp_type", ["udp4", "udp6"])


def start_peer(make_ipc, id, udp_type="udp4", **config):
    """A started UDP server on a free port of the loopback address of ``udp_type``."""
    inst = make_ipc(id, **config)
    inst.serve_net(HOSTS[udp_type], 0, udp_type)
    inst.server.start()
    return inst.server


def collect(server, event):
    got = []
    server.on(event, lambda data, sock: got.append((data, sock)))
    return got


def joined_peers(make_ipc, hub, count, udp_type="udp4"):
    """``count`` peers that each sent "join" to ``hub`` and were heard, with their inboxes of
    "news": (peers, inboxes)."""
    peers = [start_peer(make_ipc, f"p{i}", udp_type) for i in range(count)]
    inboxes = [collect(p, "news") for p in peers]
    for p in peers:
        p.emit((HOSTS[udp_type], hub.port), "join", p.config.id)
    wait_until(lambda: len(hub.sockets) == count, message=f"{count} peers heard")
    return peers, inboxes


def collect_errors(server):
    errors = []
    server.on("error", errors.append)
    return errors


def encoded(type, data):
    return make_codec(Config()).encode_event(type, data)


# --- between processes -------------------------------------------------------------------

PEER_PROCESS = """
    import sys
    import gevent
    from geventipc import IPC

    ipc = IPC(id="peer", silent=True)
    ipc.serve_net(sys.argv[1], 0, sys.argv[2])
    server = ipc.server

    @server.handle("add")
    def add(data, socket):
        return data["a"] + data["b"]

    @server.handle("fail")
    def fail(data, socket):
        raise KeyError("no such thing")

    @server.on("ask")
    def ask(data, socket):
        # a handler may not wait for a reply itself: its greenlet receives the replies
        def go():
            socket.emit("answer", server.request(socket, "double", data, timeout=5))
        gevent.spawn(go)

    server.start()
    print(server.port, flush=True)
    server.serve_forever()
"""


@BOTH
def test_request_reply_between_two_processes(make_ipc, udp_type):
    host = HOSTS[udp_type]
    proc = python_process(PEER_PROCESS, host, udp_type)
    try:
        peer = (host, int(read_line(proc)))
        server = start_peer(make_ipc, "me", udp_type)
        server.handle("double", lambda data, sock: data * 2)
        answers = collect(server, "answer")

        assert server.request(peer, "add", {"a": 2, "b": 40}, timeout=5) == 42
        with pytest.raises(RemoteError) as info:
            server.request(peer, "fail", None, timeout=5)
        assert info.value.remote_type == "KeyError"
        with pytest.raises(NoHandlerError):
            server.request(peer, "nobody-handles-this", None, timeout=5)
        assert server.describe(peer, timeout=5) == {"listen": {}, "broadcast": {}}

        # and the other way round: the child asks us, we answer, it reports back
        server.emit(peer, "ask", 21)
        wait_until(lambda: answers, message="the child's answer")
        assert answers[0][0] == 42
        assert answers[0][1] == UDPSocket(peer, "IPv6" if udp_type == "udp6" else "IPv4")
    finally:
        stop_process(proc)


def test_request_without_reply_times_out(make_ipc):
    server = start_peer(make_ipc, "me")
    nobody = ("127.0.0.1", free_port(socket.AF_INET, socket.SOCK_DGRAM))
    with pytest.raises(Timeout):
        server.request(nobody, "add", 1, timeout=0.2)
    assert not server._waiting


def test_request_whose_send_fails_after_stop_raises_the_send_error(make_ipc):
    # stop() while the request's send waits empties the waiting table; the send's own
    # error must come out, not a KeyError from unregistering the request
    server = start_peer(make_ipc, "me")

    def send(frame, sockaddr):
        server.stop()
        raise NotConnectedError("the UDP socket is closed")

    server._send = send
    with pytest.raises(NotConnectedError):
        server.request_async(("127.0.0.1", 9), "add", 1, timeout=0.2)
    assert not server._waiting


def test_request_from_inside_a_handler_is_refused_not_hung(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b")
    b.handle("echo", lambda data, sock: data)
    errors = collect_errors(a)
    results = []

    @a.on("go")
    def go(data, sock):
        try:
            a.request(sock, "echo", 1, timeout=1)
        except UnsupportedError as exc:
            results.append(exc)
        a.request_async(sock, "echo", "async ok", timeout=5).rawlink(
            lambda res: results.append(res.get()))

    b.emit(("127.0.0.1", a.port), "go")
    wait_until(lambda: len(results) == 2, message="both outcomes")
    assert isinstance(results[0], UnsupportedError)
    assert results[1] == "async ok"
    assert errors == []


def test_late_reply_is_discarded(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b")
    b.handle("slow", lambda data, sock: gevent.sleep(0.3) or "late")
    with pytest.raises(Timeout):
        a.request(("127.0.0.1", b.port), "slow", None, timeout=0.05)
    wait_until(lambda: a.late_replies == 1, message="the late reply")


# --- broadcast ---------------------------------------------------------------------------


@BOTH
def test_broadcast_reaches_every_peer_heard_from(make_ipc, udp_type):
    hub = start_peer(make_ipc, "hub", udp_type)
    bystander = start_peer(make_ipc, "quiet", udp_type)  # never sent anything to the hub
    quiet_inbox = collect(bystander, "news")
    peers, inboxes = joined_peers(make_ipc, hub, 3, udp_type)
    assert {s.port for s in hub.sockets} == {p.port for p in peers}

    assert hub.broadcast("news", {"n": 1}) == 3
    wait_until(lambda: all(inboxes), message="the broadcast at every peer")
    for inbox in inboxes:
        assert [data for data, _ in inbox] == [{"n": 1}]
        assert inbox[0][1].port == hub.port
    gevent.sleep(0.05)
    assert quiet_inbox == []


def test_emit_without_address_or_port_broadcasts_with_notice(make_ipc):
    hub_ipc = make_ipc("hub")
    lines = []
    hub_ipc.config.update(silent=False, logger=lines.append, log_in_color=False)
    hub_ipc.serve_net("127.0.0.1", 0, "udp4")
    hub = hub_ipc.server
    hub.start()
    peers, inboxes = joined_peers(make_ipc, hub, 2)

    assert hub.emit({"address": "127.0.0.1"}, "news", "to all") is True
    hub.emit(None, "news", "again")
    wait_until(lambda: all(len(i) == 2 for i in inboxes), message="both broadcasts")
    assert any("broadcasting" in line for line in lines)


def test_peer_table_is_bounded_by_max_connections(make_ipc):
    hub_ipc = make_ipc("hub", max_connections=2)
    lines = []
    hub_ipc.config.update(silent=False, logger=lines.append, log_in_color=False)
    hub_ipc.serve_net("127.0.0.1", 0, "udp4")
    hub = hub_ipc.server
    hub.start()
    peers = [start_peer(make_ipc, f"p{i}") for i in range(3)]
    for p in peers:
        p.emit(("127.0.0.1", hub.port), "join")
        wait_until(lambda p=p: any(s.port == p.port for s in hub.sockets), message="join")
    assert [s.port for s in hub.sockets] == [peers[1].port, peers[2].port]
    assert hub.forgotten == 1
    assert any("max_connections" in line for line in lines)
    hub.forget(hub.sockets[0])
    assert [s.port for s in hub.sockets] == [peers[2].port]


# --- sizes -------------------------------------------------------------------------------


@BOTH
def test_a_60000_byte_event_arrives_whole(make_ipc, udp_type):
    a = start_peer(make_ipc, "a", udp_type)
    b = start_peer(make_ipc, "b", udp_type)
    inbox = collect(b, "blob")
    blob = bytes(range(256)) * 234 + b"x" * 96
    assert len(blob) == 60000
    a.emit((HOSTS[udp_type], b.port), "blob", blob)
    text = "é" * 30000  # 60,000 bytes of UTF-8
    a.emit((HOSTS[udp_type], b.port), "blob", text)
    wait_until(lambda: len(inbox) == 2, message="both 60,000-byte events")
    assert inbox[0][0] == blob
    assert inbox[1][0] == text


@BOTH
def test_largest_datagram_passes_and_one_byte_more_raises(make_ipc, udp_type):
    a = start_peer(make_ipc, "a", udp_type)
    b = start_peer(make_ipc, "b", udp_type)
    inbox = collect(b, "blob")
    markers = collect(b, "marker")
    limit = MAX_PAYLOAD[FAMILY[udp_type]]
    assert a.max_payload == limit
    overhead = len(encoded("blob", b"x" * 1000)) - 1000
    exact = b"x" * (limit - overhead)
    assert len(encoded("blob", exact)) == limit
    dest = (HOSTS[udp_type], b.port)

    with pytest.raises(DatagramTooLargeError) as info:
        a.emit(dest, "blob", exact + b"x")
    assert isinstance(info.value, EncodeError)  # "nothing was written", like any EncodeError
    assert str(limit) in str(info.value)
    with pytest.raises(DatagramTooLargeError):
        a.emit(dest, "blob", b"x" * 70000)
    a.emit(dest, "blob", exact)
    a.emit(dest, "marker")
    wait_until(lambda: markers, message="the marker")
    assert [len(data) for data, _ in inbox] == [len(exact)]


def test_oversize_broadcast_raises_before_sending_to_anyone(make_ipc):
    hub = start_peer(make_ipc, "hub")
    peer = start_peer(make_ipc, "peer")
    inbox = collect(peer, "blob")
    peer.emit(("127.0.0.1", hub.port), "join")
    wait_until(lambda: hub.sockets, message="the peer heard")
    with pytest.raises(DatagramTooLargeError):
        hub.broadcast("blob", b"x" * 66000)
    hub.broadcast("blob", b"small")
    wait_until(lambda: inbox, message="the small one")
    assert [data for data, _ in inbox] == [b"small"]


def test_oversize_reply_becomes_a_remote_error(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b")
    b.handle("big", lambda data, sock: b"x" * 70000)
    with pytest.raises(RemoteError) as info:
        a.request(("127.0.0.1", b.port), "big", None, timeout=5)
    assert info.value.remote_type == "DatagramTooLargeError"


def test_datagram_over_max_message_size_is_refused(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b", max_message_size=1024)
    inbox = collect(b, "blob")
    errors = collect_errors(b)
    a.emit(("127.0.0.1", b.port), "blob", b"x" * 2000)
    a.emit(("127.0.0.1", b.port), "blob", b"x" * 500)
    wait_until(lambda: inbox, message="the small event")
    assert [len(d) for d, _ in inbox] == [500]
    assert len(errors) == 1 and isinstance(errors[0], MessageTooLargeError)
    assert errors[0].socket.port == a.port


# --- bad datagrams -----------------------------------------------------------------------

GOOD = encoded("message", "good")
BAD_DATAGRAMS = {
    "garbage": b"\xc1\xc1 this is not msgpack",
    "truncated": encoded("message", "x" * 100)[:20],
    "not-an-array": b"\x05",
    "reserved-name": encoded("error", "spoofed"),
    "empty": b"",
    "good-then-garbage": GOOD + b"\xc1",
}


@pytest.mark.parametrize("udp_type", ["udp4", "udp6"])
@pytest.mark.parametrize("kind", sorted(BAD_DATAGRAMS))
def test_bad_datagram_is_refused_and_the_next_good_one_delivered(make_ipc, udp_type, kind):
    server = start_peer(make_ipc, "world", udp_type)
    inbox = collect(server, "message")
    errors = collect_errors(server)
    with socket.socket(FAMILY[udp_type], socket.SOCK_DGRAM) as raw:
        raw.bind((HOSTS[udp_type], 0))
        raw.sendto(BAD_DATAGRAMS[kind], (HOSTS[udp_type], server.port))
        wait_until(lambda: errors, message="the error event")
        assert server.sockets == []  # a bad sender is not a broadcast target
        raw.sendto(GOOD, (HOSTS[udp_type], server.port))
        wait_until(lambda: inbox, message="the good datagram")
        sender_port = raw.getsockname()[1]
    assert [data for data, _ in inbox] == ["good"]
    assert len(errors) == 1
    assert isinstance(errors[0], ProtocolError)
    if kind == "reserved-name":
        assert isinstance(errors[0], ForbiddenEventError)
    assert errors[0].socket.port == sender_port
    assert server.refused == 1
    assert [s.port for s in server.sockets] == [sender_port]


def test_a_failing_handler_is_reported_and_receiving_goes_on(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b")
    errors = collect_errors(b)
    inbox = []

    @b.on("message")
    def boom(data, sock):
        if data == "boom":
            raise RuntimeError("handler bug")
        inbox.append(data)

    a.emit(("127.0.0.1", b.port), "message", "boom")
    a.emit(("127.0.0.1", b.port), "message", "fine")
    wait_until(lambda: inbox, message="the second event")
    assert inbox == ["fine"]
    assert len(errors) == 1 and isinstance(errors[0], HandlerError)


def test_allowed_events_apply_both_ways(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b", allowed_events=["ok"])
    errors = collect_errors(b)
    inbox = collect(b, "ok")
    a.emit(("127.0.0.1", b.port), "other", 1)
    a.emit(("127.0.0.1", b.port), "ok", 2)
    wait_until(lambda: inbox, message="the allowed event")
    assert [d for d, _ in inbox] == [2]
    assert len(errors) == 1 and isinstance(errors[0], ForbiddenEventError)
    with pytest.raises(EventNameError):
        b.emit(("127.0.0.1", a.port), "other", 1)
    with pytest.raises(EventNameError):
        a.emit(("127.0.0.1", b.port), "error", 1)


def test_wildcard_sees_every_user_event(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b")
    seen = []
    b.on("*", lambda type, data, sock: seen.append((type, data, sock.port)))
    a.emit(("127.0.0.1", b.port), "one", 1)
    a.emit(("127.0.0.1", b.port), "two", 2)
    wait_until(lambda: len(seen) == 2, message="two events")
    assert sorted(seen) == [("one", 1, a.port), ("two", 2, a.port)]


# --- serve_net forms and addresses ------------------------------------------------------


def test_serve_net_udp_type_only_uses_config_host_and_port(make_ipc):
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    ipc = make_ipc("world", network_port=port)
    server = ipc.serve_net("udp4")
    assert isinstance(server, UDPServer) and ipc.server is server
    server.start()
    assert server.started and server.port == port
    assert server._endpoint.address == ("127.0.0.1", port)  # "localhost" as IPv4
    inbox = collect(server, "message")
    other = start_peer(make_ipc, "hello")
    other.emit({"address": "localhost", "port": port}, "message", "hi")
    wait_until(lambda: inbox, message="the event")


def test_serve_net_port_type_callback(make_ipc):
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    ipc = make_ipc("world")
    started = []
    ipc.serve_net(port, "udp4", lambda: started.append(ipc.server.port))
    assert started == []
    ipc.server.start()
    assert started == [port]


def test_serve_net_host_port_udp6_callback(make_ipc):
    port = free_port(socket.AF_INET6, socket.SOCK_DGRAM)
    ipc = make_ipc("world")
    started = []
    ipc.serve_net("::1", port, "udp6", lambda: started.append(True))
    ipc.server.start()
    assert started == [True]
    assert ipc.server._endpoint.address[:2] == ("::1", port)
    inbox = collect(ipc.server, "message")
    other = start_peer(make_ipc, "hello", "udp6")
    other.emit(("::1", port), "message", "hi")
    wait_until(lambda: inbox, message="the event over ::1")
    assert inbox[0][1].family == "IPv6"


def test_udp6_resolves_localhost_to_ipv6(make_ipc):
    port = free_port(socket.AF_INET6, socket.SOCK_DGRAM)
    ipc = make_ipc("world", network_port=port)
    ipc.serve_net("udp6").start()
    assert ipc.server._endpoint.address[:2] == ("::1", port)


def test_bind_failure_is_a_serve_error(make_ipc):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        ipc = make_ipc("world")
        ipc.serve_net("127.0.0.1", taken.getsockname()[1], "udp4")
        with pytest.raises(ServeError):
            ipc.server.start()
    with pytest.raises(ServeError):
        make_ipc("other").serve_net("::1", 0, "udp4").start()  # no IPv4 reading of ::1


def test_emit_accepts_socket_dict_tuple_list_and_socket_emit(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b")
    inbox = collect(b, "message")

    @a.on("message")
    def reply(data, sock):
        a.emit(sock, "message", "via socket")   # the handler's socket, straight back
        sock.emit("message", "via socket.emit")
        host, port = sock                       # unpacks like a tuple
        a.emit((host, port), "message", "via unpacked")

    a_addr = ("127.0.0.1", a.port)
    b.emit(a_addr, "message", "start")
    b.emit({"address": "127.0.0.1", "port": a.port}, "message", "ignored")  # replies again
    a.emit(["127.0.0.1", b.port], "message", "via list")
    a.emit({"address": "localhost", "port": b.port}, "message", "via dict")
    wait_until(lambda: len(inbox) == 8, message="every form")
    assert sorted({d for d, _ in inbox}) == sorted(
        ["via socket", "via socket.emit", "via unpacked", "via list", "via dict"])
    assert all(sock.port == a.port for _, sock in inbox)


def test_bad_destinations_raise_address_error(make_ipc):
    a4 = start_peer(make_ipc, "a4")
    a6 = start_peer(make_ipc, "a6", "udp6")
    for bad in ("127.0.0.1:8000", 8000, ("127.0.0.1", 8000, 1), b"host"):
        with pytest.raises(AddressError):
            a4.emit(bad, "message")
    with pytest.raises(AddressError):
        a4.emit(("127.0.0.1", 70000), "message")
    with pytest.raises(AddressError):
        a4.emit({"address": "127.0.0.1", "port": "8000"}, "message")
    with pytest.raises(AddressError) as info:
        a6.emit(("127.0.0.1", 8000), "message")
    assert "IPv4" in str(info.value)
    with pytest.raises(AddressError):
        a4.emit(("::1", 8000), "message")
    with pytest.raises(AddressError):
        a4.request(None, "x")


def test_a_send_the_system_refuses_is_a_send_error(make_ipc):
    a = start_peer(make_ipc, "a")
    with pytest.raises(SendError) as info:
        a.emit(("255.255.255.255", 9), "message")  # no SO_BROADCAST: EACCES
    assert isinstance(info.value, OSError) and info.value.errno


def test_emit_before_start_and_after_stop(make_ipc):
    ipc = make_ipc("world")
    server = ipc.serve_net("127.0.0.1", 0, "udp4")
    with pytest.raises(NotConnectedError):
        server.emit(("127.0.0.1", 9), "message")
    server.start()
    port = server.port
    other = start_peer(make_ipc, "other")
    pending = server.request_async(("127.0.0.1", other.port), "never-answered", None, 5)
    server.stop()
    assert not server.started
    with pytest.raises(NotConnectedError):
        pending.get(timeout=1)
    with pytest.raises(NotConnectedError):
        server.emit(("127.0.0.1", other.port), "message")
    with pytest.raises(NotConnectedError):
        server.broadcast("message")
    # the port is free again
    again = make_ipc("again").serve_net("127.0.0.1", port, "udp4").start()
    assert again.port == port


def test_stop_from_inside_a_handler(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b")
    b.on("stop", lambda data, sock: b.stop())
    a.emit(("127.0.0.1", b.port), "stop")
    wait_until(lambda: not b.started, message="the stop")
    wait_until(lambda: b._endpoint.greenlet.dead, message="the receive greenlet to end")


def test_serve_forever_returns_after_stop(make_ipc):
    server = start_peer(make_ipc, "a")
    runner = gevent.spawn(server.serve_forever)
    gevent.sleep(0.01)
    server.stop()
    runner.join(timeout=2)
    assert runner.dead and runner.successful()


def test_define_and_describe(make_ipc):
    a = start_peer(make_ipc, "a")
    b = start_peer(make_ipc, "b")
    b.define.listen.message = "a message string"
    assert a.describe(("127.0.0.1", b.port), timeout=5) == {
        "listen": {"message": "a message string"}, "broadcast": {}}


# --- other wires -------------------------------------------------------------------------


def test_node_ipc_json_wire_over_udp(make_ipc):
    pytest.importorskip("geventipc.wire.nodeipc_codec")
    a = start_peer(make_ipc, "a", wire="node-ipc")
    b = start_peer(make_ipc, "b", wire="node-ipc")
    inbox = collect(b, "message")
    errors = collect_errors(b)
    a.emit(("127.0.0.1", b.port), "message", {"from": "a", "message": "hi"})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b'{"type": "message", "data": "no delimiter"', ("127.0.0.1", b.port))
        wait_until(lambda: errors, message="the error for a partial frame")
        raw.sendto(b'{"type":"message","data":"raw node"}\f', ("127.0.0.1", b.port))
        wait_until(lambda: len(inbox) == 2, message="both events")
    assert [d for d, _ in inbox] == [{"from": "a", "message": "hi"}, "raw node"]


def test_handle_on_a_wire_without_request_reply_is_refused(make_ipc):
    # as on the stream server: a handler no request can ever reach is an error at once
    pytest.importorskip("geventipc.wire.nodeipc_codec")
    a = start_peer(make_ipc, "a", wire="node-ipc")
    with pytest.raises(UnsupportedError):
        a.handle("add", lambda data, sock: data)
    with pytest.raises(UnsupportedError):
        a.request_async(("127.0.0.1", a.port), "add", 1)


def test_raw_mode_one_datagram_is_one_data_event(make_ipc):
    pytest.importorskip("geventipc.wire.raw_codec")
    a = start_peer(make_ipc, "a", raw_buffer=True)
    b = start_peer(make_ipc, "b", raw_buffer=True)
    inbox = collect(b, "data")
    b_addr = ("127.0.0.1", b.port)
    a.emit(b_addr, b"\x00\x01binary")
    a.emit(b_addr, "text")
    a.emit(b_addr, b"x" * 60000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"\xc1 anything goes", b_addr)
        wait_until(lambda: len(inbox) == 4, message="four data events")
    assert [d for d, _ in inbox] == [b"\x00\x01binary", b"text", b"x" * 60000,
                                     b"\xc1 anything goes"]
    assert inbox[0][1].port == a.port
    with pytest.raises(EncodeError):
        a.emit(b_addr, "message", "raw mode has no event types")
    with pytest.raises(UnsupportedError):
        a.request(b_addr, "x")
    assert a.broadcast(b"to nobody yet") == 0
    assert b.broadcast(b"to a and the raw sender") == 2


# --- the examples ------------------------------------------------------------------------


def test_udp_examples_talk_to_each_other():
    import os
    import subprocess
    import sys

    from conftest import ROOT

    world_port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    hello_port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    world = subprocess.Popen([sys.executable, "examples/udp_world.py", str(world_port)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        hello = subprocess.run([sys.executable, "examples/udp_hello.py", str(world_port),
                                str(hello_port)], cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=20)
    finally:
        stop_process(world)
    world_log = world.stderr.read()
    assert hello.returncode == 0, hello.stderr
    assert "Hello world!" in hello.stderr
    assert "hello" in world_log and "Hello" in world_log
    assert "world stopped" in world_log  # SIGTERM stops it cleanly


# --- any datagram at all -----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_target():
    from geventipc import IPC
    inst = IPC(id="fuzz", silent=True)
    server = inst.serve_net("127.0.0.1", 0, "udp4").start()
    yield server
    server.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.one_of(
    st.binary(max_size=200),
    st.builds(lambda good, cut: good[:cut], st.sampled_from(
        [encoded("message", "x" * 40), encoded("m", {"a": [1, 2.5, None]}), GOOD]),
        st.integers(0, 60)),
    st.builds(lambda a, b: a + b, st.just(GOOD), st.binary(min_size=1, max_size=20)),
))
def test_no_datagram_keeps_the_next_good_one_from_being_delivered(fuzz_target, junk):
    # the receive path itself, fed directly: thousands of sockets' worth of examples
    got = []
    fuzz_target.on("message", lambda data, sock: got.append(data))
    try:
        fuzz_target._on_datagram(memoryview(junk), ("127.0.0.1", 9))
        got.clear()
        fuzz_target._on_datagram(memoryview(GOOD), ("127.0.0.1", 9))
        assert got == ["good"]
    finally:
        fuzz_target.off("message")
