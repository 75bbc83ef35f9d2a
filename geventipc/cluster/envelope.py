"""The cluster envelope: what one node publishes on the channel, around encoded frames.

``[version, node, kind, first, count, wire, target, frames]`` in msgpack:

* ``version``: :data:`VERSION`; a receiver refuses any other (``error`` event);
* ``node``: the sender's node id; second, so a node drops its own messages (which Redis
  pub/sub sends back to it) by comparing a prefix, without decoding them;
* ``kind``: ``"b"`` broadcasts, ``"d"`` one direct event (``emit_to``; ``target`` is the
  client id), ``"h"`` heartbeat (``first`` is the sender's last number, ``count`` 0, so a
  gap at the end of a stream shows too);
* ``first``, ``count``: the sender numbers every event it publishes 1, 2, 3...; this
  envelope carries numbers ``first .. first + count - 1`` (receivers count the gaps);
* ``wire``: the sender's wire name (:func:`wire_name`): the frames go as-is to the
  receivers' clients, so nodes of different wires refuse each other's frames;
* ``frames``: ``count`` encoded events back to back, exactly the bytes the sender's own
  clients received. Every wire's frames delimit themselves, so a receiver never splits
  them: it writes the whole run to its clients as one chunk, as a local broadcast does.
"""
from __future__ import annotations

from typing import Any

import msgpack

from ..errors import ClusterError

VERSION = 1
BROADCAST, DIRECT, HEARTBEAT = "b", "d", "h"
KINDS = (BROADCAST, DIRECT, HEARTBEAT)
FIELDS = 8

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def wire_name(config: Any) -> str:
    """What a frame's bytes depend on: the wire and its settings (delimiter, encoding)."""
    if config.raw_buffer:
        return f"raw:{config.encoding}"
    if config.wire == "node-ipc":
        return f"node-ipc:{config.delimiter!r}"
    return str(config.wire)


def echo_prefix(node: str) -> bytes:
    """The first bytes of every envelope ``node`` publishes."""
    return bytes([0x90 | FIELDS]) + _packb(VERSION) + _packb(node)


def encode(node: str, kind: str, first: int, count: int, wire: str, target: str | None,
           frames: bytes) -> bytes:
    """One envelope."""
    return _packb((VERSION, node, kind, first, count, wire, target, frames))


def decode(payload: bytes) -> tuple[str, str, int, int, str, Any, bytes]:
    """``(node, kind, first, count, wire, target, frames)``; ClusterError for anything
    that is not a well-formed envelope of this version."""
    try:
        env = _unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ClusterError(f"refused a foreign message on the cluster channel "
                           f"({len(payload)} bytes, not an envelope: {type(exc).__name__})"
                           ) from None
    if type(env) is not list or not env:
        raise ClusterError(f"refused a foreign message on the cluster channel "
                           f"({len(payload)} bytes, not an envelope)")
    if env[0] != VERSION:
        node = env[1] if len(env) > 1 else None
        raise ClusterError(f"refused a message of envelope version {env[0]!r} from node "
                           f"{node!r} (this node speaks version {VERSION})")
    if len(env) != FIELDS:
        raise ClusterError(f"refused a foreign message on the cluster channel "
                           f"({len(payload)} bytes, not an envelope)")
    _, node, kind, first, count, wire, target, frames = env
    if (kind not in KINDS or type(node) is not str or type(first) is not int
            or type(count) is not int or count < 0 or type(wire) is not str
            or type(frames) is not bytes or (kind == DIRECT and type(target) is not str)):
        raise ClusterError(f"refused a malformed envelope from node {node!r}")
    return node, kind, first, count, wire, target, frames
