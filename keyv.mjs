// The ESM entry of `shared-kv-store/keyv`.
import adapter from './lib/keyv.js';

export const { KeyvSharedKVStore } = adapter;
export default KeyvSharedKVStore;
