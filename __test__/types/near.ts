// Type-checks the near cache's typings (redis.d.ts): compiled by `tsc -p __test__/types`, not run.
import { createNearCache, NearCache, NearCacheStats } from '../../redis';

interface User { name: string }

async function main(): Promise<void> {
  const cache: NearCache<User> = await createNearCache<User>({ redis: 'redis://127.0.0.1:6379', path: '/dev/shm/near.kv', prefix: 'app:', ttl: 60 });
  const u: User | undefined = await cache.get('u:1');
  await cache.set('u:1', { name: 'ada' }, { ttl: 30 });
  const loaded = await cache.getOrSet('u:2', async (key) => ({ name: key }), { timeout: 1000 });
  const s: NearCacheStats = cache.stats();
  const deleted: boolean = await cache.delete('u:1');
  await createNearCache({ redis: { url: 'redis://127.0.0.1:6379' }, name: 'threads', codec: 'string', serveStale: true });
  // @ts-expect-error codec is 'msgpack' or 'string'
  await createNearCache({ redis: 'redis://x', name: 'n', codec: 'json' });
  // @ts-expect-error values are Users
  await cache.set('u:3', 42);
  await cache.close();
  void [u, loaded, s.localHits + s.redisReads, deleted];
}
void main;
