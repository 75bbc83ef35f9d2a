'use strict';
/*
 * A Node.js node-ipc "world" server that the Python client in hello.py talks to.
 *
 *     node examples/nodejs/world.js &        # listens at node-ipc 9's default /tmp/app.world
 *     python examples/nodejs/hello.py
 *
 * Plain node-ipc 9 code. Answers every "message" with data.message + " world!" and
 * broadcasts a "news" event to everyone connected.
 */
function loadNodeIpc() {
    try {
        return require('node-ipc');
    } catch (err) {
        return require('../../tests/node/node_modules/node-ipc');
    }
}

const ipc = loadNodeIpc();
ipc.config.id = 'world';
ipc.config.silent = true;
ipc.config.socketRoot = process.env.IPC_SOCKET_ROOT || '/tmp/';

ipc.serve(function () {
    ipc.server.on('message', function (data, socket) {
        console.log('got a message from', socket.id, ':', JSON.stringify(data));
        ipc.server.emit(socket, 'message', {id: ipc.config.id, message: data.message + ' world!'});
        ipc.server.broadcast('news', {text: 'someone said ' + data.message});
    });
    console.log('ready');
});
ipc.server.start();
process.on('SIGTERM', function () {
    ipc.server.stop();
    process.exit(0);
});
