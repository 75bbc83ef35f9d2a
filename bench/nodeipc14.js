'use strict';
/*
 * node-ipc 14 side of one workload, for bench/run.py (the same contract as bench.worker):
 *
 *   node nodeipc14.js ROLE WORKLOAD TRANSPORT ADDRESS PARAMS_JSON NODE_IPC_PACKAGE_DIR
 *
 * ROLE server|client, WORKLOAD w1|w2|w3|w4, TRANSPORT unix|tcp (ADDRESS a path or
 * host:port). Prints READY once a server listens and one "RESULT {json}" line, with the
 * fields bench/run.py's figure() reads (times from process.hrtime: CLOCK_MONOTONIC, the
 * clock Python's time.monotonic() reads on Linux). The runner pins the process.
 * Written as node-ipc users write it: handlers on events, W2's next request sent from the
 * reply handler, W3 one connectTo per client in one process, W4 a 1 MiB string (node-ipc's
 * JSON wire carries no bytes).
 */
const [role, workload, transport, addr, paramsJson, lib] = process.argv.slice(2);
const params = JSON.parse(paramsJson);
const loaded = require(lib);
const ipc = loaded.default || loaded;

const TEXT = 'abcdefghijklmnopqrstuvwxyz012345';
const now = () => Number(process.hrtime.bigint()) / 1e9;
const n = params.n;

ipc.config.id = role === 'server' ? 'world' : 'hello';
ipc.config.silent = true;
ipc.config.retry = 50;
ipc.config.maxRetries = 1000;
ipc.config.maxConnections = (params.c || 1) + 16;
ipc.config.maxMessageSize = 8 * 1024 * 1024;   // W4's 1 MiB frames (its default is 1 MiB)

function out(line) {
    process.stdout.write(line + '\n');
}

function result(fields) {
    out('RESULT ' + JSON.stringify(fields));
}

// exit once stdout has taken the result (a large one, W2's 20,000 times, would be cut
// short by an exit right after the write)
function resultAndExit(fields) {
    process.stdout.write('RESULT ' + JSON.stringify(fields) + '\n', () => process.exit(0));
}

let host = null;
let port = null;
if (transport === 'tcp') {
    const at = addr.lastIndexOf(':');
    host = addr.slice(0, at);
    port = Number(addr.slice(at + 1));
} else if (transport !== 'unix') {
    throw new Error('node-ipc bench: transport must be unix or tcp, not ' + transport);
}

// a safety net: a run that never finishes ends instead of hanging the runner
setTimeout(() => process.exit(3), 300000).unref();

function serve(started) {
    if (transport === 'unix') {
        ipc.serve(addr, started);
    } else {
        ipc.serveNet(host, port, started);
    }
    ipc.server.start();
}

function connect(id, connected) {
    if (transport === 'unix') {
        ipc.connectTo(id, addr, connected);
    } else {
        ipc.connectToNet(id, host, port, connected);
    }
}

function server() {
    serve(() => {
        const srv = ipc.server;
        srv.on('socket.disconnected', () => {
            if (srv.sockets.length === 0 && finished) {
                process.exit(0);
            }
        });
        let finished = false;
        if (workload === 'w1' || workload === 'w4') {
            const size = params.size;
            let expected = 0;
            let bad = 0;
            srv.on('m', (data, socket) => {
                if (size === undefined) {
                    if (data.i !== expected) {
                        bad++;
                    }
                } else if (data.length !== size) {
                    bad++;
                }
                expected++;
                if (expected === n) {
                    const end = now();
                    srv.emit(socket, 'done', null);
                    finished = true;
                    result({end, received: expected, bad});
                }
            });
        } else if (workload === 'w2') {
            srv.on('m', (data, socket) => srv.emit(socket, 'r', data));
            finished = true;
            setImmediate(() => result({}));   // W2's figures are all the client's
        } else if (workload === 'w3') {
            let connected = 0;
            srv.on('connect', () => {
                connected++;
                if (connected !== params.c) {
                    return;
                }
                // once every client is in (as geventipc's and the floor's servers wait)
                setImmediate(() => {
                    const start = now();
                    for (let i = 0; i < n; i++) {
                        srv.broadcast('m', {i, p: TEXT});
                    }
                    finished = true;
                    result({start, connected});
                });
            });
        } else {
            throw new Error('node-ipc bench: no workload ' + workload);
        }
        out('READY');
    });
}

function client() {
    if (workload === 'w3') {
        clientW3();
        return;
    }
    connect('world', () => {
        const world = ipc.of.world;
        let begun = false;
        world.on('connect', () => {
            if (begun) {
                return;          // a reconnect: the run is already going
            }
            begun = true;
            if (workload === 'w2') {
                clientW2(world);
                return;
            }
            world.on('done', () => resultAndExit({start, sent: n}));
            const start = now();
            if (workload === 'w1') {
                for (let i = 0; i < n; i++) {
                    world.emit('m', {i, p: TEXT});
                }
            } else {
                const blob = 'x'.repeat(params.size);
                for (let i = 0; i < n; i++) {
                    world.emit('m', blob);
                }
            }
        });
    });
}

function clientW2(world) {
    const total = params.warm + n;
    const times = [];
    let i = 0;
    let bad = 0;
    let begin = 0;
    world.on('r', (data) => {
        const end = now();
        if (!data || data.i !== i) {
            bad++;
        }
        if (i >= params.warm) {
            times.push(end - begin);
        }
        i++;
        if (i === total) {
            resultAndExit({times, bad});
            return;
        }
        begin = now();
        world.emit('m', {i, p: TEXT});
    });
    begin = now();
    world.emit('m', {i: 0, p: TEXT});
}

function clientW3() {
    const clients = params.c;
    let complete = 0;
    let bad = 0;
    for (let k = 0; k < clients; k++) {
        const id = 'w' + k;
        connect(id, () => {
            let expected = 0;
            ipc.of[id].on('m', (data) => {
                if (data.i !== expected) {
                    bad++;
                }
                expected++;
                if (expected === n) {
                    complete++;
                    if (complete === clients) {
                        resultAndExit({end: now(), complete, bad});
                    }
                }
            });
        });
    }
}

if (role === 'server') {
    server();
} else {
    client();
}
