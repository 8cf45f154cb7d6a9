'use strict';
// set()'s third argument, checked and turned into what the binding takes.

/** Parses set()'s options object into what the binding takes. */
function setOptions(options) {
  if (typeof options !== 'object') {
    throw new TypeError('set: the third argument is resizeBuffer (a boolean) or an options object');
  }
  const { ttl, expiresAt: at, minBufferSize, immutable, resizeBuffer } = options; // skipLock: sets are always atomic
  let mode = (resizeBuffer === true ? 1 : 0) | (immutable === true ? 2 : 0);
  let reserve = 0, expiresAt = 0;
  if (ttl !== undefined) {
    if (typeof ttl !== 'number' || !(ttl > 0) || !Number.isFinite(ttl)) {
      throw new RangeError(`set: ttl must be a positive number of seconds, got ${String(ttl)}`);
    }
    expiresAt = Math.ceil(Date.now() + ttl * 1000);
  }
  if (at !== undefined && at !== null) {
    // An absolute expiry (a restore keeps each entry's): ms since the Unix epoch, or a Date.
    const ms = at instanceof Date ? at.getTime() : at;
    if (ttl !== undefined) throw new TypeError('set: give ttl or expiresAt, not both');
    if (!Number.isSafeInteger(ms) || ms <= 0) {
      throw new RangeError(`set: expiresAt must be a Date or a positive whole number of ms since the Unix epoch, got ${String(at)}`);
    }
    expiresAt = ms;
  }
  if (minBufferSize !== undefined) {
    if (!Number.isSafeInteger(minBufferSize) || minBufferSize < 0 || minBufferSize > 0xffffffff) {
      throw new RangeError(`set: minBufferSize must be a whole number of bytes, got ${String(minBufferSize)}`);
    }
    reserve = minBufferSize;
  }
  return { mode, reserve, expiresAt };
}

module.exports = { setOptions };
