// Type-checked by `npm test` (tsc --noEmit): the typings must accept correct use and reject misuse.
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { createManager, createStore, openStore, SharedKVStore, StoreStats, StoreCheck, StoreHandle } from '../..';

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
main.set('session', { id: 1 }, { ttl: 30, minBufferSize: 256, immutable: false });
main.set('map', new Map<string, Set<number>>([['a', new Set([1])]]));
const user: User | undefined = main.get<User>('user:1');
const anything = main.get('whatever'); // any by default
const removed: boolean = main.delete('user:1');
const stats: StoreStats = main.stats();
const check: StoreCheck = main.check();
const leftInUse: number = check.bytesUsed - check.indexBytes;
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

// Typed stores and the atomic operations.
const users = createStore<User>(handle);
const typed: User | undefined = users.get('user:1');
const count: number = main.increment('visits');
const swapped: boolean = users.compareAndSet('user:1', typed, { id: 2, name: 'Bo', joined: new Date() });
const bumped = main.update<number>('visits', (n) => (n ?? 0) + 1);
const has: boolean = main.has('visits');
const size: number = main.size;
for (const [key, u] of users) void [key.toUpperCase(), u.name];
const many: Array<User | undefined> = users.getMany(['user:1']);
const stored: number = main.setMany([['a', 1], ['b', 'two']]);
const userKeys: string[] = users.listKeys('user:*');
const rx: string[] = main.listKeys(/^a/);
if (main.lock('job', 500, { lease: 5000 })) main.release('job');
const anyDeleted: boolean = main.delete('session:*');
void [userKeys, rx, anyDeleted];
const cache = createStore<number>('cache', { maxBytes: 1 << 26 });
const hits: number | undefined = cache.get('hits');
const namedManager = createManager({ name: 'jobs' });
const storeName: string | undefined = namedManager.store.name;
void [hits, storeName];
// @ts-expect-error a typed store's values are Users
const notUser: number | undefined = users.get('user:1');
// @ts-expect-error ttl is a number of seconds
main.set('session', 1, { ttl: '30s' });
// @ts-expect-error increment takes a number
main.increment('visits', '1');

void [registered, store, ok, user, anything, removed, stats, gone, attached, wrong, typed, count, swapped, bumped, has, size, many, stored, notUser];

// Store files shared by processes.
const file = openStore<User>('/dev/shm/example.kv', { maxBytes: 256 * 1024 * 1024, mode: 0o600, create: true });
const filePath: string | undefined = file.path;
file.flush();
const recovered: number = file.stats().recoveries;
const fileHandle: StoreHandle = file.handle;
// @ts-expect-error mode is a number of permission bits
openStore('/dev/shm/x.kv', { mode: '600' });

// getOrSet: one loader across threads.
const loaded: Promise<User | undefined> = file.getOrSet('user:2', async (key) => ({ id: 2, name: key, joined: new Date() }), { ttl: 60, timeout: 1000 });
// @ts-expect-error the loader must be a function
file.getOrSet('user:3', 42);

// Eviction.
const lru = createStore<string>("cache", { maxBytes: 64 << 20, onFull: "evict", maxEntries: 10_000 });
const sized = openStore("/dev/shm/sized.kv", { maxBytes: 1 << 30, expectedKeys: 20_000_000 });
void sized;
const evicted: number = lru.stats().evictions + lru.stats().expired;
// @ts-expect-error onFull is 'throw' or 'evict'
createStore('cache2', { onFull: 'lru' });

// Change notifications.
import type { Watcher, WatchEvent } from '../..';
const watcher: Watcher = main.watch('user:*', (key: string | undefined, event: WatchEvent) => {
  if (event === 'set' && key !== undefined) main.get<User>(key);
});
main.watch(/^session:/, () => {}).unref().ref();
main.watch((key, event) => void [key, event]).close();
const watching: number = main.stats().watchers;
const closedNow: boolean = watcher.closed;
const later: Promise<User | undefined> = main.waitFor<User>('user:2', { timeout: 1000, signal: AbortSignal.timeout(500), next: true });
// @ts-expect-error: not an event
const badEvent: WatchEvent = 'update';
// @ts-expect-error: the listener gets a key and an event, not a value
main.watch('k', (key: string, event: WatchEvent, value: number) => {});
// @ts-expect-error: timeout is a number of ms
main.waitFor('k', { timeout: '1s' });

// The operator's API: read-only stores, absolute expiry, entries with their expiry.
const ro = openStore<User>('/dev/shm/example.kv', { readOnly: true });
const when: number | null | undefined = ro.expiresAt('u1');
for (const [k, v, at] of ro.entries({ withExpiry: true })) {
  const key: string = k;
  const user: User = v;
  const expiry: number | null = at;
  void [key, user, expiry];
}
file.set('u2', { id: 2, name: 'b', joined: new Date() }, { expiresAt: new Date(Date.now() + 1000) });
file.set('u2', { id: 2, name: 'b', joined: new Date() }, { expiresAt: Date.now() + 1000 });
// @ts-expect-error readOnly is a boolean
openStore('/dev/shm/x.kv', { readOnly: 'yes' });
void when;
