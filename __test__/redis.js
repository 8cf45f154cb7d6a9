'use strict';
// A throwaway redis-server on a free localhost port, for the two-tier test and the benchmark's
// Redis baseline. Redis comes from the OS packages; where it is missing, callers skip.
const net = require('node:net');
const { spawn, execFileSync } = require('node:child_process');

/** Whether `command --version` runs (servers from the OS packages; callers skip if not). */
function installed(command) {
  try {
    execFileSync(command, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const redisInstalled = () => installed('redis-server');

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
  // Wait until the server accepts connections, then connect the client once: an ioredis
  // client whose first connect failed goes on reconnecting by itself, and a second connect()
  // then fails with "already connecting" (a flaky start seen one run in ~15).
  for (let i = 0; ; i++) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(() => resolve(true))).once('error', () => resolve(false));
    });
    if (up) break;
    if (i > 500 || server.exitCode !== null) {
      server.kill();
      throw new Error(`redis-server did not start on port ${port}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const Redis = require('ioredis');
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on('error', () => {}); // a server a test killed: its commands fail on their own
  try {
    await client.connect();
  } catch (e) {
    server.kill();
    throw e;
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

module.exports = { redisInstalled, startRedis, freePort, installed };
