"""Config values checked when they are set, and ``socket_root`` read back as the directory
actually used (issue 13, "Errors and logs a person can act on")."""
from __future__ import annotations

import math
import os

import pytest

from geventipc import IPC
from geventipc.config import Config
from geventipc.errors import ConfigError


@pytest.mark.parametrize("key, value, says", [
    ("retry", math.nan, "finite"),
    ("connect_timeout", math.inf, "finite"),
    ("message_timeout", math.nan, "finite"),
    ("handshake_timeout", math.inf, "finite"),
    ("delimiter", "", "must not be empty"),
    ("network_host", "", "must not be empty"),
    ("allowed_events", ["ok", 1], "non-empty strings"),
    ("allowed_events", ("",), "non-empty strings"),
    ("logger", "stderr", "must be a function"),
    ("socket_root", "", "directory path"),
    ("socket_root", "/etc/passwd", "must be a directory"),
    ("tls", {"publik": "cert.pem"}, "unknown config.tls key 'publik'"),
    ("tls", {"public": "/nonexistent/c.pem", "private": "/nonexistent/k.pem"},
     "does not exist"),
    ("tls", {"trustedConnections": [1]}, "trustedConnections"),
])
def test_a_value_that_cannot_work_is_refused_when_set(key, value, says):
    config = Config()
    before = config.as_dict()[key]
    with pytest.raises(ConfigError, match=key.split("_")[0]) as info:
        setattr(config, key, value)
    assert says in str(info.value)
    assert config.as_dict()[key] == before            # the old value stays
    with pytest.raises(ConfigError, match="finite|empty|strings|function|directory|tls"):
        IPC(**{key: value})                            # and through IPC(**config)


def test_a_per_call_override_is_refused_at_the_call(sock_dir):
    inst = IPC(socket_root=sock_dir, silent=True)
    with pytest.raises(ConfigError, match="config.retry must be a finite number"):
        inst.connect_to("world", retry=math.nan)
    assert "world" not in inst.of


def test_socket_root_reads_back_as_the_directory_used(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    inst = IPC(id="world", silent=True)
    root = f"{tmp_path}{os.sep}geventipc-{os.getuid()}{os.sep}"
    assert inst.config.socket_root == root and inst.config.socketRoot == root
    assert inst.config["socketRoot"] == root
    inst.serve()
    try:
        inst.server.start()
        # node-ipc's own expression names the real socket
        assert inst.config.socketRoot + inst.config.appspace + inst.config.id \
            == inst.server.path
        assert os.path.exists(inst.config.socketRoot + inst.config.appspace + "world")
    finally:
        inst.server.stop()


def test_a_socket_root_without_a_separator_reads_back_with_one(sock_dir):
    given = sock_dir.rstrip(os.sep)
    inst = IPC(id="world", socket_root=given, silent=True)
    assert inst.config.socket_root == given + os.sep
    client = inst.connect_to("other", stop_retrying=True, max_retries=0)
    try:
        assert inst.config.socketRoot + inst.config.appspace + "other" == client.path
    finally:
        inst.disconnect("other")
