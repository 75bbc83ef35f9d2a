"""Request/reply, deferred replies, fan-out/fan-in, describe() and sync mode.

    python examples/request_reply.py

Starts a server in a child process (this same file with ``--server``), talks to it from
this process, prints what happens, and exits. The socket lives in a fresh private temp
directory, so it never collides with a server already running.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import gevent

from geventipc import IPC
from geventipc.errors import NoHandlerError, RemoteError, Timeout
from geventipc.reply import Deferred


def run_server(socket_root: str) -> None:
    """The server side: request handlers, a deferred reply, and definitions."""
    ipc = IPC(id="world", socket_root=socket_root, silent=True)
    ipc.serve()
    server = ipc.server

    @server.handle("sum")                  # the return value is the reply
    def total(numbers, socket):
        return sum(numbers)

    @server.handle("divide")               # an exception reaches the caller as RemoteError
    def divide(pair, socket):
        return pair[0] / pair[1]

    @server.handle("slow")
    def slow(seconds, socket):
        gevent.sleep(seconds)
        return f"slept {seconds} s"

    @server.handle("later")                # answer from another greenlet
    def later(name, socket):
        reply = Deferred()
        gevent.spawn_later(0.1, reply.send, f"hello {name}, from a greenlet")
        return reply

    @server.handle("square", pool=True)    # these run side by side in the server's pool
    def square(n, socket):
        gevent.sleep(0.2)
        return n * n

    @server.on("job")                      # an event; answered with an event (sync mode)
    def job(n, socket):
        server.emit(socket, "job.done", n)

    server.define.listen.sum = "a list of numbers; replies with their sum"
    server.define.listen.job = "a job number; answered with job.done"
    server.define.broadcast["job.done"] = "the job number, once it is done"
    server.start()
    print("ready", flush=True)
    server.serve_forever()


def run_client(socket_root: str) -> None:
    """The client side: one of each kind of call."""
    ipc = IPC(id="hello", socket_root=socket_root, silent=True)
    client = ipc.connect_to("world")
    client.wait_connected(5)

    print("sum([1, 2, 3])              ->", client.request("sum", [1, 2, 3], timeout=2.0))
    try:
        client.request("divide", [1, 0])
    except RemoteError as exc:
        print("divide([1, 0])              -> RemoteError:", exc.remote_type, "/",
              exc.remote_message)
    try:
        client.request("multiply", [2, 3])
    except NoHandlerError as exc:
        print("multiply (no handler)       -> NoHandlerError:", exc.remote_message)
    try:
        client.request("slow", 0.3, timeout=0.1)
    except Timeout as exc:                 # geventipc.errors.Timeout, a TimeoutError
        print("slow(0.3) with timeout=0.1  -> Timeout:", exc)
    print("sum([4, 5]) right after     ->", client.request("sum", [4, 5]),
          f"(the late reply to 'slow' was discarded: late_replies={client.late_replies})")
    print("later('ann')                ->", client.request("later", "ann"))

    started = time.monotonic()
    results = [client.request_async("square", n, timeout=5) for n in range(10)]
    gevent.wait(results)                   # fan-out, then fan-in
    print("10 x square (0.2 s each)    ->", [r.get() for r in results],
          f"in {time.monotonic() - started:.2f} s")
    print("describe()                  ->", client.describe())
    ipc.disconnect("world")

    # sync mode (node-ipc's config.sync): the next event goes only after an answer
    sync_ipc = IPC(id="hello-sync", socket_root=socket_root, silent=True, sync=True)
    sync_client = sync_ipc.connect_to("world")
    done = []
    sync_client.on("job.done", done.append)
    for n in range(5):
        sync_client.emit("job", n)
    print("sync: emitted 5 jobs; held back right away:", sync_client.queued)
    with gevent.Timeout(5):
        while len(done) < 5:
            gevent.sleep(0.01)
    print("sync: answers, one at a time:", done)
    sync_ipc.disconnect("world")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--server":
        run_server(sys.argv[2])
        return 0
    root = tempfile.mkdtemp(prefix="gipc-example-")
    os.chmod(root, 0o700)
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--server", root],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            print("the server did not start", file=sys.stderr)
            return 1
        run_client(root)
        return 0
    finally:
        server.terminate()
        server.wait(5)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
