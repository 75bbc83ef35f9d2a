"""node-ipc's raw mode (``config.raw_buffer = True``): bytes as they are, no framing.

Every read from the socket becomes one ``["data", bytes]`` frame, so message boundaries
are whatever the kernel delivers, exactly as in node-ipc: an application that needs
messages must frame them itself. Sending takes bytes, or a string turned into bytes the
way node-ipc's ``Buffer.from(string, config.encoding)`` does, but strictly: text that does
not fit the encoding (a non-ASCII character under ``ascii``, bad hex digits) raises
:class:`~geventipc.errors.EncodeError` instead of being silently mangled.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from ..errors import ConfigError, EncodeError, UnsupportedError
from .msgpack_codec import READ_SIZE

#: node-ipc's encoding names, and Python's codec for each ("hex"/"base64" are special)
ENCODINGS = {
    "utf8": "utf-8", "utf-8": "utf-8", "ascii": "ascii",
    "utf16le": "utf-16-le", "utf-16le": "utf-16-le", "ucs2": "utf-16-le",
    "ucs-2": "utf-16-le", "latin1": "latin-1", "binary": "latin-1",
    "base64": "base64", "hex": "hex",
}

_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _from_base64(text: str) -> bytes:
    # Buffer.from(s, "base64") takes both alphabets and missing padding; so does this
    raw = "".join(text.split()).encode("ascii").translate(_URLSAFE)
    raw += b"=" * (-len(raw) % 4)
    return base64.b64decode(raw, validate=True)


class RawCodec:
    """Sans-IO codec of raw mode: reads pass through as ``data`` frames; ``encode_event``
    takes only the data (node-ipc's raw ``emit(data)``)."""

    name = "raw"
    supports_requests = False
    framed = False
    buffered = 0

    __slots__ = ("encoding", "max_message_size", "read_size", "_codec")

    def __init__(self, encoding: str = "utf8", max_message_size: int = 16 * 1024 * 1024
                 ) -> None:
        codec = ENCODINGS.get(encoding.lower() if isinstance(encoding, str) else encoding)
        if codec is None:
            raise ConfigError(f"config.encoding must be one of {sorted(ENCODINGS)}, "
                              f"not {encoding!r}")
        self.encoding = encoding
        self.max_message_size = max_message_size
        self.read_size = min(READ_SIZE, max_message_size)
        self._codec = codec

    def feed(self, data: bytes | bytearray | memoryview) -> list[list[Any]]:
        """One ``["data", bytes]`` frame for a non-empty read; never raises."""
        return [["data", bytes(data)]] if data else []

    def frames(self, data: bytes | bytearray | memoryview) -> list[list[Any]]:
        """As :meth:`feed` (the same shape as the framed codecs' ``frames``)."""
        return [["data", bytes(data)]] if data else []

    def settle(self, count: int) -> None:
        """Nothing to account for: raw mode never holds a partial frame."""

    def fault(self, exc: Exception) -> Exception:
        """Raw mode cannot fail to decode: ``exc`` as it is."""
        return exc

    def mismatch(self, first: bytes | bytearray | memoryview) -> None:
        """Raw mode takes any bytes: never a mismatch."""
        return None

    def incomplete(self) -> bool:
        """Always False: raw mode has no frames to be inside of."""
        return False

    def encode(self, data: Any) -> bytes:
        """``data`` as the bytes to send: bytes-like as is, str through ``encoding``."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        if not isinstance(data, str):
            raise EncodeError(f"raw mode sends bytes or str, not {type(data).__name__} "
                              f"({data!r:.60})")
        codec = self._codec
        try:
            if codec == "hex":
                return bytes.fromhex(data)
            if codec == "base64":
                return _from_base64(data)
            return data.encode(codec, "surrogatepass" if codec != "ascii" and
                               codec != "latin-1" else "strict")
        except UnicodeEncodeError as exc:
            raise EncodeError(f"raw mode: {data[exc.start:exc.end]!r} at index {exc.start} "
                              f"cannot be encoded as {self.encoding}") from None
        except (ValueError, binascii.Error) as exc:
            raise EncodeError(f"raw mode: {data!r:.60} is not valid {self.encoding} "
                              f"({exc})") from None

    def encode_event(self, data: Any, extra: Any = None) -> bytes:
        """Bytes of ``emit(data)`` in raw mode. There is no event type: a second argument
        (other than None) raises EncodeError rather than being dropped, as node-ipc would."""
        if extra is not None:
            raise EncodeError("raw mode has no event types: call emit(data) with the bytes "
                              "(or str) only")
        return self.encode(data)

    def encode_request(self, type: str, data: Any, request_id: int) -> bytes:
        """Raw mode has no request/reply: always raises UnsupportedError."""
        raise UnsupportedError("request/reply needs the msgpack wire, not raw mode")

    def encode_reply(self, request_id: int, status: int, data: Any) -> bytes:
        """Raw mode has no request/reply: always raises UnsupportedError."""
        raise UnsupportedError("request/reply needs the msgpack wire, not raw mode")
