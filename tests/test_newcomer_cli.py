"""The command line as a newcomer meets it (issue 13): the README's commands run as they
are written; arguments checked before connecting; permanent failures not retried;
``serve`` answering requests."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, free_port

BIN_DIR = os.path.dirname(sys.executable)
CLI = [os.path.join(BIN_DIR, "geventipc")]


def env_for(runtime_dir: str) -> dict[str, str]:
    env = dict(os.environ, PATH=BIN_DIR + os.pathsep + os.environ.get("PATH", ""),
               XDG_RUNTIME_DIR=runtime_dir, PYTHONUNBUFFERED="1")
    env.pop("NO_COLOR", None)
    return env


@pytest.fixture
def runtime_dir():
    path = tempfile.mkdtemp(prefix="gipc-rt-", dir="/tmp")
    os.chmod(path, 0o700)
    yield path
    subprocess.run(["rm", "-rf", path], check=False, timeout=30)


def readme_shell_block() -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## From the shell", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block under 'From the shell'"
    return block.group(1)


def test_the_readme_shell_example_runs_as_written(runtime_dir):
    script = "set -e\n" + readme_shell_block() + "wait\n"
    run = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env_for(runtime_dir),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "3" in lines                                    # request world add '[1, 2]'
    assert '{"type":"message","data":"hello","from":' in run.stdout   # what serve printed
    assert sum('"type":"line"' in line for line in lines) == 2
    ticks = [line for line in lines if line.startswith('{"type":"tick"')]
    assert len(ticks) == 5                                 # listen world tick --count 5
    assert any('"broadcast":{"tick"' in line for line in lines)       # describe world
    assert "Traceback" not in run.stderr


def cli(*args: str, runtime_dir: str, timeout: float = 30) -> tuple[int, str, str, float]:
    start = time.monotonic()
    run = subprocess.run([*CLI, *args], cwd=ROOT, env=env_for(runtime_dir),
                         capture_output=True, text=True, timeout=timeout)
    return run.returncode, run.stdout, run.stderr, time.monotonic() - start


@pytest.mark.parametrize("args, says", [
    (["emit", "world", "x", '{"$hex": "00"}', "--wire", "node-ipc"], "JSON cannot carry"),
    (["emit", "--raw", "--encoding", "hex", "world", "zz"], "not valid hex"),
    (["request", "world", "x", '{"$hex": "00"}', "--wire", "node-ipc"], "msgpack wire"),
    (["emit", "udp://127.0.0.1:9", "x", '"' + "a" * 70000 + '"'], "datagram"),
    (["serve", "world", "--handlers", "/nonexistent/handlers.py"], "No such file"),
])
def test_arguments_that_cannot_work_are_status_2_before_connecting(runtime_dir, args, says):
    # a --timeout far longer than the test allows: status 2 must come without waiting
    code, _out, err, took = cli(*args, "--timeout", "60", runtime_dir=runtime_dir,
                                timeout=20)
    assert code == 2, err
    assert says in err and err.count("\n") == 1


def test_serve_echo_answers_requests(runtime_dir):
    server = subprocess.Popen([*CLI, "serve", "world", "--echo", "--silent"], cwd=ROOT,
                              env=env_for(runtime_dir), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        code, out, err, _ = cli("request", "world", "anything", '{"a": [1, 2]}',
                                runtime_dir=runtime_dir)
        assert code == 0, err
        assert out.strip() == '{"a":[1,2]}'
    finally:
        server.terminate()
        assert server.wait(10) == 0


def test_serve_handlers_file_answers_by_function_name(runtime_dir, tmp_path):
    handlers = tmp_path / "h.py"
    handlers.write_text("from math import sqrt\n"
                        "def add(data, socket):\n    return sum(data)\n"
                        "def _private(data, socket):\n    return 'no'\n"
                        "def fail(data, socket):\n    raise ValueError('bad ' + data)\n"
                        "HANDLERS = {'user.get': lambda data, socket: {'id': data}}\n")
    server = subprocess.Popen([*CLI, "serve", "world", "--handlers", str(handlers),
                               "--silent"], cwd=ROOT, env=env_for(runtime_dir),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cli("request", "world", "add", "[1, 2, 3]",
                   runtime_dir=runtime_dir)[1].strip() == "6"
        assert cli("request", "world", "user.get", "7",
                   runtime_dir=runtime_dir)[1].strip() == '{"id":7}'
        code, _out, err, _ = cli("request", "world", "fail", '"x"', runtime_dir=runtime_dir)
        assert code == 1 and "remote error: ValueError: bad x" in err
        for not_a_handler in ("_private", "sqrt"):   # private, or imported
            code, _out, err, _ = cli("request", "world", not_a_handler,
                                     runtime_dir=runtime_dir)
            assert code == 1 and "NoHandlerError" in err
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def pki():
    trustme = pytest.importorskip("trustme")
    path = tempfile.mkdtemp(prefix="gipc-pki-")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(f"{path}/server.key")
    cert.cert_chain_pems[0].write_to_path(f"{path}/server.pem")
    ca.cert_pem.write_to_path(f"{path}/ca.pem")
    trustme.CA().cert_pem.write_to_path(f"{path}/other-ca.pem")
    yield path
    subprocess.run(["rm", "-rf", path], check=False, timeout=30)


@pytest.mark.parametrize("mutual, client_args, says", [
    (False, ["--tls-ca", "other-ca.pem"], "certificate failed verification"),
    (True, ["--tls-ca", "ca.pem"], "requires a client certificate"),
])
def test_a_refused_tls_handshake_is_reported_at_once(runtime_dir, pki, mutual,
                                                      client_args, says):
    port = free_port()
    server_args = ["serve", "--tcp", f"127.0.0.1:{port}", "--tls-cert", f"{pki}/server.pem",
                   "--tls-key", f"{pki}/server.key", "--silent"]
    if mutual:
        server_args += ["--tls-ca", f"{pki}/ca.pem"]
    server = subprocess.Popen([*CLI, *server_args], cwd=ROOT, env=env_for(runtime_dir),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        args = [a if not a.endswith(".pem") else f"{pki}/{a}" for a in client_args]
        # it is up within the 60 s --timeout; a refusal must not wait for the rest of it
        code, _out, err, took = cli("emit", f"tls://127.0.0.1:{port}", "x", "1", *args,
                                    "--timeout", "60", runtime_dir=runtime_dir, timeout=30)
        assert code == 1, err
        assert says in err and "within" not in err
    finally:
        server.terminate()
        server.wait(10)


def test_a_server_on_another_wire_is_reported_at_once(runtime_dir):
    port = free_port()
    server = subprocess.Popen([*CLI, "serve", "--tcp", f"127.0.0.1:{port}", "--wire",
                               "node-ipc", "--silent"], cwd=ROOT, env=env_for(runtime_dir),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for command in (["request", f"tcp://127.0.0.1:{port}", "add", "[1]"],
                        ["emit", f"tcp://127.0.0.1:{port}", "x", "1"]):
            code, _out, err, _took = cli(*command, "--timeout", "60",
                                         runtime_dir=runtime_dir, timeout=30)
            assert code == 1, err
            assert "config.wire" in err and "within" not in err
    finally:
        server.terminate()
        server.wait(10)
