'use strict';
// `npx shared-kv-store …`: an operator's look inside a store file, for files other processes
// are using. Commands that only read open the store read-only (no write, no eviction mark).
// Exit codes: 0 done; 1 an error, a missing key, or a failed check; 2 a usage error.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const { openStore } = require('..');
const { writeDump, restoreDump, checkDump } = require('./dump');
const { DEFAULT_MAX_BYTES } = require('./file');

const COMMANDS = {
  keys: {
    usage: 'keys FILE [PATTERN]',
    about: 'Prints the keys (all, or those matching a glob or /regex/flags pattern), one per line.',
    args: [1, 2],
    flags: { mode: 'mode' },
    run([file, pattern], flags, out) {
      const store = read(file, flags);
      for (const key of pattern === undefined ? store.keys() : store.listKeys(pattern)) out(`${line(key)}\n`);
    },
  },
  get: {
    usage: 'get FILE KEY',
    about: "Prints KEY's value as JSON (values JSON cannot carry, such as a Map, a Buffer or a BigInt, as util.inspect shows them). Exits 1 if KEY is absent.",
    args: [2, 2],
    flags: { mode: 'mode' },
    run([file, key], flags, out) {
      const value = read(file, flags).get(key);
      if (value === undefined) throw coded('ERR_KV_NOT_FOUND', `no key '${key}' in ${file}`);
      out(`${show(value)}\n`);
    },
  },
  set: {
    usage: 'set FILE KEY JSON [--ttl SECONDS]',
    about: 'Sets KEY to the JSON value given, with an optional time to live.',
    args: [3, 3],
    flags: { ttl: 'number', mode: 'mode' },
    run([file, key, json], flags) {
      let value;
      try {
        value = JSON.parse(json);
      } catch (err) {
        throw coded('ERR_KV_USAGE', `the value is not JSON: ${err.message}`);
      }
      const store = openStore(file, { create: false, ...mode(flags) });
      store.set(key, value, flags.ttl === undefined ? undefined : { ttl: flags.ttl });
    },
  },
  delete: {
    usage: 'delete FILE KEY-OR-PATTERN',
    about: 'Deletes a key, or every key matching a glob or /regex/flags pattern; prints how many went.',
    args: [2, 2],
    flags: { mode: 'mode' },
    run([file, key], flags, out) {
      const store = openStore(file, { create: false, ...mode(flags) });
      // The keys the pattern names, deleted by the pattern itself (a listed key such as 'a*b'
      // given back to delete() would be a pattern again).
      const named = store.listKeys(key);
      store.delete(key);
      out(`${named.filter((k) => !store.has(k)).length}\n`);
    },
  },
  stats: {
    usage: 'stats FILE',
    about: "Prints the store's statistics as JSON.",
    args: [1, 1],
    flags: { mode: 'mode' },
    run([file], flags, out) {
      // This process's read cache is not the store's: left out.
      const { hits, misses, cachedEntries, cachedBytes, ...stats } = read(file, flags).stats();
      out(`${JSON.stringify({ path: path.resolve(file), ...stats }, null, 2)}\n`);
    },
  },
  check: {
    usage: 'check FILE',
    about: 'Verifies every block, free list and index slot of the store: exits 0 with a summary, or 1 naming the inconsistency.',
    args: [1, 1],
    flags: { mode: 'mode' },
    run([file], flags, out) {
      const c = read(file, flags).check();
      out(`ok: ${c.entries} entries, ${c.bytesUsed} bytes used, ${c.bytesFree} bytes free in ${c.blocks} blocks\n`);
    },
  },
  watch: {
    usage: 'watch FILE [PATTERN]',
    about: 'Prints a line per change made by any process ("EVENT KEY") until interrupted (Ctrl-C).',
    args: [1, 2],
    flags: { mode: 'mode' },
    run([file, pattern], flags, out) {
      const store = read(file, flags);
      return new Promise((resolve, reject) => {
        const stop = () => {
          watcher.close();
          resolve();
        };
        const watcher = store.watch(pattern, (key, event) => {
          try {
            out(key === undefined ? `${event}\n` : `${event} ${line(key)}\n`);
          } catch (err) {
            watcher.close();
            return reject(err); // stdout closed (EPIPE): main ends quietly
          }
          if (event === 'lost') reject(coded('ERR_KV_LOST', `${file} was truncated under this process`));
        });
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        out(`watching ${file}${pattern === undefined ? '' : ` for ${pattern}`} (Ctrl-C stops)\n`, true);
      });
    },
  },
  dump: {
    usage: 'dump FILE [OUT]',
    about: 'Writes every entry, with its exact value and its expiry, to OUT (or stdout) in the dump format (README: "Operating a store file"). Readable by any later version.',
    args: [1, 2],
    flags: { mode: 'mode' },
    run([file, target], flags) {
      if (target === undefined && process.stdout.isTTY) throw coded('ERR_KV_USAGE', 'the dump is binary: give OUT, or redirect stdout to a file');
      const store = read(file, flags);
      if (target !== undefined && sameFile(target, file)) throw coded('ERR_KV_USAGE', `OUT is the store file itself (${file})`);
      // Written beside OUT and renamed over it when complete: a dump that fails half way
      // leaves the previous OUT (the last good backup) as it was.
      const tmp = target === undefined ? undefined : `${target}.${process.pid}.tmp`;
      const fd = tmp === undefined ? 1 : fs.openSync(tmp, 'wx', 0o600);
      const progress = progressLine('dumped');
      try {
        const n = writeDump(store, (buf) => writeAll(fd, buf), { source: source(store), onProgress: progress });
        if (tmp !== undefined) {
          fs.fsyncSync(fd);
          fs.closeSync(fd);
          fs.renameSync(tmp, target);
        }
        progress(n, true);
      } catch (err) {
        if (tmp !== undefined) {
          fs.closeSync(fd);
          fs.rmSync(tmp, { force: true });
        }
        throw err;
      }
    },
  },
  restore: {
    usage: 'restore FILE [IN] [--max-bytes N]',
    about: 'Sets every entry of the dump IN (or stdin) that has not expired into the store FILE, creating it (maxBytes N, default 1 GiB) if needed. The whole dump is checked first: a damaged dump, or one of a newer format, restores nothing.',
    args: [1, 2],
    flags: { 'max-bytes': 'number', mode: 'mode' },
    run([file, input], flags, out) {
      if (input === undefined && process.stdin.isTTY) throw coded('ERR_KV_USAGE', 'give IN, or pipe the dump to stdin');
      const dump = openDump(input);
      try {
        restoreFrom(file, dump, flags, out);
      } finally {
        dump.close();
      }
    },
  },
};

/** Restores the dump `{ fd, size }` into the store file `file` (see the restore command). */
function restoreFrom(file, dump, flags, out) {
  const maxKeyBytes = require('../binding.js').layout().maxKeyBytes;
  // No value longer than the store's whole size can go in: the new file's maxBytes, or the
  // existing file's size (a bound, so that a damaged length allocates nothing large).
  const maxValueBytes = fs.existsSync(file) ? fs.statSync(file).size : flags['max-bytes'] ?? DEFAULT_MAX_BYTES;
  // Every entry checked before a store is opened or made: a refused dump leaves nothing.
  const checked = checkDump(dump, { maxKeyBytes, maxValueBytes });
  const options = { ...mode(flags), ...(flags['max-bytes'] === undefined ? {} : { maxBytes: flags['max-bytes'] }) };
  const fresh = !fs.existsSync(file);
  // A new store file is made under a temporary name and linked into place only when the
  // whole dump is in it: a restore that fails (a store too small) leaves no file.
  const target = fresh ? `${file}.${process.pid}.restore.tmp` : file;
  const store = openStore(target, options);
  const evictedBefore = store.stats().evictions;
  const progress = progressLine('restored');
  let result;
  try {
    // What was checked is what is restored: the dump may not change in between.
    if (dump.changed()) throw coded('ERR_KV_DUMP_CHANGED', 'the dump changed while it was checked; nothing was restored');
    result = restoreDump(store, dump, { onProgress: progress, checked });
    if (dump.changed()) throw coded('ERR_KV_DUMP_CHANGED', `the dump changed while it was restored (${file}${fresh ? ' was not made' : ' holds some of it'})`);
    const evicted = store.stats().evictions - evictedBefore;
    if (evicted > 0) {
      throw coded('ERR_KV_FULL', `the store evicted ${evicted} entries to make room: it is too small for this dump (${file}${fresh ? ' was not made' : ' lost them'})`);
    }
    if (fresh) fs.linkSync(target, file); // EEXIST if another process made the file meanwhile
  } finally {
    if (fresh) {
      store.close();
      fs.rmSync(target, { force: true });
    }
  }
  progress(result.restored, true);
  out(`restored ${result.restored} entries${result.expired ? ` (${result.expired} had expired since the dump)` : ''}\n`, true);
}

function read(file, flags = {}) {
  return openStore(file, { readOnly: true, ...mode(flags) });
}

/** `--mode 660`: the mode a store file shared with a group was made with (openStore's). */
function mode(flags) {
  return flags.mode === undefined ? {} : { mode: flags.mode };
}

/** A key on a line of its own; JSON-quoted if it holds a line break or a control character. */
function line(key) {
  return /[\u0000-\u001f\u007f"]/.test(key) ? JSON.stringify(key) : key;
}

function sameFile(a, b) {
  try {
    const [x, y] = [fs.statSync(a), fs.statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/**
 * The dump at `file`, or on stdin, as `{ fd, size, close() }` for lib/dump.js, which reads it
 * twice (checked whole, then restored) a MiB at a time: a dump of a store past 4 GiB is larger
 * than any Buffer. Stdin is copied to a temporary file first (removed by close()).
 */
function openDump(file) {
  if (file !== undefined) {
    const fd = fs.openSync(file, 'r');
    const at = fs.fstatSync(fd);
    const changed = () => {
      const now = fs.fstatSync(fd);
      return now.size !== at.size || now.mtimeMs !== at.mtimeMs || now.ctimeMs !== at.ctimeMs;
    };
    return { fd, size: at.size, changed, close: () => fs.closeSync(fd) };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skv-restore-'));
  const spool = path.join(dir, 'dump');
  const fd = fs.openSync(spool, 'w+', 0o600);
  const close = () => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    let size = 0;
    for (;;) {
      let n;
      try {
        n = fs.readSync(0, chunk, 0, chunk.length, null);
      } catch (err) {
        if (err.code === 'EAGAIN') continue;
        if (err.code === 'EOF') break;
        throw err;
      }
      if (n === 0) break;
      for (let at = 0; at < n;) at += fs.writeSync(fd, chunk, at, n - at, size + at);
      size += n;
    }
    return { fd, size, changed: () => false, close };
  } catch (err) {
    close();
    throw err;
  }
}

function source(store) {
  const s = store.stats();
  return { path: store.path, maxBytes: s.bufferBytes, entries: s.entries, layout: require('../binding.js').layout().layoutVersion };
}

/** JSON where JSON carries the value exactly; util.inspect's view otherwise. */
function show(value) {
  return jsonExact(value)
    ? JSON.stringify(value)
    : util.inspect(value, { depth: null, breakLength: Infinity, maxArrayLength: Infinity, maxStringLength: Infinity });
}

function jsonExact(v) {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!(i in v) || !jsonExact(v[i])) return false;
    return true;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.values(v).every(jsonExact);
  }
  return false;
}

function writeAll(fd, buf) {
  for (let at = 0; at < buf.length;) at += fs.writeSync(fd, buf, at);
}

/** Progress on stderr, only when it is a terminal. */
function progressLine(verb) {
  if (!process.stderr.isTTY) return () => {};
  return (n, done) => process.stderr.write(`\r${verb} ${n} entries${done ? '\n' : ''}`);
}

function coded(code, message) {
  const err = new Error(message);
  err.code = code;
  return err;
}

const FLAG_HELP = {
  mode: 'BITS  the permission bits the store file was made with (openStore\'s mode), in octal: 660 for a store shared with a group',
  ttl: 'SECONDS  the entry expires this many seconds from now',
  'max-bytes': 'N  the size of the store file if this makes it (an existing store keeps its own)',
};

function usage() {
  const lines = Object.values(COMMANDS).map((c) => `  shared-kv-store ${c.usage}`);
  return `Usage:\n${lines.join('\n')}\n  shared-kv-store COMMAND --help\n\nFILE is a store file (openStore). Commands that only read never change it.\n`;
}

function help(name) {
  const c = COMMANDS[name];
  const flags = Object.keys(c.flags ?? {}).map((f) => `  --${f} ${FLAG_HELP[f]}\n`).join('');
  return `Usage: shared-kv-store ${c.usage}\n\n${c.about}\n${flags ? `\nOptions:\n${flags}` : ''}`;
}

/** Splits argv into positionals and the command's --flags; throws ERR_KV_USAGE. */
function parse(args, spec = {}) {
  const positional = [];
  const flags = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('--') || a === '-') {
      positional.push(a);
      continue;
    }
    const [name, inline] = a.slice(2).split(/=(.*)/s, 2);
    if (!Object.hasOwn(spec, name)) throw coded('ERR_KV_USAGE', `unknown option --${name}`);
    const raw = inline ?? args[++i];
    if (spec[name] === 'mode') {
      if (raw === undefined || !/^0?o?[0-7]{3,4}$/.test(raw)) {
        throw coded('ERR_KV_USAGE', `--${name} takes permission bits in octal such as 660, got ${raw === undefined ? 'nothing' : raw}`);
      }
      flags[name] = parseInt(raw.replace(/^0?o?/, ''), 8);
      continue;
    }
    const n = Number(raw);
    if (raw === undefined || raw === '' || !Number.isFinite(n) || n <= 0) {
      throw coded('ERR_KV_USAGE', `--${name} takes a positive number, got ${raw === undefined ? 'nothing' : raw}`);
    }
    flags[name] = n;
  }
  return { positional, flags };
}

/**
 * Runs the command line `argv` (without node and the script). `io`: { out, err } writers
 * (stdout's and stderr's by default). Resolves with the exit code.
 */
async function main(argv, io = {}) {
  const stdout = io.out ?? ((s) => writeAll(1, Buffer.from(s)));
  const stderr = io.err ?? ((s) => process.stderr.write(s));
  const out = (s, toStderr) => (toStderr ? stderr(s) : stdout(s));
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? stderr : stdout)(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    stdout(`${require('../package.json').version}\n`);
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    stderr(`shared-kv-store: ERR_KV_USAGE: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const options = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (options.includes('--help') || options.includes('-h')) {
    stdout(help(name));
    return 0;
  }
  try {
    const { positional, flags } = parse(rest, command.flags);
    const [min, max] = command.args;
    if (positional.length < min || positional.length > max) {
      throw coded('ERR_KV_USAGE', `${name} takes ${min === max ? min : `${min} to ${max}`} arguments, got ${positional.length}`);
    }
    await command.run(positional, flags, out);
    return 0;
  } catch (err) {
    // Whoever read stdout stopped (`| head`): nothing more to say, and nobody to say it to.
    if (err?.code === 'EPIPE') return 0;
    const code = err?.code ?? 'ERR_KV_FAILED';
    stderr(`shared-kv-store: ${code}: ${String(err?.message ?? err).split('\n')[0]}\n`);
    if (code === 'ERR_KV_USAGE') {
      stderr(`\n${help(name)}`);
      return 2;
    }
    return 1;
  }
}

module.exports = { main, openDump };
