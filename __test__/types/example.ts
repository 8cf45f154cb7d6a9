// Type-checked by `npm test` (tsc --noEmit): the typings must accept correct use and reject misuse.
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { createManager, createStore, SharedKVStore, StoreStats, StoreHandle } from '../..';

interface User {
  id: number;
  name: string;
  tags?: string[];
  joined: Date;
}

const manager = createManager({ maxBytes: 64 * 1024 * 1024, codec: 'js' });
const w = new Worker('./worker.js');
const registered: true = manager.registerFork(w);
const store: SharedKVStore | undefined = globalThis.SharedKVStore?.instance;

const main = manager.store;
const ok: boolean = main.set('user:1', { id: 1, name: 'Ada', joined: new Date() } satisfies User);
main.set('bytes', Buffer.from('x'), true);
main.set('map', new Map<string, Set<number>>([['a', new Set([1])]]));
const user: User | undefined = main.get<User>('user:1');
const anything = main.get('whatever'); // any by default
const removed: boolean = main.delete('user:1');
const stats: StoreStats = main.stats();
const gone: boolean = manager.unregisterFork(w);

// Worker side: both ways to attach.
if (parentPort) {
  const s1 = createStore(parentPort, { codec: 'native' });
  void s1.ready.then((s) => s.get<number>('n'));
}
const handle: StoreHandle = manager.handle;
const s2 = createStore(workerData?.kv ?? handle);
const attached: boolean = s2.attached;

// @ts-expect-error keys are strings
main.set(1, 'x');
// @ts-expect-error functions cannot be stored
main.set('f', () => 1);
// @ts-expect-error symbols cannot be stored
main.set('s', Symbol('s'));
// @ts-expect-error maxBytes is a number
createManager({ maxBytes: '1GB' });
// @ts-expect-error unknown codec
createStore(handle, { codec: 'bson' });
// @ts-expect-error a user is not a number
const wrong: number | undefined = main.get<User>('user:1');

void [registered, store, ok, user, anything, removed, stats, gone, attached, wrong];
