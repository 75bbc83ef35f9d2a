"""Wire formats: sans-IO codecs, bytes in and frames out, frames in and bytes out.

Every codec has the same shape, so the transports never care which one is in use:

* ``frames(data)`` -> an iterable of the frames ``data`` completes, decoded as it is
  iterated (one-pass receive; names are checked by the dispatcher), then ``settle(count)``;
  ``fault(exc)`` words an exception the iteration raised as a ProtocolError;
* ``feed(data) -> list`` of checked frames; raises :class:`~geventipc.errors.ProtocolError`
  (carrying the good frames before the fault) on bad input;
* ``buffered``: bytes of an incomplete frame held back (0 if none; may be an upper bound),
  ``incomplete()``: whether a frame is pending, exactly; ``read_size``: bytes to read at once;
* ``encode_event(type, data) -> bytes``; ``encode_request`` / ``encode_reply`` where
  ``supports_requests`` is true;
* ``framed``: False for raw mode, where every read is one ``data`` frame.

A frame is ``[type, data]`` (event), ``[type, data, request_id]`` (request) or
``[request_id, status, data]`` (reply).
"""
from __future__ import annotations

from typing import Any

from .msgpack_codec import (
    READ_SIZE, REPLY_ERROR, REPLY_NO_HANDLER, REPLY_OK, MsgpackCodec, check_frame,
)
from .names import INTERNAL_PREFIX, LIFECYCLE_EVENTS, EventNames

__all__ = [
    "READ_SIZE", "REPLY_OK", "REPLY_ERROR", "REPLY_NO_HANDLER", "INTERNAL_PREFIX",
    "LIFECYCLE_EVENTS", "EventNames", "MsgpackCodec", "check_frame", "make_codec", "names_for",
]


def names_for(config: Any) -> EventNames:
    """The event-name rules a config asks for."""
    return EventNames(config.max_event_name_length, config.allowed_events)


def make_codec(config: Any, names: EventNames | None = None) -> Any:
    """A fresh codec for one connection, as ``config.wire`` and ``raw_buffer`` say."""
    names = names or names_for(config)
    if config.raw_buffer:
        from .raw_codec import RawCodec
        return RawCodec(config.encoding, config.max_message_size)
    if config.wire == "node-ipc":
        from .nodeipc_codec import NodeIPCCodec
        return NodeIPCCodec(names, config.delimiter, config.max_message_size)
    return MsgpackCodec(names, config.max_message_size)
