"""``geventipc serve``: run a server that prints every event it receives."""
from __future__ import annotations

import argparse
import inspect
import runpy
from dataclasses import replace
from typing import Any, Callable

from ..errors import ConfigError, ConnectError, UsageError
from ..ipc import IPC
from .common import OK, Stopper, check_name, has_requests, make_ipc, sender_of, with_tls
from .options import positive
from .output import make_printer, one_line
from .stats import ServeExtras, add_serve_options
from .targets import Target, parse_host_port, parse_target

NAME = "serve"
SUMMARY = "run a server that prints every event it receives"
USAGE = ("%(prog)s [options] (ID | ADDRESS | --path P | --tcp HOST:PORT [ID] | "
         "--udp HOST:PORT [ID])")
EPILOG = """\
ADDRESS is a server id, a Unix socket path, tcp://HOST:PORT or udp://HOST:PORT (port 0:
any free port; the chosen one is logged). With --tcp or --udp, an ID word names the
server (as --id does): serve --tcp 0.0.0.0:8000 world. Events are printed to stdout:
coloured text on a terminal, JSON lines {"type", "data", "from"} when piped or with
--json. Logs go to stderr.
Runs until interrupted, until --count events arrived, or for --timeout seconds. TLS: --tcp
with --tls-cert and --tls-key; add --tls-ca to require client certificates from that CA
(mutual TLS). With --raw, each chunk of bytes is printed in --encoding.

Requests (msgpack wire, Unix or TCP): --echo answers every request with its own data;
--handlers FILE.py answers with the functions FILE defines: def add(data, socket): ...
answers 'add' (a HANDLERS dict maps other names; setup(server), if defined, runs first).
Without either, a request gets 'no handler'.

examples:
  geventipc serve world                       # Unix socket, server id "world"
  geventipc serve --tcp 127.0.0.1:8000 --echo # TCP, every event and request sent back
  geventipc serve --tcp 0.0.0.0:8000 world    # TCP, server id "world" (cluster, stats)
  geventipc serve world --handlers examples/cli_handlers.py   # answers add, square...
  geventipc serve --udp [::1]:8001 --json     # UDP over IPv6, JSON lines
  geventipc serve world --count 1 --timeout 10 > first.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """serve's own words and options (after the common ones)."""
    parser.add_argument("address", nargs="?", metavar="ID|ADDRESS",
                        help="server id, socket path, tcp://HOST:PORT or udp://HOST:PORT")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="serve TCP (TLS with --tls-cert)")
    parser.add_argument("--udp", metavar="HOST:PORT", help="serve UDP")
    parser.add_argument("--echo", action="store_true",
                        help="send each event back to its sender, and answer each request "
                             "with its data")
    parser.add_argument("--count", metavar="N", type=positive,
                        help="exit after N events")
    add_serve_options(parser)
    parser.add_argument("--handlers", metavar="FILE.py",
                        help="answer requests with the functions FILE.py defines (see "
                             "below)")
    parser.add_argument("--cluster", metavar="URL",
                        help="join the servers of this id through Redis/Valkey: "
                             "redis://HOST:PORT/DB, rediss://..., unix:///PATH "
                             "(docs/cluster.md)")
    parser.add_argument("--workers", metavar="N", type=positive,
                        help="serve from N pre-forked processes sharing the socket "
                             "(more than 1 needs --cluster; docs/workers.md)")


def use_cluster(args: argparse.Namespace, ipc: IPC, target: Target) -> None:
    """--cluster URL: config.cluster for the server made next (stream servers only)."""
    if args.cluster is None:
        return
    if target.kind == "udp":
        raise UsageError("--cluster needs a stream server (ID, a socket path or --tcp), "
                         "not UDP")
    if not target.name and args.id is None:
        # the cluster is the servers of one id: a per-process default id would make each
        # node a cluster of its own
        raise UsageError("--cluster needs the server's id: serve ID, serve --tcp "
                         "HOST:PORT ID, or --id NAME with --tcp / --path")
    try:
        ipc.config.cluster = args.cluster
    except ConfigError as exc:
        raise UsageError(f"--cluster: {exc}") from None


def serve_target(args: argparse.Namespace, ipc: IPC) -> Target:
    """serve's address: ID / ADDRESS, or --path, --tcp, --udp (exactly one). With --tcp
    or --udp, an ID word names the server (``serve --tcp HOST:PORT world``)."""
    net = [kind for kind in ("tcp", "udp") if getattr(args, kind) is not None]
    name = net_server_id(args, net[0]) if len(net) == 1 and args.path is None else None
    address = None if name is not None else args.address
    given = [x for x in (address, args.path, args.tcp, args.udp) if x is not None]
    if len(given) != 1:
        raise UsageError("serve needs exactly one of ID, ADDRESS, --path, --tcp or --udp "
                         "(an ID may go with --tcp or --udp)")
    if args.path is not None:
        return Target("unix", path=args.path)
    for kind in net:
        host, port = parse_host_port(getattr(args, kind), f"--{kind}", allow_zero=True)
        return Target(kind, host=host, port=port, name=name)
    return parse_target(args.address, ipc.config, serving=True)


def net_server_id(args: argparse.Namespace, kind: str) -> str | None:
    """The positional word as the server's id beside ``--tcp``/``--udp`` (None without
    one). A word that is an address (a path, a URL, HOST:PORT) is refused: --tcp already
    says where to listen, so the word could only be a second address."""
    word = args.address
    if word is None:
        return None
    host, colon, port = word.rpartition(":")
    if "/" in word or (colon and host and port.isdigit()):
        raise UsageError(f"{word!r} is an address, and --{kind} already gives one: with "
                         f"--{kind}, the word is the server's id (serve --{kind} HOST:PORT "
                         f"ID); to serve at {word!r}, drop --{kind}")
    if args.id is not None and args.id != word:
        raise UsageError(f"two server ids: {word!r} and --id {args.id!r}; give one")
    return word


def use_workers(args: argparse.Namespace, ipc: IPC, target: Target) -> None:
    """--workers N: config.workers, for stream servers; --count cannot be split."""
    if args.workers is None or args.workers == 1:
        return
    if target.kind == "udp":
        raise UsageError("--workers works with Unix socket and TCP servers, not UDP")
    if args.count is not None:
        raise UsageError("--count does not combine with --workers (each worker would count "
                         "only its own events)")
    ipc.config.workers = args.workers


def run(args: argparse.Namespace) -> int:
    """Run a server that prints every event it receives, until interrupted."""
    ipc = make_ipc(args, serving=True)
    target = with_tls(args, ipc, serve_target(args, ipc))
    if target.name:
        ipc.config.id = target.name   # a server given by id is known by that id
    if target.kind == "tls" and not args.tls_cert:
        raise UsageError("serving TLS needs --tls-cert and --tls-key")
    handlers = load_handlers(args.handlers, ipc) if args.handlers else None
    if handlers is not None and handlers[0] and not has_requests(args):
        raise UsageError("--handlers answers requests, which need the msgpack wire "
                         "(not --wire node-ipc or --raw)")
    use_workers(args, ipc, target)
    stopper = Stopper(args.count, args.timeout)
    printer = make_printer(args, on_broken=stopper.stop)
    encoding = ipc.config.encoding
    use_cluster(args, ipc, target)
    if target.kind == "unix":
        server = ipc.serve(target.path)
    elif target.kind == "udp":
        server = ipc.serve_net(target.host, target.port, target.udp_type)
    else:
        server = ipc.serve_net(target.host, target.port)

    def on_event(type: str, data: Any, socket: Any) -> None:
        if not stopper.take():
            return
        printer.event(type, data, sender_of(socket))
        if args.echo:
            server.emit(socket, type, data)

    def on_raw(data: bytes, socket: Any) -> None:
        if not stopper.take():
            return
        printer.raw(data, encoding, sender_of(socket))
        if args.echo:
            server.emit(socket, data)  # type: ignore[arg-type]  # raw mode: data only

    server.on("data" if args.raw else "*", on_raw if args.raw else on_event)
    if args.echo and has_requests(args) and target.kind != "udp":
        server.handle("*", lambda type, data, socket: data)
    if handlers is not None:
        install_handlers(server, *handlers)
    server.on("error", lambda exc: ipc.log("<warn>geventipc:</warn>", one_line(exc)))
    server.on("connect", lambda socket: ipc.log("<good>geventipc: client connected</good>"))
    server.on("socket.disconnected", lambda socket, peer_id: ipc.log(
        "<notice>geventipc: client disconnected:</notice>",
        peer_id or sender_of(socket) or "(no id)"))
    extras = ServeExtras(args, ipc, server)
    try:
        server.start()
    except OSError as exc:
        raise ConnectError(f"cannot serve on {target}: {one_line(exc)}") from None
    # port 0 asked for any free port: show the one the kernel chose
    bound = replace(target, port=getattr(server, "port", None) or target.port)
    ipc.log("<good>geventipc: serving on</good>", str(bound))
    try:
        stopper.wait(args.timeout)
    finally:
        server.stop()
        extras.stop()
        printer.flush()
    return OK


#: request handlers by name, and the optional setup(server) of a --handlers file
Handlers = tuple[dict[str, Callable[..., Any]], Any]


def load_handlers(path: str, ipc: IPC) -> Handlers:
    """The request handlers a ``--handlers`` file defines: every function defined in it
    (not imported) whose name does not start with ``_``, plus its ``HANDLERS`` dict; and
    its ``setup(server)``. A file that cannot be run, or a name the wire cannot carry, is
    a usage error, before the server starts."""
    try:
        namespace = runpy.run_path(path, run_name="__geventipc_handlers__")
    except OSError as exc:
        raise UsageError(f"--handlers {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's file: report, whatever it raised
        raise UsageError(f"--handlers {path} raised {type(exc).__name__}: {exc}") from None
    found: dict[str, Callable[..., Any]] = {
        name: value for name, value in namespace.items()
        if inspect.isfunction(value) and not name.startswith("_") and name != "setup"
        and value.__module__ == "__geventipc_handlers__"
    }
    extra = namespace.get("HANDLERS", {})
    if not isinstance(extra, dict) or not all(callable(h) for h in extra.values()):
        raise UsageError(f"--handlers {path}: HANDLERS must be a dict of name: function")
    found.update(extra)
    for name in found:
        check_name(ipc, name)
    setup = namespace.get("setup")
    if setup is not None and not callable(setup):
        raise UsageError(f"--handlers {path}: setup must be a function taking the server")
    if not found and setup is None:
        raise UsageError(f"--handlers {path} defines no functions to answer requests with")
    return found, setup


def install_handlers(server: Any, found: dict[str, Callable[..., Any]], setup: Any) -> None:
    """Register ``found`` as request handlers and run ``setup(server)``."""
    for name, handler in found.items():
        server.handle(name, handler)
    if setup is not None:
        try:
            setup(server)
        except Exception as exc:  # noqa: BLE001 - the user's code: report it in one line
            raise UsageError(f"--handlers: setup(server) raised {type(exc).__name__}: "
                             f"{exc}") from None
