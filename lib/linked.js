'use strict';
// Whether a store file's path still names the file this thread mapped. Another process may
// delete the file (a cleanup script) or replace it: processes that had it open go on in the
// old inode, and the next one to open the path gets another store. So `stats().linked` says
// which, and the first write that finds the file gone warns once (ERR_KV_UNLINKED).

const fs = require('node:fs');

/** A write looks at the clock once in CHECK_EVERY (Date.now costs ~45 ns, a set ~300). */
const CHECK_EVERY = 16;
/** And stats the path at most once in this many milliseconds. */
const CHECK_MS = 1000;

/** "device:inode" of the file at `file` now, or undefined if there is none. */
function fileIdOf(file) {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

class Link {
  #file;
  #fileId;
  #writes = 0;
  #checkedAt = 0;
  #linked = true;
  #warned = false;

  constructor(file, fileId) {
    this.#file = file;
    this.#fileId = fileId;
  }

  /** Called on every write: cheap until it is time to look again. */
  wrote() {
    if (++this.#writes < CHECK_EVERY) return;
    this.#writes = 0;
    const now = Date.now();
    if (now - this.#checkedAt >= CHECK_MS) this.check(now);
  }

  /** Looks now: whether the path still names the mapped file. */
  check(now = Date.now()) {
    this.#checkedAt = now;
    this.#linked = fileIdOf(this.#file) === this.#fileId;
    if (!this.#linked && !this.#warned) {
      this.#warned = true;
      process.emitWarning(`shared-kv-store: the store file '${this.#file}' was deleted or replaced; ` +
        'this thread goes on in the old file, which processes that open the path now do not share: ' +
        'close the store and openStore(path) again to join them (what was written here since stays behind)',
      { code: 'ERR_KV_UNLINKED' });
    }
    return this.#linked;
  }
}

module.exports = { Link, fileIdOf };
