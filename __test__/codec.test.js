'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Unpackr } = require('msgpackr');
const { codec } = require('..');
const { fromTagged } = require('./tagged');
const { rng } = require('./helpers');
const vectors = require('./vectors.json');

const encoder = new codec.Encoder();
const jsEncode = (v) => {
  const n = encoder.encode(v); // first: encoding may replace encoder.buf with a larger one
  return Buffer.from(encoder.buf.subarray(0, n));
};

function same(a, b, msg) {
  if (a instanceof Date && Number.isNaN(a.getTime())) return assert.ok(b instanceof Date && Number.isNaN(b.getTime()), msg);
  assert.deepStrictEqual(a, b, msg);
}

test('the JS codec writes and reads every shared vector', () => {
  for (const v of vectors) {
    const value = fromTagged(v.value);
    assert.equal(jsEncode(value).toString('hex'), v.hex, v.name);
    same(codec.decode(Buffer.from(v.hex, 'hex')), value, v.name);
  }
});

test('the Rust codec writes and reads every shared vector (through the binding)', () => {
  for (const v of vectors) {
    const value = fromTagged(v.value);
    assert.equal(codec.nativeEncode(value).toString('hex'), v.hex, v.name);
    same(codec.nativeDecode(Buffer.from(v.hex, 'hex')), value, v.name);
  }
});

test('msgpackr, an independent decoder, reads our bytes as the same values', () => {
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: true });
  // msgpackr has no Map tag of its own and renames __proto__ keys: those vectors are ours alone.
  const ours = (v) => v.name.includes('map') || v.name.includes('__proto__') || v.name === 'empty map';
  let checked = 0;
  for (const v of vectors.filter((x) => !ours(x))) {
    same(unpackr.unpack(Buffer.from(v.hex, 'hex')), fromTagged(v.value), v.name);
    checked++;
  }
  assert.ok(checked > 50);
});

const nonSurrogate = (cp) => (cp >= 0xd800 && cp < 0xe000 ? cp + 0x800 : cp);

function randomValue(r, depth = 0) {
  const pick = Math.floor(r() * (depth > 3 ? 8 : 13));
  const str = () => Array.from({ length: Math.floor(r() * 40) }, () => String.fromCodePoint(r() < 0.8 ? 32 + Math.floor(r() * 95) : nonSurrogate(0xa0 + Math.floor(r() * 0x1f000)))).join('');
  switch (pick) {
    case 0: return Math.floor(r() * 2 ** 33) - 2 ** 32;
    case 1: return [0, -0, NaN, Infinity, -Infinity, 0.5, 1e300, -(2 ** 31), 2 ** 32 - 1][Math.floor(r() * 9)];
    case 2: return r() * 1e6 - 5e5;
    case 3: return str();
    case 4: return r() < 0.5;
    case 5: return null;
    case 6: return BigInt(Math.floor(r() * 2 ** 40)) * (r() < 0.5 ? -1n : 1n);
    case 7: return new Date(Math.floor(r() * 2 ** 42) - 2 ** 41);
    case 8: return Array.from({ length: Math.floor(r() * 20) }, () => randomValue(r, depth + 1));
    case 9: return Object.fromEntries(Array.from({ length: Math.floor(r() * 20) }, () => [str(), randomValue(r, depth + 1)]));
    case 10: return new Map(Array.from({ length: Math.floor(r() * 5) }, () => [randomValue(r, depth + 1), randomValue(r, depth + 1)]));
    case 11: return new Set(Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r, depth + 1)));
    default: return Buffer.from(str());
  }
}

test('on random values both codecs write identical bytes and read them back equal', () => {
  const r = rng(2024);
  for (let i = 0; i < 2000; i++) {
    const value = randomValue(r);
    const js = jsEncode(value);
    assert.equal(codec.nativeEncode(value).toString('hex'), js.toString('hex'), `value #${i}`);
    same(codec.decode(js), value, `value #${i}`);
    same(codec.nativeDecode(js), value, `value #${i}`);
  }
});

test('both decoders refuse truncated, forged and unknown input with an Error', () => {
  for (const hex of ['92 01', 'dd ffffffff', 'db ffffffff 61', 'c1', '0102', 'd4 42 00', 'd4 73 00 01']) {
    const bytes = Buffer.from(hex.replace(/ /g, ''), 'hex');
    assert.throws(() => codec.decode(bytes), /cannot decode stored value/, `js: ${hex}`);
    assert.throws(() => codec.nativeDecode(bytes), /cannot decode stored value/, `rust: ${hex}`);
  }
});

test('strings with a lone surrogate are refused by both codecs (UTF-8 cannot carry them)', () => {
  for (const bad of ['a\uD800', 'x'.repeat(100) + '\uDC00', { k: ['\uD83D'] }, new Map([['\uDFFF', 1]])]) {
    assert.throws(() => encoder.encode(bad), { name: 'TypeError', message: /lone surrogate/ });
    assert.throws(() => codec.nativeEncode(bad), { name: 'TypeError', message: /lone surrogate/ });
  }
  assert.equal(codec.decode(jsEncode('ok \uD83D\uDE00')), 'ok \uD83D\uDE00', 'a proper pair is fine');
});

test('values that outgrow the encoder buffer mid-encode round-trip (every kind at the boundary)', () => {
  // A fresh encoder starts at 8 KiB; shifting the boundary byte by byte puts each kind of
  // item (number, float, string, map key, Date, bytes, nested container) on the edge.
  const kinds = [(i) => i * 1000, (i) => i / 3, (i) => 'row value ' + i, (i) => ({ r: i }), (i) => new Date(i * 1e9),
    (i) => Buffer.from([i & 255, 1, 2]), (i) => [i, -i], (i) => new Map([[i, 'v']]), (i) => 2n ** 40n + BigInt(i)];
  for (let pad = 0; pad < 64; pad++) {
    for (const kind of kinds) {
      const value = { pad: 'p'.repeat(pad), rows: Array.from({ length: 1200 }, (_, i) => kind(i)) };
      const enc = new codec.Encoder();
      const n = enc.encode(value);
      const bytes = Buffer.from(enc.buf.subarray(0, n));
      assert.equal(bytes.toString('hex'), codec.nativeEncode(value).toString('hex'));
      assert.deepStrictEqual(codec.decode(bytes), value);
    }
  }
});
