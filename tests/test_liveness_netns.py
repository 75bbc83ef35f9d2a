"""Issue 15, "dead peers are found", with real vanishing peers: a server and a client in
two network namespaces joined by a veth pair that this test creates (addresses in a
private /30 that exists only inside the pair: no traffic ever leaves this machine) and
removes again, even on failure. A firewall rule inside the client's namespace drops every
packet between them, both ways: no FIN, no reset, just silence, as when a host dies or a
cable is pulled. Needs root, iproute2's ``ip`` and ``iptables`` (or ``nft``); skips with
the reason otherwise (``apt-get install iproute2 iptables``)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, read_line, stop_process, wait_until
from geventipc import IPC

INTERVAL, TIMEOUT = 300, 900          # ms: a silent peer is found within 1.2 s
BOUND = (INTERVAL + TIMEOUT) / 1000.0
SLACK = 3.0                            # a noisy, shared machine: scheduling, not the bound
EVENTS = 800                           # the busy client's numbered events, ~5 ms apart

SERVER = '''
import json, sys, time
import gevent
from geventipc import IPC
host, port, unix_path, mode, wire, keepalive = sys.argv[1:7]
def say(**kw):
    print(json.dumps(dict(kw, t=time.monotonic())), flush=True)
ipc = IPC(id="world", silent=True, wire=wire, heartbeat_interval=%d,
          heartbeat_timeout=%d, keepalive=int(keepalive))
got = []
ipc.serve_net(host, int(port))
srv = ipc.server
srv.on("n", lambda data, sock: got.append(data))
srv.on("error", lambda exc: say(event="error", kind=type(exc).__name__))
srv.on("socket.disconnected", lambda sock, sid: say(event="gone"))
srv.start()
report = IPC(id="report", silent=True)
report.serve(unix_path)
report.server.handle("report", lambda data, sock: got)
report.server.start()
def ticks():
    while True:
        srv.broadcast("tick", 1)
        gevent.sleep(0.005)
if mode == "busy":
    gevent.spawn(ticks)
say(event="ready")
srv.serve_forever()
''' % (INTERVAL, TIMEOUT)

CLIENT = '''
import json, sys, time
import gevent
from geventipc import IPC
host, port, mode, wire, keepalive, events = sys.argv[1:7]
def say(**kw):
    print(json.dumps(dict(kw, t=time.monotonic())), flush=True)
ipc = IPC(id="hello", silent=True, wire=wire, heartbeat_interval=%d,
          heartbeat_timeout=%d, keepalive=int(keepalive), retry=100, connect_timeout=1000)
client = ipc.connect_to_net("world", host, int(port))
seq = 0
client.on("connect", lambda: say(event="connect", seq=seq))
client.on("disconnect", lambda: say(event="disconnect", seq=seq))
client.on("error", lambda exc: say(event="error", kind=type(exc).__name__, seq=seq))
client.wait_connected(10)
if mode == "busy":
    for seq in range(int(events)):
        client.emit("n", seq)
        gevent.sleep(0.005)
    seq = int(events)
    say(event="done", seq=seq)
gevent.sleep(120)
''' % (INTERVAL, TIMEOUT)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=20)


class NetnsPair:
    """Two namespaces, ``a`` (server, .1) and ``b`` (client, .2), on one veth pair."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.a, self.b = f"gipc{tag}a", f"gipc{tag}b"
        self.veth_a, self.veth_b = f"gv{tag}a", f"gv{tag}b"   # at most 15 characters
        subnet = f"10.231.{os.getpid() % 250 + 1}"
        self.ip_a, self.ip_b = f"{subnet}.1", f"{subnet}.2"
        self.firewall = "iptables" if shutil.which("iptables") else "nft"
        self.procs: list[subprocess.Popen] = []

    def create(self) -> None:
        run("ip", "netns", "add", self.a)
        run("ip", "netns", "add", self.b)
        run("ip", "link", "add", self.veth_a, "type", "veth", "peer", "name", self.veth_b)
        for ns, veth, ip in ((self.a, self.veth_a, self.ip_a), (self.b, self.veth_b, self.ip_b)):
            run("ip", "link", "set", veth, "netns", ns)
            run("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", veth)
            run("ip", "-n", ns, "link", "set", veth, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def destroy(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        for ns in (self.a, self.b):   # a namespace takes its end of the veth pair with it
            run("ip", "netns", "del", ns, check=False)
        run("ip", "link", "del", self.veth_a, check=False)

    def python(self, ns: str, code: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.procs.append(proc)
        return proc

    def drop(self) -> None:
        """Silence, both ways: every packet between the two addresses dropped in b."""
        if self.firewall == "iptables":
            ipt = ("ip", "netns", "exec", self.b, "iptables")
            run(*ipt, "-A", "INPUT", "-s", self.ip_a, "-j", "DROP")
            run(*ipt, "-A", "OUTPUT", "-d", self.ip_a, "-j", "DROP")
        else:
            nft = ("ip", "netns", "exec", self.b, "nft")
            run(*nft, "add", "table", "inet", "gipc_drop")
            for chain, hook, match in (("in", "input", "saddr"), ("out", "output", "daddr")):
                run(*nft, "add", "chain", "inet", "gipc_drop", chain,
                    f"{{ type filter hook {hook} priority 0 ; policy accept ; }}")
                run(*nft, "add", "rule", "inet", "gipc_drop", chain, "ip", match, self.ip_a,
                    "drop")

    def undrop(self) -> None:
        if self.firewall == "iptables":
            run("ip", "netns", "exec", self.b, "iptables", "-F")
        else:
            run("ip", "netns", "exec", self.b, "nft", "delete", "table", "inet", "gipc_drop")


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces and a veth pair")
    if not shutil.which("ip"):
        pytest.skip("needs iproute2's ip (apt-get install iproute2)")
    if not (shutil.which("iptables") or shutil.which("nft")):
        pytest.skip("needs iptables or nft to drop packets (apt-get install iptables)")
    pair = NetnsPair()
    try:
        pair.create()
    except subprocess.CalledProcessError as exc:
        pair.destroy()
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.strip()}")
    try:
        yield pair
    finally:
        pair.destroy()


def lines_until(proc, predicate, timeout: float, seen: list) -> dict:
    """Read JSON lines from ``proc`` (kept in ``seen``) until one satisfies ``predicate``."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no such line within {timeout} s; got {seen}")
        line = json.loads(read_line(proc, left))
        seen.append(line)
        if predicate(line):
            return line


def start(netns, sock_dir, mode: str, wire: str = "msgpack", keepalive: int = 0):
    port = "7501"
    report_path = sock_dir + "report.sock"
    server = netns.python(netns.a, SERVER, netns.ip_a, port, report_path, mode, wire,
                          str(keepalive))
    server_lines: list = []
    lines_until(server, lambda l: l["event"] == "ready", 20, server_lines)
    client = netns.python(netns.b, CLIENT, netns.ip_a, port, mode, wire, str(keepalive),
                          str(EVENTS))
    client_lines: list = []
    lines_until(client, lambda l: l["event"] == "connect", 20, client_lines)
    return server, server_lines, client, client_lines, report_path


def drop_and_detect(netns, server, server_lines, client, client_lines, kind, bound):
    import time
    import gevent
    gevent.sleep(0.5)
    dropped_at = time.monotonic()
    netns.drop()
    found_c = lines_until(client, lambda l: l["event"] == kind
                          or l["event"] == "error" and l["kind"] == kind, bound + SLACK,
                          client_lines)
    found_s = lines_until(server, lambda l: l["event"] == kind
                          or l["event"] == "error" and l["kind"] == kind, bound + SLACK,
                          server_lines)
    # both found the silent peer, after it went silent and within the bound (+ slack)
    for found in (found_c, found_s):
        assert dropped_at < found["t"] <= dropped_at + bound + SLACK, (found, dropped_at)
    return found_c


@pytest.mark.parametrize("mode", ["idle", "busy"])
def test_both_sides_find_a_vanished_peer_and_nothing_after_detection_is_lost(
        netns, sock_dir, mode):
    server, server_lines, client, client_lines, report_path = start(netns, sock_dir, mode)
    found = drop_and_detect(netns, server, server_lines, client, client_lines,
                            "PeerTimeoutError", BOUND)
    # the client's seq is the number of the event it emitted last (before the sleep in
    # which the heartbeat found the server silent): the first one after detection is next
    detected_seq = found["seq"] + 1
    netns.undrop()
    lines_until(client, lambda l: l["event"] == "connect", 20, client_lines)
    if mode == "busy":
        lines_until(client, lambda l: l["event"] == "done", 30, client_lines)
    reporter = IPC(id="probe", silent=True).connect_to("report", report_path)
    try:
        expected = EVENTS if mode == "busy" else 0
        got: list = []

        def fetch() -> bool:
            got[:] = reporter.request("report", None, timeout=5)
            return bool(got) and got[-1] == expected - 1 or expected == 0

        wait_until(fetch, timeout=30, step=0.2, message="the requeued events")
        if mode == "busy":
            assert len(got) == len(set(got)), "duplicated"
            assert got == sorted(got), "out of order"
            lost = sorted(set(range(EVENTS)) - set(got))
            # only what the kernel had taken before detection may be lost
            late = [seq for seq in lost if seq >= detected_seq]
            assert not late, (late, detected_seq, client_lines, server_lines)
            assert set(range(detected_seq, EVENTS)) <= set(got)
            print(f"busy: {EVENTS} sent, {len(got)} delivered, {len(lost)} lost "
                  f"(all before detection at #{detected_seq}), 0 duplicated, 0 reordered")
    finally:
        reporter.disconnect()


def test_node_ipc_wire_finds_a_vanished_peer_by_keepalive(netns, sock_dir):
    """No heartbeat on node-ipc's JSON wire: TCP keepalive and TCP_USER_TIMEOUT find the
    silent peer (the kernel resets the connection: disconnect / socket.disconnected)."""
    keepalive = 3000
    server, server_lines, client, client_lines, _ = start(
        netns, sock_dir, "idle", wire="node-ipc", keepalive=keepalive)
    bound = keepalive / 1000.0 + 2.0   # probes are whole seconds apart
    import time
    import gevent
    gevent.sleep(0.5)
    dropped_at = time.monotonic()
    netns.drop()
    gone_c = lines_until(client, lambda l: l["event"] == "disconnect", bound + SLACK,
                         client_lines)
    gone_s = lines_until(server, lambda l: l["event"] == "gone", bound + SLACK, server_lines)
    for found in (gone_c, gone_s):
        assert dropped_at < found["t"] <= dropped_at + bound + SLACK, (found, dropped_at)
