"""``ipc.config``: node-ipc's defaults, camelCase aliases, immediate errors for unknown
keys and wrong types, and the per-user owner-only default socket root."""
import os
import socket
import stat

import pytest

from conftest import wait_until
from geventipc import IPC
from geventipc.config import OPTIONS, Config, default_socket_root, option_table
from geventipc.errors import ConfigError, InsecureSocketRootError

NODE_IPC_DEFAULTS = {
    "appspace": "app.", "network_host": "localhost", "network_port": 8000,
    "encoding": "utf8", "raw_buffer": False, "sync": False, "silent": False,
    "max_connections": 100, "retry": 500, "max_retries": None, "stop_retrying": False,
    "unlink": True, "readable_all": False, "writable_all": False, "tls": False,
}


def test_node_ipc_defaults():
    config = Config()
    for key, value in NODE_IPC_DEFAULTS.items():
        assert getattr(config, key) == value, key
    assert config.id == socket.gethostname()
    # None (the default) = the per-user directory, which is what reading it gives
    assert config.as_dict()["socket_root"] is None
    assert config.socket_root == default_socket_root()
    assert config.delimiter == "\f"


@pytest.mark.parametrize("camel, snake", [
    ("socketRoot", "socket_root"), ("networkHost", "network_host"),
    ("networkPort", "network_port"), ("rawBuffer", "raw_buffer"),
    ("maxConnections", "max_connections"), ("maxRetries", "max_retries"),
    ("stopRetrying", "stop_retrying"), ("readableAll", "readable_all"),
    ("writableAll", "writable_all"), ("logInColor", "log_in_color"),
    ("logDepth", "log_depth"),
])
def test_camel_case_aliases(camel, snake):
    config = Config()
    option = {o.name: o for o in OPTIONS}[snake]
    value = {"socket_root": "/tmp/", "network_host": "::1", "network_port": 3435,
             "max_connections": 7, "max_retries": 3, "log_depth": 2}.get(
        snake, not option.default if isinstance(option.default, bool) else None)
    setattr(config, camel, value)
    assert getattr(config, snake) == value and getattr(config, camel) == value
    assert config[camel] == value and config[snake] == value
    config2 = Config(**{camel: value})
    assert getattr(config2, snake) == value


def test_every_option_has_a_camel_alias_in_the_table():
    for snake, camel, default, doc in option_table():
        assert doc
        if snake != "socket_root":   # read back as the directory used (test_newcomer_config)
            assert Config()[camel] == default


def test_unknown_key_raises_at_once():
    config = Config()
    with pytest.raises(ConfigError, match="unknown config key 'sockteRoot'"):
        config.sockteRoot = "/tmp/"
    with pytest.raises(AttributeError):
        config.no_such_key
    with pytest.raises(ConfigError):
        IPC(no_such_key=1)
    with pytest.raises(ConfigError):
        config["bogus"] = 1
    with pytest.raises(ConfigError):
        config.update(retry=5, bogus=1)


@pytest.mark.parametrize("key, value", [
    ("retry", "1500"), ("network_port", "8000"), ("silent", "yes"), ("silent", 1),
    ("max_connections", True), ("max_connections", 0), ("retry", -1),
    ("socket_root", 5), ("appspace", None), ("max_retries", 1.5),
    ("encoding", "klingon"), ("log_depth", 0), ("wire", "json"),
])
def test_wrong_type_or_value_raises_at_once(key, value):
    config = Config()
    before = config[key]
    with pytest.raises(ConfigError, match=key):
        setattr(config, key, value)
    assert config[key] == before                # a refused value changes nothing


def test_retry_accepts_int_and_float_milliseconds():
    config = Config(retry=1500)
    config.retry = 2.5
    assert config.retry == 2.5


def test_copy_is_a_snapshot():
    config = Config(id="a")
    snap = config.copy(retry=9)
    config.id = "b"
    assert snap.id == "a" and snap.retry == 9 and config.retry == 500


def test_default_socket_root_is_owner_only_under_xdg(monkeypatch, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    root = default_socket_root()
    assert root == f"{runtime}/geventipc-{os.getuid()}/"
    info = os.stat(root)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert Config(id="w").socket_path("world") == root + "app.world"


def test_default_socket_root_falls_back_to_the_temp_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)   # re-read TMPDIR
    root = default_socket_root()
    assert root == f"{tmp_path}/geventipc-{os.getuid()}/"
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700


def test_default_socket_root_refuses_an_open_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    planted = tmp_path / f"geventipc-{os.getuid()}"
    planted.mkdir()
    os.chmod(planted, 0o777)
    with pytest.raises(InsecureSocketRootError, match="owner-only"):
        default_socket_root()


def test_default_socket_root_refuses_a_symlink(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    os.symlink(target, tmp_path / f"geventipc-{os.getuid()}")
    with pytest.raises(InsecureSocketRootError):
        default_socket_root()


def test_serving_on_the_default_root_end_to_end(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    world, hello = IPC(id="world", silent=True), IPC(id="hello", silent=True, retry=50)
    try:
        world.serve()
        world.server.start()
        assert world.server.path == f"{tmp_path}/geventipc-{os.getuid()}/app.world"
        assert stat.S_IMODE(os.stat(world.server.path).st_mode) == 0o600
        hello.connect_to("world").wait_connected(timeout=5)
    finally:
        hello.disconnect("world")
        world.server.stop()


def test_explicit_tmp_socket_root_still_works():
    """node-ipc 9's /tmp/ works when set explicitly (it is world-writable but sticky)."""
    world = IPC(id=f"gipc-world-{os.getpid()}", silent=True, socket_root="/tmp/")
    hello = IPC(id="hello", silent=True, retry=50, socketRoot="/tmp/")
    try:
        world.serve()
        world.server.start()
        assert world.server.path == f"/tmp/app.gipc-world-{os.getpid()}"
        client = hello.connect_to(world.config.id)
        client.wait_connected(timeout=5)
        got = []
        world.server.on("m", lambda d, s: got.append(d))
        client.emit("m", "via /tmp")
        wait_until(lambda: got == ["via /tmp"])
    finally:
        hello.disconnect(world.config.id)
        if world.server is not None:
            world.server.stop()
    assert not os.path.exists(f"/tmp/app.gipc-world-{os.getpid()}")


def test_a_world_writable_non_sticky_socket_dir_is_refused(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    world = IPC(id="world", silent=True, socket_root=str(open_dir))
    with pytest.raises(InsecureSocketRootError, match="not sticky"):
        world.serve().start()
    world.config.check_socket_root = False     # the documented way out
    world.serve().start()
    world.server.stop()


def test_readme_config_table_lists_every_key():
    """The README's config table stays true: every key, its alias and its default."""
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "README.md"), encoding="utf-8").read()
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `")}
    for snake, camel, default, _doc in option_table():
        assert snake in rows, f"config key {snake} missing from the README table"
        cells = [c.strip() for c in rows[snake].split("|")]
        assert cells[2] == f"`{camel}`", snake
        if snake != "id":
            shown = repr(default) if not isinstance(default, str) else f'"{default}"'
            shown = shown.replace("'\\x0c'", '"\\f"').replace('"\x0c"', '"\\f"')
            assert cells[3].startswith(f"`{shown}`"), (snake, cells[3], shown)


def test_socket_root_with_or_without_trailing_slash():
    assert Config(socket_root="/var/run/x/").socket_path("world") == "/var/run/x/app.world"
    assert Config(socket_root="/var/run/x").socket_path("world") == "/var/run/x/app.world"
    assert Config(socket_root="/tmp/", appspace="my.").socket_path("w") == "/tmp/my.w"


def test_ports_out_of_range_are_refused():
    with pytest.raises(ConfigError, match="network_port"):
        Config(network_port=70000)
    with pytest.raises(ConfigError, match="network_port"):
        Config(networkPort=-1)
    ipc = IPC(silent=True)
    with pytest.raises(ConfigError, match="0-65535"):
        ipc.serve_net("127.0.0.1", 70000)            # would bind 4464 otherwise
    with pytest.raises(ConfigError, match="0-65535"):
        ipc.connect_to_net("world", 65536)
    assert "world" not in ipc.of


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant another user's directory")
def test_default_socket_root_refuses_another_users_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    planted = tmp_path / f"geventipc-{os.getuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)              # nobody: an attacker's directory
    with pytest.raises(InsecureSocketRootError, match="owner-only"):
        default_socket_root()


def test_encoding_accepts_every_name_the_raw_codec_knows():
    """config.encoding and the raw codec share one table of names (node-ipc's spellings)."""
    from geventipc.wire.raw_codec import ENCODINGS

    config = Config()
    for name in ENCODINGS:
        config.encoding = name
        assert config.encoding == name
    with pytest.raises(ConfigError):
        config.encoding = "utf32"
