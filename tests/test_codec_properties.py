"""Property-based tests of the msgpack codec (hypothesis).

* Any sequence of valid frames (events, requests, replies), split at any byte boundaries,
  decodes to the same frames, in order; afterwards no frame is pending.
* Random or corrupted bytes never raise anything but ProtocolError, and the good frames
  before the fault are never lost.
* The size limit never refuses a frame within ``max_message_size`` and always refuses one
  past it by more than a read; a strict prefix of a frame is reported incomplete.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geventipc.errors import MessageTooLargeError, ProtocolError
from geventipc.wire import INTERNAL_PREFIX, LIFECYCLE_EVENTS, EventNames, MsgpackCodec

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=256).filter(
    lambda n: n not in LIFECYCLE_EVENTS and not n.startswith(INTERNAL_PREFIX))
scalars = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1)
           | st.floats(allow_nan=False) | text | st.binary(max_size=64))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=20,
)
frames = st.one_of(
    st.tuples(st.just("event"), names, values),
    st.tuples(st.just("request"), names, values, st.integers(1, 2 ** 32)),
    st.tuples(st.just("reply"), st.integers(1, 2 ** 32), st.integers(0, 2), values),
)


def codec(limit: int = 16 * 1024 * 1024) -> MsgpackCodec:
    return MsgpackCodec(EventNames(), limit)


def encode(c: MsgpackCodec, frame: tuple) -> tuple[bytes, list]:
    kind, *args = frame
    if kind == "event":
        return c.encode_event(*args), list(args)
    if kind == "request":
        return c.encode_request(*args), list(args)
    return c.encode_reply(*args), list(args)


def encode_all(c: MsgpackCodec, items: list[tuple]) -> tuple[bytes, list[list]]:
    """The frames ``items`` encoded back to back, and what decoding each should give."""
    pairs = [encode(c, item) for item in items]
    return b"".join(data for data, _ in pairs), [frame for _, frame in pairs]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points + [len(data)]:
        pieces.append(data[last:point])
        last = point
    return [p for p in pieces if p]


def same(a, b) -> bool:
    """Equal, counting -0.0 == 0.0 and floats compared exactly."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@SETTINGS
@given(st.lists(frames, max_size=20), st.lists(st.integers(0, 10 ** 6), max_size=30))
def test_valid_frames_split_anywhere_decode_to_the_same_frames(items, cuts):
    c = codec()
    stream, expected = encode_all(c, items)
    decoded = []
    for piece in split(stream, cuts):
        decoded.extend(c.feed(piece))
    assert same(decoded, expected)
    assert not c.incomplete()


@SETTINGS
@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_a_strict_prefix_is_incomplete(items, data):
    c = codec()
    stream = b"".join(encode(c, item)[0] for item in items)
    last = encode(c, items[-1])[0]
    cut = data.draw(st.integers(len(stream) - len(last) + 1, len(stream) - 1)) \
        if len(last) > 1 else None
    if cut is None:
        return
    decoded = c.feed(stream[:cut])
    assert len(decoded) == len(items) - 1
    assert c.buffered > 0
    assert c.incomplete()


@SETTINGS
@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=20))
def test_random_bytes_raise_only_protocol_error(junk, cuts):
    c = codec(4096)
    try:
        for piece in split(junk, cuts):
            c.feed(piece)
        c.incomplete()
    except ProtocolError:
        pass


@SETTINGS
@given(st.lists(frames, min_size=1, max_size=8), st.binary(min_size=1, max_size=64),
       st.lists(st.integers(0, 10 ** 6), max_size=10))
def test_good_frames_before_garbage_are_kept(items, junk, cuts):
    c = codec()
    stream, expected = encode_all(c, items)
    got = []
    try:
        for piece in split(stream, cuts) + [junk]:
            got.extend(c.feed(piece))
    except ProtocolError as exc:
        got.extend(exc.frames)
    assert same(got[:len(expected)], expected)


@SETTINGS
@given(st.lists(frames, min_size=1, max_size=8), st.data())
def test_corrupted_streams_raise_only_protocol_error(items, data):
    c = codec(4096)
    stream = bytearray(encode_all(c, items)[0])
    for _ in range(data.draw(st.integers(1, 8))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    try:
        for piece in split(bytes(stream), cuts):
            c.feed(piece)
    except ProtocolError:
        pass


LIMIT = 1024


@SETTINGS
@given(st.lists(st.integers(0, LIMIT + 2 * LIMIT), min_size=1, max_size=6),
       st.lists(st.integers(0, 10 ** 6), max_size=20))
def test_size_limit_is_never_too_strict_and_never_too_loose(sizes, cuts):
    """Frames within the limit always pass; a frame past it by more than one read (the
    slack of frames spanning reads) is always refused."""
    c = codec(LIMIT)
    sender = codec(LIMIT * 10)  # a sender with a larger limit: c refuses only on receipt
    stream = b"".join(sender.encode_event("e", b"x" * size) for size in sizes)
    lengths = [len(sender.encode_event("e", b"x" * size)) for size in sizes]
    try:
        count = 0
        for piece in split(stream, cuts):
            count += len(c.feed(piece))
    except MessageTooLargeError as exc:
        done = len(exc.frames) + count
        assert lengths[done] > LIMIT   # the frame refused really is too large
    else:
        assert count == len(sizes)
        assert all(length <= LIMIT + c.read_size for length in lengths)


@pytest.mark.parametrize("depth", [10, 500, 1000])
def test_nesting_within_the_decoder_limit_decodes(depth):
    c = codec()
    frame = b"\x92\xa1e" + b"\x91" * depth + b"\xc0"
    ((name, data),) = c.feed(frame)
    for _ in range(depth - 1):
        data = data[0]
    assert name == "e" and data == [None]


def test_nesting_past_the_decoder_limit_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="nested deeper"):
        codec().feed(b"\x92\xa1e" + b"\x91" * 5000 + b"\xc0")


@pytest.mark.parametrize("frame", [
    [[], 0], [{"a": 1}, 0], [None, 0], [b"bytes", 0], [1.5, 0], [True, 0],
    ["ok", 1, "not an id"], ["ok", 1, 0], [1, "status", None], [], ["only"], 7, "text",
    {"type": "e"}, ["a", 1, 2, 3],
])
def test_malformed_frames_are_protocol_errors(frame):
    """Every frame shape that is not an event, request or reply, including unhashable
    names, is a ProtocolError (never a TypeError from a set lookup)."""
    import msgpack
    c = codec()
    good = c.encode_event("fine", 1)
    with pytest.raises(ProtocolError) as caught:
        c.feed(good + msgpack.packb(frame, use_bin_type=True) + good)
    assert caught.value.frames == [["fine", 1]]


@SETTINGS
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 6000)), min_size=1, max_size=20))
def test_an_idle_peer_between_frames_is_never_incomplete(batches):
    """Once only whole frames were sent, incomplete() is False, however they were read
    (large reads leave only an upper bound, so the exact probe runs), and the probe leaves
    the decoder ready for the next frame."""
    c = codec()
    for count, size in batches:
        frames = [["e", b"x" * size] for _ in range(count)]
        assert c.feed(b"".join(c.encode_event(*f) for f in frames)) == frames
        assert not c.incomplete()
        assert not c.incomplete()   # asking twice changes nothing
    assert c.feed(c.encode_event("last", 1)) == [["last", 1]]
