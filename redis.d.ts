// Typings of `shared-kv-store/redis` (lib/redis.js): a machine-wide near cache in front of Redis.
import type { RedisClientOptions } from '@redis/client';

export interface NearCacheOptions {
  /** A Redis URL (`redis://127.0.0.1:6379`), or node-redis client options. RESP3 is used. */
  redis: string | RedisClientOptions;
  /** The machine-wide tier: a store file every process of the machine opens (give this or `name`). */
  path?: string;
  /** Or a named store, for the threads of one process. */
  name?: string;
  /** Bytes of the local tier, which evicts (default 256 MiB). */
  maxBytes?: number;
  /** Keys in Redis are `prefix + key`; only these are tracked (default ''). */
  prefix?: string;
  /**
   * `'msgpack'` (default): any value the store holds, in Redis as the store's encoding.
   * `'string'`: UTF-8 strings, shared as they are with other Redis clients.
   */
  codec?: 'msgpack' | 'string';
  /** Default seconds to live, in Redis and in the local tier (0, default: none). */
  ttl?: number;
  /** While Redis is unreachable, a get answers with the last local value instead of rejecting. */
  serveStale?: boolean;
}

export interface NearCacheStats {
  /** Gets this process answered from the local tier. */
  localHits: number;
  /** Gets this process did not (each waits for one Redis read for the machine). */
  localMisses: number;
  /** Redis reads this process made. */
  redisReads: number;
  /** Invalidations the machine's listener received. */
  invalidations: number;
  /** Times the local tier was fenced (a subscription made or lost, a flush). */
  flushes: number;
  /** This process holds the tracking connection for the machine. */
  listener: boolean;
  /** The local tier may serve now (a listener is subscribed and alive). */
  serving: boolean;
}

export declare class NearCache<V = any> {
  private constructor();
  /** The local copy, or one Redis read (for the machine), stored locally. Rejects with code `ERR_KV_REDIS` while Redis is unreachable. */
  get(key: string): Promise<V | undefined>;
  /** Writes to Redis; every machine's local copy is invalidated. */
  set(key: string, value: V, options?: { ttl?: number }): Promise<true>;
  /** Deletes in Redis (and every local copy); whether the key existed. */
  delete(key: string): Promise<boolean>;
  /** The cached value, or one loader's for the machine and across machines (a lock in Redis). */
  getOrSet(key: string, loader: (key: string) => V | undefined | Promise<V | undefined>, options?: { ttl?: number; timeout?: number }): Promise<V | undefined>;
  stats(): NearCacheStats;
  /** Closes its connections and timers (a listener hands its role to another process). */
  close(): Promise<void>;
}

/** Opens the local tier and connects to Redis; see README "Many machines". */
export declare function createNearCache<V = any>(options: NearCacheOptions): Promise<NearCache<V>>;
