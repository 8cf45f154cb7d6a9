// The seed benchmark: set { value: 'Benchmark' } once, then 10,000,000 get('test').
// Prints ns/op for the store and, measured in the same run, for a Map holding msgpackr bytes
// that are unpacked on every get (what a hand-rolled shared cache costs), and their ratio.
// Each is timed 5 times; medians are reported. Run it alone: timings on 2 cores are noisy.
'use strict';
const { createManager } = require('..');
const { pack, unpack } = require('msgpackr');

const N = Number(process.env.N) || 10_000_000;
const ROUNDS = 5;
const value = { value: 'Benchmark' };

function time(label, fn) {
  const ns = [];
  let sink;
  for (let r = 0; r < ROUNDS; r++) {
    const t = process.hrtime.bigint();
    sink = fn();
    ns.push(Number(process.hrtime.bigint() - t) / N);
  }
  if (sink?.value !== 'Benchmark') throw new Error(`${label} returned ${JSON.stringify(sink)}`);
  ns.sort((a, b) => a - b);
  return ns[ROUNDS >> 1];
}

const { store } = createManager();
store.set('test', value);
const map = new Map([['test', pack(value)]]);

const baseline = time('Map + msgpackr unpack', () => {
  let v;
  for (let i = 0; i < N; i++) v = unpack(map.get('test'));
  return v;
});
const ours = time('store.get', () => {
  let v;
  for (let i = 0; i < N; i++) v = store.get('test');
  return v;
});

console.log(`get('test') x ${N.toLocaleString()}, median of ${ROUNDS} (node ${process.version})`);
console.log(`  shared-kv-store get         ${ours.toFixed(1).padStart(8)} ns/op`);
console.log(`  Map + msgpackr unpack       ${baseline.toFixed(1).padStart(8)} ns/op`);
console.log(`  ratio (store / baseline)    ${(ours / baseline).toFixed(2).padStart(8)}x`);
