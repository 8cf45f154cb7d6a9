// Typings of `shared-kv-store/keyv`: a Keyv storage adapter over a SharedKVStore.
import { EventEmitter } from 'node:events';
import { SharedKVStore } from './index.js';

export interface KeyvSharedKVStoreOptions {
  /** A named store (the same memory in every thread of the process); default 'keyv'. */
  name?: string;
  /** A store file shared by the processes of the machine (openStore) instead of a named store. */
  path?: string;
  /** Room for the store, if this creates it. */
  maxBytes?: number;
  /** Permission bits of a new store file. */
  mode?: number;
  codec?: 'js' | 'native';
  /** What a full store does, if this creates it: 'throw' (ERR_KV_FULL, the default) or 'evict'. */
  onFull?: 'throw' | 'evict';
  /** The most entries, if this creates the store. */
  maxEntries?: number;
}

export declare class KeyvSharedKVStore extends EventEmitter {
  constructor(storeOrOptions?: SharedKVStore | KeyvSharedKVStoreOptions);
  readonly store: SharedKVStore;
  opts: { dialect: string; url: string };
  /** Set by keyv 5, which then prefixes keys itself; keyv 6 prefixes keys for a store without one. */
  namespace?: string;
  get<T = any>(key: string): Promise<T | undefined>;
  getMany<T = any>(keys: string[]): Promise<Array<T | undefined>>;
  /** `ttl` in milliseconds. */
  set(key: string, value: any, ttl?: number): Promise<boolean>;
  setMany(entries: Array<{ key: string; value: any; ttl?: number }>): Promise<boolean[]>;
  delete(key: string): Promise<boolean>;
  /** Whether each key existed (under keyv 5: whether all did). */
  deleteMany(keys: string[]): Promise<boolean[] | boolean>;
  has(key: string): Promise<boolean>;
  hasMany(keys: string[]): Promise<boolean[]>;
  clear(): Promise<void>;
  iterator(namespace?: string): AsyncGenerator<[string, any], void, unknown>;
  disconnect(): Promise<void>;
}

export default KeyvSharedKVStore;
