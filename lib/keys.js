'use strict';
// What a key may be, checked in JS before any native call (the length limit is Rust's, which
// reports it; the dump's restore checks every key with this before it writes one), and the
// patterns that name keys (listKeys, delete, watch).

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

const REGEX_FORM = /^\/([\s\S]+)\/([dgimsuvy]*)$/;
const GLOB_SPECIAL = /[.+^${}()|[\]\\/]/;

/**
 * A RegExp for a pattern string, or undefined if it is a plain key. As the README says, only
 * these make a pattern: `/source/flags` is a regex; a string containing `*` or `?` is a glob,
 * in which a backslash escapes the next character (`a\\*b` matches the key `a*b`). Any other
 * string is one key, backslashes included (`C:\\temp` is the key `C:\temp`, never a glob).
 * (Any key is matched alone by the regex `/^…$/` of it.) `always`: a plain key gets a RegExp
 * matching exactly it (listKeys, watch). An invalid regex is a SyntaxError.
 */
function compilePattern(pattern, always = false) {
  if (typeof pattern !== 'string') throw new TypeError('a pattern must be a string or a RegExp');
  if (!/[*?]/.test(pattern) && !REGEX_FORM.test(pattern)) {
    return always ? new RegExp(`^${escapeRegExp(pattern)}$`, 'u') : undefined;
  }
  const m = REGEX_FORM.exec(pattern);
  if (m) {
    try {
      return new RegExp(m[1], m[2]);
    } catch (err) {
      throw new SyntaxError(`invalid pattern ${pattern}: ${err.message}`);
    }
  }
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) {
      const next = pattern[++i];
      source += GLOB_SPECIAL.test(next) || next === '*' || next === '?' ? '\\' + next : next;
    } else if (c === '*') {
      source += '[\\s\\S]*';
    } else if (c === '?') {
      source += '[\\s\\S]';
    } else source += GLOB_SPECIAL.test(c) ? '\\' + c : c;
  }
  return new RegExp(`^${source}$`, 'u');
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

module.exports = { checkKey, compilePattern, LOCK_PREFIX };
