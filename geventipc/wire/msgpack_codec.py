"""The default wire: one msgpack array per event, back to back, no other framing.

Frames (see docs/protocol.md for the bytes):

* ``[type, data]``               an event
* ``[type, data, request_id]``   a request; the receiver answers with a reply
* ``[request_id, status, data]`` a reply (the first element is an integer)

msgpack is self-delimiting, so a stream decoder needs no length prefix.
"""
from __future__ import annotations

from itertools import chain
from typing import Any, Iterable, Iterator

import msgpack

from ..errors import EncodeError, EventTooLargeError, MessageTooLargeError, ProtocolError
from .mismatch import mismatch as _mismatch
from .names import EventNames

#: bytes the transports read per call; also the slack on top of max_message_size
READ_SIZE = 256 * 1024

#: nesting depth past which msgpack's compiled unpacker raises StackError
MAX_DEPTH = 1024

#: reads up to this size find their last frame's end exactly (a few frames at most)
EXACT_BELOW = 4096
#: msgpack.Unpacker's own buffer starts at 1 MiB; one that held more stays with its codec
_POOLED_UP_TO = 1024 * 1024
#: idle unpackers kept for reuse, per max_message_size
_POOL_SIZE = 64
_POOLS: dict[int, list[Any]] = {}

REPLY_OK = 0
REPLY_ERROR = 1
REPLY_NO_HANDLER = 2

_INT = int


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack ext type {code} is not allowed on this wire")


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _raising(exc: Exception) -> Iterator[Any]:
    raise exc
    yield   # a generator: raises when iterated, after what is chained before it


def check_frame(frame: Any, names: EventNames) -> None:
    """Raise ProtocolError unless ``frame`` is an event, request or reply a peer may send
    (the event name by ``names``)."""
    if type(frame) is not list or not 2 <= len(frame) <= 3:
        raise ProtocolError(f"frame is not an event array: {type(frame).__name__}")
    head = frame[0]
    if len(frame) == 3 and type(head) is _INT:
        if type(frame[1]) is not _INT:
            raise ProtocolError("reply status must be an integer")
        return
    if len(frame) == 3 and (type(frame[2]) is not _INT or frame[2] < 1):
        raise ProtocolError("request id must be a positive integer")
    names.check_incoming(head)


class MsgpackCodec:
    """Sans-IO msgpack codec for one connection: ``feed`` bytes, get checked frames back.

    ``buffered`` bounds the size of an incomplete frame, for the size and slowloris
    limits. msgpack's unpacker is resumable: it consumes the complete elements of a frame
    that has not finished, so how far into a frame a read ends is not observable without
    per-frame work. ``buffered`` is therefore an upper bound (the bytes since the start of
    the last read that finished a frame; 0 means no frame can be pending) and
    :meth:`incomplete` gives the exact answer when the slowloris timer needs it.

    Memory: a ``msgpack.Unpacker`` weighs about 40 KiB (its decode stack is built in), so
    a codec holds one only while it may be inside a frame. A small read (the usual case
    for a quiet connection: a hello, a request) is decoded frame by frame with the exact
    end of its last frame; when that is the end of the data, no frame is pending and the
    unpacker goes back to a shared pool. Busy connections keep theirs.
    """

    name = "msgpack"
    supports_requests = True
    framed = True

    __slots__ = ("names", "max_message_size", "read_size", "_unpacker", "_fed", "_pack",
                 "buffered", "_hard_limit", "_big", "_size", "_end", "_known", "_max_array",
                 "_max_map", "_count_from", "fast_limit")

    def __init__(self, names: EventNames, max_message_size: int = 16 * 1024 * 1024) -> None:
        self.names = names
        self.max_message_size = max_message_size
        self._unpacker: Any = None   # taken from the pool at the first byte
        self._big = False            # the unpacker's buffer grew past its first size
        # Reading no more than the limit at once means a frame that fits in one read is
        # within the limit, so only frames spanning reads need measuring.
        self.read_size = min(READ_SIZE, max_message_size)
        self._fed = 0
        #: upper bound on the bytes of an incomplete frame (0: no frame is pending); an
        #: attribute, not a property: the read loop asks after every read
        self.buffered = 0
        self._size = self._end = self._known = 0   # of the last ``frames`` call
        # ``_open`` overstates a pending frame by at most one read, so only past this is
        # a frame certainly over the limit: frames up to the limit always pass, and a peer
        # never makes us hold more than the limit plus one read.
        self._hard_limit = max_message_size + self.read_size
        self._pack = _PACKER.pack
        self._max_array = max(16, max_message_size // 4)
        self._max_map = max(16, max_message_size // 8)
        # a map of n items takes at least 2n bytes, an array of n at least n
        self._count_from = min(self._max_array, 2 * self._max_map)
        #: frames up to this size need no check past packing (size, item counts): what
        #: an inlined emit path may send without ``encode_event``
        self.fast_limit = min(max_message_size, self._count_from - 1)

    def _new_unpacker(self) -> Any:
        max_message_size = self.max_message_size
        return msgpack.Unpacker(
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=_refuse_ext,
            max_buffer_size=max_message_size + READ_SIZE,
            max_str_len=max_message_size,
            max_bin_len=max_message_size,
            max_array_len=self._max_array,
            max_map_len=self._max_map,
            max_ext_len=0,
        )

    def _acquire(self) -> Any:
        """An unpacker at a frame boundary with nothing held: pooled, or new."""
        try:
            unpacker = _POOLS[self.max_message_size].pop()
        except (KeyError, IndexError):   # none idle (safe against other threads' hubs too)
            unpacker = self._new_unpacker()
        self._unpacker = unpacker
        self._fed = unpacker.tell()   # ``_fed`` counts in the unpacker's own offsets
        return unpacker

    def _release(self) -> None:
        """At an exact frame boundary: hand the unpacker back (it holds no state).

        One whose buffer grew stays: this connection carries large frames, and a fresh
        unpacker would fault its buffer in again for each of them.
        """
        if self._big:
            return
        unpacker, self._unpacker = self._unpacker, None
        pool = _POOLS.setdefault(self.max_message_size, [])
        if len(pool) < _POOL_SIZE:
            pool.append(unpacker)

    # --- decoding ----------------------------------------------------------------------


    def mismatch(self, first: bytes | bytearray | memoryview) -> ProtocolError | None:
        """WireMismatchError if a connection's first bytes show the peer on another wire
        or on TLS (see :mod:`geventipc.wire.mismatch`), else None."""
        return _mismatch(first, "msgpack")

    def incomplete(self) -> bool:
        """True if a frame has begun and not finished.

        Exact, unlike ``buffered``. When the unpacker has consumed everything fed, the
        answer comes from feeding one ``nil``: at a frame boundary it decodes alone and
        changes nothing, but inside a frame it becomes part of that frame, so ask only when
        True means closing the connection (the ``message_timeout`` check).
        """
        unpacker = self._unpacker
        if not self.buffered or unpacker is None:
            return False
        if self._fed > unpacker.tell():
            return True   # bytes held back: a header or str/bin body is incomplete
        unpacker.feed(b"\xc0")
        self._fed += 1
        try:
            boundary = unpacker.unpack() is None
        except Exception:
            return True
        if boundary:
            self.buffered = 0
        return not boundary

    def frames(self, data: bytes | bytearray | memoryview) -> Iterable[Any]:
        """Take bytes from the peer; return the frames they complete, decoded one by one
        as the result is iterated (one-pass receive: nothing is kept in a list).

        The frames are not checked: the dispatcher checks each name once (see
        :mod:`geventipc.dispatch`) and :func:`check_frame` the rest. Iterate to the end,
        then call :meth:`settle` with the number of frames. msgpack's own exceptions come
        out of the iteration as they are; :meth:`fault` turns them into ProtocolError.
        """
        unpacker = self._unpacker
        if unpacker is None:
            unpacker = self._acquire()
        size = len(data)
        start = self._fed
        carried = self.buffered
        self._size = size
        self._fed += size
        self._end = -1   # where the last frame ended, when known (-1: not known)
        self._known = 0  # ... after this many frames
        unpacker.feed(data)
        found: list[Any] = []
        if carried:
            if carried + size > _POOLED_UP_TO:
                self._big = True
            # the first frame began in an earlier read: only now is its size known
            for frame in unpacker:
                end = unpacker.tell()
                if carried + end - start > self._hard_limit:
                    raise frame_too_large(self.max_message_size)
                found.append(frame)
                self._end, self._known = end, 1
                break
        if size <= EXACT_BELOW:
            # a few frames at most: decoded here, to know exactly where the last one ends
            tell = unpacker.tell
            end = self._end
            try:
                for frame in unpacker:
                    found.append(frame)
                    end = tell()
            except Exception as exc:
                # the good frames before the fault are dispatched before it is raised
                return chain(found, _raising(exc))
            self._end, self._known = end, len(found)
            return found
        if found:
            return chain(found, unpacker)
        return unpacker

    def settle(self, count: int) -> None:
        """After the frames of one :meth:`frames` call (``count`` of them) were taken:
        account for what is left pending. Raises MessageTooLargeError for a pending frame
        certainly over the limit."""
        size = self._size
        end = self._end if count == self._known else -1
        if end == self._fed:
            # the last frame ends where the data does: nothing is pending at all
            self.buffered = 0
            self._release()
        elif count:
            # what is left (if anything) began in this read; capped at one read so that
            # pieces bigger than read_size never make the check refuse a frame in the limit
            self.buffered = size if size <= self.read_size else self.read_size
        else:
            carried = self.buffered
            if carried + size > self._hard_limit:
                raise frame_too_large(self.max_message_size)
            self.buffered = carried + size
            if self.buffered > self.max_message_size \
                    and self._fed - self._unpacker.tell() > self.max_message_size:
                # the bytes held back (a long str/bin body) are exact, and alone too many
                raise frame_too_large(self.max_message_size)

    def fault(self, exc: Exception) -> ProtocolError:
        """The library's error for an exception raised while iterating :meth:`frames`."""
        if isinstance(exc, ProtocolError):
            return exc
        if isinstance(exc, msgpack.BufferFull):
            return frame_too_large(self.max_message_size)
        return self._fault(exc, [])

    def feed(self, data: bytes | bytearray | memoryview) -> list[list[Any]]:
        """Take bytes from the peer; return the complete frames they finish, checked.

        Raises :class:`ProtocolError` (with the good frames before the fault in
        ``.frames``) on malformed input, and :class:`MessageTooLargeError` when a frame
        passes ``max_message_size`` (see ``_hard_limit`` for frames spanning reads).
        The list form of :meth:`frames` (UDP takes a datagram whole).
        """
        frames: list[list[Any]] = []
        try:
            frames.extend(self.frames(data))
        except ProtocolError as exc:
            exc.frames = self._good_prefix(frames)
            raise
        except Exception as exc:  # msgpack's ValueError family, StackError, TypeError
            raise self._fault(exc, self._good_prefix(frames)) if not isinstance(
                exc, msgpack.BufferFull) else frame_too_large(
                self.max_message_size, self._good_prefix(frames)) from None
        good = self.names.good
        try:
            for index, frame in enumerate(frames):
                if type(frame) is not list or len(frame) != 2 or frame[0] not in good:
                    self._check(frame, frames, index)
        except TypeError:   # an unhashable name (a list, a map): check each frame in full
            for index, frame in enumerate(frames):
                self._check(frame, frames, index)
        self.settle(len(frames))
        return frames

    def _good_prefix(self, frames: list[Any]) -> list[Any]:
        """The frames before the first bad one: what decoded ahead of a fault is still
        checked before anyone dispatches it."""
        for index, frame in enumerate(frames):
            try:
                self._check(frame, frames, index)
            except ProtocolError:
                return frames[:index]
        return frames

    def _fault(self, exc: Exception, frames: list[Any]) -> ProtocolError:
        """The library's error for an exception msgpack raised, naming the limit broken."""
        if isinstance(exc, msgpack.StackError):
            return ProtocolError(f"msgpack frame nested deeper than the decoder allows "
                                 f"({MAX_DEPTH} levels)", frames)
        if isinstance(exc, msgpack.FormatError) and not str(exc):
            return ProtocolError("malformed msgpack frame (a byte that starts no msgpack "
                                 "value: not msgpack, or not this wire)", frames)
        if isinstance(exc, ValueError) and "max_ext_len" in str(exc):
            return ProtocolError("msgpack ext types are not allowed on this wire", frames)
        if isinstance(exc, ValueError) and " exceeds max_" in str(exc):
            # a str/bin/array/map header announcing more than the limits allow
            return MessageTooLargeError(
                f"frame larger than max_message_size={self.max_message_size} "
                f"({_describe(exc)})", frames)
        return ProtocolError(f"malformed msgpack frame ({_describe(exc)})", frames)

    def _check(self, frame: Any, frames: list[Any], index: int) -> None:
        try:
            check_frame(frame, self.names)
        except ProtocolError as exc:
            exc.frames = frames[:index]
            raise

    # --- encoding ----------------------------------------------------------------------

    def _check_counts(self, data: Any, what: str) -> None:
        """A frame this big may hold an array or map with more items than the peer's
        decoder takes (``max_array_len``/``max_map_len``, see ``_new_unpacker``): every
        item is at least one byte, so smaller frames never need this walk."""
        problem = _count_problem(data, "data", self._max_array, self._max_map)
        if problem:
            raise EncodeError(f"cannot encode {what} as msgpack: {problem}")

    def encode_event(self, type: str, data: Any = None) -> bytes:
        """Bytes of one event frame. Raises EncodeError for data msgpack cannot carry."""
        if data.__class__ is bytes and _BIG_BIN <= len(data) <= _MAX_BIN:
            # the same bytes the packer makes, with one copy of the payload instead of
            # two (the packer copies it into its buffer, then out again)
            frame = b"".join((b"\x92", self._pack(type), b"\xc6",
                              len(data).to_bytes(4, "big"), data))
        else:
            try:
                frame = self._pack([type, data])
            except Exception as exc:
                TUPLE_SEEN[0] = False
                raise EncodeError(f"cannot encode data of event {type!r} as msgpack: "
                                  f"{_describe(exc)}") from None
            if TUPLE_SEEN[0]:
                _refuse_keys(f"data of event {type!r}", data)
        if len(frame) > self.max_message_size:
            raise event_too_large(type, len(frame), self.max_message_size)
        if len(frame) >= self._count_from:
            self._check_counts(data, f"data of event {type!r}")
        return frame

    def encode_request(self, type: str, data: Any, request_id: int) -> bytes:
        """Bytes of a request frame carrying ``request_id``."""
        try:
            frame = self._pack([type, data, request_id])
        except Exception as exc:
            TUPLE_SEEN[0] = False
            raise EncodeError(f"cannot encode data of request {type!r} as msgpack: "
                              f"{_describe(exc)}") from None
        if TUPLE_SEEN[0]:
            _refuse_keys(f"data of request {type!r}", data)
        if len(frame) > self.max_message_size:
            raise event_too_large(type, len(frame), self.max_message_size)
        if len(frame) >= self._count_from:
            self._check_counts(data, f"data of request {type!r}")
        return frame

    def encode_reply(self, request_id: int, status: int, data: Any) -> bytes:
        """Bytes of a reply frame to ``request_id``."""
        try:
            frame = self._pack([request_id, status, data])
        except Exception as exc:
            TUPLE_SEEN[0] = False
            raise EncodeError(f"cannot encode reply as msgpack: {_describe(exc)}") from None
        if TUPLE_SEEN[0]:
            _refuse_keys("reply", data)
        if len(frame) >= self._count_from:
            self._check_counts(data, "reply")
        if len(frame) > self.max_message_size:
            raise EventTooLargeError(f"reply to request {request_id} encodes to {len(frame)} "
                                     f"bytes, over max_message_size={self.max_message_size}; "
                                     f"a peer would refuse it")
        return frame


#: a ``bytes`` payload from this size up is framed by hand (see ``encode_event``);
#: inlined emit paths leave such payloads to ``encode_event`` (BIG_BIN, public for them)
_BIG_BIN = BIG_BIN = 64 * 1024
#: msgpack's bin 32 holds up to this
_MAX_BIN = 2 ** 32 - 1

#: set by ``_default`` when a tuple was packed: only then can a dict key have become an
#: array, which the peer cannot use as a key (it refuses the frame); see ``_refuse_keys``.
#: Inlined emit paths that call the packer themselves check it after packing: when set,
#: they take the codec's ``encode_event``, which raises.
TUPLE_SEEN = [False]


def _default(value: Any) -> Any:
    """The packer's hook under ``strict_types``: subclasses pack as their base type (as
    without ``strict_types``), tuples as arrays (noting that one was seen); anything else
    is refused, as msgpack would."""
    if isinstance(value, tuple):
        TUPLE_SEEN[0] = True
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"can not serialize {type(value).__name__!r} object")


def _count_problem(value: Any, path: str, max_array: int, max_map: int,
                   depth: int = 0) -> str | None:
    """Where ``value`` has an array or map longer than the peer's decoder takes (a map's
    values named by their keys, as :func:`_key_problem` names them)."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        if len(value) > max_map:
            return f"{path} is a map of {len(value)} items, over the peer's {max_map}"
        items: Any = ((f"{key!r:.40}", item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        if len(value) > max_array:
            return f"{path} is an array of {len(value)} items, over the peer's {max_array}"
        items = enumerate(value)
    else:
        return None
    for where, item in items:
        if isinstance(item, (dict, list, tuple)):
            found = _count_problem(item, f"{path}[{where}]", max_array, max_map, depth + 1)
            if found:
                return found
    return None


def _key_problem(value: Any, path: str, depth: int = 0) -> str | None:
    """Where ``value`` has a dict key that arrives as an array (a tuple), which the peer
    cannot use as a key; None if nowhere. Only called when a tuple was packed."""
    if depth > MAX_DEPTH:
        return None   # the packer refused it already
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, tuple):
                return (f"{path} has the key {key!r:.60}, a tuple: it arrives as an array, "
                        f"which cannot be a map key on the receiving side (use a string)")
            found = _key_problem(item, f"{path}[{key!r:.40}]", depth + 1)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _key_problem(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
    return None


def _refuse_keys(what: str, value: Any) -> None:
    """After a pack that saw a tuple: raise EncodeError if a dict key was one."""
    TUPLE_SEEN[0] = False
    problem = _key_problem(value, "data")
    if problem:
        raise EncodeError(f"cannot encode {what} as msgpack: {problem}")


# One packer serves every connection: packing never yields, so no two greenlets share it
# at once, and a reused Packer avoids allocating one per message. ``strict_types`` routes
# tuples and subclasses through ``_default``, which is how a tuple key is noticed.
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True, strict_types=True,
                         default=_default)


def frame_too_large(limit: int, frames: list[Any] | None = None) -> MessageTooLargeError:
    """The error for an incoming frame over ``limit`` (every codec's), with the good
    ``frames`` decoded before it."""
    return MessageTooLargeError(f"frame larger than max_message_size={limit}", frames)


def event_too_large(type: str, size: int, limit: int) -> EventTooLargeError:
    """The error for an outgoing event of ``size`` bytes over ``limit`` (every codec's)."""
    return EventTooLargeError(f"event {type!r} encodes to {size} bytes, over "
                              f"max_message_size={limit}; a peer would refuse it")
