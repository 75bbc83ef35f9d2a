"""``make demo-tls``: the mutual-TLS server and client as two real processes on a free
port; the client sends three messages, prints the answers and exits, then the server is
stopped. Certificates are made on first run (see certs.py)."""
import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    port = str(free_port())
    server = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), port],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # "listening on ...": certificates exist by now
        if "listening" not in line:
            print("demo-tls: the server did not start", file=sys.stderr)
            return 1
        print(line, end="", flush=True)
        return subprocess.call([sys.executable, os.path.join(HERE, "client.py"), port])
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
