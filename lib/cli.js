'use strict';
// `npx shared-kv-store …`: an operator's look inside a store file, for files other processes
// are using. Commands that only read open the store read-only (no write, no eviction mark).
// Exit codes: 0 done; 1 an error, a missing key, or a failed check; 2 a usage error.

const fs = require('node:fs');
const util = require('node:util');
const { openStore } = require('..');
const { writeDump, restoreDump, checkDump } = require('./dump');

const COMMANDS = {
  keys: {
    usage: 'keys FILE [PATTERN]',
    about: 'Prints the keys (all, or those matching a glob or /regex/flags pattern), one per line.',
    args: [1, 2],
    run([file, pattern], _, out) {
      const store = read(file);
      for (const key of pattern === undefined ? store.keys() : store.listKeys(pattern)) out(`${key}\n`);
    },
  },
  get: {
    usage: 'get FILE KEY',
    about: "Prints KEY's value as JSON (values JSON cannot carry, such as a Map, a Buffer or a BigInt, as util.inspect shows them). Exits 1 if KEY is absent.",
    args: [2, 2],
    run([file, key], _, out) {
      const value = read(file).get(key);
      if (value === undefined) throw coded('ERR_KV_NOT_FOUND', `no key '${key}' in ${file}`);
      out(`${show(value)}\n`);
    },
  },
  set: {
    usage: 'set FILE KEY JSON [--ttl SECONDS]',
    about: 'Sets KEY to the JSON value given, with an optional time to live.',
    args: [3, 3],
    flags: { ttl: 'number' },
    run([file, key, json], flags) {
      let value;
      try {
        value = JSON.parse(json);
      } catch (err) {
        throw coded('ERR_KV_USAGE', `the value is not JSON: ${err.message}`);
      }
      const store = openStore(file, { create: false });
      store.set(key, value, flags.ttl === undefined ? undefined : { ttl: flags.ttl });
    },
  },
  delete: {
    usage: 'delete FILE KEY-OR-PATTERN',
    about: 'Deletes a key, or every key matching a glob or /regex/flags pattern; prints how many went.',
    args: [2, 2],
    run([file, key], _, out) {
      const store = openStore(file, { create: false });
      let n = 0;
      for (const k of store.listKeys(key)) if (store.delete(k)) n++;
      out(`${n}\n`);
    },
  },
  stats: {
    usage: 'stats FILE',
    about: "Prints the store's statistics as JSON.",
    args: [1, 1],
    run([file], _, out) {
      // This process's read cache is not the store's: left out.
      const { hits, misses, cachedEntries, cachedBytes, ...stats } = read(file).stats();
      out(`${JSON.stringify({ path: require('node:path').resolve(file), ...stats }, null, 2)}\n`);
    },
  },
  check: {
    usage: 'check FILE',
    about: 'Verifies every block, free list and index slot of the store: exits 0 with a summary, or 1 naming the inconsistency.',
    args: [1, 1],
    run([file], _, out) {
      const c = read(file).check();
      out(`ok: ${c.entries} entries, ${c.bytesUsed} bytes used, ${c.bytesFree} bytes free in ${c.blocks} blocks\n`);
    },
  },
  watch: {
    usage: 'watch FILE [PATTERN]',
    about: 'Prints a line per change made by any process ("EVENT KEY") until interrupted (Ctrl-C).',
    args: [1, 2],
    run([file, pattern], _, out) {
      const store = read(file);
      return new Promise((resolve, reject) => {
        const stop = () => {
          watcher.close();
          resolve();
        };
        const watcher = store.watch(pattern, (key, event) => {
          out(key === undefined ? `${event}\n` : `${event} ${key}\n`);
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
    run([file, target]) {
      const store = read(file);
      const fd = target === undefined ? 1 : fs.openSync(target, 'w', 0o600);
      const progress = progressLine('dumped');
      const n = writeDump(store, (buf) => writeAll(fd, buf), { source: source(store), onProgress: progress });
      if (fd !== 1) fs.closeSync(fd);
      progress(n, true);
    },
  },
  restore: {
    usage: 'restore FILE [IN] [--max-bytes N]',
    about: 'Sets every entry of the dump IN (or stdin) that has not expired into the store FILE, creating it (maxBytes N, default 1 GiB) if needed. The whole dump is checked first: a damaged dump, or one of a newer format, restores nothing.',
    args: [1, 2],
    flags: { 'max-bytes': 'number' },
    run([file, input], flags, out) {
      const buf = fs.readFileSync(input === undefined ? 0 : input);
      checkDump(buf); // before the store is opened (or made): a refused dump leaves nothing
      const options = flags['max-bytes'] === undefined ? {} : { maxBytes: flags['max-bytes'] };
      const store = openStore(file, options);
      const progress = progressLine('restored');
      const { restored, expired } = restoreDump(store, buf, { onProgress: progress });
      progress(restored, true);
      out(`restored ${restored} entries${expired ? ` (${expired} had expired since the dump)` : ''}\n`, true);
    },
  },
};

function read(file) {
  return openStore(file, { readOnly: true });
}

function source(store) {
  const s = store.stats();
  return { path: store.path, maxBytes: s.bufferBytes, entries: s.entries, layout: require('../binding.js').layout().layoutVersion };
}

/** JSON where JSON carries the value exactly; util.inspect's view otherwise. */
function show(value) {
  return jsonExact(value) ? JSON.stringify(value) : util.inspect(value, { depth: null, breakLength: Infinity });
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

function usage() {
  const lines = Object.values(COMMANDS).map((c) => `  shared-kv-store ${c.usage}`);
  return `Usage:\n${lines.join('\n')}\n  shared-kv-store COMMAND --help\n\nFILE is a store file (openStore). Commands that only read never change it.\n`;
}

function help(name) {
  const c = COMMANDS[name];
  const flags = c.flags ? Object.keys(c.flags).map((f) => ` --${f}`).join('') : '';
  return `Usage: shared-kv-store ${c.usage}\n\n${c.about}\n${flags ? `\nOptions:${flags}\n` : ''}`;
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
    if (!(name in spec)) throw coded('ERR_KV_USAGE', `unknown option --${name}`);
    const raw = inline ?? args[++i];
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
  if (rest.includes('--help') || rest.includes('-h')) {
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
    const code = err?.code ?? 'ERR_KV_FAILED';
    stderr(`shared-kv-store: ${code}: ${String(err?.message ?? err).split('\n')[0]}\n`);
    if (code === 'ERR_KV_USAGE') {
      stderr(`\n${help(name)}`);
      return 2;
    }
    return 1;
  }
}

module.exports = { main };
