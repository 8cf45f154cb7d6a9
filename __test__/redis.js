'use strict';
// A throwaway redis-server on a free localhost port, for the two-tier test and the benchmark's
// Redis baseline. Redis comes from the OS packages; where it is missing, callers skip.
const net = require('node:net');
const { spawn, execFileSync } = require('node:child_process');

function redisInstalled() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

/**
 * Starts redis-server without persistence (and with `args`, e.g. `['--maxmemory', '24mb']`);
 * resolves with { port, url, client (connected ioredis), stop() }.
 */
async function startRedis(args = [], port = undefined) {
  port ??= await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args], { stdio: 'ignore' });
  const Redis = require('ioredis');
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on('error', () => {}); // a server a test killed: its commands fail on their own
  for (let i = 0; ; i++) {
    try {
      await client.connect();
      break;
    } catch (e) {
      if (i > 100) {
        server.kill();
        throw e;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const stop = () => {
    client.disconnect();
    server.kill();
  };
  /** SIGKILL, resolved once the server process is gone. */
  const kill = () => {
    client.disconnect();
    const gone = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGKILL');
    return gone;
  };
  return { port, url: `redis://127.0.0.1:${port}`, client, stop, kill };
}

module.exports = { redisInstalled, startRedis, freePort };
