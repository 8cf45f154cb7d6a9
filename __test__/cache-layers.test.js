'use strict';
// The cache layers Node developers already use, over this store: cache-manager 7 and cacheable
// through Keyv, and a two-tier set-up with this store in front of a real redis-server.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Keyv } = require('keyv');
const { createCache } = require('cache-manager');
const { Cacheable } = require('cacheable');
const { createStore } = require('..');
const { KeyvSharedKVStore } = require('../lib/keyv.js');
const { worker } = require('./helpers');
const { redisInstalled, startRedis } = require('./redis');
const { once } = require('node:events');

test('the package exports the adapter at shared-kv-store/keyv', () => {
  assert.equal(require('shared-kv-store/keyv').KeyvSharedKVStore, KeyvSharedKVStore);
});

test('cache-manager 7: set, get, ttl, wrap and del, visible to a worker thread', async () => {
  const cache = createCache({ stores: [new Keyv({ store: new KeyvSharedKVStore({ name: 'layers:cm' }) })] });
  await cache.set('user:1', { name: 'Ada' }, 60_000);
  assert.deepEqual(await cache.get('user:1'), { name: 'Ada' });
  let computed = 0;
  const wrapped = () => cache.wrap('report', async () => { computed++; return { rows: 3 }; }, 60_000);
  assert.deepEqual(await wrapped(), { rows: 3 });
  assert.deepEqual(await wrapped(), { rows: 3 });
  assert.equal(computed, 1);
  await cache.set('short', 1, 30);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(await cache.get('short'), undefined, 'expired');
  // Another thread's cache over the same named store sees what this one cached.
  const w = worker(`
    const { Keyv } = require('keyv');
    const { createCache } = require('cache-manager');
    const { KeyvSharedKVStore } = require(${JSON.stringify(require.resolve('../lib/keyv.js'))});
    const cache = createCache({ stores: [new Keyv({ store: new KeyvSharedKVStore({ name: 'layers:cm' }) })] });
    cache.get('user:1').then((v) => parentPort.postMessage(v));
  `);
  const [seen] = await once(w, 'message');
  assert.deepEqual(seen, { name: 'Ada' });
  assert.equal(await cache.del('user:1'), true);
  assert.equal(await cache.get('user:1'), undefined);
});

test('cacheable: a Keyv over this store as its primary store', async () => {
  const cache = new Cacheable({ primary: new Keyv({ store: new KeyvSharedKVStore({ name: 'layers:cacheable' }) }) });
  await cache.set('k', { v: 1 }, '1m');
  assert.deepEqual(await cache.get('k'), { v: 1 });
  assert.equal(await cache.has('k'), true);
  await cache.delete('k');
  assert.equal(await cache.get('k'), undefined);
});

test('two tiers: this store in front of Redis (cacheable primary/secondary)', { skip: !redisInstalled() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis();
  t.after(redis.stop);
  const { default: KeyvRedis } = require('@keyv/redis');
  const url = redis.url;
  const local = createStore('layers:tier1');
  const secondary = new Keyv({ store: new KeyvRedis(url) });
  const cache = new Cacheable({ primary: new Keyv({ store: new KeyvSharedKVStore(local) }), secondary });
  try {
    await cache.set('page:/', { html: '<h1>hi</h1>' }, '1m');
    assert.equal(local.size, 1, 'written to the machine-wide first tier');
    assert.deepEqual(await secondary.get('page:/'), { html: '<h1>hi</h1>' }, 'and to Redis');
    // Another machine's view: nothing local, so the value comes from Redis and is kept here.
    local.clear();
    assert.deepEqual(await cache.get('page:/'), { html: '<h1>hi</h1>' });
    assert.equal(local.size, 1, 'back-filled into the first tier');
    await cache.delete('page:/');
    assert.equal(await secondary.get('page:/'), undefined);
  } finally {
    await secondary.disconnect().catch(() => {});
  }
});

test('the Keyv adapter makes an evicting store: a Keyv cache that stays within maxEntries', async () => {
  const keyv = new Keyv({ store: new KeyvSharedKVStore({ name: 'layers:evicting', onFull: 'evict', maxEntries: 50 }) });
  for (let i = 0; i < 500; i++) await keyv.set(`k${i}`, { i });
  const { store } = keyv.store;
  assert.equal(store.size, 50);
  assert.equal(store.stats().evictions, 450);
  assert.deepEqual(await keyv.get('k499'), { i: 499 });
});

test('the Keyv adapter\'s clear() leaves the store\'s locks alone', async () => {
  const store = createStore('layers:clear-locks');
  assert.ok(store.lock('job', 0));
  const adapter = new KeyvSharedKVStore(store); // no namespace: clear() covers the whole store
  await adapter.set('a', 1);
  await adapter.clear();
  assert.equal(await adapter.get('a'), undefined);
  assert.equal(store.release('job'), true, 'the lock survived the clear');
});
