"""``geventipc stats TARGET``, ``geventipc serve --stats`` and ``serve --metrics`` (issue
14), as real console-script processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import gevent
import pytest
from gevent import subprocess as gsubprocess

from conftest import ROOT, read_pty

BIN = os.path.join(os.path.dirname(sys.executable), "geventipc")
CLI = [BIN] if os.path.exists(BIN) else [sys.executable, "-m", "geventipc"]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")
ENV.pop("NO_COLOR", None)


def cli(*args, timeout=20.0):
    return gsubprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                           cwd=ROOT, env=ENV)


def start_serve(*args):
    proc = gsubprocess.Popen([*CLI, "serve", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=ROOT, env=ENV)
    lines = []
    with gevent.Timeout(15, AssertionError(f"serve did not start: {lines}")):
        while True:
            line = proc.stderr.readline().decode()
            if not line:
                raise AssertionError(f"serve ended: {lines}")
            lines.append(line)
            if "serving on" in line:
                return proc, lines


def stop(proc):
    proc.terminate()
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)


def test_stats_of_a_served_server_as_json(sock_dir):
    proc, _ = start_serve("world", "--socket-root", sock_dir, "--stats")
    try:
        sent = cli("emit", "world", "ping", "1", "--socket-root", sock_dir)
        assert sent.returncode == 0, sent.stderr
        out = cli("stats", "world", "--socket-root", sock_dir, "--json")
        assert out.returncode == 0, out.stderr
        stats = json.loads(out.stdout)
        assert stats["kind"] == "server" and stats["id"] == "world"
        assert stats["connections"]["accepted"] >= 2   # the emit and this stats client
        assert stats["events_in"] >= 3                  # hellos and the ping
    finally:
        stop(proc)


def test_stats_refused_unless_the_server_allows_it(sock_dir):
    proc, _ = start_serve("world", "--socket-root", sock_dir)
    try:
        out = cli("stats", "world", "--socket-root", sock_dir)
        assert out.returncode == 1
        assert "stats_requests" in out.stderr and out.stdout == ""
    finally:
        stop(proc)


def test_stats_usage_errors_exit_2():
    out = cli("stats", "world", "extra")
    assert out.returncode == 2 and "only TARGET" in out.stderr
    out = cli("stats", "world", "--wire", "node-ipc")
    assert out.returncode == 2 and "msgpack" in out.stderr


def test_serve_metrics_endpoint(sock_dir):
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families
    proc, lines = start_serve("world", "--socket-root", sock_dir, "--metrics", "127.0.0.1:0")
    try:
        url = next(line.split("metrics on", 1)[1].strip() for line in lines
                   if "metrics on" in line)
        for _ in range(3):
            assert cli("emit", "world", "ping", "1", "--socket-root", sock_dir).returncode == 0
        # a real HTTP client; this test process's hub has nothing else to serve meanwhile
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        stop(proc)
    values = {s.name: s.value for f in text_string_to_metric_families(body)
              for s in f.samples if s.labels.get("server") == "world"}
    assert values["geventipc_connections_accepted_total"] == 3
    # per emit: its hello and the ping (and emit's delivery confirmation, a request)
    assert values["geventipc_events_received_total"] >= 6


def test_serve_metrics_bad_address_is_a_usage_error(sock_dir):
    out = cli("serve", "world", "--socket-root", sock_dir, "--metrics", "nonsense")
    assert out.returncode == 2


def test_stats_on_a_terminal_is_a_table(sock_dir):
    import pty
    proc, _ = start_serve("world", "--socket-root", sock_dir, "--stats")
    master, slave = pty.openpty()
    try:
        assert cli("emit", "world", "ping", "1", "--socket-root", sock_dir).returncode == 0
        env = dict(ENV, NO_COLOR="1")
        out = gsubprocess.run([*CLI, "stats", "world", "--socket-root", sock_dir],
                              stdout=slave, stderr=subprocess.PIPE, cwd=ROOT, env=env,
                              timeout=20)
        assert out.returncode == 0, out.stderr
        os.close(slave)
        slave = -1
        text = read_pty(master)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
        stop(proc)
    lines = text.decode().splitlines()
    rows = {line.split()[0]: line for line in lines if line and not line.startswith(" ")}
    assert rows["kind"].split()[-1] == "server" and rows["id"].split()[-1] == "world"
    assert "connections.accepted" in rows and "requests.latency" in rows
    assert any(line.startswith("sockets (") for line in lines)
    assert not text.lstrip().startswith(b"{")       # not JSON
