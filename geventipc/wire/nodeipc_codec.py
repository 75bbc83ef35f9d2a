"""node-ipc's own wire: UTF-8 JSON ``{"type": ..., "data": ...}`` then a delimiter.

This is what the Node.js ``node-ipc`` package (9.x and 14.x, and its Rust and C# ports)
puts on Unix sockets, TCP and TLS, so a geventipc process on this wire can serve node-ipc
clients and connect to node-ipc servers. See docs/protocol.md, "The node-ipc JSON wire".

Decoding differs from node-ipc 9's own parser on purpose: that one only parses when a read
happens to end on the delimiter (and stalls otherwise); this one splits the byte stream at
every delimiter wherever the reads fall, and decodes whole frames only, so a multi-byte
UTF-8 character split across reads is never seen half. JSON escapes every control
character inside strings, so the default delimiter (form feed) cannot occur inside a frame.

Encoding follows node-ipc 14: ``None`` is ``null``, an empty string stays ``""`` (node-ipc 9
would send ``{}`` for both; such a ``{}`` arrives here as an empty dict, as sent).
"""
from __future__ import annotations

import json
import math
import reprlib
from typing import Any, Callable, Iterable, Iterator

import orjson

from ..errors import (
    ConfigError, EncodeError, ProtocolError, UnsupportedError,
)
from .msgpack_codec import READ_SIZE, event_too_large, frame_too_large
from .mismatch import mismatch as _mismatch
from .names import CACHE_LIMIT, EventNames

#: the longest prefix of a bad value quoted in an error message
_QUOTE = 60
#: deepest nesting ``encode_event`` accepts (deeper is almost surely a cycle)
MAX_DEPTH = 500


def _refuse_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's json would take them, JSON.parse does not
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_decode = _DECODER.decode
_scan = _DECODER.scan_once  # type: ignore[attr-defined]


def _load(text: str) -> Any:
    """``_decode`` of one frame, minus its two whitespace scans: frames from node-ipc and
    from this codec carry no whitespace around the value. Anything else (whitespace,
    extra data, an error) goes the full way, which also words the error."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _decode(text)
    if end != len(text):
        return _decode(text)
    return value


# Compact like JSON.stringify; non-ASCII text as UTF-8 (also what JSON.stringify does).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False,
                            separators=(",", ":"))
_encode = _ENCODER.encode
# Lone surrogates cannot be UTF-8: JSON.stringify escapes them as \\udXXX, and so does this.
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, check_circular=False,
                                  separators=(",", ":"))


# orjson does the common case: compact UTF-8 like JSON.stringify, non-string keys refused.
# What it does differently from what node-ipc reads (NaN/Infinity become null, datetimes
# and dataclasses turned into strings/objects, big ints, lone surrogates) takes the
# stdlib path below, which refuses or encodes them as before.
_OR_DUMPS = orjson.dumps
_OR_LOADS = orjson.loads
_OR_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_OR_HEADS: dict[str, bytes] = {}


def _refuse_other(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _or_message(type: str, data: Any) -> bytes:
    """``{"type":type,"data":data}`` as UTF-8 bytes by orjson, the envelope's bytes made
    once per event name (bounded). Raises orjson.JSONEncodeError for what it refuses."""
    head = _OR_HEADS.get(type)
    if head is None:
        if len(_OR_HEADS) >= CACHE_LIMIT:
            _OR_HEADS.clear()
        head = _OR_HEADS[type] = b'{"type":' + _OR_DUMPS(type) + b',"data":'
    return b"".join((head, _OR_DUMPS(data, _refuse_other, _OR_OPTIONS), b"}"))


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _QUOTE
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 6
_REPR.maxlevel = 3


def _quote(value: Any) -> str:
    """A short repr for error messages, cheap even for a huge value."""
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) > _QUOTE:
        return repr(bytes(value[:_QUOTE])) + "..."
    text = _REPR.repr(value)
    return text if len(text) <= _QUOTE + 20 else text[:_QUOTE] + "..."


def _fits(value: Any, depth: int = 0) -> bool:
    """True if JSON carries ``value`` exactly (fast check, no diagnosis)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth >= MAX_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind is not str and kind is not int and not _fits(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            kind = type(item)
            if kind is not str and kind is not int and not _fits(item, depth + 1):
                return False
        return True
    # subclasses (IntEnum, str enums, OrderedDict, ...) encode as their base type
    if isinstance(value, (str, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return _fits(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return _fits(list(value), depth)
    return False


def _problem(value: Any, path: str, depth: int = 0) -> str | None:
    """Where in ``value`` JSON falls short, and why (only called once ``_fits`` failed)."""
    if isinstance(value, (str, int)) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else \
            f"{path} is {value!r}, which JSON cannot carry (no NaN or Infinity in JSON)"
    if depth >= MAX_DEPTH:
        return f"{path} is nested deeper than {MAX_DEPTH} levels (or refers to itself)"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (f"{path} has the key {_quote(key)} of type {type(key).__name__}; "
                        f"JSON object keys must be strings")
            found = _problem(item, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _problem(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    hint = " (send bytes as a hex or base64 string, or use raw_buffer mode)" \
        if isinstance(value, (bytes, bytearray, memoryview)) else ""
    return (f"{path} is {_quote(value)} of type {type(value).__name__}, which JSON cannot "
            f"carry{hint}")


class NodeIPCCodec:
    """Sans-IO codec of node-ipc's JSON wire for one connection.

    ``delimiter`` is node-ipc's ``config.delimiter`` (default ``"\\f"``); any non-empty
    string, multi-character ones included, as long as both ends agree.
    """

    name = "node-ipc"
    supports_requests = False
    framed = True

    __slots__ = ("names", "delimiter", "max_message_size", "read_size", "_delim",
                 "_dlen", "_tail", "_check_body", "_end", "fast_limit", "namer")

    def __init__(self, names: EventNames, delimiter: str = "\f",
                 max_message_size: int = 16 * 1024 * 1024) -> None:
        if not isinstance(delimiter, str) or not delimiter:
            raise ConfigError(f"config.delimiter must be a non-empty string, not {delimiter!r}")
        self.names = names
        self.delimiter = delimiter
        self.max_message_size = max_message_size
        self.read_size = min(READ_SIZE, max_message_size)
        self._delim = delimiter.encode("utf-8", "surrogatepass")
        self._dlen = len(self._delim)
        self._end = b"}" + self._delim   # what follows the data in every frame
        #: the largest frame ``encode_event`` returns (the limit is on the JSON, without
        #: the delimiter): what an inlined emit path may send as it is
        self.fast_limit = max_message_size + self._dlen
        #: called once with the first non-empty string ``id`` found in a frame's data,
        #: before that frame is yielded (node-ipc servers name a socket after it), then
        #: cleared; None: not looked for. Checked here, as frames decode, because a
        #: generator wrapped around ``frames`` to look cost ~9% of a server's instructions
        #: per event (measured with callgrind)
        self.namer: Callable[[str], None] | None = None
        self._tail = bytearray()
        # JSON escapes every control character in strings and puts none between tokens,
        # so a delimiter made only of them can never occur inside an encoded frame; any
        # other delimiter may, and then the frame would be cut in two at the far end.
        self._check_body = any(ord(ch) >= 0x20 for ch in delimiter)

    # --- decoding ----------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame waiting for the rest."""
        return len(self._tail)

    def mismatch(self, first: bytes | bytearray | memoryview) -> ProtocolError | None:
        """WireMismatchError if a connection's first bytes show the peer on another wire
        or on TLS (see :mod:`geventipc.wire.mismatch`), else None."""
        return _mismatch(first, "node-ipc")

    def incomplete(self) -> bool:
        """True if a frame has begun and not finished (here exactly ``buffered > 0``)."""
        return bool(self._tail)

    def _split(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """The whole frames ``data`` completes, as bytes; the rest is kept for later."""
        delim, dlen, tail = self._delim, self._dlen, self._tail
        if not tail:
            parts = bytes(data).split(delim)
        else:
            # search only where a delimiter could end: never rescan a long partial frame
            start = max(0, len(tail) - dlen + 1)
            tail += data
            cut = tail.find(delim, start)
            if cut < 0:
                if len(tail) > self.max_message_size:
                    raise frame_too_large(self.max_message_size)
                return []
            # slicing a memoryview copies once; slicing the bytearray would copy twice
            view = memoryview(tail)
            parts = bytes(view[cut + dlen:]).split(delim)
            parts.insert(0, bytes(view[:cut]))
        self._tail = bytearray(parts.pop())
        return parts

    def frames(self, data: bytes | bytearray | memoryview) -> Iterable[list[Any]]:
        """Take bytes from the peer; return the ``[type, data]`` frames they complete,
        each decoded as the result is iterated (the bytes are copied here, at once).

        Event names are not checked here but by the dispatcher (see
        :mod:`geventipc.dispatch`); :meth:`feed` checks them. Iterate to the end, then
        call :meth:`settle`. Raises ProtocolError / MessageTooLargeError as :meth:`feed`.
        """
        parts = self._split(data)
        return self._decode(parts, len(data) > self.max_message_size) if parts else ()

    def _decode(self, parts: list[bytes], check_all: bool) -> Iterator[list[Any]]:
        # Per frame, as little Python as the checks allow (this loop is most of a
        # receiving process's bytecode on this wire). Only the first part can carry bytes
        # of earlier reads; the others are pieces of ``data``, within the limit unless
        # ``data`` itself is not (``check_all``).
        limit = self.max_message_size
        if len(parts[0]) > limit:
            raise frame_too_large(limit)
        namer = self.namer
        loads = _OR_LOADS
        for part in parts:
            if check_all and len(part) > limit:
                raise frame_too_large(limit)
            try:
                message = loads(part)
            except orjson.JSONDecodeError:
                message = self._slow_load(part)
            try:
                # a subscript checks both: anything but a JSON object raises TypeError
                event = message["type"]
            except KeyError:
                raise ProtocolError("node-ipc frame has no \"type\"") from None
            except TypeError:
                raise ProtocolError(f"node-ipc frame must be a JSON object, not "
                                    f"{_quote(message)}") from None
            data = message.get("data")
            if namer is not None and type(data) is dict and "id" in data:
                found = data["id"]
                if type(found) is str and found:
                    self.namer = None
                    namer(found)
                    namer = None
            yield [event, data]

    @staticmethod
    def _slow_load(part: bytes) -> Any:
        """What orjson refused: decoded by the stdlib (big ints, escaped lone
        surrogates), or the error worded."""
        try:
            return _load(part.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"node-ipc frame is not valid UTF-8 ({exc.reason} at "
                                f"byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"node-ipc frame is not valid JSON ({exc}): "
                                f"{_quote(part)}") from None

    def settle(self, count: int) -> None:
        """After the frames of one :meth:`frames` call were taken: a partial frame
        already over the limit is refused (MessageTooLargeError)."""
        if len(self._tail) > self.max_message_size:
            raise frame_too_large(self.max_message_size)

    def fault(self, exc: Exception) -> ProtocolError:
        """The library's error for an exception raised while iterating :meth:`frames`."""
        if isinstance(exc, ProtocolError):
            return exc
        return ProtocolError(f"node-ipc frame cannot be decoded ({type(exc).__name__}: "
                             f"{exc})")

    def feed(self, data: bytes | bytearray | memoryview) -> list[list[Any]]:
        """Take bytes from the peer; return the ``[type, data]`` frames they complete.

        Raises :class:`ProtocolError` (good frames before the fault in ``.frames``) for a
        frame that is not UTF-8 JSON of an object with a string ``type`` the event-name
        rules allow, and :class:`MessageTooLargeError` past ``max_message_size``.
        """
        frames: list[list[Any]] = []
        good = self.names.good
        try:
            for frame in self.frames(data):
                event = frame[0]
                if type(event) is not str or event not in good:
                    self.names.check_incoming(event)
                frames.append(frame)
            self.settle(len(frames))
        except ProtocolError as exc:
            exc.frames = frames
            raise
        return frames

    # --- encoding ----------------------------------------------------------------------

    def encode_event(self, type: str, data: Any = None) -> bytes:
        """Bytes of one frame. Raises EncodeError, naming the value, for data JSON cannot
        carry exactly (bytes, non-string keys, NaN/Infinity, other objects)."""
        # the common case in one go: a name seen before, data orjson takes, no null that
        # could hide a NaN, a control-character delimiter, within the size limit
        head = _OR_HEADS.get(type) if type.__class__ is str else None
        if head is not None and not self._check_body:
            try:
                body = _OR_DUMPS(data, _refuse_other, _OR_OPTIONS)
            except TypeError:
                body = b"null"   # the general path below words the error
            # find, not ``in``: bytes' ``in`` first tries the needle as an int and pays
            # for the TypeError (measured 123 ns against 70 for a 50-byte body)
            if body.find(b"null") < 0:
                frame = b"".join((head, body, self._end))
                if len(frame) - self._dlen <= self.max_message_size:
                    return frame
        return self._encode_event(type, data)

    def _encode_event(self, type: str, data: Any) -> bytes:
        try:
            if type.__class__ is not str:
                raise TypeError("event name")
            body = _or_message(type, data)
            # orjson writes NaN and Infinity as null: only a body with a null can hide one
            if b"null" in body and not _fits(data):
                raise TypeError("not JSON")
        except TypeError:   # orjson.JSONEncodeError is a TypeError
            body = self._slow_encode(type, data)
        if self._check_body and self._delim in body:
            raise EncodeError(
                f"cannot send event {type!r} on the node-ipc JSON wire: its JSON contains "
                f"the delimiter {self.delimiter!r}, which would cut the frame in two; pick "
                f"a delimiter made of control characters (the default is \"\\f\")")
        if len(body) > self.max_message_size:
            raise event_too_large(type, len(body), self.max_message_size)
        return body + self._delim

    @staticmethod
    def _slow_encode(type: str, data: Any) -> bytes:
        """What orjson refused or cannot do exactly: refused with the reason, or encoded
        by the stdlib (ints past 64 bits, lone surrogates, deep nesting)."""
        if not _fits(data):
            reason = _problem(data, "data") or "data cannot be encoded as JSON"
            raise EncodeError(f"cannot send event {type!r} on the node-ipc JSON wire: "
                              f"{reason}")
        try:
            return _encode({"type": type, "data": data}).encode("utf-8")
        except UnicodeEncodeError:
            return _ASCII_ENCODER.encode({"type": type, "data": data}).encode("ascii")
        except (ValueError, TypeError, RecursionError) as exc:  # a subclass misbehaving
            raise EncodeError(f"cannot send event {type!r} on the node-ipc JSON wire: "
                              f"{exc}") from None

    def encode_request(self, type: str, data: Any, request_id: int) -> bytes:
        """node-ipc has no request/reply: always raises UnsupportedError."""
        raise UnsupportedError("request/reply needs the msgpack wire; node-ipc's JSON wire "
                               "has events only (emit a reply event instead)")

    def encode_reply(self, request_id: int, status: int, data: Any) -> bytes:
        """node-ipc has no request/reply: always raises UnsupportedError."""
        raise UnsupportedError("request/reply needs the msgpack wire; node-ipc's JSON wire "
                               "has events only")
