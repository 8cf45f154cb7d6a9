'use strict';
// A throwaway memcached on a free localhost port, for the drifting-sizes baseline, and a client
// of the few text-protocol commands it needs (pipelined: every reply is one line). memcached
// comes from the OS packages; where it is missing, callers skip.
const net = require('node:net');
const os = require('node:os');
const { spawn } = require('node:child_process');
const { freePort, installed } = require('../__test__/redis');

const memcachedInstalled = () => installed('memcached');

/** Starts memcached with `-m megabytes`; resolves with { set, has, stop }. */
async function startMemcached(megabytes) {
  const port = await freePort();
  // memcached will not run as root without -u.
  const user = process.getuid?.() === 0 ? ['-u', os.userInfo().username] : [];
  const server = spawn('memcached', ['-p', String(port), '-l', '127.0.0.1', '-U', '0', '-m', String(megabytes), ...user], { stdio: 'ignore' });
  let socket;
  for (let i = 0; ; i++) {
    try {
      socket = await new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(s)).once('error', reject);
      });
      break;
    } catch (e) {
      if (i > 100) {
        server.kill();
        throw e;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  socket.setNoDelay(true);
  // Replies, one line each, handed to the waiting batches in order.
  let buffered = '';
  const waiting = [];
  socket.on('data', (d) => {
    buffered += d.toString('latin1');
    let nl;
    while ((nl = buffered.indexOf('\r\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 2);
      const w = waiting[0];
      w.lines.push(line);
      if (w.lines.length === w.count) {
        waiting.shift();
        w.resolve(w.lines);
      }
    }
  });
  /** Sends `commands` (Buffers) at once; resolves with their reply lines. */
  const batch = (commands) => new Promise((resolve) => {
    waiting.push({ count: commands.length, lines: [], resolve });
    socket.write(Buffer.concat(commands));
  });
  return {
    /** Stores each [key, value Buffer]; resolves with how many were refused. */
    async set(pairs) {
      const replies = await batch(pairs.map(([k, v]) => Buffer.concat([Buffer.from(`set ${k} 0 0 ${v.length}\r\n`), v, Buffer.from('\r\n')])));
      return replies.filter((l) => l !== 'STORED').length;
    },
    /** Which of `keys` are stored (meta get without the value: HD or EN). */
    async has(keys) {
      const replies = await batch(keys.map((k) => Buffer.from(`mg ${k}\r\n`)));
      return replies.map((l) => l === 'HD');
    },
    stop() {
      socket.destroy();
      server.kill();
    },
  };
}

module.exports = { memcachedInstalled, startMemcached };
