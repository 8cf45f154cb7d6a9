// Typings of the ESM entry (index.mjs): the same exports as index.d.ts, and the module as default.
import * as kv from './index.js';

export * from './index.js';
export default kv;
