'use strict';
/*
 * A Node.js node-ipc client saying hello to the Python server in world.py here.
 *
 *     python examples/nodejs/world.py &
 *     node examples/nodejs/hello.js
 *
 * Plain node-ipc 9 code: nothing in it knows the server is Python. node-ipc comes from
 * `npm install node-ipc@9.2.1` (an exact version: never 10.1.1-10.1.2 or 11.x), or from
 * tests/node after `make node-deps`.
 */
function loadNodeIpc() {
    try {
        return require('node-ipc');
    } catch (err) {
        return require('../../tests/node/node_modules/node-ipc');
    }
}

const ipc = loadNodeIpc();
ipc.config.id = 'hello';
ipc.config.retry = 500;
ipc.config.maxRetries = 10;
ipc.config.silent = true;
ipc.config.socketRoot = process.env.IPC_SOCKET_ROOT || '/tmp/';

ipc.connectTo('world', function () {
    const world = ipc.of.world;
    world.on('connect', function () {
        console.log('## connected to world (a Python process) ##');
        world.emit('message', {id: ipc.config.id, message: 'hello'});
    });
    world.on('message', function (data) {
        console.log('got a message from world:', JSON.stringify(data));
        ipc.disconnect('world');
    });
    world.on('destroy', function () {
        process.exit(0);
    });
});
setTimeout(function () {
    console.error('no answer from world within 10 s');
    process.exit(1);
}, 10000).unref();
