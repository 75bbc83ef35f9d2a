"""The cluster envelope: what one node publishes on the channel, around an encoded frame.

``[version, kind, node, seq, wire, target, frame]`` in msgpack:

* ``version``: :data:`VERSION`; a receiver refuses any other (``error`` event);
* ``kind``: ``"b"`` broadcast, ``"d"`` direct (``emit_to``; ``target`` is the client id),
  ``"h"`` heartbeat (``seq`` is the sender's last number, so trailing gaps show too);
* ``node``: the sender's node id (echo suppression: a node drops its own messages);
* ``seq``: the sender's message number, 1, 2, 3... (receivers count gaps);
* ``wire``: the sender's wire name (:func:`wire_name`): a frame is handed as-is to the
  receivers' clients, so nodes of different wires refuse each other's frames;
* ``frame``: the event exactly as the sender's clients receive it (bytes).
"""
from __future__ import annotations

from typing import Any

import msgpack

from ..errors import ClusterError

VERSION = 1
BROADCAST, DIRECT, HEARTBEAT = "b", "d", "h"
KINDS = (BROADCAST, DIRECT, HEARTBEAT)

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def wire_name(config: Any) -> str:
    """What a frame's bytes depend on: the wire and its settings (delimiter, encoding)."""
    if config.raw_buffer:
        return f"raw:{config.encoding}"
    if config.wire == "node-ipc":
        return f"node-ipc:{config.delimiter!r}"
    return str(config.wire)


def encode(kind: str, node: str, seq: int, wire: str, target: str | None,
           frame: bytes) -> bytes:
    """One envelope."""
    return _packb((VERSION, kind, node, seq, wire, target, frame))


def decode(payload: bytes) -> tuple[str, str, int, str, Any, bytes]:
    """``(kind, node, seq, wire, target, frame)``; ClusterError for anything else."""
    try:
        env = _unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ClusterError(f"refused a foreign message on the cluster channel "
                           f"({len(payload)} bytes, not an envelope: {type(exc).__name__})"
                           ) from None
    if type(env) is not list or len(env) != 7:
        raise ClusterError(f"refused a foreign message on the cluster channel "
                           f"({len(payload)} bytes, not an envelope)")
    version, kind, node, seq, wire, target, frame = env
    if version != VERSION:
        raise ClusterError(f"refused a message of envelope version {version!r} from node "
                           f"{node!r} (this node speaks version {VERSION})")
    if (kind not in KINDS or type(node) is not str or type(seq) is not int
            or type(wire) is not str or type(frame) is not bytes
            or (kind == DIRECT and type(target) is not str)):
        raise ClusterError(f"refused a malformed envelope from node {node!r}")
    return kind, node, seq, wire, target, frame
