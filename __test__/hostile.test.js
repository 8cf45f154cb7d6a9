'use strict';
// Hostile input, property-based (fast-check): random keys and values are stored and read back
// exactly, or refused with a TypeError/RangeError that leaves the store as it was. Nothing
// may pollute a prototype. Seeds are printed by fast-check on failure, so a failure replays.
const test = require('node:test');
const assert = require('node:assert/strict');
const fc = require('fast-check');
const { createManager } = require('..');

const stores = { js: createManager({ codec: 'js' }).store, native: createManager({ codec: 'native' }).store };
const RUNS = Number(process.env.HOSTILE_RUNS) || 150;

/** An object with these own enumerable entries, even for keys like `__proto__`. */
function objectOf(entries) {
  const o = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}

const INVALID_DATE = Symbol('Invalid Date');

/** What `get` promises to return for a value built by `plain`: holes read as undefined, a
 *  Uint8Array as a Buffer; everything else as it was. Applied to what `get` returned too, to
 *  compare invalid Dates. */
function expected(v) {
  if (v instanceof Date && Number.isNaN(v.getTime())) return INVALID_DATE; // NaN !== NaN in deepStrictEqual
  if (Array.isArray(v)) return Array.from(v, expected);
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [expected(k), expected(x)]));
  if (v instanceof Set) return new Set([...v].map(expected));
  if (v !== null && typeof v === 'object' && !(v instanceof Date)) {
    return objectOf(Object.entries(v).map(([k, x]) => [k, expected(x)]));
  }
  return v;
}

const dangerousKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '__defineGetter__', 'valueOf');
const anyString = fc.oneof(fc.string(), fc.string({ unit: 'grapheme', maxLength: 200 }), fc.constantFrom('', '\0', 'a\0b'));

// Values the store must round-trip: every kind the codecs carry, with hostile shapes.
const { plain } = fc.letrec((tie) => ({
  plain: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, undefined, true, false, -0, NaN, Infinity, -Infinity),
    fc.double(),
    fc.integer(),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
    anyString,
    fc.date(),
    fc.uint8Array({ maxLength: 50 }),
    fc.array(tie('plain'), { maxLength: 5 }),
    fc.sparseArray(tie('plain'), { maxLength: 8 }),
    fc.array(fc.tuple(fc.oneof(dangerousKey, anyString), tie('plain')), { maxLength: 5 }).map(objectOf),
    fc.array(fc.tuple(tie('plain'), tie('plain')), { maxLength: 4 }).map((e) => new Map(e)),
    fc.array(tie('plain'), { maxLength: 4 }).map((e) => new Set(e)),
  ),
}));

const TYPED = [Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array];

/** Values that must be refused (or, for the transparent ones, stored as what they show). */
const hostile = fc.oneof(
  fc.tuple(fc.constantFrom(...TYPED), fc.nat(8)).map(([T, n]) => ({ v: new T(n), refuse: true })),
  plain.map((p) => ({ v: { ok: p, get bad() { throw new Error('getter'); } }, refuse: true })),
  plain.map((p) => ({ v: [p, new Proxy({}, { ownKeys() { throw new Error('trap'); } })], refuse: true })),
  plain.map((p) => ({ v: new Proxy({ p }, {}), like: { p } })),
  fc.array(plain, { maxLength: 4 }).map((a) => ({ v: new Proxy(a, {}), like: a })),
  fc.integer({ min: 1, max: 400 }).map((depth) => {
    let v = 'leaf';
    for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { v };
    return depth > 256 ? { v, refuse: true } : { v, like: v };
  }),
  fc.constantFrom(() => 1, Symbol('s'), new WeakMap(), /re/, new Error('e'), new ArrayBuffer(4), new DataView(new ArrayBuffer(4)))
    .map((v) => ({ v, refuse: true })),
  fc.bigInt({ min: 2n ** 64n, max: 2n ** 80n }).map((v) => ({ v, refuse: true })),
  fc.tuple(anyString, fc.integer({ min: 0xd800, max: 0xdfff }), anyString) // a lone surrogate
    .map(([a, s, b]) => ({ v: { text: a + String.fromCharCode(s) + (s < 0xdc00 ? 'x' : '') + b }, refuse: true })),
);

function prototypesUntouched() {
  for (const proto of [Object.prototype, Array.prototype, Map.prototype, Function.prototype]) {
    for (const k of ['polluted', 'x', 'v', 'p', 'ok']) assert.equal(Object.hasOwn(proto, k), false, `prototype gained ${k}`);
  }
  assert.equal(Object.getPrototypeOf({}), Object.prototype);
}

for (const [codec, store] of Object.entries(stores)) {
  test(`${codec} codec: random values, including hostile shapes, read back exactly`, () => {
    fc.assert(fc.property(plain.filter((v) => v !== undefined), (v) => { // set(k, undefined) stores nothing
      store.set('v', v);
      assert.deepStrictEqual(expected(store.get('v')), expected(v));
      // A second read comes from the read cache: still exact, and a fresh copy.
      const again = store.get('v');
      assert.deepStrictEqual(expected(again), expected(v));
      const back = store.get('v');
      if (back !== null && typeof back === 'object' && !(back instanceof Date)) {
        assert.notEqual(back, again, 'each get returns its own copy');
        if (!(back instanceof Map || back instanceof Set || Buffer.isBuffer(back))) {
          assert.equal(Object.getPrototypeOf(back), Array.isArray(back) ? Array.prototype : Object.prototype);
        }
      }
      prototypesUntouched();
    }), { numRuns: RUNS });
  });

  test(`${codec} codec: hostile values are stored as they show or refused with TypeError/RangeError, keeping the old value`, () => {
    fc.assert(fc.property(hostile, ({ v, refuse, like }) => {
      store.set('h', 'old');
      let threw;
      try {
        store.set('h', v);
      } catch (e) {
        threw = e;
      }
      if (threw) {
        assert.ok(threw instanceof TypeError || threw instanceof RangeError, `${threw?.name}: ${threw?.message}`);
        assert.ok(refuse, `refused a value it should store: ${threw.message}`);
        assert.equal(store.get('h'), 'old', 'a refused set leaves the old value');
      } else {
        assert.ok(!refuse, 'stored a value it should refuse');
        assert.deepStrictEqual(expected(store.get('h')), expected(like));
      }
      prototypesUntouched();
    }), { numRuns: RUNS });
  });
}

test('values nested far past any recursion limit are refused, not a stack overflow', () => {
  for (const store of Object.values(stores)) {
    let v = 1;
    for (let i = 0; i < 200_000; i++) v = [v];
    store.set('deep', 'old');
    assert.throws(() => store.set('deep', v), (e) => e instanceof RangeError && e.code === 'ERR_KV_TOO_DEEP');
    assert.equal(store.get('deep'), 'old');
  }
});

test('huge arrays round-trip', () => {
  const big = Array.from({ length: 1_000_000 }, (_, i) => (i % 3 ? i : `s${i}`));
  for (const store of Object.values(stores)) {
    store.set('big', big);
    assert.deepStrictEqual(store.get('big'), big);
    store.delete('big');
  }
});

test('a value whose getter throws gives a TypeError naming where, with the original as its cause', () => {
  for (const store of Object.values(stores)) {
    const boom = new Error('boom');
    const v = { a: [1, { get b() { throw boom; } }] };
    assert.throws(() => store.set('g', v), (e) => e instanceof TypeError && e.code === 'ERR_KV_VALUE_THREW' &&
      e.cause === boom && /boom \(at value\.a\[1\]\.b\)/.test(e.message));
  }
});

test('reading back objects with __proto__ / constructor keys never changes a prototype', () => {
  const v = JSON.parse('{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"polluted": 2}}, "a": {"__proto__": []}}');
  for (const store of Object.values(stores)) {
    store.set('p', v);
    const back = store.get('p');
    assert.deepStrictEqual(Object.keys(back), ['__proto__', 'constructor', 'a']);
    assert.deepStrictEqual(back.__proto__, { polluted: 1 }); // an own property, not the prototype
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    assert.equal(Object.getPrototypeOf(back.a), Object.prototype);
    assert.equal(back.polluted, undefined);
    assert.equal(store.get('p').polluted, undefined); // the cached copy too
    prototypesUntouched();
  }
});

// Keys: stored and found exactly, or refused (TypeError: not a string, lone surrogate,
// reserved; RangeError: over 16 KiB of UTF-8) with nothing stored.
const hostileKey = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: 'grapheme', maxLength: 3000 }),
  fc.constantFrom('', '\0', '\0\0', 'a\0b', '__proto__', 'constructor', '\u0000lock\u0000x', '\uFEFF', '\u{10FFFF}'),
  fc.tuple(fc.integer({ min: 5000, max: 17000 }), fc.constantFrom('a', 'é', '€', '😀')).map(([n, c]) => c.repeat(n / c.length)),
);

test('random keys are stored and found exactly, or refused leaving the store unchanged', () => {
  const { store } = createManager();
  const other = createManager().store;
  fc.assert(fc.property(hostileKey, (key) => {
    const size = store.size;
    let threw;
    try {
      store.set(key, { key });
    } catch (e) {
      threw = e;
    }
    if (threw) {
      assert.ok(threw instanceof TypeError || threw instanceof RangeError, threw.message);
      const utf8 = key.isWellFormed() ? Buffer.byteLength(key) : 0;
      assert.ok(!key.isWellFormed() || utf8 > 16384 || key.startsWith('\0lock\0'), `refused ${JSON.stringify(key.slice(0, 20))}: ${threw.message}`);
      assert.equal(store.size, size);
      return;
    }
    assert.deepStrictEqual(store.get(key), { key });
    assert.deepStrictEqual(other.get(key), undefined, 'another store does not see it');
    assert.ok([...store.keys()].includes(key));
    assert.equal(store.size, size + 1);
    assert.equal(store.delete(key.replace(/[*?\\]/g, '\\$&')), true); // glob characters escaped
    assert.equal(store.get(key), undefined);
  }), { numRuns: RUNS });
});

test('a Proxy of an array is stored as an array by both codecs', () => {
  for (const store of Object.values(stores)) {
    store.set('pa', { list: new Proxy([1, 'two', [3]], {}) });
    assert.deepStrictEqual(store.get('pa'), { list: [1, 'two', [3]] });
  }
});

test('keys in the lock namespace are refused, so no key can forge or break a lock', () => {
  const store = stores.js;
  assert.ok(store.lock('L'));
  for (const op of [(k) => store.set(k, 'forged'), (k) => store.get(k), (k) => store.delete(k)]) {
    assert.throws(() => op('\0lock\0L'), { name: 'TypeError', message: /reserved for locks/ });
  }
  assert.equal(store.release('L'), true, 'the lock is intact');
  store.set('\0locker', 1); // only the exact prefix is reserved
  assert.equal(store.get('\0locker'), 1);
});
