"""Legacy threaded code sending through geventipc: plain OS threads emit and request
on a client that the main thread's hub runs (no monkey-patching).

    python examples/threads.py

Each thread's calls are handed to the main thread's hub (docs/api.md, "Threads"); the
main thread keeps its hub running by waiting with gevent, not with thread.join().
"""
import tempfile
import threading

import gevent

from geventipc import IPC

root = tempfile.mkdtemp(prefix="gipc-threads-") + "/"
world = IPC(id="world", socket_root=root, silent=True)
hello = IPC(id="hello", socket_root=root, silent=True)
got, answers = [], []
world.serve(lambda: None)
world.server.on("reading", lambda data, socket: got.append(data))
world.server.handle("total", lambda data, socket: len(got))
world.server.start()
client = hello.connect_to("world")
client.wait_connected(5)


def sensor(name: str) -> None:
    """A blocking worker as legacy code has them: emits from its own OS thread."""
    for i in range(100):
        client.emit("reading", {"sensor": name, "seq": i})
    # blocks this thread (not the hub) until the server answers
    answers.append(f"{name} done; the server had {client.request('total', timeout=5)} readings")


workers = [threading.Thread(target=sensor, args=(f"s{n}",)) for n in range(3)]
for worker in workers:
    worker.start()
while any(worker.is_alive() for worker in workers):
    gevent.sleep(0.01)          # keeps the hub (which runs the threads' calls) going
gevent.sleep(0.1)
print("\n".join(sorted(answers)))
for n in range(3):  # each thread's events arrived once, in its order
    assert [r["seq"] for r in got if r["sensor"] == f"s{n}"] == list(range(100))
print("all", len(got), "readings arrived, each once and in order")
hello.disconnect("world")
world.server.stop()
