'use strict';
// The stress run's model: checks a history of operations against what a correct store allows.
//
// Every operation is bracketed by two ticks of one shared Atomics counter, so ticks order
// operations of all threads in real time: an operation took effect somewhere between its start
// and end tick. A write (set or delete) of a key is identified by (writer thread, number).
// A get may return write W only if W started before the get ended, and no other write of the
// key started after W ended and ended before the get started (W was not yet overwritten).
// A delete is a write of "absent"; the initial state is an absent written at tick 0.

/** A value written by thread `w` as its `n`th write: a body derived from both, to spot tearing. */
function makeValue(w, n, key, len) {
  const c = String.fromCharCode(97 + ((w * 31 + n) % 26));
  return { w, n, key, len, body: c.repeat(len) };
}

/** Why `v` (read from `key`) cannot be a value makeValue wrote, or null if it can. */
function tornReason(v, key) {
  if (v === null || typeof v !== 'object') return `not an object: ${typeof v}`;
  const { w, n, len, body } = v;
  if (!Number.isInteger(w) || !Number.isInteger(n) || !Number.isInteger(len)) return 'fields';
  if (v.key !== key) return `holds key ${JSON.stringify(v.key)}`;
  if (body !== makeValue(w, n, key, len).body) return 'body does not match its writer';
  return null;
}

/** Index of the first item of `sorted` (ascending by `field`) whose field is >= t. */
function firstAtLeast(sorted, field, t) {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid][field] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Checks the reads of one key in one round. `writes`: { w, n, start, end }, w = -1 for a
 * delete (n then unique per delete). `reads`: { w, n, start, end }, w = -1 for "absent".
 * `carried`: writes of earlier rounds that reads may still see (initially the absent state,
 * { w: -1, n: 0, start: 0, end: 0 }). With `absentAllowed` (expiring keys) absent is always
 * acceptable. Returns the errors found and the writes to carry into the next round.
 */
function checkKey(key, writes, reads, carried, { absentAllowed = false } = {}) {
  const all = carried.concat(writes).sort((a, b) => a.end - b.end);
  // latestStart[i]: the largest start among all[0..i], the writes that ended by all[i].end.
  const latestStart = [];
  let max = -Infinity;
  for (const x of all) latestStart.push((max = Math.max(max, x.start)));
  /** The largest start of a write that ended before tick t: writes ending earlier are stale. */
  const staleBefore = (t) => {
    const i = firstAtLeast(all, 'end', t);
    return i === 0 ? -Infinity : latestStart[i - 1];
  };
  const byId = new Map(all.filter((x) => x.w !== -1).map((x) => [`${x.w}:${x.n}`, x]));
  // Deletes by start, with the latest end among those starting no later.
  const deletes = all.filter((x) => x.w === -1).sort((a, b) => a.start - b.start);
  const latestDeleteEnd = [];
  let dmax = -Infinity;
  for (const d of deletes) latestDeleteEnd.push((dmax = Math.max(dmax, d.end)));

  const errors = [];
  for (const r of reads) {
    const stale = staleBefore(r.start);
    if (r.w === -1) {
      if (absentAllowed) continue;
      // Some delete (or the initial absence) began before the get ended and was not stale.
      const i = firstAtLeast(deletes, 'start', r.end) - 1; // last delete starting before r.end
      if (i < 0 || latestDeleteEnd[i] < stale) {
        errors.push(`get('${key}') returned nothing, but the key was written and not deleted`);
      }
      continue;
    }
    const w = byId.get(`${r.w}:${r.n}`);
    if (!w) errors.push(`get('${key}') returned write ${r.w}:${r.n}, which no thread made`);
    else if (w.start > r.end) errors.push(`get('${key}') returned write ${r.w}:${r.n} before it began`);
    else if (w.end < stale) errors.push(`get('${key}') returned write ${r.w}:${r.n}, overwritten before the get began`);
  }
  // What a later read may still return: writes that no completed write started after.
  return { errors, carried: all.filter((x) => x.end >= max) };
}

module.exports = { makeValue, tornReason, checkKey };
