"""The ``geventipc`` command line, driven as a real console script in subprocesses.

Servers are either the CLI's own ``serve`` (another process) or a geventipc server in this
test process; every wait is bounded, so a hang fails in seconds.
"""
from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time

import gevent
import pytest
from gevent import subprocess as gsubprocess

from conftest import ROOT, free_port, wait_until

BIN = os.path.join(os.path.dirname(sys.executable), "geventipc")
CLI = [BIN] if os.path.exists(BIN) else [sys.executable, "-m", "geventipc"]
ENV = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="")
ENV.pop("NO_COLOR")


def cli(*args: str, input: str | None = None, timeout: float = 20.0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the console script to the end, cooperatively (in-process servers keep going)."""
    return gsubprocess.run([*CLI, *args], input=input, capture_output=True, text=True,
                           timeout=timeout, cwd=ROOT, env=env or ENV)


def start_cli(*args: str, **popen: object) -> gsubprocess.Popen:
    """Start the console script in the background; stdout and stderr piped."""
    return gsubprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=ROOT, env=ENV, **popen)


def read_line(proc: gsubprocess.Popen, stream: str = "stdout", timeout: float = 10.0) -> str:
    """One line of the process's ``stream``, waiting at most ``timeout`` s."""
    pipe = getattr(proc, stream)
    with gevent.Timeout(timeout, AssertionError(f"no {stream} line within {timeout} s")):
        line = pipe.readline()
    if not line:
        raise AssertionError(f"process ended without a {stream} line; rc={proc.poll()}")
    return line.decode()


def finish(proc: gsubprocess.Popen, timeout: float = 10.0) -> tuple[int, str, str]:
    """Wait for ``proc`` to exit by itself; (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            if os.getpgid(proc.pid) == proc.pid:   # a session of its own: end it all
                os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.kill()
        proc.communicate(timeout=5)
        raise AssertionError(f"process did not exit within {timeout} s") from None
    return proc.returncode, out.decode(), err.decode()


def read_pty(master: int) -> bytes:
    """All a (now exited) process wrote to the terminal whose master side is ``master``."""
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:   # EIO: the terminal's other side is closed
            return output
        if not chunk:
            return output
        output += chunk


def close_pty(master: int, proc: gsubprocess.Popen) -> None:
    """Close the terminal and kill (and reap) ``proc`` if it is still running."""
    os.close(master)
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def procs():
    """Processes a test starts; killed (and reaped) if still running at the end."""
    started: list[gsubprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def one_error_line(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """Assert an exit status and exactly one stderr line naming ``words``."""
    lines = result.stderr.splitlines()
    assert result.returncode == code, result
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def one_error_line_from_end(result, code, *words):
    """serve logs on stderr before failing: the error is its last line, and only one."""
    assert result.returncode == code, result
    errors = [line for line in result.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    for word in words:
        assert word in errors[0]


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- a server in this process ------------------------------------------------------------


@pytest.fixture
def world(make_ipc):
    """A Unix-socket server "world" in this process: records events, answers requests."""
    ipc = make_ipc("world")
    got: list = []
    server = ipc.serve()
    server.on("*", lambda type, data, socket: got.append((type, data, socket.id)))

    @server.handle("add")
    def add(data, socket):
        return sum(data)

    @server.handle("fail")
    def fail(data, socket):
        raise ValueError("no good: " + str(data))

    @server.handle("slow")
    def slow(data, socket):
        gevent.sleep(5)

    server.define.listen.message = "a string to print"
    server.define.broadcast.tick = "every 50 ms: a counter"
    server.start()
    server.got = got
    return server


def root_of(server) -> str:
    return os.path.dirname(server.path) + os.sep


# --- help and usage ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "emit", "request", "listen", "describe"])
def test_every_command_has_help_with_examples(command):
    result = cli(command, "--help")
    assert result.returncode == 0, result
    assert f"geventipc {command}" in result.stdout
    assert "examples:" in result.stdout
    assert "exit status" in result.stdout


def test_top_level_help_version_and_python_dash_m():
    top = cli("--help")
    assert top.returncode == 0
    for command in ("serve", "emit", "request", "listen", "describe"):
        assert command in top.stdout
    module = gsubprocess.run([sys.executable, "-m", "geventipc", "--version"],
                             capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert module.returncode == 0, module
    assert module.stdout.startswith("geventipc ")


@pytest.mark.parametrize("args, words", [
    ((), ["COMMAND"]),
    (("bogus",), ["invalid choice"]),
    (("emit",), ["missing TARGET"]),
    (("emit", "world"), ["TARGET TYPE"]),
    (("emit", "world", "message", "not json"), ["not valid JSON", "--text"]),
    (("emit", "world", "message", "@/nonexistent/file.json"), ["cannot read"]),
    (("emit", "world", "connect"), ["reserved"]),
    (("emit", "ftp://host:1", "message"), ["unknown scheme"]),
    (("emit", "tcp://127.0.0.1:99999", "message"), ["out of range"]),
    (("emit", "tcp://::1:80", "message"), ["brackets"]),
    (("emit", "tcp://localhost", "message"), ["HOST:PORT"]),
    (("emit", "localhost:8000", "message"), ["looks like HOST:PORT", "tcp://localhost:8000"]),
    (("request", "world", "add", "--raw"), ["msgpack wire"]),
    (("describe", "world", "--wire", "node-ipc"), ["msgpack wire"]),
    (("listen", "udp://127.0.0.1:9", ), ["serve --udp"]),
    (("emit", "world", "message", "--timeout", "0"), ["more than 0"]),
    (("emit", "world", "message", "--wire", "json"), ["invalid choice"]),
    (("serve",), ["exactly one"]),
    (("emit", "world", "m", "--encoding", "hex"), ["add --raw"]),
    (("serve", "./world.sock", "--tcp", "127.0.0.1:1"), ["is an address", "drop --tcp"]),
    (("serve", "tcp://127.0.0.1:2", "--tcp", "127.0.0.1:1"), ["is an address", "server's id"]),
    (("serve", "localhost:2", "--udp", "127.0.0.1:1"), ["is an address", "drop --udp"]),
    (("serve", "world", "--tcp", "127.0.0.1:1", "--id", "other"), ["two server ids"]),
    (("serve", "world", "--path", "/tmp/x.sock"), ["exactly one"]),
    (("emit", "world", "message", "--tls-ca", "/nonexistent.pem"), ["does not exist"]),
    (("emit", "world", "message", "--tls-ca", os.path.join(ROOT, "setup.py")),
     ["TLS works over TCP"]),
    (("serve", "tls://127.0.0.1:0"), ["--tls-cert"]),
    (("serve", "--tcp", "127.0.0.1:0", "--tls-cert", "setup.py", "--tls-key", "setup.py"),
     ["cannot load certificate"]),
    (("emit", "tls://127.0.0.1:1", "m", "--tls-ca", "setup.py"), ["trustedConnections"]),
])
def test_usage_errors_exit_2_with_one_line(args, words, sock_dir):
    result = cli(*args, "--socket-root", sock_dir) if args else cli()
    one_error_line(result, 2, *words)
    assert result.stdout == ""


# --- emit --------------------------------------------------------------------------------


def test_emit_json_text_file_and_bytes_to_a_server_by_id(world, tmp_path):
    root = root_of(world)
    payload = tmp_path / "payload.json"
    payload.write_text('{"nested": {"list": [1, 2.5, null, true]}, "ü": "ünïcode"}')
    runs = [
        ("message", '"hello"'),
        ("message", "--text", "plain words, no quotes"),
        ("doc", f"@{payload}"),
        ("blob", '{"$hex": "00ff10"}'),
        ("nothing",),
    ]
    for run in runs:
        result = cli("emit", "world", *run, "--socket-root", root, "--id", "shell")
        assert result.returncode == 0, result
        assert "1 event(s) sent to and read by" in result.stderr
    wait_until(lambda: len(world.got) == len(runs), message="5 events")
    assert world.got == [
        ("message", "hello", "shell"),
        ("message", "plain words, no quotes", "shell"),
        ("doc", {"nested": {"list": [1, 2.5, None, True]}, "ü": "ünïcode"}, "shell"),
        ("blob", b"\x00\xff\x10", "shell"),
        ("nothing", None, "shell"),
    ]


def test_emit_stdin_lines_all_arrive_in_order(world):
    lines = "\n".join(json.dumps({"n": i, "pad": "x" * (i % 50)}) for i in range(2000))
    result = cli("emit", "world", "count", "-", "--socket-root", root_of(world),
                 "--silent", input=lines + "\n\n")
    assert result.returncode == 0, result
    assert result.stderr == ""
    wait_until(lambda: len(world.got) >= 2000, message="2000 events")
    gevent.sleep(0.05)
    assert [data["n"] for _type, data, _id in world.got] == list(range(2000))


def test_emit_stdin_text_lines_and_a_bad_json_line(world):
    result = cli("emit", "world", "line", "--text", "-", "--socket-root", root_of(world),
                 input="first\n  second with spaces\n\nthird")
    assert result.returncode == 0, result
    wait_until(lambda: len(world.got) == 3, message="3 lines")
    assert [data for _t, data, _i in world.got] == ["first", "  second with spaces", "third"]
    # a bad line stops the run with a usage error; the lines before it were delivered
    world.got.clear()
    bad = cli("emit", "world", "n", "-", "--socket-root", root_of(world),
              input="1\n2\n{oops\n4\n")
    one_error_line(bad, 2, "stdin line 3", "not valid JSON")
    wait_until(lambda: len(world.got) == 2, message="the 2 good lines")
    gevent.sleep(0.1)
    assert [data for _t, data, _i in world.got] == [1, 2]


def test_emit_over_tcp_with_path_and_unix_url(make_ipc, sock_dir):
    ipc = make_ipc("tcp-world")
    got = []
    server = ipc.serve_net("127.0.0.1", free_port())
    server.on("*", lambda type, data, socket: got.append((type, data)))
    server.start()
    unix_ipc = make_ipc("unix-world")
    unix_server = unix_ipc.serve(sock_dir + "custom.sock")
    unix_server.on("*", lambda type, data, socket: got.append((type, data)))
    unix_server.start()

    assert cli("emit", f"tcp://127.0.0.1:{server.port}", "t", "1").returncode == 0
    assert cli("emit", "--path", sock_dir + "custom.sock", "p", "2").returncode == 0
    assert cli("emit", f"unix://{sock_dir}custom.sock", "u", "3").returncode == 0
    assert cli("emit", sock_dir + "custom.sock", "s", "4").returncode == 0
    wait_until(lambda: len(got) == 4, message="4 events")
    assert sorted(got) == [("p", 2), ("s", 4), ("t", 1), ("u", 3)]


def test_emit_ipv6_tcp(make_ipc):
    ipc = make_ipc("v6")
    got = []
    try:
        server = ipc.serve_net("::1", free_port())
        server.on("*", lambda type, data, socket: got.append(data))
        server.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert cli("emit", f"tcp://[::1]:{server.port}", "m", '"six"').returncode == 0
    wait_until(lambda: got == ["six"], message="the IPv6 event")


def test_emit_with_no_server_fails_in_bounded_time(sock_dir):
    started = time.monotonic()
    result = cli("emit", "nobody", "message", "--socket-root", sock_dir, "--timeout", "1")
    elapsed = time.monotonic() - started
    line = one_error_line(result, 1, "cannot connect", "app.nobody", "within 1 s",
                          "does not exist")
    assert line.startswith("geventipc emit: error:")
    assert elapsed < 10
    refused = cli("emit", f"tcp://127.0.0.1:{free_port()}", "m", "--timeout", "0.5")
    one_error_line(refused, 1, "cannot connect", "refused")


def test_emit_waits_for_a_server_that_starts_late(make_ipc, sock_dir, procs):
    proc = start_cli("emit", "late", "message", '"waited"', "--socket-root", sock_dir,
                     "--timeout", "10")
    procs.append(proc)
    gevent.sleep(0.7)
    assert proc.poll() is None, "emit gave up before its --timeout"
    ipc = make_ipc("late")
    got = []
    server = ipc.serve()
    server.on("message", lambda data, socket: got.append(data))
    server.start()
    code, _out, err = finish(proc)
    assert code == 0, err
    wait_until(lambda: got == ["waited"], message="the late event")


# --- request and describe ----------------------------------------------------------------


def test_request_prints_the_reply(world):
    result = cli("request", "world", "add", "[1, 2, 39]", "--socket-root", root_of(world))
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == 42


def test_request_stdin_one_reply_per_line(world):
    result = cli("request", "world", "add", "-", "--socket-root", root_of(world),
                 input="[1]\n[1, 1]\n[1, 1, 1]\n")
    assert result.returncode == 0, result
    assert json_lines(result.stdout) == [1, 2, 3]


def test_request_remote_error_no_handler_and_timeout_exit_1(world):
    root = root_of(world)
    failed = cli("request", "world", "fail", '"x"', "--socket-root", root)
    one_error_line(failed, 1, "remote error", "ValueError", "no good: x")
    assert failed.stdout == ""
    missing = cli("request", "world", "nope", "--socket-root", root)
    one_error_line(missing, 1, "remote error", "NoHandlerError", "nope")
    started = time.monotonic()
    slow = cli("request", "world", "slow", "--socket-root", root, "--timeout", "0.5")
    one_error_line(slow, 1, "no reply", "slow")
    assert time.monotonic() - started < 4.5  # the handler takes 5 s; we did not wait for it


def test_describe_prints_the_define_tables(world):
    result = cli("describe", "world", "--socket-root", root_of(world))
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == {
        "listen": {"message": "a string to print"},
        "broadcast": {"tick": "every 50 ms: a counter"},
    }


# --- listen ------------------------------------------------------------------------------


@pytest.fixture
def ticking(world):
    """world broadcasts tick (0, 1, 2...) and tock every 20 ms."""
    def run():
        n = 0
        while True:
            world.broadcast("tick", n)
            world.broadcast("tock", {"n": n})
            n += 1
            gevent.sleep(0.02)
    greenlet = gevent.spawn(run)
    yield world
    greenlet.kill()


def test_listen_count_prints_json_lines_in_order(ticking):
    result = cli("listen", "world", "--count", "6", "--socket-root", root_of(ticking),
                 "--timeout", "10")
    assert result.returncode == 0, result
    events = json_lines(result.stdout)
    assert len(events) == 6
    assert [e["type"] for e in events] == ["tick", "tock"] * 3
    ticks = [e["data"] for e in events if e["type"] == "tick"]
    assert ticks == list(range(ticks[0], ticks[0] + 3))


def test_listen_filters_types(ticking):
    result = cli("listen", "world", "tock", "--count", "3", "--socket-root",
                 root_of(ticking), "--timeout", "10")
    assert result.returncode == 0, result
    events = json_lines(result.stdout)
    assert [e["type"] for e in events] == ["tock"] * 3
    assert all(set(e["data"]) == {"n"} for e in events)


def test_listen_timeout_without_count_is_success_with_count_is_failure(world):
    quiet = cli("listen", "world", "--timeout", "0.5", "--socket-root", root_of(world))
    assert quiet.returncode == 0, quiet
    assert quiet.stdout == ""
    short = cli("listen", "world", "--count", "2", "--timeout", "0.5", "--socket-root",
                root_of(world))
    one_error_line_from_end(short, 1, "0 of 2 events")


def test_listen_ends_on_sigterm_and_sigint(ticking, procs):
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = start_cli("listen", "world", "--socket-root", root_of(ticking))
        procs.append(proc)
        assert json.loads(read_line(proc))["type"] in ("tick", "tock")
        proc.send_signal(sig)
        code, _out, err = finish(proc)
        assert code == 0, err
        assert "Traceback" not in err


def test_listen_into_a_closed_pipe_ends_quietly(ticking, procs):
    # `geventipc listen world | head -n 2`: the reader goes away, the listener ends
    shell = f"{' '.join(CLI)} listen world --socket-root {root_of(ticking)} | head -n 2"
    proc = gsubprocess.Popen(["bash", "-o", "pipefail", "-c", shell], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=ROOT, env=ENV,
                             start_new_session=True)
    procs.append(proc)
    try:
        code, out, err = finish(proc)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # the listener too, if it did not end
        except ProcessLookupError:
            pass
    assert len(out.splitlines()) == 2
    assert "Traceback" not in err
    assert code == 0, err


# --- serve -------------------------------------------------------------------------------


def serving_address(proc: gsubprocess.Popen) -> str:
    """Read stderr up to the "serving on ADDRESS" line; return ADDRESS."""
    for _ in range(20):
        line = read_line(proc, "stderr")
        if "serving on" in line:
            return line.split("serving on", 1)[1].strip()
    raise AssertionError("no 'serving on' line")


def test_serve_and_emit_two_processes_json_lines(sock_dir, procs):
    proc = start_cli("serve", "hub", "--socket-root", sock_dir)
    procs.append(proc)
    assert serving_address(proc) == f"unix://{sock_dir}app.hub"
    assert cli("emit", "hub", "message", '{"a": 1}', "--socket-root", sock_dir,
               "--id", "one").returncode == 0
    assert cli("emit", "hub", "note", "--text", "hi <good>there</good>", "--socket-root",
               sock_dir, "--id", "two").returncode == 0
    first, second = json.loads(read_line(proc)), json.loads(read_line(proc))
    assert first == {"type": "message", "data": {"a": 1}, "from": "one"}
    assert second == {"type": "note", "data": "hi <good>there</good>", "from": "two"}
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc)
    assert code == 0, err
    assert not os.path.exists(sock_dir + "app.hub"), "serve left its socket file behind"


def test_serve_tcp_with_a_positional_id_is_known_by_that_id(procs):
    """``serve --tcp HOST:PORT world`` (issue 12's shell form): the word is the server's id,
    as --id would be; a client asking over TCP sees it in the server's stats."""
    proc = start_cli("serve", "--tcp", "127.0.0.1:0", "world", "--stats", "--timeout", "30")
    procs.append(proc)
    address = serving_address(proc)
    assert address.startswith("tcp://127.0.0.1:"), address
    done = cli("stats", address, "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["id"] == "world"
    assert stats["transport"] == "tcp"
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc)
    assert code == 0, err


def test_serve_tcp_port_0_echo_and_count(make_ipc, procs):
    proc = start_cli("serve", "--tcp", "127.0.0.1:0", "--echo", "--count", "2")
    procs.append(proc)
    address = serving_address(proc)
    assert address.startswith("tcp://127.0.0.1:")
    port = int(address.rsplit(":", 1)[1])
    assert port > 0
    ipc = make_ipc("echo-client")
    echoed = []
    client = ipc.connect_to_net("echo", "127.0.0.1", port)
    client.on("*", lambda type, data: echoed.append((type, data)))
    client.wait_connected(5)
    client.emit("ping", [1, "two", {"3": None}])
    client.emit("pong", b"\x00bytes")
    code, out, err = finish(proc)
    assert code == 0, err
    wait_until(lambda: len(echoed) == 2, message="both echoes")
    assert echoed == [("ping", [1, "two", {"3": None}]), ("pong", b"\x00bytes")]
    assert [e["type"] for e in json_lines(out)] == ["ping", "pong"]
    assert json_lines(out)[1]["data"] == {"$hex": b"\x00bytes".hex()}


def test_serve_timeout_and_count_not_reached(sock_dir):
    result = cli("serve", "--path", sock_dir + "short.sock", "--count", "1", "--timeout",
                 "0.5")
    one_error_line_from_end(result, 1, "0 of 1 events")


def test_serve_refuses_an_address_in_use(world):
    result = cli("serve", "world", "--socket-root", root_of(world), "--silent")
    one_error_line(result, 1, "cannot serve", "another server is listening")
    with __import__("socket").socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        result = cli("serve", "--tcp", f"127.0.0.1:{taken}", "--silent")
    one_error_line(result, 1, "cannot serve", str(taken))


def test_serve_on_a_terminal_prints_colour_unless_no_color(sock_dir):
    for no_color, coloured in (("", True), ("1", False)):
        master, slave = pty.openpty()
        env = dict(ENV, NO_COLOR=no_color) if no_color else ENV
        proc = gsubprocess.Popen([*CLI, "serve", "tty", "--socket-root", sock_dir,
                                  "--count", "1", "--timeout", "10"],
                                 stdout=slave, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        os.close(slave)
        try:
            serving_address(proc)
            assert cli("emit", "tty", "message", '"on a tty"', "--socket-root", sock_dir,
                       "--id", "me").returncode == 0
            assert proc.wait(timeout=10) == 0
            output = read_pty(master)
        finally:
            close_pty(master, proc)
        text = output.decode()
        assert "message" in text and '"on a tty"' in text and "[me]" in text, text
        assert ("\x1b[" in text) is coloured, text
        assert not text.lstrip().startswith("{"), "a terminal gets text, not JSON"


# --- UDP ---------------------------------------------------------------------------------


def test_udp_serve_emit_request_describe(make_ipc, procs):
    pytest.importorskip("geventipc.udp")
    proc = start_cli("serve", "--udp", "127.0.0.1:0", "--json")
    procs.append(proc)
    address = serving_address(proc)
    assert address.startswith("udp://127.0.0.1:")
    assert cli("emit", address, "dgram", '{"x": [1, 2]}').returncode == 0
    event = json.loads(read_line(proc))
    assert event["type"] == "dgram" and event["data"] == {"x": [1, 2]}
    assert event["from"].startswith("127.0.0.1:")
    described = cli("describe", address, "--timeout", "2")
    assert described.returncode == 0, described
    assert json.loads(described.stdout) == {"listen": {}, "broadcast": {}}
    missing = cli("request", address, "nothing", "--timeout", "2")
    one_error_line(missing, 1, "NoHandlerError")
    huge = cli("emit", address, "big", json.dumps("x" * 70000))
    one_error_line(huge, 2, "datagram")     # too big for one datagram: nothing sent

    # request/reply against a UDP server in this process
    ipc = make_ipc("udp-world")
    server = ipc.serve_net("127.0.0.1", 0, "udp4")
    server.handle("double", lambda data, socket: data * 2)
    server.start()
    reply = cli("request", f"udp://127.0.0.1:{server.port}", "double", '"ab"')
    assert reply.returncode == 0, reply
    assert json.loads(reply.stdout) == "abab"


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A server CA, a client CA, a server certificate and a client certificate, made by
    trustme for this run (no key is stored in the repository)."""
    trustme = pytest.importorskip("trustme")
    pytest.importorskip("geventipc.transports.tls")
    folder = tmp_path_factory.mktemp("cli-certs")
    paths = {}
    for name in ("server-ca", "client-ca"):
        ca = trustme.CA()
        paths[name] = str(folder / f"{name}.pem")
        ca.cert_pem.write_to_path(paths[name])
        leaf = ca.issue_cert("localhost", "127.0.0.1") if name == "server-ca" else \
            ca.issue_cert("client.example", common_name="cli-client")
        side = name.split("-")[0]
        paths[side + ".pem"] = str(folder / f"{side}.pem")
        paths[side + ".key"] = str(folder / f"{side}.key")
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(paths[side + ".pem"], append=True)
        leaf.private_key_pem.write_to_path(paths[side + ".key"])
    return paths


def test_tls_serve_emit_request_and_mutual_tls(certs, procs):
    server_opts = ["--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"]]
    proc = start_cli("serve", "--tcp", "127.0.0.1:0", *server_opts)
    procs.append(proc)
    address = serving_address(proc)
    assert address.startswith("tls://127.0.0.1:")
    ok = cli("emit", address, "secret", '"over tls"', "--tls-ca", certs["server-ca"],
             "--id", "tls-client")
    assert ok.returncode == 0, ok
    assert json.loads(read_line(proc)) == {"type": "secret", "data": "over tls",
                                          "from": "tls-client"}
    described = cli("describe", address, "--tls-ca", certs["server-ca"],
                    "--tls-servername", "localhost")
    assert described.returncode == 0, described
    # not trusting the server's CA: refused, exit 1, one line that says why
    untrusted = cli("emit", address, "secret", "--tls-ca", certs["client-ca"],
                    "--timeout", "1")
    one_error_line(untrusted, 1, "cannot connect", "certificate")
    # plain TCP reaches a TLS server's port, but the server never takes the connection:
    # a failure to connect, at once, saying why (the mismatch is not retried)
    plain = cli("emit", address.replace("tls://", "tcp://"), "x", "--timeout", "1",
                "--silent")
    one_error_line(plain, 1, "cannot connect", "the peer speaks TLS")
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0

    # mutual TLS: --tls-ca on serve asks clients for a certificate from that CA
    mutual = start_cli("serve", "--tcp", "127.0.0.1:0", *server_opts, "--tls-ca",
                       certs["client-ca"])
    procs.append(mutual)
    address = serving_address(mutual)
    anonymous = cli("emit", address, "hi", "--tls-ca", certs["server-ca"], "--timeout", "1")
    one_error_line(anonymous, 1, "cannot connect")
    known = cli("emit", address, "hi", '"with a certificate"', "--tls-ca", certs["server-ca"],
                "--tls-cert", certs["client.pem"], "--tls-key", certs["client.key"])
    assert known.returncode == 0, known
    assert json.loads(read_line(mutual))["data"] == "with a certificate"


# --- node-ipc's JSON wire and raw mode ---------------------------------------------------


def test_nodeipc_wire_serve_and_emit(sock_dir, procs):
    pytest.importorskip("geventipc.wire.nodeipc_codec")
    proc = start_cli("serve", "nodeish", "--wire", "node-ipc", "--socket-root", sock_dir)
    procs.append(proc)
    serving_address(proc)
    sent = cli("emit", "nodeish", "message", '{"text": "über", "n": [0, "", false, null]}',
               "--wire", "node-ipc", "--socket-root", sock_dir)
    assert sent.returncode == 0, sent
    event = json.loads(read_line(proc))
    assert event["type"] == "message"
    assert event["data"] == {"text": "über", "n": [0, "", False, None]}
    assert event["from"] is None   # node-ipc's wire has no hello, a Unix socket no address
    # bytes cannot travel as node-ipc JSON: a clear usage error, nothing sent
    blob = cli("emit", "nodeish", "blob", '{"$hex": "00"}', "--wire", "node-ipc",
               "--socket-root", sock_dir)
    one_error_line(blob, 2, "node-ipc JSON wire", "JSON cannot carry")


def test_raw_mode_hex_serve_echo_and_emit(make_ipc, sock_dir, procs):
    pytest.importorskip("geventipc.wire.raw_codec")
    proc = start_cli("serve", "rawworld", "--raw", "--encoding", "hex", "--echo",
                     "--socket-root", sock_dir)
    procs.append(proc)
    serving_address(proc)
    sent = cli("emit", "rawworld", "68656c6c6f00ff", "--raw", "--encoding", "hex",
               "--socket-root", sock_dir)
    assert sent.returncode == 0, sent
    record = json.loads(read_line(proc))
    assert record["data"] == "68656c6c6f00ff"
    # the echo comes back as the same bytes to a raw client
    ipc = make_ipc("raw-client", raw_buffer=True)
    got = []
    client = ipc.connect_to("rawworld")
    client.on("data", got.append)
    client.wait_connected(5)
    client.emit(b"\x01\x02")
    wait_until(lambda: b"".join(got) == b"\x01\x02", message="the raw echo")
    assert json.loads(read_line(proc))["data"] == "0102"
    bad = cli("emit", "rawworld", "not-hex", "--raw", "--encoding", "hex",
              "--socket-root", sock_dir)
    one_error_line(bad, 2, "hex")
    extra = cli("emit", "rawworld", "type", "00", "--raw", "--socket-root", sock_dir)
    one_error_line(extra, 2, "no TYPE")


# --- against the real node-ipc (Node.js) -------------------------------------------------

NODE_IPC = os.path.join(ROOT, "tests", "node", "node_modules", "node-ipc")
NODE = __import__("shutil").which("node")
needs_node = pytest.mark.skipif(not (NODE and os.path.isdir(NODE_IPC)),
                                reason="node or node-ipc 9.2.1 missing: run `make node-deps`")

NODE_SERVER = """
const ipc = require(process.argv[1]);
ipc.config.id = 'world'; ipc.config.silent = true;
ipc.serveNet('127.0.0.1', Number(process.argv[2]), () => {
  ipc.server.on('message', (data, socket) => {
    console.log(JSON.stringify(data));
    ipc.server.broadcast('news', {got: data, from: 'node'});
  });
});
ipc.server.start();
setTimeout(() => process.exit(3), 20000);
"""

NODE_CLIENT = """
const ipc = require(process.argv[1]);
ipc.config.id = 'node-client'; ipc.config.silent = true; ipc.config.maxRetries = 50;
ipc.config.retry = 100;
ipc.connectToNet('world', '127.0.0.1', Number(process.argv[2]), () => {
  ipc.of.world.on('connect', () => {
    ipc.of.world.emit('message', {text: 'from node', list: [0, '', false, null]});
    setTimeout(() => process.exit(0), 300);
  });
});
setTimeout(() => process.exit(3), 20000);
"""


@needs_node
def test_cli_talks_to_real_nodeipc(procs):
    # geventipc serve <- a node-ipc client
    serve = start_cli("serve", "--tcp", "127.0.0.1:0", "--wire", "node-ipc", "--count", "1")
    procs.append(serve)
    port = serving_address(serve).rsplit(":", 1)[1]
    node_client = gsubprocess.run([NODE, "-e", NODE_CLIENT, NODE_IPC, port], timeout=20,
                                  capture_output=True, text=True)
    assert node_client.returncode == 0, node_client.stderr
    code, out, err = finish(serve)
    assert code == 0, err
    event = json_lines(out)[0]
    assert event["type"] == "message"
    assert event["data"] == {"text": "from node", "list": [0, "", False, None]}

    # geventipc emit / listen -> a node-ipc server (it broadcasts "news" per message)
    port = str(free_port())
    node_server = gsubprocess.Popen([NODE, "-e", NODE_SERVER, NODE_IPC, port],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(node_server)
    target = f"tcp://127.0.0.1:{port}"
    listen = start_cli("listen", target, "news", "--wire", "node-ipc", "--count", "1",
                       "--timeout", "15")
    procs.append(listen)
    while "listening to" not in read_line(listen, "stderr"):
        pass
    sent = cli("emit", target, "message", '{"n": 1}', "--wire", "node-ipc")
    assert sent.returncode == 0, sent
    assert "sent to" in sent.stderr   # no confirmation on node-ipc's wire
    assert json.loads(read_line(node_server)) == {"n": 1}
    code, out, err = finish(listen)
    assert code == 0, err
    assert json_lines(out) == [{"type": "news", "data": {"got": {"n": 1}, "from": "node"}}]


# --- more of what a user relies on -------------------------------------------------------


def test_listen_survives_a_server_restart(make_ipc, sock_dir, procs):
    first = make_ipc("phoenix")
    server = first.serve()
    server.start()
    listen = start_cli("listen", "phoenix", "--socket-root", sock_dir, "--count", "2",
                       "--timeout", "20")
    procs.append(listen)
    wait_until(lambda: server.sockets, message="the listener")
    server.broadcast("life", 1)
    assert json.loads(read_line(listen)) == {"type": "life", "data": 1}
    server.stop()
    second = make_ipc("phoenix")
    reborn = second.serve()
    reborn.start()
    wait_until(lambda: reborn.sockets, timeout=10, message="the listener to reconnect")
    reborn.broadcast("life", 2)
    code, out, err = finish(listen)
    assert code == 0, err
    assert json_lines(out) == [{"type": "life", "data": 2}]
    assert "reconnect" in err


def test_appspace_and_a_1_mib_file(make_ipc, sock_dir, tmp_path):
    ipc = make_ipc("big", appspace="team.")
    got = []
    server = ipc.serve()
    server.on("blob", lambda data, socket: got.append(data))
    server.start()
    assert server.path == sock_dir + "team.big"
    big = "x" * (1 << 20)
    payload = tmp_path / "big.json"
    payload.write_text(json.dumps({"text": big}))
    wrong = cli("emit", "big", "blob", "--socket-root", sock_dir, "--timeout", "0.5",
                "--silent")
    one_error_line(wrong, 1, "app.big")   # the default appspace is not this server's
    result = cli("emit", "big", "blob", f"@{payload}", "--socket-root", sock_dir,
                 "--appspace", "team.")
    assert result.returncode == 0, result
    assert len(got) == 1 and got[0]["text"] == big


def test_describe_and_request_on_a_terminal(world):
    def on_tty(*args: str) -> str:
        master, slave = pty.openpty()
        proc = gsubprocess.Popen([*CLI, *args, "--socket-root", root_of(world)],
                                 stdout=slave, stderr=subprocess.PIPE, cwd=ROOT,
                                 env=dict(ENV, NO_COLOR="1"))
        os.close(slave)
        try:
            assert proc.wait(timeout=15) == 0
            output = read_pty(master)
        finally:
            close_pty(master, proc)
        return output.decode().replace("\r\n", "\n")

    tables = on_tty("describe", "world")
    assert tables.splitlines() == [
        "listen:",
        "  message  a string to print",
        "broadcast:",
        "  tick  every 50 ms: a counter",
    ]
    assert on_tty("request", "world", "add", "[2, 3]").strip() == "5"


def test_ctrl_c_ends_a_waiting_emit_with_130(sock_dir, procs):
    proc = start_cli("emit", "nobody", "message", "--socket-root", sock_dir, "--timeout",
                     "30")
    procs.append(proc)
    gevent.sleep(1.0)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    code, _out, err = finish(proc)
    assert code == 130
    assert "Traceback" not in err


def test_the_shell_tour_example_runs():
    if not os.path.exists(BIN):
        pytest.skip("no installed console script")
    result = gsubprocess.run(["bash", os.path.join(ROOT, "examples", "cli_tour.sh")],
                             capture_output=True, text=True, timeout=60, cwd=ROOT,
                             env=dict(ENV, GEVENTIPC=BIN))
    assert result.returncode == 0, result.stderr
    got = [json.loads(line.split("server got: ", 1)[1])
           for line in result.stdout.splitlines() if "server got: " in line]
    assert [(e["type"], e["data"]) for e in got] == [
        ("greeting", {"from": "the shell", "n": [1, 2, 3]}), ("note", "no quotes needed"),
        ("count", 1), ("count", 2), ("count", 3)]
    for status in ("exit 1 (1: remote error", "exit 2 (2: usage)", "exit 1 (1: no server)"):
        assert status in result.stdout
