// A node-ipc peer over TLS for tests/test_tls.py: a server that echoes "message" as
// "echo", or a client that sends one "message" on connect. Prints JSON lines on stdout:
// {"ev": "listening"}, {"ev": "connect"}, {"ev": "echo", "data": ...}, {"ev": "error", ...}.
// Usage: node tls_node_peer.js '{"lib": ".../node-ipc", "role": "server"|"client",
//        "host": "127.0.0.1", "port": 8443, "tls": {...}, "message": "hi"}'
'use strict';
const spec = JSON.parse(process.argv[2]);
const ipc = require(spec.lib);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

ipc.config.silent = true;
ipc.config.retry = 200;
ipc.config.maxRetries = 2;
ipc.config.tls = spec.tls;

if (spec.role === 'server') {
  ipc.config.id = 'nodesrv';
  ipc.serveNet(spec.host, spec.port, () => {
    ipc.server.on('message', (data, socket) => {
      const cert = socket.getPeerCertificate ? socket.getPeerCertificate() : null;
      ipc.server.emit(socket, 'echo', {data: data, peer: cert && cert.subject ? cert.subject.CN : null});
    });
    ipc.server.on('error', (err) => out({ev: 'error', message: String(err)}));
    out({ev: 'listening'});
  });
  ipc.server.start();
} else {
  ipc.config.id = 'nodeclient';
  ipc.connectToNet('pyserver', spec.host, spec.port, () => {
    const srv = ipc.of.pyserver;
    srv.on('connect', () => { out({ev: 'connect'}); srv.emit('message', spec.message); });
    srv.on('echo', (data) => { out({ev: 'echo', data: data}); process.exit(0); });
    srv.on('error', (err) => out({ev: 'error', message: String(err && err.message || err)}));
    srv.on('destroy', () => { out({ev: 'destroy'}); process.exit(1); });
  });
}
setTimeout(() => process.exit(2), 20000).unref();
