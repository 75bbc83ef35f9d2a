"""docs/protocol.md stays true: its byte examples are what the codec writes and reads."""
import os
import re

import pytest

from geventipc.wire import EventNames, MsgpackCodec

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "docs", "protocol.md")


def doc_hex():
    """The hex bytes of each code block in the doc (the part of each line before a
    two-space gap, when it is all hex pairs), one string per block, joined by ``|``."""
    text = open(DOC, encoding="utf-8").read()
    runs = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        data = ""
        for line in block.splitlines():
            head = re.split(r"\s{2,}", line.strip())[0].split()
            if head and all(re.fullmatch(r"[0-9a-f]{2}", t) for t in head):
                data += "".join(head)
        runs.append(data)
    return "|".join(runs)


@pytest.mark.parametrize("kind, args", [
    ("event", ("message", "hello")),
    ("event", ("message", "hello world!")),
    ("event", ("message", None)),
    ("event", ("$ipc.hello", {"id": "hello"})),
    ("event", ("n", [1, -1, 2**32, 1.5, True, False, None])),
    ("event", ("blob", b"\x00\x01\x02")),
    ("request", ("add", {"a": 1, "b": 2}, 7)),
    ("request", ("$ipc.describe", None, 1)),
    ("reply", (7, 0, 3)),
    ("reply", (7, 1, {"type": "ValueError", "message": "bad"})),
    ("reply", (7, 2, {"type": "NoHandlerError", "message": "no handler for 'add'"})),
])
def test_documented_bytes_match_the_codec(kind, args):
    codec = MsgpackCodec(EventNames())
    encoded = getattr(codec, f"encode_{kind}")(*args)
    assert encoded.hex() in doc_hex(), f"{args} is not in docs/protocol.md as {encoded.hex()}"
    # and the codec reads the documented bytes back as the same frame
    assert codec.feed(encoded) == [list(args)]


def test_frames_split_anywhere_decode_the_same():
    codec = MsgpackCodec(EventNames())
    stream = (codec.encode_event("$ipc.hello", {"id": "x"}) +
              codec.encode_event("message", "hello") + codec.encode_request("add", 1, 2) +
              codec.encode_reply(2, 0, 3))
    for cut in range(len(stream)):
        reader = MsgpackCodec(EventNames())
        frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert frames == [["$ipc.hello", {"id": "x"}], ["message", "hello"],
                          ["add", 1, 2], [2, 0, 3]]
