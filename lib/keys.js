'use strict';
// What a key may be, checked in JS before any native call (the length limit is Rust's, which
// reports it). The dump's restore checks every key with this before it writes one.

/** Lock entries live in the store under this prefix (hidden from keys and iteration). */
const LOCK_PREFIX = '\u0000lock\u0000';

function checkKey(key) {
  if (typeof key !== 'string') {
    throw new TypeError(`key must be a string, got ${key === null ? 'null' : typeof key}`);
  }
  // A lone surrogate would be replaced in UTF-8, so two different keys would collide.
  if (!key.isWellFormed()) throw new TypeError('key must be well-formed UTF-16 (it contains a lone surrogate)');
  // Locks are entries under this prefix: a user key there could forge or break a lock.
  if (key.charCodeAt(0) === 0 && key.startsWith(LOCK_PREFIX)) {
    throw new TypeError(`keys starting with ${JSON.stringify(LOCK_PREFIX)} are reserved for locks`);
  }
}

module.exports = { checkKey, LOCK_PREFIX };
