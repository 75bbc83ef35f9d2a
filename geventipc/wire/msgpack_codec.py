"""The default wire: one msgpack array per event, back to back, no other framing.

Frames (see docs/protocol.md for the bytes):

* ``[type, data]``               an event
* ``[type, data, request_id]``   a request; the receiver answers with a reply
* ``[request_id, status, data]`` a reply (the first element is an integer)

msgpack is self-delimiting, so a stream decoder needs no length prefix.
"""
from __future__ import annotations

from typing import Any

import msgpack

from ..errors import EncodeError, MessageTooLargeError, ProtocolError
from .names import EventNames

#: bytes the transports read per call; also the slack on top of max_message_size
READ_SIZE = 256 * 1024

REPLY_OK = 0
REPLY_ERROR = 1
REPLY_NO_HANDLER = 2

_INT = int


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack ext type {code} is not allowed on this wire")


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class MsgpackCodec:
    """Sans-IO msgpack codec for one connection: ``feed`` bytes, get checked frames back.

    ``buffered`` is the size of the incomplete frame held back, for the size and
    slowloris limits.
    """

    name = "msgpack"
    supports_requests = True
    framed = True

    __slots__ = ("names", "max_message_size", "read_size", "_unpacker", "_fed", "_pack")

    def __init__(self, names: EventNames, max_message_size: int = 16 * 1024 * 1024) -> None:
        self.names = names
        self.max_message_size = max_message_size
        self._unpacker = msgpack.Unpacker(
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=_refuse_ext,
            max_buffer_size=max_message_size + READ_SIZE,
            max_str_len=max_message_size,
            max_bin_len=max_message_size,
            max_array_len=max(16, max_message_size // 4),
            max_map_len=max(16, max_message_size // 8),
            max_ext_len=0,
        )
        # Reading no more than the limit at once means a frame that fits in one read is
        # within the limit, so only frames spanning reads need measuring.
        self.read_size = min(READ_SIZE, max_message_size)
        self._fed = 0
        self._pack = _PACKER.pack

    # --- decoding ----------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame waiting for the rest."""
        return self._fed - self._unpacker.tell()

    def feed(self, data: bytes | bytearray | memoryview) -> list[list[Any]]:
        """Take bytes from the peer; return the complete frames they finish, checked.

        Raises :class:`ProtocolError` (with the good frames before the fault in
        ``.frames``) on malformed input, and :class:`MessageTooLargeError` when a frame
        passes ``max_message_size``.
        """
        unpacker = self._unpacker
        start = unpacker.tell()
        carried = self._fed - start
        self._fed += len(data)
        frames: list[list[Any]] = []
        try:
            unpacker.feed(data)
            if carried:
                # the first frame began in an earlier read: only now is its size known
                for frame in unpacker:
                    if unpacker.tell() - start > self.max_message_size:
                        raise MessageTooLargeError(
                            f"frame larger than max_message_size={self.max_message_size}")
                    frames.append(frame)
                    break
            frames.extend(unpacker)
        except msgpack.BufferFull:
            raise MessageTooLargeError(
                f"frame larger than max_message_size={self.max_message_size}", frames
            ) from None
        except ProtocolError as exc:
            exc.frames = frames
            raise
        except Exception as exc:  # msgpack's ValueError family, StackError, TypeError
            raise ProtocolError(f"malformed msgpack frame ({_describe(exc)})", frames) from None
        good = self.names.good
        for index, frame in enumerate(frames):
            if type(frame) is not list or len(frame) != 2 or frame[0] not in good:
                self._check(frame, frames, index)
        if self._fed - unpacker.tell() > self.max_message_size:
            raise MessageTooLargeError(
                f"frame larger than max_message_size={self.max_message_size}", frames
            )
        return frames

    def _check(self, frame: Any, frames: list[Any], index: int) -> None:
        try:
            if type(frame) is not list or not 2 <= len(frame) <= 3:
                raise ProtocolError(f"frame is not an event array: {type(frame).__name__}")
            head = frame[0]
            if len(frame) == 3 and type(head) is _INT:
                if type(frame[1]) is not _INT:
                    raise ProtocolError("reply status must be an integer")
                return
            if len(frame) == 3 and (type(frame[2]) is not _INT or frame[2] < 1):
                raise ProtocolError("request id must be a positive integer")
            self.names.check_incoming(head)
        except ProtocolError as exc:
            exc.frames = frames[:index]
            raise

    # --- encoding ----------------------------------------------------------------------

    def encode_event(self, type: str, data: Any = None) -> bytes:
        """Bytes of one event frame. Raises EncodeError for data msgpack cannot carry."""
        try:
            return self._pack([type, data])
        except Exception as exc:
            raise EncodeError(f"cannot encode data of event {type!r} as msgpack: "
                              f"{_describe(exc)}") from None

    def encode_request(self, type: str, data: Any, request_id: int) -> bytes:
        """Bytes of a request frame carrying ``request_id``."""
        try:
            return self._pack([type, data, request_id])
        except Exception as exc:
            raise EncodeError(f"cannot encode data of request {type!r} as msgpack: "
                              f"{_describe(exc)}") from None

    def encode_reply(self, request_id: int, status: int, data: Any) -> bytes:
        """Bytes of a reply frame to ``request_id``."""
        try:
            return self._pack([request_id, status, data])
        except Exception as exc:
            raise EncodeError(f"cannot encode reply as msgpack: {_describe(exc)}") from None


# One packer serves every connection: packing never yields, so no two greenlets share it
# at once, and a reused Packer avoids allocating one per message.
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)
