// The ESM entry (`import ... from 'shared-kv-store'`): the CommonJS module's exports as real
// named exports, and the module itself as the default export. Both entries share one instance.
import kv from './index.js';

export const { createManager, createStore, openStore, SharedKVStore, Manager, codec } = kv;
export default kv;
