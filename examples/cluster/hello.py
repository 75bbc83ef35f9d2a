"""A client of one node: ``python hello.py PORT ID OTHER_ID``. Prints the news of every
node, whispers to OTHER_ID (connected to another node), and exits once it has heard both
nodes and been whispered to (or after 15 s)."""
import sys

import gevent
from gevent.event import Event

from geventipc import IPC

port, me, other = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ipc = IPC(id=me, silent=True)     # the id the cluster knows this client by
heard: set = set()
whispered = Event()


def connected() -> None:
    world = ipc.of.world

    @world.on("news")
    def news(text):
        print(f"  {me} got news: {text}", flush=True)
        heard.add(text.split()[0])

    @world.on("whisper")
    def whisper(data):
        print(f"  {me} got a whisper from {data['from']}: {data['text']}", flush=True)
        whispered.set()


ipc.connect_to_net("world", "127.0.0.1", port, connected)
gevent.sleep(2.5)  # the other client has announced its id by now
ipc.of.world.emit("whisper", {"to": other, "text": f"psst, {other}, it's {me}"})
with gevent.Timeout(15, False):
    while len(heard) < 2 or not whispered.is_set():
        gevent.sleep(0.1)
ipc.disconnect("world")
sys.exit(0 if len(heard) >= 2 and whispered.is_set() else 1)
