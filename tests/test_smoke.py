"""The quick start from the README, in one process: a server and a client exchange."""
from conftest import wait_until


def test_hello_world_round_trip(make_ipc):
    world = make_ipc("world")
    hello = make_ipc("hello")
    got = []

    def started():
        @world.server.on("message")
        def on_message(data, socket):
            world.server.emit(socket, "message", data + " world!")

    world.serve(started)
    world.server.start()

    def ready():
        client = hello.of.world
        client.on("connect", lambda: client.emit("message", "hello"))
        client.on("message", got.append)

    hello.connect_to("world", ready)
    wait_until(lambda: got, message="the reply")
    assert got == ["hello world!"]
    assert [s.id for s in world.server.sockets] == ["hello"]
