"""``make demo``: the world server and the hello client as two real processes, first over
a Unix socket, then over TCP, with their coloured ``ipc.log`` output; exits by itself.
``python examples/demo.py tcp`` (``make demo-tcp``) or ``unix`` runs only one pair.

The processes use a fresh private socket root (``XDG_RUNTIME_DIR`` pointed at a new
owner-only temp dir) and a free TCP port, so the demo never collides with a server that
is already running on this machine.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_listening(world: subprocess.Popen, timeout: float = 10.0) -> None:
    """Echo the server's log lines until it says it is listening, then keep echoing
    them from a thread; the server's own log line is the readiness signal, so no probe
    connection shows up in the exchange."""
    ready = threading.Event()

    def pump() -> None:
        for line in world.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            if "listening" in line:
                ready.set()
        ready.set()  # ended: the caller sees the exit code

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout):
        raise SystemExit(f"demo: the world server did not come up within {timeout} s")
    if world.poll() is not None:
        raise SystemExit(f"demo: the world server exited with {world.returncode}")


def run(title: str, server: list, client: list, env: dict) -> int:
    """Start the ``server`` script, run the ``client`` script against it, stop the
    server; return the client's exit code."""
    print(f"\n\033[1m== {title} ==\033[0m", flush=True)
    world = subprocess.Popen([sys.executable, *server], env=env, cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for_listening(world)
        hello = subprocess.run([sys.executable, *client], env=env, cwd=ROOT, timeout=20)
        time.sleep(0.1)  # let the server log the client leaving
        return hello.returncode
    finally:
        world.terminate()
        try:
            world.wait(5)
        except subprocess.TimeoutExpired:
            world.kill()
            world.wait()
        time.sleep(0.05)  # let the pump thread print the server's last line


def main(which: str = "both") -> int:
    """The Unix socket pair, then the TCP pair (or only ``which`` one of them); 0 if
    the exchanges worked."""
    if which not in ("both", "unix", "tcp"):
        print("usage: demo.py [unix|tcp]", file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="geventipc-demo-")
    os.chmod(root, 0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=root, PYTHONUNBUFFERED="1")
    if sys.stderr.isatty():
        # the server's log reaches this terminal through a pipe: ask for its colours
        env["FORCE_COLOR"] = "1"
    port = free_port()
    rc = 0
    try:
        if which in ("both", "unix"):
            rc = run("Unix socket: examples/world.py + examples/hello.py",
                     [os.path.join(HERE, "world.py")], [os.path.join(HERE, "hello.py")],
                     env)
        if which in ("both", "tcp") and rc == 0:
            rc = run(f"TCP 127.0.0.1:{port}: examples/tcp_world.py + examples/tcp_hello.py",
                     [os.path.join(HERE, "tcp_world.py"), str(port)],
                     [os.path.join(HERE, "tcp_hello.py"), str(port)],
                     env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n\033[1m== demo " + ("done ==\033[0m" if rc == 0 else "FAILED ==\033[0m"))
    return rc


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
