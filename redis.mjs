// The ESM entry of `shared-kv-store/redis`.
import nearCache from './lib/redis.js';

export const { createNearCache, NearCache } = nearCache;
export default createNearCache;
