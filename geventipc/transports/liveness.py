"""Finding dead peers on stream connections: the heartbeat of the msgpack wire.

A peer can vanish without a FIN or a reset (host down, cable out, a firewall dropping
packets, a process stopped): the kernel then never tells us, and a connection that only
receives waits forever. Two layers find it:

* TCP keepalive and ``TCP_USER_TIMEOUT`` (``config.keepalive``, set by
  :func:`~geventipc.transports.stream.tune_tcp`), on every TCP wire, node-ipc's too;
* this heartbeat, on the msgpack wire only (a node-ipc peer would not understand its
  frames): a :class:`Heartbeat` sweeps its connections every ``heartbeat_interval``.
  A connection whose ``bytes_in`` changed since the last sweep is alive, at no cost per
  event; so is one whose real backlog (``BACKLOG`` bytes or more, queued because the
  kernel's buffer was full) shrank: its peer is reading, only slowly. One silent for a
  whole interval is sent ``$ipc.ping``, which any geventipc peer answers with
  ``$ipc.pong``; one silent for ``heartbeat_timeout`` is closed as lost with
  :class:`~geventipc.errors.PeerTimeoutError`.
  A silent peer is thus found within ``heartbeat_timeout + heartbeat_interval``.

Only a peer that announced it answers pings (``"ping": true`` in its ``$ipc.hello`` or
``$ipc.welcome``) is ever timed out, so hand-written msgpack peers and older geventipc
versions are never cut by it. One loop timer serves every connection of a server (or the
one of a client): an idle connection costs one small list.
"""
from __future__ import annotations

import socket as _stdsocket
import struct
import time
from typing import Any

from gevent.hub import get_hub

from ..errors import PeerTimeoutError

#: server -> client, first frame of a connection the server has taken: its heartbeat
WELCOME = "$ipc.welcome"
#: server -> client, the only frame of a connection refused at ``max_connections``
REFUSED = "$ipc.refused"
#: either way: "are you there?"; answered with PONG
PING = "$ipc.ping"
#: the answer to PING
PONG = "$ipc.pong"

#: SO_LINGER on, 0 s: close() resets and throws away what the kernel still holds
_RESET = struct.pack("ii", 1, 0)

#: queued bytes from which a shrinking queue counts as a sign of life: that much is never
#: queued for long unless the kernel's send buffer is full, and it drains only when the
#: peer's process reads (a just-queued event, flushed at the next loop turn, proves
#: nothing: a busy sender to a vanished peer must still be found)
BACKLOG = 64 * 1024


def capabilities(interval_ms: float, timeout_ms: float) -> dict[str, Any]:
    """What a side announces in its hello or welcome: it answers pings, and its own
    heartbeat settings (informative: each side times out its peer by its own)."""
    return {"ping": True, "heartbeat": interval_ms, "heartbeat_timeout": timeout_ms}


class Heartbeat:
    """Pings silent connections and closes those silent past the timeout, all from one
    repeating loop timer that runs only while something is watched."""

    __slots__ = ("interval", "timeout", "ping", "_conns", "_timer", "_last")

    def __init__(self, interval_ms: float, timeout_ms: float, ping: bytes) -> None:
        #: seconds between sweeps (a connection silent this long is pinged)
        self.interval = interval_ms / 1000.0
        #: seconds of silence after which a connection is closed as lost
        self.timeout = timeout_ms / 1000.0
        #: the encoded ``$ipc.ping`` frame (one object: clients leave it out of a requeue)
        self.ping = ping
        # connection -> [bytes_in, pending bytes, time it last showed life, pinged since]
        self._conns: dict[Any, list[Any]] = {}
        self._timer: Any = None
        self._last = 0.0

    def __len__(self) -> int:
        return len(self._conns)

    def watch(self, conn: Any) -> None:
        """Start watching ``conn`` (a StreamConnection whose peer answers pings)."""
        now = time.monotonic()
        self._conns[conn] = [conn.bytes_in, conn.pending_bytes, now, False]
        if self._timer is None:
            self._last = now
            self._timer = get_hub().loop.timer(self.interval, self.interval)
            self._timer.start(self._sweep)

    def unwatch(self, conn: Any) -> None:
        """Stop watching ``conn`` (closed); the timer stops with the last one."""
        if self._conns.pop(conn, None) is not None and not self._conns:
            self.stop()

    def stop(self) -> None:
        """Stop the timer and forget every connection."""
        self._conns.clear()
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None

    def _sweep(self) -> None:
        now = time.monotonic()
        # a sweep that comes late means this process was stalled (a handler hogging the
        # hub, a suspended VM): what the peers sent meanwhile is unread, so silence now
        # proves nothing; give every peer a fresh interval
        stalled = now - self._last > self.interval * 1.5
        self._last = now
        ping, timeout = self.ping, self.timeout
        for conn, seen in list(self._conns.items()):
            if conn.closed:
                continue  # its owner unwatches it when it has closed
            got, pending = conn.bytes_in, conn.pending_bytes
            if got != seen[0] or stalled or (seen[1] >= BACKLOG and pending < seen[1]):
                seen[0], seen[1], seen[2], seen[3] = got, pending, now, False
                continue
            seen[1] = pending
            silent = now - seen[2]
            # never closed without one ping first (even with a timeout shorter than the
            # interval): a live peer always gets the chance to answer
            if silent >= timeout - 0.001 and seen[3]:
                del self._conns[conn]
                # a reset, not a FIN after the unsent tail: an orphaned socket would go on
                # retransmitting it, and should the path come back, old events could reach
                # a peer after those of a newer connection (out of order)
                try:
                    conn.sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_LINGER, _RESET)
                except (OSError, ValueError, AttributeError):
                    pass
                conn.abort(PeerTimeoutError(
                    f"{conn.who()} sent nothing for {silent:.1f} s, not even a heartbeat "
                    f"answer (heartbeat_timeout={self.timeout * 1000:g} ms): closed as lost"))
            elif pending + len(ping) <= conn.max_pending_bytes:
                # a full queue is left alone: the ping would trip the overflow policy,
                # and the writer's progress (above) already says whether the peer reads
                conn.write(ping)
                seen[3] = True
            else:
                seen[3] = True   # its backlog stands in for the ping


__all__ = ["WELCOME", "REFUSED", "PING", "PONG", "Heartbeat", "capabilities"]
