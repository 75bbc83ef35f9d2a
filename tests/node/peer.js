'use strict';
/*
 * A real node-ipc peer that geventipc's interop tests drive (tests/test_nodeipc_interop.py).
 *
 *   node peer.js '<spec as JSON>'
 *
 * spec: {lib: absolute path of the node-ipc package to load (9.x or 14.x),
 *        role: "server" | "client", transport: "unix" | "tcp" | "udp4",
 *        path (unix), host + port (tcp, udp4), id (this peer's id), server_id (client),
 *        raw: bool, encoding: node-ipc encoding, delimiter: string}
 *
 * stdout: one JSON object per line: {"ev": "<event>", ...}. Every event node-ipc fires is
 * reported (wire events as {"ev": "event", "type", "data", "has_data"}; raw mode as
 * {"ev": "data", "hex"}); {"ev": "ready"} once serving or once the client object exists.
 * stdin: one JSON command per line (see handle() below).
 * The server also answers by itself: "hello" -> "world" {"reply": data} to the sender, and
 * "echo" -> "echo" with the same data.
 */

const spec = JSON.parse(process.argv[2]);
const loaded = require(spec.lib);
const ipc = loaded.default || loaded;
const LIFECYCLE = new Set(['start', 'connect', 'disconnect', 'destroy', 'close', 'error',
    'socket.disconnected', 'data']);
// event-pubsub 4's "*" handler is broken (node-ipc 9), so every type is listened to by name
const LISTEN = ['start', 'connect', 'disconnect', 'destroy', 'error', 'socket.disconnected',
    'data', 'hello', 'world', 'echo', 'seq', 'payload', 'news', 'message',
    ...(spec.listen || [])];

function onEach(emitter, handler) {
    for (const type of LISTEN) {
        emitter.on(type, function (...args) {
            handler(type, ...args);
        });
    }
}

ipc.config.id = spec.id || 'node-peer';
ipc.config.silent = true;
ipc.config.retry = 100;
ipc.config.maxRetries = 50;
if (spec.raw) {
    ipc.config.rawBuffer = true;
}
if (spec.encoding) {
    ipc.config.encoding = spec.encoding;
}
if (spec.delimiter) {
    ipc.config.delimiter = spec.delimiter;
}
if (spec.tls) {
    ipc.config.tls = spec.tls;                         // {public, private, trustedConnections}
}
if (spec.max_message_size) {
    ipc.config.maxMessageSize = spec.max_message_size;  // node-ipc 14 only
}

function out(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

// UDP peers heard from (node-ipc 9's own broadcast reaches none of them, so we track them)
const udpPeers = new Map();

function report(target, type, args) {
    if (type === 'data' && spec.raw) {
        out({ev: 'data', hex: Buffer.from(args[0]).toString('hex')});
        return;
    }
    if (type === 'error') {
        const err = args[0] || {};
        out({ev: 'error', message: String(err.message || err), code: err.code || null});
        return;
    }
    if (LIFECYCLE.has(type)) {
        out({ev: type, id: (type === 'socket.disconnected' && args[1]) || null});
        return;
    }
    out({ev: 'event', type: type, data: args[0], has_data: args[0] !== undefined});
}

function udpTarget(cmd) {
    return {address: cmd.address || spec.peer_host || spec.host, port: cmd.port || spec.peer_port};
}

function handle(cmd) {
    const server = ipc.server;
    const client = spec.role === 'client' ? ipc.of[spec.server_id] : null;
    switch (cmd.cmd) {
    case 'emit':            // client: to the server; server: to every connected socket
        if (client) {
            client.emit(cmd.type, cmd.data);
        } else if (spec.transport === 'udp4') {
            server.emit(udpTarget(cmd), cmd.type, cmd.data);
        } else {
            for (const socket of server.sockets) {
                server.emit(socket, cmd.type, cmd.data);
            }
        }
        break;
    case 'emit_many':       // cmd.count events "seq" with data 0..count-1, in one go
        for (let i = 0; i < cmd.count; i++) {
            handle({cmd: 'emit', type: cmd.type || 'seq', data: i});
        }
        out({ev: 'sent', count: cmd.count});
        break;
    case 'emit_raw':        // raw mode: a string node-ipc turns into bytes with its encoding
        if (client) {
            client.emit(cmd.data);
        } else if (spec.transport === 'udp4') {
            server.emit(udpTarget(cmd), cmd.data);
        } else {
            for (const socket of server.sockets) {
                server.emit(socket, cmd.data);
            }
        }
        break;
    case 'broadcast':
        server.broadcast(cmd.type, cmd.data);
        break;
    case 'write':           // bytes (hex) straight onto the socket(s), bypassing node-ipc
        if (client) {
            client.socket.write(Buffer.from(cmd.hex, 'hex'));
        } else {
            for (const socket of server.sockets) {
                socket.write(Buffer.from(cmd.hex, 'hex'));
            }
        }
        break;
    case 'count':
        out({ev: 'count', sockets: server ? server.sockets.length : 0});
        break;
    case 'exit':
        process.exit(0);
        break;
    default:
        out({ev: 'bad_command', cmd: cmd});
    }
}

function setUpServer() {
    const server = ipc.server;
    onEach(server, function (type, ...args) {
        report('server', type, args);
        if (type === 'hello') {
            server.emit(args[1], 'world', {reply: args[0]});
        } else if (type === 'echo') {
            server.emit(args[1], 'echo', args[0]);
        }
    });
    server.start();
}

const started = function () {
    out({ev: 'ready'});
};

if (spec.role === 'server') {
    // serve/serveNet only build the server (both 9 and 14); handlers go on before start()
    if (spec.transport === 'unix') {
        ipc.serve(spec.path, started);
    } else if (spec.transport === 'tcp') {
        ipc.serveNet(spec.host, spec.port, started);
    } else {
        ipc.serveNet(spec.host, spec.port, 'udp4', started);
    }
    setUpServer();
} else {
    const connected = function () {
        const client = ipc.of[spec.server_id];
        onEach(client, function (type, ...args) {
            report('client', type, args);
        });
        out({ev: 'ready'});
    };
    if (spec.transport === 'unix') {
        ipc.connectTo(spec.server_id, spec.path, connected);
    } else {
        ipc.connectToNet(spec.server_id, spec.host, spec.port, connected);
    }
}

let pending = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', function (chunk) {
    pending += chunk;
    let cut;
    while ((cut = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, cut);
        pending = pending.slice(cut + 1);
        if (line.trim()) {
            handle(JSON.parse(line));
        }
    }
});
process.stdin.on('end', function () {
    process.exit(0);
});
