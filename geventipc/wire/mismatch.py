"""Recognising a peer on another wire or transport from the first bytes it sends.

Sans-IO: the read loop asks :func:`mismatch` about the first read of a connection only.
Each pattern is one no valid frame of this side's wire can start with, so a match is
never a false alarm:

* ``{`` (then ``"``) on the msgpack wire is node-ipc's JSON wire (0x7b would be a bare
  integer there, never an event array);
* a msgpack array header (0x92/0x93) then a string or integer on node-ipc's JSON wire is
  geventipc's msgpack wire (no JSON text starts with 0x92);
* 0x16 0x03 (a TLS handshake record) or 0x15 0x03 (a TLS alert) on a plain connection
  is TLS.

:func:`notice` builds a ``$ipc.wire`` event in the peer's own wire, so that a geventipc
peer can say what is wrong on its side too (a node-ipc peer ignores an event it does not
listen for).
"""
from __future__ import annotations

import json
from typing import Any

import msgpack

from ..errors import WireMismatchError

#: the reserved event a side sends, in the peer's wire, before closing on a mismatch
WIRE_NOTICE = "$ipc.wire"

_SET_WIRE = {
    "node-ipc": "config.wire = 'node-ipc'",
    "msgpack": "config.wire = 'msgpack' (the default)",
}


def _is_tls(first: bytes) -> bool:
    return len(first) >= 2 and first[0] in (0x15, 0x16) and first[1] == 0x03


def _is_msgpack(first: bytes) -> bool:
    # [type, data] or [type, data, id] / [id, status, data]: a str or int comes next
    return (len(first) >= 2 and first[0] in (0x92, 0x93)
            and (first[1] <= 0x7f or 0xa0 <= first[1] <= 0xbf or first[1] in (
                0xcc, 0xcd, 0xce, 0xcf, 0xd9, 0xda, 0xdb)))


def _is_json(first: bytes) -> bool:
    return first[:1] == b"{" and first[1:].lstrip()[:1] in (b'"', b"}", b"")


def peer_wire(first: bytes) -> str | None:
    """The wire or transport ``first`` shows: ``"tls"``, ``"msgpack"``, ``"node-ipc"``,
    or None if it shows none of them."""
    if _is_tls(first):
        return "tls"
    if _is_msgpack(first):
        return "msgpack"
    if _is_json(first):
        return "node-ipc"
    return None


def describe(theirs: str, ours: str, tls: bool = False) -> str:
    """What to set when the peer uses ``theirs`` and this side ``ours`` (wire names, or
    ``"tls"`` for a TLS peer; ``tls`` true: this side is the TLS one)."""
    if theirs == "tls":
        return ("the peer speaks TLS and this side does not: set tls on this side (config.tls "
                "/ the tls option), or connect without TLS")
    if tls:
        return ("the peer speaks plain TCP to this TLS side: set tls on the peer too "
                "(config.tls), or serve without TLS")
    return (f"the peer speaks {_name(theirs)} and this side {_name(ours)}: set "
            f"{_SET_WIRE[theirs]} on this side, or {_SET_WIRE[ours]} on the peer")


def _name(wire: str) -> str:
    return "node-ipc's JSON wire" if wire == "node-ipc" else "geventipc's msgpack wire"


def mismatch(first: bytes | bytearray | memoryview, wire: str) -> WireMismatchError | None:
    """The error for a connection on ``wire`` whose peer's first bytes are ``first``, or
    None if they may be this wire's (or show nothing known)."""
    first = bytes(first[:16])
    theirs = peer_wire(first)
    if theirs is None or theirs == wire:
        return None
    return WireMismatchError(describe(theirs, wire))


def notice(first: bytes | bytearray | memoryview, info: dict[str, Any]) -> bytes | None:
    """A ``$ipc.wire`` event carrying ``info``, encoded in the wire ``first`` shows (so
    the peer can decode it), or None for a TLS peer or an unknown one."""
    theirs = peer_wire(bytes(first[:16]))
    if theirs == "msgpack":
        return msgpack.packb([WIRE_NOTICE, info], use_bin_type=True)
    if theirs == "node-ipc":   # node-ipc's default delimiter
        return json.dumps({"type": WIRE_NOTICE, "data": info},
                          separators=(",", ":")).encode() + b"\f"
    return None


__all__ = ["WIRE_NOTICE", "describe", "mismatch", "notice", "peer_wire"]
