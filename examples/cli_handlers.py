"""Request handlers for ``geventipc serve --handlers examples/cli_handlers.py``.

Every function defined here whose name does not start with ``_`` answers the requests of
that name, called as ``handler(data, socket)``; its return value is the reply. ``HANDLERS``
maps names that are not Python identifiers. ``setup(server)``, if defined, runs once
before the server starts (define tables, broadcasts, anything else).

    geventipc serve world --handlers examples/cli_handlers.py
    geventipc request world add '[1, 2]'        # 3
    geventipc request world user.get '{"id": 7}'
    geventipc listen world tick --count 3
"""
import gevent


def add(data, socket):
    """The sum of a list of numbers."""
    return sum(data)


def square(data, socket):
    """A number times itself."""
    return data * data


def _get_user(data, socket):
    return {"id": data["id"], "name": f"user {data['id']}"}


HANDLERS = {"user.get": _get_user}


def setup(server):
    """Describe the events, and broadcast a tick every 0.2 s while serving."""
    server.define.listen.add = "request: a list of numbers; replies with their sum"
    server.define.listen.square = "request: a number; replies with its square"
    server.define.broadcast.tick = "a counter, every 0.2 s"

    def tick():
        count = 0
        while True:
            gevent.sleep(0.2)
            count += 1
            server.broadcast("tick", count)

    server.on("start", lambda: gevent.spawn(tick))
