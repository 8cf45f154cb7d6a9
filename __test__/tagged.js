'use strict';
// The tagged JSON form of values used by __test__/vectors.json (described in src/value.rs).

function fromTagged(j) {
  if (j === null || typeof j !== 'object') return j;
  if (Array.isArray(j)) return j.map(fromTagged);
  const keys = Object.keys(j);
  if (keys.length === 1 && keys[0].startsWith('$')) {
    const t = j[keys[0]];
    switch (keys[0]) {
      case '$undefined': return undefined;
      case '$number': return Number(t);
      case '$bigint': return BigInt(t);
      case '$bytes': return Buffer.from(t, 'hex');
      case '$map': return new Map(t.map(([k, v]) => [fromTagged(k), fromTagged(v)]));
      case '$set': return new Set(t.map(fromTagged));
      case '$date': return new Date(t === 'invalid' ? NaN : t);
    }
  }
  const out = {};
  for (const k of keys) Object.defineProperty(out, k, { value: fromTagged(j[k]), enumerable: true, writable: true, configurable: true });
  return out;
}

module.exports = { fromTagged };
