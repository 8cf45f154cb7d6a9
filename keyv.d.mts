// Typings of the ESM entry of `shared-kv-store/keyv` (keyv.mjs).
import { KeyvSharedKVStore } from './keyv.js';

export { KeyvSharedKVStore };
export type { KeyvSharedKVStoreOptions } from './keyv.js';
export default KeyvSharedKVStore;
