"""Safe local-socket defaults: the default socket root is owner-only, and a socket
directory other users can write to (and that is not sticky) is refused unless opted out."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from typing import Iterator

import pytest

from geventipc import IPC
from geventipc.config import Config, check_socket_dir, default_socket_root
from geventipc.errors import InsecureSocketRootError, ServeError

from conftest import wait_until


@pytest.fixture
def base_dir() -> Iterator[str]:
    """A short temp dir under /tmp whose mode each test sets itself."""
    path = tempfile.mkdtemp(prefix="gipc-root-", dir="/tmp")
    yield path
    shutil.rmtree(path)  # every mode used here keeps the owner's write bit


def make_dir(base: str, mode: int) -> str:
    """A directory in ``base`` with exactly ``mode`` (chmod, so the umask plays no part)."""
    path = os.path.join(base, f"d{mode:o}")
    os.mkdir(path)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o730])
def test_writable_by_others_and_not_sticky_is_refused(base_dir: str, mode: int) -> None:
    root = make_dir(base_dir, mode)
    with pytest.raises(InsecureSocketRootError) as info:
        check_socket_dir(root)
    assert root in str(info.value) and "check_socket_root" in str(info.value)
    assert isinstance(info.value, ServeError)


def test_server_refuses_insecure_root_and_binds_nothing(base_dir: str) -> None:
    root = make_dir(base_dir, 0o777)
    ipc = IPC(id="world", socket_root=root, silent=True)
    server = ipc.serve()
    with pytest.raises(InsecureSocketRootError):
        server.start()
    assert os.listdir(root) == []
    assert not server.started


@pytest.mark.parametrize("mode", [0o1777, 0o1770, 0o700, 0o755])
def test_sticky_or_owner_only_dirs_are_allowed(base_dir: str, mode: int) -> None:
    root = make_dir(base_dir, mode)
    check_socket_dir(root)  # no error
    ipc = IPC(id="world", socket_root=root, silent=True)
    try:
        server = ipc.serve()
        server.start()
        assert server.started and os.path.exists(server.path)
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600  # owner-only socket
    finally:
        ipc.server.stop(timeout=1)


def test_opt_out_allows_an_insecure_root(base_dir: str) -> None:
    root = make_dir(base_dir, 0o777)
    server_ipc = IPC(id="world", socket_root=root, silent=True, check_socket_root=False)
    client_ipc = IPC(id="hello", socket_root=root, silent=True, retry=50,
                     checkSocketRoot=False)  # node-style spelling works as well
    got: list[str] = []
    server = server_ipc.serve()
    server.on("message", lambda data, sock: got.append(data))
    server.start()
    try:
        client_ipc.connect_to("world")
        client_ipc.of.world.emit("message", "through an opted-out root")
        wait_until(lambda: got, message="message through an opted-out root")
        assert got == ["through an opted-out root"]
    finally:
        client_ipc.disconnect("world")
        server.stop(timeout=1)


def test_default_root_is_owner_only_and_owned(base_dir: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    os.chmod(base_dir, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", base_dir)
    old_umask = os.umask(0)  # even with a permissive umask the root is made 0700
    try:
        root = default_socket_root()
    finally:
        os.umask(old_umask)
    assert root == os.path.join(base_dir, f"geventipc-{os.getuid()}") + os.sep
    info = os.stat(root)
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.getuid()
    assert Config().resolved_socket_root() == root
    assert Config().socket_path("world") == root + "app.world"
    assert default_socket_root() == root  # idempotent


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o1777])
def test_default_root_with_other_access_is_refused(base_dir: str, mode: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", base_dir)
    planted = os.path.join(base_dir, f"geventipc-{os.getuid()}")
    os.mkdir(planted)
    os.chmod(planted, mode)
    with pytest.raises(InsecureSocketRootError, match="owner-only"):
        default_socket_root()


def test_default_root_that_is_a_symlink_is_refused(base_dir: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", base_dir)
    target = make_dir(base_dir, 0o700)
    os.symlink(target, os.path.join(base_dir, f"geventipc-{os.getuid()}"))
    with pytest.raises(InsecureSocketRootError):
        default_socket_root()


def test_serve_uses_the_default_root(base_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    os.chmod(base_dir, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", base_dir)
    ipc = IPC(id="world", silent=True)
    server = ipc.serve()
    try:
        server.start()
        assert os.path.dirname(server.path) == os.path.join(base_dir,
                                                            f"geventipc-{os.getuid()}")
    finally:
        server.stop(timeout=1)
