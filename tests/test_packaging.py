"""The package as users get it (issue 14): ``python -m build`` makes the sdist and the
wheel; the wheel installed into a new virtualenv outside the checkout runs a world/hello
exchange and ``geventipc --help``. Catches package data left out and imports that only
work from the source tree.

The new venv gets the runtime dependencies (gevent, msgpack, loguru) from this venv's
site-packages through a ``.pth`` path line (no network, no download; a plain path line
does not run this venv's editable-install hook, so the checkout stays invisible), and the
wheel is installed by pip with ``--no-index --no-deps``.
"""
import os
import re
import shutil
import sys
import sysconfig
import tarfile
import zipfile

import pytest
# gevent's subprocess: the hub keeps running while a build or an install waits, so the
# timers of the tests after this one do not start from a stale loop clock
from gevent import subprocess

from conftest import ROOT

pytest.importorskip("build")
pytest.importorskip("wheel")


def _version() -> str:
    text = open(os.path.join(ROOT, "geventipc", "__init__.py"), encoding="utf-8").read()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # a copy of the checkout, so build's egg-info and build/ never land in the work tree
    src = out / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "node_modules", "*.egg-info", "build", "dist", "__pycache__",
        ".pytest_cache", ".hypothesis", "results"))
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
         "--outdir", str(out), str(src)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_sdist_and_wheel_carry_the_package_and_one_version(dist):
    version = _version()
    import geventipc
    assert geventipc.__version__ == version
    (wheel,) = dist.glob(f"geventipc-{version}-py3-none-any.whl")
    (sdist,) = dist.glob(f"geventipc-{version}.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("geventipc/__init__.py", "geventipc/py.typed", "geventipc/cli/__init__.py",
                   "geventipc/wire/__init__.py", "geventipc/transports/stream.py",
                   "geventipc/metrics.py"):
        assert needed in names, needed
    assert not any(n.startswith("tests/") for n in names)
    meta = zipfile.ZipFile(wheel).read(f"geventipc-{version}.dist-info/METADATA").decode()
    assert "Provides-Extra: metrics" in meta
    assert re.search(r"Requires-Dist: prometheus[-_]client.*extra == .metrics.", meta)
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert f"geventipc-{version}/pyproject.toml" in members
    assert f"geventipc-{version}/setup.py" in members


def test_wheel_installed_outside_the_checkout_works(dist, tmp_path):
    version = _version()
    (wheel,) = dist.glob(f"geventipc-{version}-py3-none-any.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True,
                             timeout=30).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    with open(os.path.join(purelib, "_geventipc_test_deps.pth"), "w") as f:
        f.write(ours + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index",
         "--no-deps", "--disable-pip-version-check", "-q", str(wheel)],
        capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr
    work = tmp_path / "work"        # nowhere near the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["IPC_SOCKET_ROOT"] = str(tmp_path)
    where = subprocess.run([str(py), "-c", "import geventipc; print(geventipc.__file__, "
                            "geventipc.__version__)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=30)
    assert where.returncode == 0, where.stderr
    path, got_version = where.stdout.split()
    assert path.startswith(str(venv)) and got_version == version

    help_ = subprocess.run([str(venv / "bin" / "geventipc"), "--help"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=30)
    assert help_.returncode == 0 and "serve" in help_.stdout, help_.stderr

    sock_dir = tmp_path / "s"
    sock_dir.mkdir(mode=0o700)
    exchange = subprocess.run([str(py), "-c", _EXCHANGE, str(sock_dir)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=30)
    assert exchange.returncode == 0, exchange.stderr
    assert exchange.stdout.splitlines() == ["hello world!", "stats 2"]


_EXCHANGE = """
import sys
from gevent.event import AsyncResult
from geventipc import IPC
world = IPC(id="world", socket_root=sys.argv[1], silent=True)
world.serve(lambda: world.server.on(
    "message", lambda data, socket: world.server.emit(socket, "message", data + " world!")))
world.server.start()
hello = IPC(id="hello", socket_root=sys.argv[1], silent=True)
answer = AsyncResult()
client = hello.connect_to("world")
client.on("message", answer.set)
client.emit("message", "hello")
print(answer.get(timeout=10))
print("stats", world.server.stats()["events_in"])
hello.disconnect("world")
world.server.stop()
"""
