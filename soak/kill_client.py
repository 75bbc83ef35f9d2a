"""A kill-run client process (soak/kill.py starts and kills -9 it): emits numbered events
and requests for ``seconds``, printing ``sent N`` as it goes (what a kill -9 cannot take
back), then drains and prints ``done N``."""
from __future__ import annotations

import random
import sys
import time

import gevent

from geventipc import IPC
from geventipc.errors import IPCError


def main() -> None:
    name, transport, path, port, seconds = sys.argv[1:6]
    ipc = IPC(id=name, silent=True, retry=50, max_queued_events=1_000_000)
    client = (ipc.connect_to("soak", path) if transport == "unix"
              else ipc.connect_to_net("soak", "127.0.0.1", int(port)))
    rng = random.Random(name)
    until = time.monotonic() + float(seconds)
    seq = 0
    last_said = 0.0
    while time.monotonic() < until:
        try:
            if rng.random() < 0.1:
                client.request_async("req", [name, seq], timeout=30)
            else:
                client.emit("n", [name, seq])
        except IPCError as exc:
            print(f"error {type(exc).__name__}: {exc}", flush=True)
            break
        seq += 1
        if time.monotonic() - last_said > 0.1:
            print(f"sent {seq}", flush=True)
            last_said = time.monotonic()
        gevent.sleep(rng.uniform(0.001, 0.006))
    print(f"sent {seq}", flush=True)
    deadline = time.monotonic() + 30
    while (client.queued or client.conn is None or client.conn.pending_bytes) \
            and time.monotonic() < deadline:
        gevent.sleep(0.05)
    print(f"done {seq}", flush=True)
    gevent.sleep(1.0)   # let the server read the tail before the close
    ipc.disconnect("soak")


if __name__ == "__main__":
    main()
