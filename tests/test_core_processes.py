"""Real processes: the issue's own snippets, the examples, ``make demo``, a client killed
mid-stream, a server restarted at the same path, and ``gevent.monkey.patch_all()``."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import gevent
import pytest

from conftest import (ROOT, free_port, python_process, read_line, run_example, stop_process,
                      wait_until)

# The issue's server and client, word for word, then a line so the test knows when each
# is ready (the client one also keeps the process alive while the exchange happens).
ISSUE_SERVER = '''
from geventipc import ipc          # module-level default instance; IPC() makes independent ones

ipc.config.id = "world"
ipc.config.retry = 1500            # milliseconds, as in node-ipc

def started():
    @ipc.server.on("message")
    def on_message(data, socket):
        ipc.log("got a message:", data)
        ipc.server.emit(socket, "message", data + " world!")

    ipc.server.on("socket.disconnected",
                  lambda socket, destroyed_id: ipc.log("client", destroyed_id, "left"))

ipc.serve(started)       # path defaults to config.socket_root + config.appspace + config.id
ipc.server.start()                 # returns at once; serving runs in greenlets
print("READY", ipc.server.path, flush=True)
ipc.server.serve_forever()         # blocks until ipc.server.stop()
'''

ISSUE_CLIENT = '''
from geventipc import ipc
ipc.config.id = "hello"

def ready():
    world = ipc.of.world           # also ipc.of["world"]
    world.on("connect", lambda: world.emit("message", "hello"))
    world.on("disconnect", lambda: ipc.log("disconnected from world"))
    world.on("message", lambda data: ipc.log("got a message from world:", data))

ipc.connect_to("world", ready)     # returns at once; the connection lives in a greenlet

from gevent.event import Event
done = Event()
ipc.of.world.on("message", lambda data: done.set())   # after the snippet's own handler
print("DONE" if done.wait(10) else "NO REPLY", flush=True)
'''


@pytest.fixture
def runtime_dir():
    """A private ``$XDG_RUNTIME_DIR`` for processes that use the default socket root."""
    path = tempfile.mkdtemp(prefix="gipc-run-", dir="/tmp")
    os.chmod(path, 0o700)
    yield path + os.sep
    shutil.rmtree(path, ignore_errors=True)


def runtime_env(runtime_dir):
    """Point the default socket root at the test's private directory."""
    return {"XDG_RUNTIME_DIR": runtime_dir.rstrip("/")}


def test_the_issue_snippets_as_two_processes(runtime_dir):
    sock_dir = runtime_dir
    env = runtime_env(sock_dir)
    server = python_process(ISSUE_SERVER, env=env)
    try:
        line = read_line(server)
        assert line == f"READY {sock_dir}geventipc-{os.getuid()}/app.world"
        client = python_process(ISSUE_CLIENT, env=env)
        assert read_line(client) == "DONE"
        client.wait(5)
        client_log = client.stderr.read()
        assert "got a message from world: hello world!" in client_log
    finally:
        server.send_signal(signal.SIGINT)
        stop_process(server)
    server_log = server.stderr.read()
    assert "got a message: hello" in server_log
    assert "client hello left" in server_log


def wait_for_log(proc, text, timeout=10.0):
    """Read the process's stderr (where ipc.log writes) until ``text`` shows up."""
    from gevent.os import make_nonblocking, nb_read
    fd = proc.stderr.fileno()
    make_nonblocking(fd)
    seen = b""
    with gevent.Timeout(timeout, False):
        while text.encode() not in seen:
            chunk = nb_read(fd, 65536)
            if not chunk:
                raise AssertionError(f"process ended; log so far: {seen!r}")
            seen += chunk
        return seen.decode()
    # here, not in the Timeout's exception: that one was built while the log was empty
    raise AssertionError(f"no {text!r} in the log within {timeout} s: {seen!r}")


@pytest.mark.parametrize("server, client, extra", [
    ("examples/world.py", "examples/hello.py", False),
    ("examples/tcp_world.py", "examples/tcp_hello.py", True),
])
def test_examples_talk_to_each_other(runtime_dir, server, client, extra):
    sock_dir = runtime_dir
    env = runtime_env(sock_dir)
    args = [str(free_port())] if extra else []
    world = subprocess.Popen([sys.executable, server, *args], cwd=ROOT,
                             env=dict(os.environ, **env), stderr=subprocess.PIPE)
    try:
        wait_for_log(world, "listening")
        hello = run_example([client, *args], env)
        assert hello.returncode == 0, hello.stderr
        # a pipe is no terminal: the log is plain text, no colour codes (issue 13)
        assert "got a message from world: hello world!" in hello.stderr
        assert "\x1b[" not in hello.stderr
        assert "connected to world" in hello.stderr
        world.send_signal(signal.SIGTERM)
        assert world.wait(5) == 0
        rest = world.stderr.read().decode()
        assert "world stopped" in rest
    finally:
        stop_process(world)
    assert not os.path.exists(f"{sock_dir}geventipc-{os.getuid()}/app.world")


def test_make_demo_runs_and_exits_by_itself():
    demo = run_example(["examples/demo.py"], {}, timeout=30)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout + demo.stderr
    # the server and the client log their side, once over Unix and once over TCP; through
    # pipes (no terminal here) as plain text (FORCE_COLOR: tests/test_log_output.py)
    assert out.count("got a message: hello\n") == 2
    assert out.count("got a message from world: hello world!") == 2
    assert "demo done" in out


# --- a client process killed mid-stream ------------------------------------------------

STREAMING_CLIENT = '''
import sys, gevent
from geventipc import IPC
ipc = IPC(id=sys.argv[2], socket_root=sys.argv[1], silent=True)
client = ipc.connect_to("world")
client.wait_connected(5)
print("CONNECTED", flush=True)
i = 0
while True:
    client.emit("tick", [sys.argv[2], i])
    i += 1
    gevent.sleep(0.001)
'''


def test_client_process_killed_mid_stream(make_ipc, sock_dir):
    world = make_ipc("world")
    ticks = {"a": [], "b": []}
    gone = []
    world.serve(lambda: world.server.on("tick", lambda d, s: ticks[d[0]].append(d[1])))
    world.server.on("socket.disconnected", lambda sock, destroyed_id: gone.append(destroyed_id))
    world.server.start()
    procs = {name: python_process(STREAMING_CLIENT, sock_dir, name) for name in ticks}
    try:
        for proc in procs.values():
            assert read_line(proc) == "CONNECTED"
        wait_until(lambda: len(ticks["a"]) > 50 and len(ticks["b"]) > 50, timeout=10,
                   message="both clients streaming")
        procs["a"].kill()                        # SIGKILL: no goodbye on the wire
        procs["a"].wait(5)
        wait_until(lambda: gone == ["a"], message="socket.disconnected for a")
        assert [s.id for s in world.server.sockets] == ["b"]
        seen_b = len(ticks["b"])
        wait_until(lambda: len(ticks["b"]) > seen_b + 50, message="b still served")
        # each stream arrived in order with no gaps, up to where a died
        assert ticks["a"] == list(range(len(ticks["a"])))
        assert ticks["b"] == list(range(len(ticks["b"])))
        assert world.server.started
    finally:
        for proc in procs.values():
            stop_process(proc)


# --- a server process restarted at the same path ----------------------------------------

RECORDING_SERVER = '''
import sys
from geventipc import IPC
ipc = IPC(id="world", socket_root=sys.argv[1], silent=True)

def started():
    ipc.server.on("n", lambda data, socket: print("GOT", data, flush=True))
    ipc.server.on("ping", lambda data, socket: socket.emit("pong", sys.argv[2]))

ipc.serve(started)
ipc.server.start()
print("READY", flush=True)
ipc.server.serve_forever()
'''


def read_got(proc, count):
    return [int(read_line(proc).split()[1]) for _ in range(count)]


@pytest.mark.parametrize("how", ["kill", "terminate"])
def test_server_process_restarted_at_the_same_path(make_ipc, sock_dir, how):
    first = python_process(RECORDING_SERVER, sock_dir, "first")
    second = None
    try:
        assert read_line(first) == "READY"
        client = make_ipc("hello", retry=50).connect_to("world")
        events, pongs = [], []
        client.on("connect", lambda: events.append("connect"))
        client.on("disconnect", lambda: events.append("disconnect"))
        client.on("pong", pongs.append)
        client.wait_connected(5)
        for i in range(5):
            client.emit("n", i)
        assert read_got(first, 5) == [0, 1, 2, 3, 4]
        client.emit("ping")
        wait_until(lambda: pongs == ["first"], message="the first server's pong")

        if how == "kill":
            first.kill()                         # leaves a stale socket file behind
        else:
            first.send_signal(signal.SIGINT)
        first.wait(5)
        wait_until(lambda: events == ["connect", "disconnect"], message="the disconnect")
        for i in range(5, 25):
            client.emit("n", i)                  # queued while there is no server
        assert client.queued == 20

        second = python_process(RECORDING_SERVER, sock_dir, "second")
        assert read_line(second) == "READY"
        assert read_got(second, 20) == list(range(5, 25))    # once each, in order
        client.emit("ping")
        wait_until(lambda: pongs == ["first", "second"], message="the new server's pong")
        assert events == ["connect", "disconnect", "connect"]
        client.emit("n", 99)
        assert read_got(second, 1) == [99]                  # nothing duplicated before it
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)


def test_server_process_restarted_on_the_same_tcp_port(make_ipc):
    port = free_port()
    code = RECORDING_SERVER.replace(
        'IPC(id="world", socket_root=sys.argv[1], silent=True)',
        'IPC(id="world", network_host="127.0.0.1", network_port=int(sys.argv[1]), silent=True)'
    ).replace("ipc.serve(started)", "ipc.serve_net(started)")
    first = python_process(code, str(port), "first")
    second = None
    try:
        assert read_line(first) == "READY"
        client = make_ipc("hello", retry=50).connect_to_net("world", "127.0.0.1", port)
        client.wait_connected(5)
        client.emit("n", 1)
        assert read_got(first, 1) == [1]
        first.kill()
        first.wait(5)
        wait_until(lambda: not client.connected, message="the disconnect")
        client.emit("n", 2)
        second = python_process(code, str(port), "second")
        assert read_line(second) == "READY"
        assert read_got(second, 1) == [2]
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)


# --- gevent.monkey.patch_all() -----------------------------------------------------------

PATCHED = '''
from gevent import monkey
monkey.patch_all()
import socket, sys, threading, time
from geventipc import IPC

assert monkey.is_module_patched("socket")
world = IPC(id="world", socket_root=sys.argv[1], silent=True)
hello = IPC(id="hello", socket_root=sys.argv[1], silent=True, retry=50)
got = []
world.serve(lambda: world.server.on("m", lambda d, s: s.emit("m", d + 1)))
world.server.start()
client = hello.connect_to("world")
client.on("m", got.append)
client.wait_connected(5)
client.emit("m", 1)
deadline = time.time() + 5
while not got and time.time() < deadline:
    time.sleep(0.01)                   # patched: yields to the hub
assert got == [2], got
# a patched thread drives a client too
def in_thread():
    client.emit("m", 10)
t = threading.Thread(target=in_thread)
t.start(); t.join()
while len(got) < 2 and time.time() < deadline:
    time.sleep(0.01)
assert got == [2, 11], got
# and another process reaches this one
print("READY", flush=True)
world.server.serve_forever()
'''


def test_works_with_monkey_patch_all(sock_dir):
    proc = python_process(PATCHED, sock_dir)
    try:
        assert read_line(proc) == "READY", proc.stderr.read()
        # an unpatched client in this process talks to the patched server there
        from geventipc import IPC
        other = IPC(id="outsider", socket_root=sock_dir, silent=True)
        got = []
        client = other.connect_to("world")
        client.on("m", got.append)
        client.wait_connected(5)
        client.emit("m", 41)
        wait_until(lambda: got == [42], message="the patched server's answer")
        other.disconnect("world")
    finally:
        stop_process(proc)


def test_importing_does_not_monkey_patch():
    """The rest of the suite runs unpatched (pytest's process is never patched); this
    checks that importing geventipc does not patch anything behind the user's back."""
    proc = python_process('''
import gevent.monkey
from geventipc import ipc
assert not any(gevent.monkey.is_module_patched(m)
               for m in ("socket", "time", "threading", "select", "os", "ssl"))
print("OK", flush=True)
''')
    try:
        assert read_line(proc) == "OK"
    finally:
        stop_process(proc)


def test_events_emitted_before_the_client_notices_a_dead_server_are_kept(make_ipc,
                                                                          sock_dir):
    """Unix sockets refuse writes to a dead peer (EPIPE), so nothing emitted after the
    server died was taken by a kernel: all of it must reach the next server."""
    first = python_process(RECORDING_SERVER, sock_dir, "first")
    second = None
    try:
        assert read_line(first) == "READY"
        client = make_ipc("hello", retry=50).connect_to("world")
        errors = []
        client.on("error", errors.append)
        client.wait_connected(5)
        client.emit("n", 0)
        assert read_got(first, 1) == [0]
        first.kill()
        first.wait(5)
        for i in range(1, 11):
            client.emit("n", i)                  # the client has not seen the close yet
        wait_until(lambda: not client.connected, message="the disconnect")
        second = python_process(RECORDING_SERVER, sock_dir, "second")
        assert read_line(second) == "READY"
        assert read_got(second, 10) == list(range(1, 11))
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)


CLOSING_PEER = '''
import socket, sys, time
srv = socket.socket(socket.AF_UNIX)
srv.bind(sys.argv[1])
srv.listen(1)
print("READY", flush=True)
conn, _ = srv.accept()
conn.sendall(b"\\x92\\xac$ipc.welcome\\x80")   # ["$ipc.welcome", {}]: taken, then gone
time.sleep(0.2)
conn.close()
srv.close()
'''


def test_a_large_emit_into_a_dead_connection_is_requeued(make_ipc, sock_dir):
    """A write big enough to be flushed at once, into a connection whose peer has gone
    (EPIPE: the kernel took none of it), is queued again and reaches the next server."""
    import time
    path = sock_dir + "app.world"
    peer = python_process(CLOSING_PEER, path)
    try:
        assert read_line(peer) == "READY"
        client = make_ipc("hello", retry=50).connect_to("world")
        client.wait_connected(5)
        time.sleep(0.5)      # blocks the hub: the client cannot notice the peer leaving
        big = b"x" * 300_000
        client.emit("big", big)
        client.emit("n", 1)
        peer.wait(5)
        os.unlink(path)
        got = []
        world = make_ipc("world")
        world.serve(lambda: (world.server.on("big", lambda d, s: got.append(len(d))),
                             world.server.on("n", lambda d, s: got.append(d))))
        world.server.start()
        wait_until(lambda: len(got) == 2, message="the requeued events")
        assert got == [300_000, 1]
    finally:
        stop_process(peer)


def test_world_example_stops_cleanly_on_sigterm_with_clients_connected(runtime_dir):
    """SIGTERM stops the server: clients are closed, the socket file is removed, and
    the process exits 0 (serve_forever returns only once stop() has finished)."""
    from geventipc import IPC
    env = runtime_env(runtime_dir)
    world = subprocess.Popen([sys.executable, "examples/world.py"], cwd=ROOT,
                             env=dict(os.environ, **env), stderr=subprocess.PIPE)
    path = f"{runtime_dir}geventipc-{os.getuid()}/app.world"
    try:
        wait_for_log(world, "listening")
        hello = IPC(id="hello", socket_root=os.path.dirname(path), silent=True,
                    stop_retrying=True)
        client = hello.connect_to("world")
        replies = []
        client.on("message", replies.append)
        client.wait_connected(5)
        client.emit("message", "hello")
        wait_until(lambda: replies == ["hello world!"], message="the reply")
        world.send_signal(signal.SIGTERM)
        assert world.wait(5) == 0
        assert not os.path.exists(path)
        wait_until(lambda: client.destroyed, message="the client to see the close")
    finally:
        stop_process(world)


def test_broadcast_example():
    run = run_example(["examples/broadcast.py"], {})
    assert run.returncode == 0, run.stderr
    log = run.stderr
    for name in ("alpha", "beta", "gamma"):
        # a pipe: plain text, no colour codes
        assert f"{name} got: hello {name}" in log
        ticks = [line for line in log.splitlines() if line.startswith(f"{name} tick")]
        assert [t.rsplit(" ", 1)[1] for t in ticks] == ["0", "1", "2"]
        assert f"left: {name}" in log
    assert "\x1b[" not in log


def test_reconnect_example():
    run = run_example(["examples/reconnect.py"], {})
    assert run.returncode == 0, run.stderr
    got = [line.rsplit(" ", 1)[1] for line in run.stderr.splitlines() if "server got" in line]
    assert got == ["0", "1", "2", "3", "4"]      # once each, in order, across the restart
    assert "queued while away: 3" in run.stderr
    assert run.stderr.count("second server got") == 3


def readme_python_blocks():
    import re
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_quick_start_runs(runtime_dir):
    """The README's first two Python blocks (the quick start) work as they are."""
    world_code, hello_code = readme_python_blocks()[:2]
    assert "ipc.serve(started)" in world_code and 'ipc.connect_to("world"' in hello_code
    env = dict(os.environ, **runtime_env(runtime_dir))
    world = subprocess.Popen([sys.executable, "-c", world_code], cwd=ROOT, env=env,
                             stderr=subprocess.PIPE)
    try:
        wait_until(lambda: os.path.exists(f"{runtime_dir}geventipc-{os.getuid()}/app.world"),
                   timeout=10, message="the quick-start server")
        hello = subprocess.run([sys.executable, "-c", hello_code], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=20)
        assert hello.returncode == 0, hello.stderr
        assert "got a message from world: hello world!" in hello.stderr
    finally:
        stop_process(world)
    assert "got a message: hello" in world.stderr.read().decode()
