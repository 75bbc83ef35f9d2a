"""``bytes_out`` and ``events_out`` are derived (what the kernel took plus what is
pending; the frames that left the queue plus those in it) instead of added per write: they
must still count every accepted byte and event, sent or stuck, and never go down."""
from __future__ import annotations

import os
from typing import Any, Callable

import gevent
from gevent import socket

from geventipc import IPC

from conftest import wait_until


def test_out_counters_count_sent_and_pending_and_never_go_down(
        make_ipc: Callable[..., IPC], sock_dir: str) -> None:
    path = os.path.join(sock_dir, "mute.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    accepted: list[Any] = []
    acceptor = gevent.spawn(lambda: accepted.append(listener.accept()[0]))
    # node-ipc's wire: no handshake, so a peer that never reads still counts as connected
    ipc = make_ipc("hello", wire="node-ipc", max_pending_bytes=64 * 1024 * 1024)
    client = ipc.connect_to("mute", path)
    client.wait_connected(5)
    wait_until(lambda: accepted, message="the accept")
    conn = client.conn
    frame_size = len(conn.codec.encode_event("m", "x" * 10_000))
    count = 0
    # until the kernel is full and bytes stay pending (the peer reads nothing)
    while conn.pending_bytes == 0 or count < 100:
        client.emit("m", "x" * 10_000)
        count += 1
        if count % 50 == 0:
            gevent.sleep(0)   # let the hub's flush hand what it can to the kernel
        assert count < 10_000, "the kernel never filled up"
    gevent.sleep(0.05)
    assert conn.pending_bytes > 0
    assert conn.bytes_out == count * frame_size
    assert conn.events_out == count
    assert conn.stats()["bytes_out"] == count * frame_size
    # the peer goes away with bytes still pending: the total stays what was accepted
    accepted[0].close()
    wait_until(lambda: client.conn is not conn, message="the client noticing the close")
    assert conn.bytes_out == count * frame_size
    assert conn.events_out == count   # the frames given back to the client still count
    acceptor.join(1)
    listener.close()
