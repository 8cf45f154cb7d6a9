// Typings of the ESM entry of `shared-kv-store/redis` (redis.mjs).
import { createNearCache, NearCache } from './redis.js';

export { createNearCache, NearCache };
export type { NearCacheOptions, NearCacheStats } from './redis.js';
export default createNearCache;
