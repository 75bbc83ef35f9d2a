"""The node-ipc JSON codec and the raw-buffer codec: unit and property tests, plus the
node-ipc wire and raw mode between two geventipc endpoints over real sockets."""
from __future__ import annotations

import base64
import json
import math

import gevent
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import wait_until
from geventipc.errors import (
    ConfigError, EncodeError, ForbiddenEventError, IncompleteMessageTimeoutError,
    MessageTooLargeError, ProtocolError, UnsupportedError,
)
from geventipc.config import Config
from geventipc.wire import EventNames, MsgpackCodec, make_codec
from geventipc.wire.nodeipc_codec import NodeIPCCodec
from geventipc.wire.raw_codec import RawCodec

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def codec(delimiter: str = "\f", max_message_size: int = 16 * 1024 * 1024) -> NodeIPCCodec:
    return NodeIPCCodec(EventNames(), delimiter, max_message_size)


def feed_in_pieces(decoder, data: bytes, cuts) -> list:
    frames: list = []
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        frames.extend(decoder.feed(data[last:cut]))
        last = cut
    return frames


# --- strategies ------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)
_rules = EventNames()
event_names = st.text(min_size=1, max_size=40).filter(lambda n: _rules.problem(n) is None)
events = st.lists(st.tuples(event_names, json_values), min_size=1, max_size=8)
delimiters = st.sampled_from(["\f", "\x1e", "\r\n\f", "\x00\x01\x02", "<<END>>", "§",
                              "😀", "\n"])


# --- node-ipc JSON codec: encoding -----------------------------------------------------------


def test_encodes_like_json_stringify():
    assert codec().encode_event("message", {"id": "hello", "n": [1, 2.5, None, True]}) == \
        b'{"type":"message","data":{"id":"hello","n":[1,2.5,null,true]}}\f'


def test_sends_none_and_empty_as_node_ipc_14_does():
    # node-ipc 9 would turn both into {}: 14 keeps them, and so do we
    assert codec().encode_event("e", None) == b'{"type":"e","data":null}\f'
    assert codec().encode_event("e", "") == b'{"type":"e","data":""}\f'
    assert codec().encode_event("e", 0) == b'{"type":"e","data":0}\f'


def test_non_ascii_is_utf8_and_control_characters_are_escaped():
    frame = codec().encode_event("e", "é😀\f\x00")
    assert frame == '{"type":"e","data":"é😀\\f\\u0000"}\f'.encode()
    assert frame.count(b"\f") == 1


def test_lone_surrogates_are_escaped_as_json_stringify_does():
    frame = codec().encode_event("e", "a\ud800b")
    assert b"\\ud800" in frame
    assert codec().feed(frame) == [["e", "a\ud800b"]]


@pytest.mark.parametrize("value, where", [
    (b"\x00", "data is b'\\x00' of type bytes"),
    ({"a": [1, bytearray(b"x")]}, "data['a'][1] is bytearray(b'x') of type bytearray"),
    ({1: "one"}, "data has the key 1 of type int"),
    ({"n": {(1, 2): 3}}, "data['n'] has the key (1, 2) of type tuple"),
    (float("nan"), "data is nan"),
    ([1, float("-inf")], "data[1] is -inf"),
    ({"s": {1, 2}}, "data['s'] is {1, 2} of type set"),
    (object, "of type type"),
])
def test_values_json_cannot_carry_raise_encode_error_naming_them(value, where):
    with pytest.raises(EncodeError) as info:
        codec().encode_event("evt", value)
    assert where in str(info.value)
    assert "'evt'" in str(info.value)


def test_self_referencing_data_is_refused_not_a_crash():
    loop: list = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="nested deeper"):
        codec().encode_event("e", loop)


def test_subclasses_of_json_types_encode_as_their_base():
    import collections
    import enum

    class Colour(enum.IntEnum):
        RED = 1

    frame = codec().encode_event("e", collections.OrderedDict(a=Colour.RED, b=(1, 2)))
    assert codec().feed(frame) == [["e", {"a": 1, "b": [1, 2]}]]


def test_a_delimiter_that_json_could_contain_is_checked_at_encode():
    with pytest.raises(EncodeError, match="contains the delimiter"):
        codec("§").encode_event("e", "a§b")
    assert codec("§").encode_event("e", "ab").endswith("§".encode())


def test_empty_delimiter_is_a_config_error():
    with pytest.raises(ConfigError):
        codec("")


def test_no_request_reply_on_this_wire():
    with pytest.raises(UnsupportedError):
        codec().encode_request("e", 1, 1)
    with pytest.raises(UnsupportedError):
        codec().encode_reply(1, 0, 1)
    assert NodeIPCCodec.supports_requests is False and NodeIPCCodec.framed is True


# --- node-ipc JSON codec: decoding ------------------------------------------------------------


def test_frames_split_and_joined_across_reads():
    decoder = codec()
    stream = b'{"type":"a","data":1}\f{"type":"b","data":"x\\fy"}\f{"type":"c"}\f'
    assert decoder.feed(stream[:7]) == []
    assert decoder.buffered == 7
    assert decoder.feed(stream[7:30]) == [["a", 1]]
    assert decoder.feed(stream[30:]) == [["b", "x\fy"], ["c", None]]
    assert decoder.buffered == 0


def test_multibyte_utf8_split_inside_a_character():
    frame = codec().encode_event("e", "😀€é")
    cut = frame.index("😀".encode()) + 2
    decoder = codec()
    assert decoder.feed(frame[:cut]) == []
    assert decoder.feed(frame[cut:]) == [["e", "😀€é"]]


def test_multi_character_delimiter_split_across_reads():
    decoder = codec("<<END>>")
    stream = codec("<<END>>").encode_event("e", 1) * 2
    first_end = stream.index(b"<<END>>")
    assert decoder.feed(stream[:first_end + 3]) == []
    assert decoder.feed(stream[first_end + 3:]) == [["e", 1], ["e", 1]]


def test_accepts_what_node_ipc_9_sends_for_empty_payloads():
    assert codec().feed(b'{"type":"e","data":{}}\f') == [["e", {}]]


def test_extra_keys_are_ignored_and_missing_data_is_none():
    assert codec().feed(b'{"type":"e","id":3}\f') == [["e", None]]


@pytest.mark.parametrize("bad, error", [
    (b"{bad", ProtocolError),
    (b"", ProtocolError),
    (b"null", ProtocolError),
    (b"123", ProtocolError),
    (b"[1,2]", ProtocolError),
    (b'"text"', ProtocolError),
    (b'{"data":1}', ProtocolError),
    (b'{"type":null}', ForbiddenEventError),
    (b'{"type":["a"]}', ForbiddenEventError),
    (b'{"type":{"a":1}}', ForbiddenEventError),
    (b'{"type":""}', ForbiddenEventError),
    (b'{"type":"error"}', ForbiddenEventError),
    (b'{"type":"data"}', ForbiddenEventError),
    (b'{"type":"e","data":NaN}', ProtocolError),
    (b'{"type":"e","data":Infinity}', ProtocolError),
    (b'{"type":"e","data":"\xff"}', ProtocolError),
    (b"[" * 100000, ProtocolError),
    (b'{"type":"e","data":' + b"9" * 5000 + b"}", ProtocolError),
])
def test_bad_frames_raise_protocol_error_after_the_good_ones(bad, error):
    decoder = codec()
    with pytest.raises(error) as info:
        decoder.feed(b'{"type":"ok","data":1}\f' + bad + b"\f" + b'{"type":"late"}\f')
    assert info.value.frames == [["ok", 1]]


def test_event_names_follow_allowed_events():
    decoder = NodeIPCCodec(EventNames(allowed=["only"]))
    assert decoder.feed(b'{"type":"only"}\f') == [["only", None]]
    with pytest.raises(ForbiddenEventError):
        decoder.feed(b'{"type":"other"}\f')


def test_max_message_size_for_a_partial_frame():
    decoder = codec(max_message_size=100)
    decoder.feed(b'{"type":"e","data":"' + b"x" * 60)
    with pytest.raises(MessageTooLargeError):
        decoder.feed(b"x" * 60)


def test_max_message_size_for_a_complete_frame_in_one_read():
    decoder = codec(max_message_size=100)
    with pytest.raises(MessageTooLargeError) as info:
        decoder.feed(b'{"type":"a"}\f{"type":"e","data":"' + b"x" * 200 + b'"}\f')
    assert info.value.frames == [["a", None]]


def test_a_long_frame_is_not_rescanned_on_every_read():
    decoder = codec()
    frame = codec().encode_event("e", "x" * (4 * 1024 * 1024))
    frames = []
    for start in range(0, len(frame), 4096):
        frames += decoder.feed(frame[start:start + 4096])
    assert frames == [["e", "x" * (4 * 1024 * 1024)]]


# --- node-ipc JSON codec: properties --------------------------------------------------------


@PROPERTY
@given(events=events, delimiter=delimiters, cuts=st.lists(st.integers(0, 10 ** 6),
                                                            max_size=12))
def test_any_events_split_anywhere_decode_the_same(events, delimiter, cuts):
    encoder = codec(delimiter)
    stream = b""
    for name, data in events:
        try:
            stream += encoder.encode_event(name, data)
        except EncodeError:
            # only a delimiter JSON itself may contain can refuse a valid value
            assert any(ord(ch) >= 0x20 for ch in delimiter)
            assume(False)
    cuts = [c % (len(stream) + 1) for c in cuts]
    decoded = feed_in_pieces(codec(delimiter), stream, cuts)
    assert decoded == [[name, data] for name, data in events]


@PROPERTY
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6),
       delimiter=delimiters)
def test_random_bytes_raise_only_protocol_errors(data, cuts, delimiter):
    decoder = codec(delimiter, max_message_size=128)
    try:
        frames = feed_in_pieces(decoder, data, [c % (len(data) + 1) for c in cuts])
    except ProtocolError:
        return
    for frame in frames:
        assert type(frame[0]) is str and len(frame) == 2


@PROPERTY
@given(value=json_values)
def test_valid_json_of_any_shape_decodes_or_raises_protocol_error(value):
    body = json.dumps(value).encode()
    try:
        frames = codec().feed(body + b"\f")
    except ProtocolError:
        assert not (isinstance(value, dict) and isinstance(value.get("type"), str)
                    and _rules.problem(value["type"], internal_ok=True) is None)
        return
    assert frames == [[value["type"], value.get("data")]]


@PROPERTY
@given(value=json_values)
def test_encoded_bytes_are_what_json_stringify_would_parse(value):
    frame = codec().encode_event("e", value)
    assert json.loads(frame[:-1].decode("utf-8", "surrogatepass")) == {"type": "e",
                                                                        "data": value}


# --- raw codec ------------------------------------------------------------------------------


def test_raw_reads_pass_through_as_data_frames():
    raw = RawCodec()
    assert raw.feed(b"\x00\xff\f") == [["data", b"\x00\xff\f"]]
    assert raw.feed(b"") == []
    assert raw.buffered == 0 and raw.framed is False and raw.supports_requests is False


@pytest.mark.parametrize("encoding, text, sent", [
    ("utf8", "hé😀", "hé😀".encode()),
    ("utf-8", "x", b"x"),
    ("ascii", "hi", b"hi"),
    ("utf16le", "hi", b"h\x00i\x00"),
    ("ucs2", "é", b"\xe9\x00"),
    ("latin1", "é\xff", b"\xe9\xff"),
    ("binary", "\x00\x80", b"\x00\x80"),
    ("hex", "DEADbeef00", b"\xde\xad\xbe\xef\x00"),
    ("base64", "aGVsbG8=", b"hello"),
    ("base64", "aGVsbG8", b"hello"),
    ("base64", "-_8", b"\xfb\xff"),
])
def test_raw_encodes_strings_like_buffer_from(encoding, text, sent):
    assert RawCodec(encoding).encode_event(text) == sent


@pytest.mark.parametrize("encoding, text", [
    ("ascii", "é"), ("latin1", "€"), ("hex", "abc"), ("hex", "zz"), ("base64", "a$b"),
])
def test_raw_refuses_text_the_encoding_cannot_carry(encoding, text):
    with pytest.raises(EncodeError):
        RawCodec(encoding).encode_event(text)


def test_raw_bytes_go_as_they_are_whatever_the_encoding():
    assert RawCodec("hex").encode_event(b"\x01\x02") == b"\x01\x02"
    assert RawCodec("base64").encode_event(memoryview(b"ab")) == b"ab"


def test_raw_refuses_other_types_and_event_types():
    with pytest.raises(EncodeError):
        RawCodec().encode_event({"a": 1})
    with pytest.raises(EncodeError, match="emit\\(data\\)"):
        RawCodec().encode_event("type", "data")
    with pytest.raises(UnsupportedError):
        RawCodec().encode_request("e", 1, 1)


def test_raw_unknown_encoding_is_a_config_error():
    with pytest.raises(ConfigError):
        RawCodec("utf32")


@PROPERTY
@given(data=st.binary(max_size=500), cuts=st.lists(st.integers(0, 500), max_size=8))
def test_raw_any_bytes_split_anywhere_arrive_whole(data, cuts):
    frames = feed_in_pieces(RawCodec(), data, [c % (len(data) + 1) for c in cuts])
    assert all(type_ == "data" and chunk for type_, chunk in frames)
    assert b"".join(chunk for _, chunk in frames) == data


@PROPERTY
@given(data=st.binary(max_size=200))
def test_raw_hex_and_base64_round_trip(data):
    assert RawCodec("hex").encode_event(data.hex()) == data
    assert RawCodec("base64").encode_event(base64.b64encode(data).decode()) == data
    assert RawCodec("base64").encode_event(
        base64.urlsafe_b64encode(data).decode().rstrip("=")) == data
    assert RawCodec("latin1").encode_event(data.decode("latin-1")) == data


# --- codec choice ----------------------------------------------------------------------------


def test_make_codec_follows_the_config():
    assert isinstance(make_codec(Config()), MsgpackCodec)
    assert isinstance(make_codec(Config(wire="node-ipc")), NodeIPCCodec)
    assert make_codec(Config(wire="node-ipc", delimiter="\r\n")).delimiter == "\r\n"
    raw = make_codec(Config(wire="node-ipc", raw_buffer=True, encoding="hex"))
    assert isinstance(raw, RawCodec) and raw.encoding == "hex"
    with pytest.raises(ConfigError):
        Config(wire="json")


# --- two geventipc endpoints on the node-ipc wire, real sockets ------------------------------


def test_python_to_python_on_the_node_ipc_wire(make_ipc):
    server_ipc = make_ipc("world", wire="node-ipc")
    server = server_ipc.serve()
    got = []
    server.on("message", lambda data, socket: (got.append(data),
                                               socket.emit("reply", data)))
    server.start()
    client_ipc = make_ipc("hello", wire="node-ipc")
    client = client_ipc.connect_to("world")
    replies = []
    client.on("reply", replies.append)
    client.wait_connected(5)
    client.emit("message", {"text": "é", "n": [0, None, ""]})
    wait_until(lambda: replies, message="the reply")
    assert got == replies == [{"text": "é", "n": [0, None, ""]}]
    # the server never learnt an id from a msgpack hello: there was none on this wire
    assert server.sockets[0].id is None
    with pytest.raises(UnsupportedError):
        client.request("message", 1, timeout=1)


def test_encode_error_at_emit_sends_nothing(make_ipc):
    server = make_ipc("world", wire="node-ipc").serve()
    got = []
    errors = []
    server.on("message", lambda data, socket: got.append(data))
    server.on("error", errors.append)
    server.start()
    client = make_ipc("hello", wire="node-ipc").connect_to("world")
    client.wait_connected(5)
    with pytest.raises(EncodeError, match="bytes"):
        client.emit("message", {"blob": b"\x00"})
    with pytest.raises(EncodeError, match="key 1"):
        client.emit("message", {1: "x"})
    with pytest.raises(EncodeError, match="nan"):
        client.emit("message", math.nan)
    client.emit("message", "fine")
    wait_until(lambda: got, message="the good event")
    assert got == ["fine"] and errors == []


def test_wire_is_per_ipc_instance(make_ipc):
    msgpack_server = make_ipc("mp").serve()
    msgpack_server.start()
    json_server = make_ipc("js", wire="node-ipc").serve()
    json_server.start()
    seen = []
    msgpack_server.on("ping", lambda data, socket: seen.append(("mp", data)))
    json_server.on("ping", lambda data, socket: seen.append(("js", data)))
    mp_client = make_ipc("c1").connect_to("mp")
    js_client = make_ipc("c2", wire="node-ipc").connect_to("js")
    mp_client.emit("ping", b"bytes travel on msgpack")
    js_client.emit("ping", "text")
    wait_until(lambda: len(seen) == 2, message="both pings")
    assert sorted(seen) == [("js", "text"), ("mp", b"bytes travel on msgpack")]


def test_raw_mode_python_to_python(make_ipc):
    server = make_ipc("world", raw_buffer=True, encoding="hex").serve()
    received = bytearray()
    server.on("data", lambda data, socket: (received.extend(data), socket.emit(data[::-1])))
    server.start()
    client = make_ipc("hello", raw_buffer=True, encoding="hex").connect_to("world")
    back = bytearray()
    client.on("data", back.extend)
    client.wait_connected(5)
    client.emit("0102")
    wait_until(lambda: len(back) == 2, message="the reversed bytes")
    assert bytes(received) == b"\x01\x02" and bytes(back) == b"\x02\x01"
    received.clear()
    server.broadcast(b"\xff")
    wait_until(lambda: len(back) == 3, message="the broadcast")
    assert bytes(back) == b"\x02\x01\xff"
    with pytest.raises(EncodeError):
        client.emit("type", "data")


def test_the_bytes_in_docs_protocol_md_are_what_we_send():
    import os
    import re

    from conftest import ROOT
    with open(os.path.join(ROOT, "docs", "protocol.md"), encoding="utf-8") as doc:
        section = doc.read().split("## The node-ipc JSON wire", 1)[1]
    shown = re.search(r"bytes \(hex\): `([0-9a-f]+)`", section).group(1)
    assert codec().encode_event("message", {"id": "hello", "message": "hi"}).hex() == shown
    assert codec().feed(bytes.fromhex(shown)) == [["message", {"id": "hello",
                                                              "message": "hi"}]]


def test_broadcast_and_server_emit_refuse_what_json_cannot_carry(make_ipc):
    server = make_ipc("world", wire="node-ipc").serve()
    server.start()
    client = make_ipc("hello", wire="node-ipc").connect_to("world")
    got = []
    client.on("news", got.append)
    client.wait_connected(5)
    wait_until(lambda: server.sockets, message="the client at the server")
    with pytest.raises(EncodeError, match=r"data\['when'\]"):
        server.broadcast("news", {"when": object()})
    with pytest.raises(EncodeError, match="bytes"):
        server.emit(server.sockets[0], "news", b"raw")
    with pytest.raises(EncodeError, match="inf"):
        server.sockets[0].emit("news", [math.inf])
    server.broadcast("news", "only this one")
    wait_until(lambda: got, message="the good broadcast")
    assert got == ["only this one"]


def test_wire_per_call_next_to_msgpack_on_one_ipc(make_ipc, sock_dir):
    node_side = make_ipc("nodeish", wire="node-ipc")
    json_server = node_side.serve(sock_dir + "json")
    json_server.start()
    json_got = []
    json_server.on("ping", lambda data, socket: json_got.append(data))
    ipc = make_ipc("both")               # msgpack by default ...
    server = ipc.serve()
    server.start()
    assert isinstance(server._encoder, MsgpackCodec)
    # ... and one client on the node-ipc wire, by a keyword on the call
    client = ipc.connect_to("json", sock_dir + "json", wire="node-ipc", delimiter="\f")
    assert client.config.wire == "node-ipc" and ipc.config.wire == "msgpack"
    client.emit("ping", {"over": "json"})
    wait_until(lambda: json_got, message="the ping on the node-ipc wire")
    assert json_got == [{"over": "json"}]
    with pytest.raises(ConfigError):
        ipc.connect_to("other", wire="xml")
    with pytest.raises(TypeError):
        ipc.connect_to("other", colour="red")
    raw_server = make_ipc("raw").serve_net("127.0.0.1", 0, raw_buffer=True, encoding="hex")
    assert raw_server.config.raw_buffer and not make_ipc("x").config.raw_buffer


# --- a hostile peer on the node-ipc wire, over a real socket -----------------------------------


@pytest.fixture
def json_server(make_ipc):
    """A node-ipc-wire server with small limits, its errors and events, and a raw dialer."""
    from gevent import socket as gsocket
    socks = []

    def build(**config):
        server = make_ipc("world", wire="node-ipc", **config).serve()
        errors, got = [], []
        server.on("error", errors.append)
        server.on("message", lambda data, socket: got.append(data))
        server.start()
        sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(server.path)
        socks.append(sock)
        return server, errors, got, sock

    yield build
    for sock in socks:
        sock.close()


def _closed_by_server(sock) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_partial_frame_past_max_message_size_is_refused(json_server):
    server, errors, got, sock = json_server(max_message_size=1000)
    sock.sendall(b'{"type":"message","data":"ok"}\f{"type":"message","data":"')
    sock.sendall(b"x" * 600)
    gevent.sleep(0.05)
    sock.sendall(b"x" * 600)
    wait_until(lambda: errors, message="the error event")
    assert isinstance(errors[0], MessageTooLargeError)
    assert got == ["ok"]
    assert _closed_by_server(sock)


def test_slowloris_on_the_json_wire_is_refused(json_server):
    server, errors, got, sock = json_server(message_timeout=300)
    sock.sendall(b'{"type":"message","data":"ok"}\f{"type":"mess')
    wait_until(lambda: errors, timeout=5, message="the timeout")
    assert isinstance(errors[0], IncompleteMessageTimeoutError)
    assert got == ["ok"] and _closed_by_server(sock)


def test_server_survives_bad_json_and_serves_others(json_server, make_ipc):
    server, errors, got, sock = json_server()
    sock.sendall(b'{"type":"message","data":1}\f{"type":"message","data":}\f')
    wait_until(lambda: errors, message="the error event")
    assert type(errors[0]) is ProtocolError and "not valid JSON" in str(errors[0])
    assert _closed_by_server(sock)
    client = make_ipc("hello", wire="node-ipc").connect_to("world")
    client.emit("message", 2)
    wait_until(lambda: got == [1, 2], message="the next client's event")


def test_udp_datagrams_on_the_json_wire(make_ipc):
    import socket as stdsocket

    from conftest import free_port
    server = make_ipc("udp", wire="node-ipc").serve_net(
        "127.0.0.1", free_port(kind=stdsocket.SOCK_DGRAM), "udp4")
    errors, got = [], []
    server.on("error", errors.append)
    server.on("message", lambda data, socket: got.append(data))
    server.start()
    with stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM) as peer:
        target = ("127.0.0.1", server.port)
        peer.sendto(b'{"type":"message","data":1}\f{"type":"message","data":2}\f', target)
        peer.sendto(b'{"type":"message","data":3}', target)     # no delimiter: not whole
        wait_until(lambda: errors, message="the refused datagram")
        peer.sendto(b'{"type":"message","data":4}\f', target)   # the next one is fine
        wait_until(lambda: got == [1, 2, 4], message="the good datagrams")
    assert isinstance(errors[0], ProtocolError)
