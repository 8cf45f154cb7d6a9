const { parentPort } = require('node:worker_threads');
const { createStore } = require('..');

const store = createStore(parentPort);
console.log('worker reads exampleKey:', store.get('exampleKey'));
store.set('workerKey', { value: 'Hello from Worker!' });
store.set('tempKey', 'temporary');
console.log('worker deletes tempKey:', store.delete('tempKey'));
parentPort.postMessage('done');
