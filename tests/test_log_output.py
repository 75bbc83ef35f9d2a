"""ipc.log's outputs (issue 13 "Errors and logs", issue 14 "Logs for machines"): colour on
a terminal only, NO_COLOR, data never read as markup, JSON lines, one traceback, and
loguru's global logger (the application's sinks) never receiving ipc.log's records."""
import json
import os
import pty
import sys

import pytest
# gevent's subprocess: the hub keeps running (and its clock current) while a child runs
from gevent import subprocess

from geventipc import IPC
from conftest import ROOT, failing_handler_log, read_pty

ESC = "\x1b["

SCRIPT = """
from geventipc import ipc
import sys
if len(sys.argv) > 1:
    ipc.config.log_format = sys.argv[1]
ipc.log("<good>started</good>", {"k": "<error>x</error>"}, server="world")
"""


BASE_ENV = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}


def run(args=(), env=None, stderr=subprocess.PIPE):
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=ROOT, timeout=30,
                          env=dict(BASE_ENV, **(env or {})), stderr=stderr,
                          stdout=subprocess.PIPE, text=True)


def test_a_pipe_gets_no_colour_codes():
    out = run(env={"NO_COLOR": ""})
    assert out.returncode == 0, out.stderr
    assert out.stderr == "started {'k': '<error>x</error>'}\n"


def test_a_file_gets_no_colour_codes(tmp_path):
    path = tmp_path / "log.txt"
    with open(path, "w") as f:
        assert run(stderr=f).returncode == 0
    assert path.read_text() == "started {'k': '<error>x</error>'}\n"


def _on_a_terminal(env):
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, timeout=30,
                              env=dict(os.environ, **env), stderr=follower,
                              stdout=subprocess.DEVNULL)
        assert proc.returncode == 0
        os.close(follower)
        follower = -1
        return read_pty(leader).decode()
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def test_a_terminal_gets_colour_unless_no_color():
    env = {k: v for k, v in BASE_ENV.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal({**env, "NO_COLOR": ""})
    assert f"{ESC}32mstarted{ESC}0m" in coloured
    # the data's theme tag is printed, not applied: no red background code
    assert "<error>x</error>" in coloured and f"{ESC}41m" not in coloured
    plain = _on_a_terminal({**env, "NO_COLOR": "1"})
    assert ESC not in plain and "started" in plain


def test_force_color_colours_a_pipe_unless_no_color():
    out = run(env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert out.stderr.startswith(f"{ESC}32mstarted{ESC}0m")
    out = run(env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert ESC not in out.stderr and out.stderr.startswith("started")
    assert ESC not in run(env={"FORCE_COLOR": "0", "NO_COLOR": ""}).stderr


def test_no_color_applies_to_a_logger_function_too(monkeypatch):
    lines = []
    ipc = IPC(logger=lines.append, log_in_color=True)
    ipc.log("<good>a</good>")
    monkeypatch.setenv("NO_COLOR", "1")
    ipc.log("<good>b</good>")
    assert lines == [f"{ESC}32ma{ESC}0m", "b"]


def test_theme_tags_in_data_are_never_markup():
    lines = []
    ipc = IPC(logger=lines.append, log_in_color=True)
    ipc.log("<good>ok</good>", {"k": "<error>x</error>"}, ipc.log.plain("<warn>y</warn>"),
            ipc.log.style("variable", "<good>z</good>"))
    assert lines == [f"{ESC}32mok{ESC}0m {{'k': '<error>x</error>'}} <warn>y</warn> "
                     f"{ESC}36m<good>z</good>{ESC}0m"]


def test_json_lines_parse_with_level_theme_message_and_fields():
    out = run(["json"])
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and ESC not in lines[0]
    record = json.loads(lines[0])
    assert record["level"] == "INFO" and record["theme"] == "good"
    assert record["message"] == "started {'k': '<error>x</error>'}"
    assert record["server"] == "world" and "time" in record


def test_json_to_a_logger_function_and_bound_fields():
    lines = []
    ipc = IPC(logger=lines.append, log_format="json")
    log = ipc.log.bind(server="world")
    log("<warn>geventipc: peer slow</warn>", peer="hello", event="tick")
    record = json.loads(lines[0])
    assert (record["level"], record["theme"]) == ("WARNING", "warn")
    assert (record["server"], record["peer"], record["event"]) == ("world", "hello", "tick")
    assert record["message"] == "geventipc: peer slow"


def _fail():
    raise RuntimeError("handler broke")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_exception_is_logged_once_with_its_traceback(fmt):
    lines = []
    ipc = IPC(logger=lines.append, log_in_color=False, log_format=fmt)
    try:
        _fail()
    except RuntimeError:
        ipc.log.exception("<error>geventipc: handler for</error>", ipc.log.plain("'m'"),
                          "<error>raised</error>", event="m")
    assert len(lines) == 1
    if fmt == "text":
        assert lines[0].startswith("geventipc: handler for 'm' raised RuntimeError: handler "
                                   "broke\nTraceback")
        assert "_fail" in lines[0]
    else:
        record = json.loads(lines[0])
        assert record["message"] == "geventipc: handler for 'm' raised RuntimeError: " \
            "handler broke"
        assert record["exception"]["type"] == "RuntimeError"
        assert "_fail" in record["exception"]["traceback"] and record["event"] == "m"


def test_the_applications_loguru_sinks_never_get_ipc_log_records():
    from loguru import logger
    seen = []
    handler = logger.add(seen.append, level="TRACE")
    try:
        lines = []
        ipc = IPC(logger=lines.append)
        ipc.log("mine")
        logger.info("theirs")
    finally:
        logger.remove(handler)
    assert lines == ["mine"]
    assert len(seen) == 1 and "theirs" in seen[0]


def test_log_uses_only_loguru_public_names():
    source = open(os.path.join(ROOT, "geventipc", "log.py")).read()
    assert "loguru._" not in source and "._core" not in source


def test_exception_first_form_and_exception_text_never_markup():
    lines = []
    ipc = IPC(logger=lines.append, log_in_color=True)
    exc = ValueError("<error>not markup</error>")
    ipc.log.exception(exc, "<warn>head</warn>")
    assert len(lines) == 1
    assert lines[0].startswith(f"{ESC}31mhead{ESC}0m ValueError: <error>not markup</error>")


def test_the_librarys_own_lines_never_read_data_as_markup(make_ipc):
    # a request handler's exception message (data from the application or a peer) holds
    # a theme tag: logged as text, not as a red background
    from conftest import serve
    lines = []
    world = serve(make_ipc, silent=False, logger=lines.append, log_in_color=True)

    def bad(data, socket):
        raise ValueError(f"<error>{data}</error>")

    world.server.handle("bad", bad)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    with pytest.raises(Exception):
        client.request("bad", "x", timeout=5)
    (line,) = [line for line in lines if "request handler" in line]
    assert "ValueError: <error>x</error>" in line and f"{ESC}41m" not in line


def test_json_lines_of_a_server_carry_server_event_and_peer(make_ipc):
    from conftest import serve
    lines = []
    world = serve(make_ipc, silent=False, logger=lines.append, log_format="json")
    world.server.handle("bad", lambda data, socket: 1 / 0)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    with pytest.raises(Exception):
        client.request("bad", timeout=5)
    records = [json.loads(line) for line in lines]
    (record,) = [r for r in records if "request handler" in r["message"]]
    assert (record["server"], record["event"], record["peer"]) == ("world", "bad", "hello")
    assert record["theme"] == "notice" and record["level"] == "INFO"


def test_a_replaced_sys_stderr_gets_the_lines(capsys):
    ipc = IPC()
    ipc.log("<good>first</good>")
    first = capsys.readouterr().err
    ipc.log("second")
    assert first == "first\n" and capsys.readouterr().err == "second\n"


def test_logs_collected_while_loguru_holds_its_lock_do_not_deadlock():
    # a Log freed by the cyclic collector inside loguru.add() must not call
    # loguru.remove() there (loguru's lock is not reentrant): the process would hang
    code = """
import gc
from geventipc import IPC
gc.set_threshold(1, 1, 1)          # collect at (almost) every allocation
for i in range(200):
    ipc = IPC(logger=lambda line: None)
    ipc.self_cycle = ipc           # freed only by the cyclic collector
    ipc.log("<good>x</good>", i)
print("done")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=40)
    assert out.returncode == 0 and out.stdout == "done\n", out.stderr


def test_a_failing_event_handler_is_one_line_with_its_message_once(make_ipc):
    lines = failing_handler_log(make_ipc)
    (line,) = [line for line in lines if "ZeroDivisionError" in line]
    head = line.splitlines()[0]
    assert head == "geventipc: handler for 'boom' raised ZeroDivisionError: division by zero"
