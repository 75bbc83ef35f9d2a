"""One server's membership of a cluster: publish, subscribe, presence, outages.

Three connections to the engine, each driven by greenlets (never the hub): a *publish*
connection written by one greenlet in pipelined batches (a second greenlet reads and
discards its replies, so the writer never waits a round trip), a *subscribe* connection
read by one greenlet, and a *query* connection opened on demand for
:meth:`Cluster.sockets`. A supervisor greenlet (re)connects them with backoff; while the
engine is away, local clients are served as usual and what would have been published is
counted as ``unsent`` (receivers see the gap in the numbering).
"""
from __future__ import annotations

import os
import random
import secrets
import socket as _stdsocket
import time
from typing import Any, Callable

import gevent
import hiredis
from gevent.event import Event
from gevent.lock import BoundedSemaphore

from ..errors import ClusterError
from ..stats import add_section
from ..transports.acceptor import Throttle
from .envelope import BROADCAST, DIRECT, HEARTBEAT, decode, echo_prefix, encode, wire_name
from .resp import READ_SIZE, RespConnection, pack
from .url import EngineAddress, parse_url

#: events queued for the engine before further ones are counted unsent instead
MAX_PENDING = 100_000
#: bytes of such events queued before further ones are counted unsent instead
MAX_PENDING_BYTES = 64 * 1024 * 1024
#: bytes of frames one envelope carries at most (more make several envelopes)
ENVELOPE_BYTES = 256 * 1024
#: first and largest pause between reconnection attempts, seconds
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
#: seconds to open a connection and to wait for a command's reply
CONNECT_TIMEOUT = 2.0
#: heartbeats a node may miss before its presence expires
TTL_BEATS = 3
#: heartbeats between full rewrites of a node's presence set (else only its TTL renewed)
REWRITE_BEATS = 10
#: seconds between error events about refused (foreign) messages, and between log
#: lines about missed events
REFUSED_REPORT_INTERVAL = 1.0


def _guard(func: Callable[..., Any], *args: Any) -> BaseException | None:
    """Run a connection greenlet; return what ended it instead of letting gevent print it."""
    try:
        func(*args)
    except gevent.GreenletExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure ends the session, never the node
        return exc
    return ConnectionError("connection greenlet ended")


class Cluster:
    """A server's membership of the cluster named by its ``config.id`` on one engine.

    Made by :func:`geventipc.cluster.attach`; the server calls :meth:`start`,
    :meth:`publish` (from ``broadcast``) and :meth:`close` (from ``stop``).
    """

    def __init__(self, server: Any, address: EngineAddress, *, node_id: str | None = None,
                 heartbeat: float = 1.0, max_pending: int = MAX_PENDING) -> None:
        self.server = server
        self.address = address
        #: this node's id in the cluster: new for every start, so numbering starts afresh
        self.node_id = node_id or (
            f"{_stdsocket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
        #: seconds between heartbeats; presence expires after TTL_BEATS of them
        self.heartbeat = heartbeat
        self.ttl = heartbeat * TTL_BEATS
        self.max_pending = max_pending
        self.wire = wire_name(server.config)
        namespace = f"geventipc:{server.config.id}"
        self.channel = f"{namespace}:events".encode()
        self._namespace = namespace
        self._nodes_key = f"{namespace}:nodes"
        self._clients_key = f"{namespace}:clients:{self.node_id}"
        # PUBLISH <channel> <payload>, all but the payload packed once
        self._head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n" % (len(self.channel), self.channel)
        self._echo = echo_prefix(self.node_id)
        self._seq = 0                   # the last number given to an event
        self._frames: list[bytes] = []  # broadcast frames not yet in an envelope
        self._out: list[bytes] = []     # packed PUBLISH commands, in publish order
        self._queued = 0                # events of ours in _out
        self._room = 0                  # frames publish() may still queue (0 while down)
        self._bytes_room = 0            # and their bytes
        self._cmds: list[bytes] = []    # presence commands (order among them only)
        self._wake = Event()
        self._woken = False
        self._kick = Event()
        self._up = False
        self._outage = False
        self._outage_since = 0.0
        self._closed = False
        self._runner: gevent.Greenlet | None = None
        self._delayed: list[Any] = []
        self._last: dict[str, int] = {}     # origin node -> last number seen
        self._wire_refused: set[str] = set()
        # one report a second at most: a sustained loss or attack must not flood
        self._refusal_reports = Throttle(REFUSED_REPORT_INTERVAL)
        self._gap_lines = Throttle(REFUSED_REPORT_INTERVAL)
        self._published_ids: list[str] | None = None
        self._beat = 0
        self._query: RespConnection | None = None
        self._query_lock = BoundedSemaphore()
        self._view: set[str] = set()
        #: events handed to the engine (broadcasts and emit_to)
        self.published = 0
        #: events not handed to the engine (engine away, or max_pending reached)
        self.unsent = 0
        #: broadcasts from other nodes delivered to the local clients
        self.received = 0
        #: emit_to events from other nodes delivered to a local client
        self.received_direct = 0
        #: messages of other nodes this node missed, from gaps in their numbering
        self.gaps = 0
        #: messages refused: not an envelope, another version, another wire
        self.refused = 0
        #: emit_to events for a client that no node here had any more
        self.undeliverable = 0
        #: error replies from the engine (a missing ACL right, a full memory...)
        self.engine_errors = 0
        #: outages so far (each fired one ``error`` event)
        self.outages = 0
        #: successful (re)connections to the engine
        self.connects = 0

    def __repr__(self) -> str:
        state = "up" if self._up else "down"
        return f"<Cluster node={self.node_id!r} {self.address} {state}>"

    # --- state ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the publish and subscribe connections are up."""
        return self._up

    def stats(self) -> dict[str, Any]:
        """The counters, with ``node_id``, ``connected`` and the nodes heard from."""
        return {
            "node_id": self.node_id, "connected": self._up, "published": self.published,
            "unsent": self.unsent, "received": self.received,
            "received_direct": self.received_direct, "gaps": self.gaps,
            "refused": self.refused, "undeliverable": self.undeliverable,
            "outages": self.outages, "connects": self.connects,
            "engine_errors": self.engine_errors,
            "pending": len(self._frames) + self._queued, "origins": len(self._last),
        }

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Join: connect in the background (never blocks the caller, never raises)."""
        if self._runner is None and not self._closed:
            self._runner = gevent.spawn(self._run)
            server = self.server
            server.on("connect", self._on_connect)
            server.on("socket.disconnected", self._on_disconnect)

    def close(self, timeout: float = 1.0) -> None:
        """Leave: withdraw this node's presence (best effort, bounded) and disconnect."""
        if self._closed:
            return
        self._closed = True
        for timer in self._delayed:
            timer.kill(block=False)
        if self._runner is not None:
            self._runner.kill(timeout=timeout)
        self._up = False
        self._room = 0
        if self._query is not None:
            self._query.close()
        if not self.connects:
            return  # never joined: nothing to withdraw
        # presence would expire by itself within the TTL; saying goodbye makes it at once
        try:
            with gevent.Timeout(timeout, False):
                conn = RespConnection(self.address, timeout)
                try:
                    conn.pipeline([pack("DEL", self._clients_key),
                                   pack("ZREM", self._nodes_key, self.node_id)])
                finally:
                    conn.close()
        except (OSError, ClusterError, hiredis.ProtocolError):
            pass  # the engine is away: the TTL withdraws it

    # --- publishing (called from Server.broadcast: must never block or raise) ------------

    def publish(self, frame: bytes) -> None:
        """Publish a broadcast's encoded frame to the other nodes (queued, not waited).

        The frames of one greenlet's run go out together, in as few envelopes as
        ENVELOPE_BYTES allows, when the publisher greenlet next runs."""
        frames = self._frames
        if len(frames) < self._room and self._bytes_room > 0:
            frames.append(frame)
            self._bytes_room -= len(frame)
            if not self._woken:
                self._woken = True
                self._wake.set()
            return
        self._seq += 1  # numbered all the same: receivers count it missing
        self.unsent += 1

    def _seal(self) -> None:
        """Put the pending broadcast frames into envelopes, numbered, in _out."""
        frames = self._frames
        if not frames:
            return
        self._frames = []
        start = 0
        total = len(frames)
        while start < total:
            size, end = 0, start
            while end < total and (size < ENVELOPE_BYTES or end == start):
                size += len(frames[end])
                end += 1
            count = end - start
            chunk = frames[start] if count == 1 else b"".join(frames[start:end])
            self._put(encode(self.node_id, BROADCAST, self._seq + 1, count, self.wire, None,
                             chunk))
            self._seq += count
            self._queued += count
            self._room = self.max_pending if self._up else 0
            start = end

    def _put(self, env: bytes) -> None:
        self._out.append(b"%b$%d\r\n%b\r\n" % (self._head, len(env), env))

    def emit_to(self, client_id: str, type: str, data: Any = None) -> bool:
        """Send one event to the client that announced ``client_id``, on whichever node.

        True if it was written to a local client or published for the node that has it;
        False if no node has a client of that id (presence lags connects by up to a
        heartbeat) or the engine is away. Like broadcasts, delivery is at most once.
        """
        server = self.server
        if server.emit_to_local(client_id, type, data):
            return True
        if client_id not in self._view:
            try:
                self.sockets()
            except ClusterError:
                return False
            if client_id not in self._view:
                return False
        encoder = server._encoder
        if encoder.framed and type not in server.names.good:
            server.names.check_outgoing(type)
        frame = encoder.encode_event(type, data)
        if (not self._up or len(self._frames) + self._queued >= self.max_pending
                or self._bytes_room <= 0):
            self._seq += 1
            self.unsent += 1
            return False
        self._bytes_room -= len(frame)
        self._seal()  # after the broadcasts made before it, as on one connection
        self._seq += 1
        self._put(encode(self.node_id, DIRECT, self._seq, 1, self.wire, client_id, frame))
        self._queued += 1
        self._room = (self.max_pending - self._queued) if self._up else 0
        if not self._woken:
            self._woken = True
            self._wake.set()
        return True

    # --- presence ------------------------------------------------------------------------

    def sockets(self) -> list[tuple[str, str]]:
        """``[(client_id, node_id), ...]`` of every node alive in the cluster.

        Asks the engine (blocks the calling greenlet for a round trip or two, never the
        hub); this node's own clients come from its live list. ClusterError if the engine
        cannot be asked.
        """
        mine = [(cid, self.node_id) for cid in self._local_ids()]
        with self._query_lock:
            try:
                if self._query is None:
                    self._query = RespConnection(self.address, CONNECT_TIMEOUT)
                conn = self._query
                nodes = [n.decode() for n in conn.call("ZRANGE", self._nodes_key, 0, -1)]
                others = [n for n in nodes if n != self.node_id]
                members = conn.pipeline(
                    [pack("SMEMBERS", f"{self._namespace}:clients:{n}") for n in others])
            except (OSError, hiredis.ProtocolError) as exc:
                if self._query is not None:
                    self._query.close()
                    self._query = None
                raise ClusterError(f"cluster engine {self.address} unreachable: {exc}") from None
        found = list(mine)
        for node, ids in zip(others, members):
            if isinstance(ids, list):
                found.extend((cid.decode(), node) for cid in ids)
        found.sort()
        self._view = {cid for cid, _ in found}
        return found

    def _local_ids(self) -> list[str]:
        return sorted({conn.id for conn in self.server.sockets if conn.id is not None})

    def _on_connect(self, socket: Any) -> None:
        # the client's id comes with its hello, just after connect: look again shortly
        if not self._closed:
            self._delayed.append(gevent.spawn_later(0.05, self._kick.set))
            if len(self._delayed) > 64:
                self._delayed = [t for t in self._delayed if not t.dead]

    def _on_disconnect(self, socket: Any, destroyed_id: Any) -> None:
        self._kick.set()

    def _presence(self) -> None:
        """Queue this node's heartbeat envelope and presence refresh."""
        # not sealed first: the frames still queued get numbers after this one's
        self._put(encode(self.node_id, HEARTBEAT, self._seq, 0, self.wire, None, b""))
        ttl_ms = int(self.ttl * 1000)
        ids = self._local_ids()
        key = self._clients_key
        cmds = self._cmds
        self._beat += 1
        # rewritten whole when it changed, and every REWRITE_BEATS beats in case the
        # engine lost it (eviction, a restart we did not see, a FLUSHDB)
        if ids != self._published_ids or self._beat % REWRITE_BEATS == 0:
            cmds.append(pack("MULTI"))
            cmds.append(pack("DEL", key))
            if ids:
                cmds.append(pack("SADD", key, *ids))
                cmds.append(pack("PEXPIRE", key, ttl_ms))
            cmds.append(pack("EXEC"))
            self._published_ids = ids
        else:
            cmds.append(pack("PEXPIRE", key, ttl_ms))
        now_ms = int(time.time() * 1000)
        cmds.append(pack("ZADD", self._nodes_key, now_ms, self.node_id))
        # a node that died long ago leaves its id here: prune (its set expired by itself)
        cmds.append(pack("ZREMRANGEBYSCORE", self._nodes_key, "-inf",
                         now_ms - int(max(60.0, 20 * self.ttl) * 1000)))
        if not self._woken:
            self._woken = True
            self._wake.set()

    # --- connection greenlets ------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        while not self._closed:
            pub = sub = None
            children: list[gevent.Greenlet] = []
            try:
                pub = RespConnection(self.address, CONNECT_TIMEOUT)
                sub = RespConnection(self.address, CONNECT_TIMEOUT)
                sub.send(pack("SUBSCRIBE", self.channel))
                reply = sub.read()
                if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                    raise ClusterError(f"cluster engine refused SUBSCRIBE: {reply!r}")
                self._connected()
                backoff = BACKOFF_MIN
                children = [gevent.spawn(_guard, self._publisher, pub),
                            gevent.spawn(_guard, self._drainer, pub),
                            gevent.spawn(_guard, self._reader, sub),
                            gevent.spawn(_guard, self._beats)]
                done = gevent.wait(children, count=1)
                raise done[0].value or ConnectionError("connection greenlet ended")
            except gevent.GreenletExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - an outage, never a crash
                self._disconnected(exc)
            finally:
                self._up = False
                self._room = 0
                if children:
                    gevent.killall(children, block=True, timeout=1.0)
                for conn in (pub, sub):
                    if conn is not None:
                        conn.close()
            if self._closed:
                return
            gevent.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _connected(self) -> None:
        self._up = True
        self._room = self.max_pending - self._queued
        self._bytes_room = MAX_PENDING_BYTES
        self.connects += 1
        self._published_ids = None  # the engine may have lost our presence: write it whole
        log = self.server.log
        if self._outage:
            self._outage = False
            log("<notice>geventipc: cluster engine</notice>", str(self.address),
                f"<notice>is back after {time.monotonic() - self._outage_since:.1f} s; "
                f"node {self.node_id} re-subscribed</notice>")
        else:
            log("<notice>geventipc: node</notice>", self.node_id,
                "<notice>joined cluster</notice>", self.server.config.id,
                "<notice>at</notice>", str(self.address))

    def _disconnected(self, exc: BaseException) -> None:
        self._up = False
        self._room = 0
        # what was queued and not written is lost (at most once); numbered all the
        # same, so receivers count it missing
        lost = self._queued + len(self._frames)
        self._seq += len(self._frames)
        self.unsent += lost
        self._queued = 0
        self._frames = []
        self._out = []
        self._cmds = []
        if self._closed or self._outage:
            return
        self._outage = True
        self._outage_since = time.monotonic()
        self.outages += 1
        error = ClusterError(
            f"cluster engine {self.address} unreachable ({type(exc).__name__}: {exc}); "
            f"serving local clients only and reconnecting")
        self.server.log("<warn>geventipc:</warn>", str(error))
        self.server.report(error)

    def _publisher(self, conn: RespConnection) -> None:
        wake = self._wake
        while True:
            wake.wait()
            wake.clear()
            self._woken = False
            self._seal()
            out, cmds = self._out, self._cmds
            if not out and not cmds:
                continue
            self._out, self._cmds = [], []
            self.published += self._queued
            self._queued = 0
            self._room = self.max_pending if self._up else 0
            self._bytes_room = MAX_PENDING_BYTES if self._up else 0
            out.extend(cmds)
            conn.send(b"".join(out))

    def _drainer(self, conn: RespConnection) -> None:
        # replies to PUBLISH (receiver counts) and presence commands: only errors matter
        reader, recv = conn.reader, conn.sock.recv
        conn.sock.settimeout(None)
        while True:
            data = recv(READ_SIZE)
            if not data:
                raise ConnectionError("the cluster engine closed the publish connection")
            reader.feed(data)
            while True:
                reply = reader.gets()
                if reply is False:
                    break
                if isinstance(reply, hiredis.ReplyError):
                    # e.g. an ACL user without +publish: an error event, rate-limited
                    # like refused messages (every publish would answer the same)
                    self.engine_errors += 1
                    self._refuse(ClusterError(f"cluster engine answered an error: {reply}"),
                                 count=False)

    def _beats(self) -> None:
        kick = self._kick
        while True:
            self._presence()
            kick.wait(self.heartbeat)
            kick.clear()

    def _reader(self, conn: RespConnection) -> None:
        # our own heartbeat comes back every `heartbeat` seconds: silence for a TTL means
        # the engine is stopped or the link is dead, whatever TCP says
        sock, reader = conn.sock, conn.reader
        sock.settimeout(self.ttl)
        recv, feed, gets = sock.recv, reader.feed, reader.gets
        on_message = self._on_message
        echo = self._echo
        while True:
            try:
                data = recv(READ_SIZE)
            except _stdsocket.timeout:
                raise ConnectionError(f"no message from the engine for {self.ttl:.1f} s "
                                      f"(not even this node's own heartbeat)") from None
            if not data:
                raise ConnectionError("the cluster engine closed the subscribe connection "
                                      "(at client-output-buffer-limit pubsub, or shut down)")
            feed(data)
            while True:
                msg = gets()
                if msg is False:
                    break
                if type(msg) is list and len(msg) == 3 and msg[0] == b"message":
                    payload = msg[2]
                    # our own (pub/sub sends them back): local clients had them first,
                    # from broadcast itself; dropped without decoding
                    if not payload.startswith(echo):
                        on_message(payload)

    # --- receiving -----------------------------------------------------------------------

    def _on_message(self, payload: bytes) -> None:
        try:
            node, kind, first, count, wire, target, frames = decode(payload)
        except ClusterError as exc:
            self._refuse(exc)
            return
        if node == self.node_id:
            return
        last = self._last.get(node)
        if kind == HEARTBEAT:  # first is the sender's last number
            if last is not None and first > last:
                self._missed(node, last, first - last)
            if last is None or first > last:
                self._last[node] = first
            return
        if last is not None:
            if first > last + 1:
                self._missed(node, last, first - last - 1)
            elif first <= last:
                return  # seen already: at most once
        self._last[node] = first + count - 1
        if wire != self.wire:
            self.refused += count
            if node not in self._wire_refused:
                self._wire_refused.add(node)
                self.server.report(ClusterError(
                    f"refused frames from node {node!r}: it speaks wire {wire!r}, this node "
                    f"{self.wire!r}; nodes of one cluster must share wire settings"))
            return
        if kind == BROADCAST:
            self.received += count
            self.server.broadcast_frame(frames, count)
        elif self.server.send_frame(target, frames):
            self.received_direct += 1
        else:
            self.undeliverable += 1

    def _missed(self, node: str, last: int, missed: int) -> None:
        self.gaps += missed
        held = self._gap_lines.allow(missed)
        if held is None:
            return
        more = f" and {held} more since the last line" if held else ""
        self.server.log("<warn>geventipc: cluster missed</warn>", missed,
                        "<warn>event(s) from node</warn>", node,
                        f"<warn>(numbers {last + 1}..{last + missed}){more}; "
                        f"{self.gaps} in all</warn>")

    def _refuse(self, exc: ClusterError, count: bool = True) -> None:
        if count:
            self.refused += 1
        held = self._refusal_reports.allow()
        if held is None:
            return
        if held:
            exc = ClusterError(f"{exc} (and {held} more refused since the last report)")
        self.server.report(exc)


def _stats_section(endpoint: Any) -> dict[str, Any] | None:
    """``stats()["cluster"]`` of a server that belongs to a cluster."""
    cluster = getattr(endpoint, "cluster", None)
    return cluster.stats() if isinstance(cluster, Cluster) else None


add_section("cluster", _stats_section, gauges=("connected", "pending", "origins"))


def attach(server: Any, url: str | None = None, *, node_id: str | None = None) -> Cluster:
    """Join ``server`` to the cluster at ``url`` (default: ``server.config.cluster``).

    Sets ``server.cluster``; the cluster starts with the server (at once if it has
    started already) and closes with ``server.stop()``. Returns the :class:`Cluster`.
    A server made with ``config.cluster`` set has called this already: for it (or any
    server already in a cluster) ``attach`` returns that cluster, and ClusterError if
    ``url`` names another one (a second node would outlive ``stop``).
    """
    url = url if url is not None else server.config.cluster
    if url is None:
        raise ClusterError("no cluster URL: set config.cluster or pass url")
    current = server.cluster
    if current is not None:
        if parse_url(url) != current.address:
            raise ClusterError(f"this server is already a node of the cluster at "
                               f"{current.address}; it cannot join {parse_url(url)} too")
        return current
    address = parse_url(url)
    heartbeat = server.config.cluster_heartbeat / 1000.0
    cluster = Cluster(server, address, node_id=node_id, heartbeat=heartbeat)
    server.cluster = cluster
    if server.started:
        cluster.start()
    return cluster
