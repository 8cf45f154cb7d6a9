// The README example: the main thread creates the store and hands it to a worker.
const { Worker } = require('node:worker_threads');
const path = require('node:path');
const { createManager } = require('..');

const manager = createManager();
const worker = new Worker(path.join(__dirname, 'worker.js'));
manager.registerFork(worker); // same tick as new Worker: the worker can use the store at once

const store = globalThis.SharedKVStore.instance;
store.set('exampleKey', { value: 'Hello from Main!' });

worker.on('message', (msg) => {
  if (msg === 'done') {
    console.log('main reads workerKey:', store.get('workerKey'));
    manager.unregisterFork(worker);
  }
});
