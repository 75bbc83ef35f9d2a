"""Bounded fuzz run of geventipc's decoders: ``make fuzz`` (not part of ``make test``).

Every codec (msgpack, node-ipc JSON, raw) is fed fuzzer-chosen bytes split at
fuzzer-chosen points, under a fuzzer-chosen ``max_message_size``. A finding is anything but
the contract: ``feed`` returns well-formed frames (event names that pass the name rules) or
raises ``geventipc.errors.ProtocolError`` (whose ``frames`` obey the same rules); nothing
else, ever.

With atheris installed (``pip install atheris``; ``make fuzz`` tries) the run is
coverage-guided; without it, hypothesis generates the inputs at scale. Either way the run
stops after ``--seconds`` (default 120) and exits non-zero on the first finding, printing
the input that caused it (atheris also writes it to ``--artifacts``).

    python fuzz/fuzz_decoders.py --seconds 60 [--codec msgpack] [--engine hypothesis]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import msgpack

from geventipc.config import Config
from geventipc.errors import ProtocolError
from geventipc.wire import EventNames, make_codec

CODECS = {
    "msgpack": {},
    "node-ipc": {"wire": "node-ipc"},
    "raw": {"raw_buffer": True},
}
LIMITS = (64, 1024, 65536)


def new_codec(kind: str, limit: int) -> Any:
    """A fresh codec of ``kind`` with ``max_message_size=limit``."""
    return make_codec(Config(max_message_size=limit, **CODECS[kind]))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length), empty pieces dropped."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points + [len(data)]:
        if point > last:
            pieces.append(data[last:point])
        last = point
    return pieces


_NAMES = EventNames()


def check_frames(kind: str, codec: Any, frames: list) -> None:
    """Raise AssertionError if a decoded frame breaks the codec contract."""
    assert isinstance(frames, list), frames
    for frame in frames:
        if not codec.framed:
            continue
        assert isinstance(frame, list) and len(frame) in (2, 3), frame
        if len(frame) == 3 and type(frame[0]) is int:
            assert type(frame[1]) is int, frame      # a reply
            continue
        problem = _NAMES.problem(frame[0], internal_ok=True)
        assert problem is None, (problem, frame)


def run_one(kind: str, limit: int, cuts: list[int], payload: bytes) -> None:
    """Feed ``payload`` cut at ``cuts`` to a fresh codec; raise on any contract breach."""
    codec = new_codec(kind, limit)
    try:
        for piece in split(payload, cuts):
            check_frames(kind, codec, codec.feed(piece))
        probe = getattr(codec, "incomplete", None)
        if probe is not None:
            probe()
    except ProtocolError as exc:
        check_frames(kind, codec, exc.frames)


def seeds() -> list[bytes]:
    """Valid streams to start from: the fuzzer mutates these."""
    pack = msgpack.Packer(use_bin_type=True).pack
    events = [pack(["ev", {"a": [1, 2.5, None, True], "b": b"\x00" * 20}]),
              pack(["$ipc.hello", {"id": "x"}]), pack(["req", "data", 7]),
              pack([7, 0, "reply"]), pack(["e", "x" * 300])]
    json_events = [b'{"type":"ev","data":{"a":[1,2.5,null,true]}}\f',
                   b'{"type":"e","data":"\\u00e9"}\f']
    return [b"".join(events), *events, *json_events, b"".join(json_events)]


# --- atheris -------------------------------------------------------------------------------


def fuzz_atheris(kinds: list[str], seconds: int, artifacts: str) -> int:
    import atheris  # noqa: PLC0415 - optional

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        kind = kinds[fdp.ConsumeIntInRange(0, len(kinds) - 1)]
        limit = LIMITS[fdp.ConsumeIntInRange(0, len(LIMITS) - 1)]
        cuts = [fdp.ConsumeIntInRange(0, 4096) for _ in range(fdp.ConsumeIntInRange(0, 6))]
        run_one(kind, limit, cuts, fdp.ConsumeBytes(fdp.remaining_bytes()))

    corpus = tempfile.mkdtemp(prefix="geventipc-fuzz-corpus-")
    for index, seed in enumerate(seeds()):
        for prefix in (b"\x00\x00\x00\x00", b"\x01\x00\x00\x00", b"\x02\x00\x00\x00"):
            with open(os.path.join(corpus, f"seed-{index}-{prefix[0]}"), "wb") as f:
                f.write(prefix + seed)
    os.makedirs(artifacts, exist_ok=True)
    argv = [sys.argv[0], corpus, f"-max_total_time={seconds}", "-rss_limit_mb=2048",
            "-max_len=4096", f"-artifact_prefix={artifacts.rstrip(os.sep)}{os.sep}",
            "-print_final_stats=1"]
    for kind in kinds:   # import every codec's module before instrumenting
        new_codec(kind, LIMITS[0])
    atheris.instrument_all()   # coverage feedback from geventipc's Python code
    atheris.Setup(argv, one_input)
    atheris.Fuzz()   # exits the process: 0 when time is up, non-zero on a finding
    return 0


# --- hypothesis at scale -------------------------------------------------------------------


def fuzz_hypothesis(kinds: list[str], seconds: int) -> int:
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415
    from hypothesis import strategies as st  # noqa: PLC0415

    seed_list = seeds()
    payloads = st.one_of(
        st.binary(max_size=4096),
        # mutated valid streams reach far deeper into the decoders than random bytes
        st.tuples(st.sampled_from(seed_list),
                  st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8),
                  st.binary(max_size=64)).map(_mutate),
    )
    runs = 0

    @settings(max_examples=2000, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(kinds), st.sampled_from(LIMITS),
           st.lists(st.integers(0, 4096), max_size=6), payloads)
    def property_(kind: str, limit: int, cuts: list[int], payload: bytes) -> None:
        nonlocal runs
        runs += 1
        run_one(kind, limit, cuts, payload)

    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        property_()   # raises (and hypothesis prints the shrunk input) on a finding
        rounds += 1
    print(f"fuzz (hypothesis): {runs} inputs in {rounds} rounds over {seconds} s, "
          f"codecs {', '.join(kinds)}: no findings")
    return 0


def _mutate(args: tuple[bytes, list[tuple[int, int]], bytes]) -> bytes:
    seed, flips, tail = args
    data = bytearray(seed)
    for where, value in flips:
        data[where % len(data)] = value
    return bytes(data) + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 120)))
    parser.add_argument("--codec", choices=sorted(CODECS), action="append",
                        help="codec to fuzz (repeatable; default all)")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--artifacts", default=os.path.join(tempfile.gettempdir(),
                                                            "geventipc-fuzz-findings"))
    args = parser.parse_args(argv)
    kinds = args.codec or list(CODECS)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401, PLC0415
            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    print(f"fuzz: {engine}, {args.seconds} s, codecs {', '.join(kinds)}", flush=True)
    if engine == "atheris":
        return fuzz_atheris(kinds, args.seconds, args.artifacts)
    return fuzz_hypothesis(kinds, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
